"""Compatibility entry point: runs started before the move to training/runtime/ launched `python -m training.worker`,
and resuming such a run may still call it. The worker lives in training.runtime.worker."""
import sys

from training.runtime.worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
