"""`python -m tui.scan_child`: the corpus scan in its own process, for the wizard.

The scan starts a multiprocessing pool for a corpus of many files; started inside the running app, a
spawned pool fails (`bad value(s) in fds_to_keep`: the terminal driver's descriptors). Here it runs in
a plain child process that prints one JSON line per progress update and one with the facts at the end:

  {"progress": [done_bytes, total_bytes]}    ...
  {"facts": CorpusFacts.to_dict()}   or   {"error": "one line"}
"""
from __future__ import annotations

import json
import sys


def main(argv: list[str]) -> int:
    args = json.loads(argv[0])  # {"paths": [...], "tokenizer_dir": str | None}
    from training.plan.scan import scan_corpus

    def progress(done: int, total: int, _what: str) -> None:
        print(json.dumps({"progress": [done, total]}), flush=True)

    try:
        facts = scan_corpus(args["paths"], args.get("tokenizer_dir"), progress)
    except (OSError, ValueError) as e:
        print(json.dumps({"error": str(e)}), flush=True)
        return 2
    print(json.dumps({"facts": facts.to_dict()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
