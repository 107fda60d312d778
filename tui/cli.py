"""`tune-wizard` entry point: argument parsing and dispatch only. Heavy imports stay in the commands.

  tune-wizard                         the interactive wizard
  tune-wizard --recipe R.yaml         run a recipe headless   [--dry-run] [--set key.path=value ...]
  tune-wizard attach [RUN_DIR]        follow a run (the latest by default)
  tune-wizard stop [RUN_DIR]          ask a run to checkpoint and stop
  tune-wizard runs                    list runs
  tune-wizard schema                  print the recipe JSON Schema
  tune-wizard plan --model M ...      scan the data, decide, estimate, write a recipe (see plan --help)
  tune-wizard report [RUN_DIR]        (re)write RUN_DIR/report.md: before/after, loss curves, cost
  tune-wizard export [RUN_DIR]        copy out the adapter, or with --merge a standalone model [--out DIR]

Exit status: 0 success, 1 training failure, 2 bad input (one line per problem, no traceback).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
# subcommand -> "module:function(argv) -> exit status"; imported only when that command runs
COMMANDS = {
    "attach": "tui.cli:cmd_attach",
    "stop": "tui.cli:cmd_stop",
    "runs": "tui.cli:cmd_runs",
    "schema": "tui.cli:cmd_schema",
    "plan": "training.plan_cli:main",
    "report": "tui.run_commands:cmd_report",
    "export": "tui.run_commands:cmd_export",
}


def err(msg: str) -> None:
    print(f"tune-wizard: error: {msg}", file=sys.stderr)


def main_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tune-wizard",
        description="Decide between continued pre-training, fine-tuning, both or retrieval from measured "
                    "evidence; write a recipe; run it and watch it.",
        epilog="commands: plan, attach [RUN_DIR], stop [RUN_DIR], runs, report [RUN_DIR], "
               "export [RUN_DIR] [--merge], schema (each has --help). "
               "Without --recipe or a command, the interactive wizard starts.")
    p.add_argument("--recipe", metavar="R.yaml", help="run this recipe headless")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe and print the resolved plan; train nothing")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a recipe key, e.g. --set stages.cpt.max_steps=20 (repeatable)")
    return p


def run_recipe(args) -> int:
    from training.recipe import RecipeError, dump_recipe, load_recipe
    from training.runner import create_run_dir, launch, resolve

    try:
        recipe = load_recipe(args.recipe, args.overrides)
        resolved = resolve(recipe, args.recipe)
    except RecipeError as e:
        for line in e.lines():
            err(line)
        n = len(e.problems)
        print(f"{n} problem{'s' if n != 1 else ''} in {args.recipe}; nothing was run", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.dry_run:
        print(describe(resolved))
        print("--- resolved recipe ---")
        print(dump_recipe(resolved), end="")
        return 0
    try:
        run = create_run_dir(resolved, args.recipe)
    except RecipeError as e:
        for line in e.lines():
            err(line)
        return EXIT_BAD_INPUT
    from tui.headless import follow
    print(f"run folder: {run}", flush=True)
    proc = launch(run)
    return follow(run, proc)


def describe(r) -> str:
    """The resolved plan in a few lines."""
    from training.recipe import CptStage, expand_data
    lines = [f"recipe {r.name} (seed {r.seed}): model {r.model.id}",
             f"hardware: {r.hardware.gpu} x{r.hardware.gpu_count}, ${r.hardware.price_per_gpu_hour}/GPU-hour"
             + (f", budget ${r.hardware.budget_usd}" if r.hardware.budget_usd is not None else "")]
    for i, st in enumerate(r.stages):
        stop = f"max_steps {st.max_steps}" if st.max_steps else f"{st.epochs:g} epochs"
        if isinstance(st, CptStage):
            files = [f for s in st.data for f in expand_data(s)]
            mb = sum(f.stat().st_size for f in files) / 1e6
            lines.append(f"stage {i + 1} {st.name}: cpt (full weights) on {len(files)} files, {mb:.1f} MB; "
                         f"seq_len {st.seq_len}, packing {'on' if st.packing else 'off'}, lr {st.learning_rate:g} "
                         f"{st.lr_scheduler}, {stop}, batch {st.micro_batch_size}x{st.grad_accum}")
        else:
            tgt = st.lora.target_modules if isinstance(st.lora.target_modules, str) else ",".join(st.lora.target_modules)
            lora = f", LoRA r={st.lora.r} alpha={st.lora.alpha} on {tgt}" if st.method != "full" else ""
            lines.append(f"stage {i + 1} {st.name}: sft/{st.method} on {st.data}{lora}; lr {st.learning_rate:g}, "
                         f"{stop}, batch {st.micro_batch_size}x{st.grad_accum}, "
                         f"loss on {'completions' if st.completion_only_loss else 'whole sequence'}")
        if i > 0 and r.stages[i - 1].type == "cpt" and st.type == "sft":
            lines[-1] += f" (starts from {r.stages[i - 1].name}'s model)"
    return "\n".join(lines)


def latest_run(root: str = "runs") -> Path | None:
    d = Path(root)
    runs = [p for p in d.iterdir() if (p / "recipe.yaml").exists()] if d.is_dir() else []
    return max(runs, key=lambda p: p.stat().st_mtime) if runs else None


def _run_arg(argv: list[str], prog: str) -> Path | None:
    p = argparse.ArgumentParser(prog=f"tune-wizard {prog}")
    p.add_argument("run_dir", nargs="?", help="a run folder (default: the latest under ./runs)")
    a = p.parse_args(argv)
    run = Path(a.run_dir) if a.run_dir else latest_run()
    if run is None:
        err("no runs under ./runs; give a run folder")
        return None
    if not (run / "recipe.yaml").exists():
        err(f"{run} is not a run folder (no recipe.yaml)")
        return None
    return run


def cmd_attach(argv: list[str]) -> int:
    run = _run_arg(argv, "attach")
    if run is None:
        return EXIT_BAD_INPUT
    from tui.headless import follow
    return follow(run)


def cmd_stop(argv: list[str]) -> int:
    run = _run_arg(argv, "stop")
    if run is None:
        return EXIT_BAD_INPUT
    from tui.headless import stop
    if stop(run):
        print(f"asked {run} to checkpoint and stop")
        return 0
    print(f"{run} is not running")
    return 1


def cmd_runs(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="tune-wizard runs")
    p.add_argument("--root", default="runs")
    a = p.parse_args(argv)
    from training.events import read_events
    from tui.headless import pid_alive
    root = Path(a.root)
    runs = sorted((x for x in root.iterdir() if (x / "recipe.yaml").exists()), key=lambda x: x.name) if root.is_dir() else []
    if not runs:
        print(f"no runs under {root}")
        return 0
    print(f"{'run':<36} {'state':<9} {'stage':<8} {'step':>11} {'loss':>8}")
    for r in runs:
        evs = read_events(r / "events.jsonl")
        fin = next((e for e in reversed(evs) if e.get("event") == "finished"), None)
        state = fin["status"] if fin else ("running" if pid_alive(r) else "dead")
        step = next((e for e in reversed(evs) if e.get("event") == "step"), None)
        print(f"{r.name:<36} {state:<9} {(step or {}).get('stage', '-'):<8} "
              f"{(str(step['step']) + '/' + str(step['total_steps'])) if step else '-':>11} "
              f"{(step or {}).get('loss', '-'):>8}")
    return 0


def cmd_schema(argv: list[str]) -> int:
    import json
    from training.recipe import json_schema
    print(json.dumps(json_schema(), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in COMMANDS:
        import importlib
        mod, fn = COMMANDS[argv[0]].split(":")
        try:
            return getattr(importlib.import_module(mod), fn)(argv[1:])
        except KeyboardInterrupt:
            return 130
    args = main_parser().parse_args(argv)
    if args.recipe:
        return run_recipe(args)
    if args.dry_run or args.overrides:
        err("--dry-run and --set need --recipe R.yaml")
        return EXIT_BAD_INPUT
    try:
        from tui.app import run_app
    except ImportError:
        err("the interactive wizard is not built yet; use --recipe R.yaml")
        return EXIT_BAD_INPUT
    return run_app()


if __name__ == "__main__":
    sys.exit(main())
