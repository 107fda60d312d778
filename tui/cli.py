"""`tune-wizard` entry point: argument parsing and dispatch only. Heavy imports stay in the commands.

  tune-wizard                         the interactive wizard
  tune-wizard --recipe R.yaml         run a recipe headless   [--dry-run] [--set key.path=value ...] [--preflight]
  tune-wizard preflight R.yaml        measure a few real steps per stage; project time, cost, memory, disk
                                      [--node-rank K --main-address HOST --run-name NAME]  (several nodes)
  tune-wizard --recipe R.yaml --resume [RUN_DIR]   continue a stopped or killed run from its last checkpoint
  tune-wizard attach [RUN_DIR]        follow a run (the latest by default)
  tune-wizard stop [RUN_DIR]          ask a run to checkpoint and stop
  tune-wizard runs                    list runs
  tune-wizard schema                  print the recipe JSON Schema
  tune-wizard plan --model M ...      scan the data, decide, estimate, write a recipe (see plan --help)
  tune-wizard report [RUN_DIR]        (re)write RUN_DIR/report.md: before/after, loss curves, cost
  tune-wizard export [RUN_DIR]        copy out the adapter, or with --merge a standalone model [--out DIR] [--push-to-hub ORG/NAME]

Exit status: 0 success, 1 training failure, 2 bad input (one line per problem, no traceback).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2
# subcommand -> "module:function(argv) -> exit status"; imported only when that command runs
COMMANDS = {
    "attach": "tui.cli:cmd_attach",
    "stop": "tui.cli:cmd_stop",
    "runs": "tui.cli:cmd_runs",
    "schema": "tui.cli:cmd_schema",
    "plan": "training.plan.cli:main",
    "preflight": "training.runtime.preflight:main",
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
        epilog="commands: plan, preflight R.yaml, attach [RUN_DIR], stop [RUN_DIR], runs, report [RUN_DIR], "
               "export [RUN_DIR] [--merge], schema (each has --help). "
               "Without --recipe or a command, the interactive wizard starts.")
    p.add_argument("--recipe", metavar="R.yaml", help="run this recipe headless")
    p.add_argument("--dry-run", action="store_true", help="validate the recipe and print the resolved plan; train nothing")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                   help="override a recipe key, e.g. --set stages.cpt.max_steps=20 (repeatable)")
    m = p.add_argument_group("several machines (hardware.num_nodes > 1; see README: Beyond one GPU)")
    m.add_argument("--node-rank", type=int, default=None, metavar="K",
                   help="this machine's rank, 0 on the main node [env NODE_RANK, else 0]")
    m.add_argument("--main-address", metavar="HOST", help="node 0's address for the rendezvous "
                                                          "[hardware.main_address, env MASTER_ADDR]")
    m.add_argument("--main-port", type=int, metavar="PORT", help="rendezvous port [hardware.main_port, env MASTER_PORT]")
    m.add_argument("--run-name", metavar="NAME", help="the run folder's name under output_dir; required with "
                                                      "several nodes, the same on each, so they share one folder")
    p.add_argument("--preflight", action="store_true", help="first train a few real steps of each stage on this "
                   "machine; refuse to launch when memory, disk or hardware.max_cost_usd would be exceeded")
    p.add_argument("--preflight-steps", type=int, default=8, metavar="N", help="optimizer steps per stage [8]")
    p.add_argument("--resume", nargs="?", const="", default=None, metavar="RUN_DIR",
                   help="continue this recipe's run from its last checkpoint (default: its newest unfinished run)")
    return p


def node_args(args, hw) -> tuple[int, str | None, int | None, str | None]:
    """(node rank, main address, main port, problem): flags, then the recipe, then the usual cluster env vars."""
    multi = hw.num_nodes > 1
    env = os.environ if multi else {}
    rank = args.node_rank if args.node_rank is not None else int(env.get("NODE_RANK", 0) or 0)
    addr = args.main_address or hw.main_address or env.get("MASTER_ADDR")
    port = args.main_port or (int(env["MASTER_PORT"]) if env.get("MASTER_PORT") else None)
    if not multi:
        bad = "--node-rank and --main-address need hardware.num_nodes > 1" if (rank or args.main_address) else None
        return 0, None, None, bad
    if not 0 <= rank < hw.num_nodes:
        return rank, addr, port, f"--node-rank {rank} is outside 0..{hw.num_nodes - 1} (hardware.num_nodes: {hw.num_nodes})"
    if not addr:
        return rank, addr, port, ("a multi-node run needs node 0's address: --main-address HOST on every node "
                                  "(or hardware.main_address)")
    if not args.run_name:
        return rank, addr, port, ("a multi-node run needs --run-name NAME, the same on every node, so all nodes "
                                  "share one run folder")
    return rank, addr, port, None


def _bad(e, source) -> int:
    for line in e.lines():
        err(line)
    n = len(e.problems)
    print(f"{n} problem{'s' if n != 1 else ''} in {source}; nothing was run", file=sys.stderr)
    return EXIT_BAD_INPUT


def resume_recipe(args) -> int:
    """--resume: the run's own recipe (hardware may change), same data; nothing is written on refusal."""
    from training.recipe import RecipeError, dump_recipe
    from training.recipe_load import load_recipe
    from training.runtime.resume import check_resumable, find_run, plan
    from training.runtime.runner import launch, resolve, write_private_atomic

    try:
        recipe = load_recipe(args.recipe, args.overrides)
        run = find_run(recipe, args.resume, args.recipe)
        stored = check_resumable(run, resolve(recipe, args.recipe), args.recipe)
    except RecipeError as e:
        return _bad(e, args.recipe)
    steps = [f"{p['stage']}: " + ("done" if p["done"] else f"from {Path(p['checkpoint']).name}" if p["checkpoint"]
                                  else "from the start") for p in plan(run, stored)]
    print(f"resuming {run} ({'; '.join(steps)})", flush=True)
    if args.dry_run:
        return 0
    new_text = dump_recipe(stored)
    if (run / "recipe.yaml").read_text(encoding="utf-8") != new_text:  # only hardware can differ
        write_private_atomic(run / "recipe.yaml", new_text)
    from tui.headless import follow
    start = (run / "events.jsonl").stat().st_size if (run / "events.jsonl").exists() else 0
    proc = launch(run)
    return follow(run, proc, offset=start)


def _warn_trust(recipe) -> None:
    if recipe.model.trust_remote_code:
        print(f"tune-wizard: warning: model.trust_remote_code is on: Python code that ships with {recipe.model.id} "
              f"will run on this machine with your permissions; turn it off unless you trust its author",
              file=sys.stderr)


def run_recipe(args) -> int:
    from training.recipe import RecipeError, dump_recipe
    from training.recipe_load import load_recipe
    from training.runtime.runner import check_run_name, create_run_dir, launch, resolve

    if args.run_name is not None and (why := check_run_name(args.run_name)):
        err(why)
        return EXIT_BAD_INPUT
    try:
        recipe = load_recipe(args.recipe, args.overrides)
        resolved = resolve(recipe, args.recipe)
    except RecipeError as e:
        return _bad(e, args.recipe)
    rank, addr, port, bad = node_args(args, resolved.hardware)
    if bad:
        err(bad)
        return EXIT_BAD_INPUT
    _warn_trust(resolved)
    if args.preflight and rank == 0 and (code := _preflight(args, recipe, resolved)) is not None:
        return code
    if args.dry_run:
        print(describe(resolved))
        print("--- resolved recipe ---")
        print(dump_recipe(resolved), end="")
        return 0
    if rank == 0:
        try:
            run = create_run_dir(resolved, args.recipe, args.run_name)
        except RecipeError as e:
            for line in e.lines():
                err(line)
            return EXIT_BAD_INPUT
    else:  # node 0 creates the shared run folder; the others join it
        from training.runtime.distributed import wait_for_run_dir
        run = Path(os.path.expanduser(resolved.output_dir)).resolve() / args.run_name
        if bad := wait_for_run_dir(run):
            err(bad)
            return EXIT_BAD_INPUT
    from tui.headless import follow
    print(f"run folder: {run}" + (f" (node {rank} of {resolved.hardware.num_nodes})" if rank else ""), flush=True)
    proc = launch(run, rank, addr, port)
    return follow(run, proc)


def _preflight(args, recipe, resolved) -> int | None:
    """--preflight: measure (training/runtime/preflight.py, in a child process), print it, and refuse with one
    line per problem; else write what it measured into the resolved recipe and return None (go on)."""
    from training.runtime.preflight import apply_to_recipe, auto_batch_stages, problems, render, run_preflight
    print(f"preflight: {args.preflight_steps} optimizer steps of each stage on this machine ...", flush=True)
    try:
        report = run_preflight(resolved, args.preflight_steps, auto_batch_stages(recipe))
    except RuntimeError as e:
        err(str(e))
        return 1
    print(render(report), flush=True)
    bad = problems(report, resolved)
    for line in bad:
        err(f"{args.recipe}: {line}")
    if bad:
        print(f"{len(bad)} problem{'s' if len(bad) != 1 else ''} found by the preflight; nothing was run", file=sys.stderr)
        return EXIT_BAD_INPUT
    apply_to_recipe(resolved, report)
    return None


def describe(r) -> str:
    """The resolved plan in a few lines."""
    from training.recipe import CptStage
    from training.recipe_load import expand_data
    lines = [f"recipe {r.name} (seed {r.seed}): model {r.model.id}",
             f"hardware: {r.hardware.gpu} x{r.hardware.gpu_count}, ${r.hardware.price_per_gpu_hour}/GPU-hour"
             + (f"; {r.hardware.num_nodes} node(s) x {r.hardware.num_processes} process(es), {r.hardware.strategy}"
                " via accelerate launch" if r.hardware.distributed else "")
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


def _run_arg(argv: list[str], prog: str, extra=None) -> tuple[Path | None, argparse.Namespace]:
    p = argparse.ArgumentParser(prog=f"tune-wizard {prog}")
    p.add_argument("run_dir", nargs="?", help="a run folder (default: the latest under ./runs)")
    if extra:
        extra(p)
    a = p.parse_args(argv)
    run = Path(a.run_dir) if a.run_dir else latest_run()
    if run is None:
        err("no runs under ./runs; give a run folder")
        return None, a
    if not (run / "recipe.yaml").exists():
        err(f"{run} is not a run folder (no recipe.yaml)")
        return None, a
    return run, a


def cmd_attach(argv: list[str]) -> int:
    run, args = _run_arg(argv, "attach", lambda p: p.add_argument(
        "--no-tui", action="store_true", help="print one line per step instead of the full-screen monitor"))
    if run is None:
        return EXIT_BAD_INPUT
    if not args.no_tui and sys.stdout.isatty() and sys.stdin.isatty():
        from tui.app import attach_app
        return attach_app(run)
    from tui.headless import follow, last_segment_offset
    return follow(run, offset=last_segment_offset(run))


def cmd_stop(argv: list[str]) -> int:
    run, _ = _run_arg(argv, "stop")
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
    from tui.runstate import runs_table
    root = Path(a.root)
    lines = runs_table(root)
    print("\n".join(lines) if lines else f"no runs under {root}")
    return 0


def cmd_schema(argv: list[str]) -> int:
    import json
    from training.recipe import json_schema
    print(json.dumps(json_schema(), indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    if argv is None and hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `tune-wizard ... | head` ends quietly, no traceback
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
        return run_recipe(args) if args.resume is None else resume_recipe(args)
    if args.dry_run or args.overrides or args.resume is not None or args.preflight:
        err("--dry-run, --set, --preflight and --resume need --recipe R.yaml")
        return EXIT_BAD_INPUT
    try:
        from tui.app import run_app
    except ImportError:
        err("the interactive wizard is not built yet; use --recipe R.yaml")
        return EXIT_BAD_INPUT
    return run_app()


if __name__ == "__main__":
    sys.exit(main())
