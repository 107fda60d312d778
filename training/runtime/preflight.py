"""Measured preflight: a few real optimizer steps of every stage on this machine, before the money is spent.

  tune-wizard preflight R.yaml [--json] [--steps N] [--set key.path=value ...]

The face (this module's `main`, `run_preflight`) stays light: it resolves the recipe, then runs the
measurement in a child process (`python -m training.runtime.preflight_measure --child ...`), which:

  per stage, in a temporary folder under output_dir (removed at the end, whatever happens):
  1. auto micro-batch (when the recipe leaves micro_batch_size and grad_accum unset): one real optimizer
     step on a worst-case batch (micro x the stage's full sequence length) per candidate, halving on
     out-of-memory like accelerate's find_executable_batch_size, until the peak leaves MARGIN of the card
     free; grad_accum keeps the recipe's rows per optimizer step;
  2. the stage's own code (training/runtime/stages) on the recipe's data (a CPT corpus larger than
     SAMPLE_BYTES is sampled: its first documents) with max_steps = N, logging every step, one evaluation
     and one checkpoint at step N. The worst case comes first: CPT blocks are all seq_len long; unpacked
     SFT batches grouped by length (the CPU default) come longest first from the Trainer's length-grouped
     sampler; packed SFT rows are all about max_seq_len long;
  3. measured: tokens/s and s/step after WARMUP steps, peak memory (torch allocator and NVML on CUDA;
     the process's peak RSS on the CPU, reset per stage through /proc/self/clear_refs), headroom,
     checkpoint size and save time, evaluation time, data-preparation time per GB.
  Projected: every stage's steps x s/step + evaluations + checkpoints + setup, hours, cost at the recipe's
  price, disk (training/runtime/diskcheck.py with the measured sizes) against output_dir's free space,
  peak memory with MARGIN.

Every preflight appends its measured points to the calibration file (training/plan/calibration.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXIT_BAD_INPUT = 2
WARMUP = 2                 # optimizer steps not timed (allocator warm-up, first-batch worst case)
DEFAULT_STEPS = 8
MARGIN = 0.10              # peak memory must leave this fraction of the card (or host memory) free
SAMPLE_BYTES = 32 * 10**6  # a CPT corpus above this is measured on a sample of its first documents
GIB = 2**30


# ---------------------------------------------------------------- the face: resolve, run the child, read its report

def auto_batch_stages(recipe) -> list[str]:
    """Stages whose micro-batch the person left to the tool (neither micro_batch_size nor grad_accum set)."""
    return [st.name for st in recipe.stages
            if "micro_batch_size" not in st.model_fields_set and "grad_accum" not in st.model_fields_set]


def run_preflight(resolved, steps: int = DEFAULT_STEPS, auto: list[str] | None = None,
                  sim_token_cap: int | None = None, timeout: float | None = None) -> dict:
    """Measure a resolved recipe in a child process; returns the report (see `measure`). Raises RuntimeError
    with the child's last lines when it fails."""
    from training.recipe import dump_recipe

    out_dir = Path(os.path.expanduser(resolved.output_dir))
    made = not out_dir.exists()
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".preflight-", dir=out_dir))  # on the disk the run will write to
    try:
        (tmp / "recipe.yaml").write_text(dump_recipe(resolved), encoding="utf-8")
        argv = [sys.executable, "-m", "training.runtime.preflight_measure", "--child", str(tmp), "--steps", str(steps),
                "--auto", ",".join(auto or [])]
        sim_token_cap = sim_token_cap or int(os.environ.get("TUNE_WIZARD_SIMULATE_BATCH_TOKEN_CAP", "0") or 0)
        if sim_token_cap:
            argv += ["--simulate-batch-token-cap", str(sim_token_cap)]
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env, timeout=timeout)
        report = tmp / "preflight.json"
        if p.returncode != 0 or not report.exists():
            tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-15:])
            raise RuntimeError(f"preflight failed (exit {p.returncode}):\n{tail}")
        return json.loads(report.read_text(encoding="utf-8"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if made:
            try:
                out_dir.rmdir()  # nothing of the preflight stays, not even the folder it made
            except OSError:
                pass


def problems(report: dict, recipe) -> list[str]:
    """One line per reason the run must not start: memory, disk, max_cost_usd."""
    out, p = [], report["projected"]
    if p["peak_with_margin_gib"] > p["memory_limit_gib"]:
        worst = max(report["stages"], key=lambda s: s["peak_mem_gib"])
        out.append(f"stages.{worst['stage']}: measured peak memory {worst['peak_mem_gib']:.2f} GiB + {MARGIN:.0%} margin "
                   f"exceeds the {p['memory_limit_gib']:.1f} GiB of {report['device']}; lower "
                   f"stages.{worst['stage']}.micro_batch_size (grad_accum keeps the batch) or set gradient_checkpointing: true")
    if p["disk_problem"]:
        out.append(p["disk_problem"])
    cap = recipe.hardware.max_cost_usd
    if cap is not None and p["usd"] > cap:
        out.append(f"hardware.max_cost_usd: the measured projection is ${p['usd']:.2f} ({p['hours']:.2f} h x "
                   f"${recipe.hardware.price_per_gpu_hour}/GPU-hour x {recipe.hardware.gpu_count}) over the cap "
                   f"${cap:.2f}; raise the cap or shorten the run (max_steps, epochs)")
    return out


def apply_to_recipe(resolved, report: dict) -> None:
    """Write what the preflight found into the recipe: measured micro-batch choices (resolved.defaults),
    measured disk sizes (for the launch's disk check) and `estimate` with source: preflight."""
    from training.recipe import Estimate
    d = resolved.resolved.setdefault("defaults", [])
    by_name = {s["stage"]: s for s in report["stages"]}
    for st in resolved.stages:
        s = by_name.get(st.name)
        if s and s.get("batch_search"):
            for key in ("micro_batch_size", "grad_accum"):
                setattr(st, key, s[key])
                st.model_fields_set.discard(key)
                d.append({"stage": st.name, "key": key, "value": s[key], "reason": s["batch_search"]["reason"]})
    resolved.resolved["preflight_disk"] = {s["stage"]: s["disk"] for s in report["stages"]}
    p = report["projected"]
    resolved.estimate = Estimate(hours=round(p["hours"], 4), usd=round(p["usd"], 4),
                                 peak_vram_gib=round(p["peak_mem_gib"], 3), source="preflight",
                                 preflight=summary(report))


def summary(report: dict) -> dict:
    """The numbers the recipe keeps (estimate.preflight) and report.md sets the run against."""
    keys = ("stage", "micro_batch_size", "grad_accum", "tokens_per_s", "s_per_step", "peak_mem_gib", "total_steps",
            "projected_s", "checkpoint_bytes", "checkpoint_save_s", "eval_s")
    return {"device": report["device"], "date": report["date"], "steps": report["steps"],
            "stages": [{k: s.get(k) for k in keys} for s in report["stages"]]}



def render(report: dict) -> str:
    L = [f"preflight on {report['device']}: {report['steps']} optimizer steps per stage, {report['wall_s']:.0f} s"]
    for s in report["stages"]:
        L.append(f"  {s['stage']}: micro-batch {s['micro_batch_size']} x accum {s['grad_accum']}, "
                 f"{s['tokens_per_s']:,.0f} tok/s, {s['s_per_step']:.3f} s/step, peak {s['peak_mem_gib']:.2f} GiB "
                 f"({s['peak_mem_kind']}), headroom {s['headroom_gib']:.1f} GiB")
        L.append(f"      {s['total_steps']} steps -> {s['projected_s'] / 3600:.3f} h; checkpoint "
                 f"{s['checkpoint_bytes'] / 2**20:.1f} MiB saved in {s['checkpoint_save_s']:.2f} s; eval pass "
                 f"{s['eval_s']:.2f} s x {s['evals']}; data prep {s['prep_s_per_gb']:.0f} s/GB")
        if s.get("batch_search"):
            L.append(f"      micro-batch search: {s['batch_search']['reason']}")
    p = report["projected"]
    L.append(f"projected: {p['hours']:.3f} h, ${p['usd']:.2f}, disk {p['disk_bytes'] / GIB:.2f} GiB of "
             f"{p['free_bytes'] / GIB:.1f} GiB free, peak {p['peak_mem_gib']:.2f} GiB (+{MARGIN:.0%} = "
             f"{p['peak_with_margin_gib']:.2f}) of {p['memory_limit_gib']:.1f} GiB")
    return "\n".join(L)


def main(argv: list[str]) -> int:
    """`tune-wizard preflight R.yaml [--json] [--steps N] [--set k=v]`: 0 fits, 2 bad input or would not fit."""
    ap = argparse.ArgumentParser(prog="tune-wizard preflight", description="Train a few real steps of each stage "
                                 "on this machine and project the whole run's time, cost, memory and disk.")
    ap.add_argument("recipe", metavar="R.yaml")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"optimizer steps per stage [{DEFAULT_STEPS}]")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE")
    ap.add_argument("--simulate-batch-token-cap", type=int, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.steps < WARMUP + 1:
        print(f"tune-wizard preflight: error: --steps must be at least {WARMUP + 1} ({WARMUP} warm-up steps are "
              f"not timed)", file=sys.stderr)
        return EXIT_BAD_INPUT
    from training.recipe import RecipeError
    from training.recipe_load import load_recipe
    from training.runtime.runner import resolve
    try:
        recipe = load_recipe(a.recipe, a.overrides)
        auto = auto_batch_stages(recipe)
        resolved = resolve(recipe, a.recipe)
    except RecipeError as e:
        for line in e.lines():
            print(f"tune-wizard: error: {line}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report = run_preflight(resolved, a.steps, auto, a.simulate_batch_token_cap)
    except RuntimeError as e:
        print(f"tune-wizard preflight: error: {e}", file=sys.stderr)
        return 1
    bad = problems(report, resolved)
    report["problems"] = bad
    print(json.dumps(report, indent=1) if a.json else render(report))
    for line in bad:
        print(f"tune-wizard: error: {a.recipe}: {line}", file=sys.stderr)
    return EXIT_BAD_INPUT if bad else 0
