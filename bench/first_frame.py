"""Time from `tune-wizard` starting to the first frame of the wizard, headless, in fresh processes.

Each run is a new interpreter (nothing cached in memory; the OS file cache is warm after the first run,
as it is for a user's second start). The child starts the app headless and reports when Textual says
the app is ready (first screen composed and painted); the parent times spawn -> report.
Baselines in the same run: a bare interpreter, and one that only imports textual.app.

  /work/venv/bin/python bench/first_frame.py [--runs 7]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHILD = """
import sys
from tui.app import TuneWizardApp
class Timed(TuneWizardApp):
    def on_ready(self):
        print("READY", flush=True)
        self.exit()
Timed().run(headless=True, size=(80, 24))
"""
TARGET_S = 0.6


def once(code: str) -> float:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t0 = time.perf_counter()
    p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         env=env, cwd=str(ROOT))
    if "READY" in code:
        for line in p.stdout:
            if line.startswith("READY"):
                break
        dt = time.perf_counter() - t0
    else:
        p.wait()
        dt = time.perf_counter() - t0
    _, err = p.communicate(timeout=30)
    if p.returncode != 0:
        raise SystemExit(f"child failed: {err}")
    return dt


def main() -> int:
    a = argparse.ArgumentParser()
    a.add_argument("--runs", type=int, default=7)
    args = a.parse_args()
    once(CHILD)  # warm the file cache
    rows = {"bare python": "pass", "import textual.app": "import textual.app",
            "tune-wizard first frame": CHILD}
    res = {}
    for name, code in rows.items():
        times = [once(code) for _ in range(args.runs)]
        res[name] = statistics.median(times)
        print(f"{name:<26} median {res[name]:.3f} s  (min {min(times):.3f}, max {max(times):.3f}, n={args.runs})")
    ff = res["tune-wizard first frame"]
    print(f"first frame / bare python = {ff / res['bare python']:.1f}x; "
          f"first frame - textual import = {ff - res['import textual.app']:.3f} s")
    ok = ff < TARGET_S
    print(f"target < {TARGET_S} s: {'met' if ok else 'MISSED'} ({os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
