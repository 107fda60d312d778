"""`tune-wizard report RUN_DIR` and `tune-wizard export RUN_DIR [--merge] [--out DIR] [--base PATH]
[--push-to-hub ORG/NAME [--private]]`.

Argument parsing and messages only: the work happens in training/report/report.py and training/report/export.py,
imported when the command runs (export loads torch then; this module itself stays light).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def _err(msg: str) -> None:
    print(f"tune-wizard: error: {msg}", file=sys.stderr)


def _run_folder(value: str | None, prog: str) -> Path | None:
    from tui.cli import latest_run
    run = Path(value) if value else latest_run()
    if run is None:
        _err(f"no runs under ./runs; give a run folder: tune-wizard {prog} RUN_DIR")
        return None
    if not (run / "recipe.yaml").is_file() or not (run / "events.jsonl").is_file():
        _err(f"{run} is not a run folder (it needs recipe.yaml and events.jsonl)")
        return None
    return run


def cmd_report(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tune-wizard report",
                                description="(Re)write RUN_DIR/report.md: before/after table, loss curves, cost.")
    p.add_argument("run_dir", nargs="?", help="a run folder (default: the latest under ./runs)")
    a = p.parse_args(argv)
    run = _run_folder(a.run_dir, "report")
    if run is None:
        return EXIT_BAD_INPUT
    from training.report.report import write_report
    try:
        path = write_report(run)
    except OSError as e:
        _err(f"cannot write the report in {run} ({e.strerror}); check the folder's permissions")
        return EXIT_BAD_INPUT
    print(path)
    return 0


def cmd_export(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tune-wizard export",
                                description="Copy a run's result out: the adapter with a README, or with --merge "
                                            "a standalone model (adapter merged into its base).")
    p.add_argument("run_dir", nargs="?", help="a run folder (default: the latest under ./runs)")
    p.add_argument("--merge", action="store_true", help="merge the LoRA adapter into its base; save a standalone model")
    p.add_argument("--out", metavar="DIR", help="where to write (default: RUN_DIR/export/merged|adapter|model)")
    p.add_argument("--base", metavar="PATH", help="the adapter's base model, when it is no longer where training left it")
    p.add_argument("--push-to-hub", metavar="ORG/NAME", help="upload the export to this Hugging Face repository, "
                   "with a model card made from report.md (needs HF_TOKEN or `hf auth login`)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    a = p.parse_args(argv)
    run = _run_folder(a.run_dir, "export")
    if run is None:
        return EXIT_BAD_INPUT
    if a.private and not a.push_to_hub:
        _err("--private only means something with --push-to-hub ORG/NAME")
        return EXIT_BAD_INPUT
    from training.report.export import (ExportError, adapter_base, export, final_output, hub_token, push_to_hub,
                                        serve_commands, write_model_card)
    try:
        token = hub_token(a.push_to_hub) if a.push_to_hub else None  # refuse before the (slow) merge
        target, kind = export(run, merge=a.merge, out=a.out, base=a.base)
    except ExportError as e:
        _err(str(e))
        return EXIT_BAD_INPUT
    what = {"merged": "standalone model (adapter merged into its base)", "adapter": "LoRA adapter, with README.md",
            "model": "full model (nothing to merge), with README.md"}[kind]
    print(f"exported {what}: {target}")
    base = adapter_base(final_output(run)["path"], a.base) if kind == "adapter" else None
    print("serve it:")
    for name, cmd in serve_commands(target, kind, base).items():
        print(f"  # {name}\n  {cmd}")
    if a.push_to_hub:
        if kind == "adapter" and base and base.startswith(("/", ".", "~")):
            print(f"note: this adapter's base is a local folder ({base}); whoever loads it from the Hub needs that "
                  f"model too: export with --merge for a standalone one")
        try:
            if not (run / "report.md").is_file():  # the model card is generated from it
                from training.report.report import write_report
                write_report(run)
            write_model_card(target, run, kind, base, a.push_to_hub)
            url = push_to_hub(target, a.push_to_hub, a.private, token)
        except ExportError as e:
            _err(str(e))
            return EXIT_BAD_INPUT
        print(f"pushed to {a.push_to_hub}{' (private)' if a.private else ''}: {url}")
    return 0
