"""`--resume`: which run, whether it may be resumed, and where each stage picks up. No torch here.

A run may be resumed when it is not running, has not finished, was started from the same recipe
(training keys; `hardware` may change, e.g. to raise max_cost_usd) and its data files still have the
sha256 recorded in its recipe.yaml. Every refusal is a RecipeError: one line, exit status 2, and the
run folder is left exactly as it was.
"""
from __future__ import annotations

import os
from pathlib import Path

from training.runtime.budget import elapsed_before
from training.runtime.checkpoints import latest_complete
from training.data import sha256_file
from training.events import read_events
from training.runtime.heartbeat import worker_alive
from training.recipe import Problem, Recipe, RecipeError
from training.recipe_load import load_recipe

# recipe keys that may differ between the first start and a resume
MAY_CHANGE = ("hardware", "output_dir", "resolved")


def stage_output(run: Path, stage) -> Path:
    kind = "adapter" if getattr(stage, "method", "full") in ("lora", "qlora") else "model"
    return run / stage.name / kind


def finished_ok(run: Path, recipe: Recipe) -> bool:
    return all(stage_output(run, st).is_dir() for st in recipe.stages)


def find_run(recipe: Recipe, run_arg: str, source: str) -> Path:
    """The run folder named on the command line, or the newest unfinished run of this recipe."""
    if run_arg:
        run = Path(os.path.expanduser(run_arg))
        if not (run / "recipe.yaml").is_file():
            raise RecipeError([Problem(path="--resume", message=(
                f"'{run_arg}' is not a run folder (no recipe.yaml); give a folder under {recipe.output_dir}/"))], source)
        return run.resolve()
    root = Path(os.path.expanduser(recipe.output_dir))
    cands = sorted((p for p in root.glob(f"{recipe.name}-*") if (p / "recipe.yaml").is_file()),
                   key=lambda p: p.stat().st_mtime, reverse=True) if root.is_dir() else []
    for run in cands:
        try:
            stored = load_recipe(run / "recipe.yaml", check_paths=False)
        except RecipeError:
            continue
        if not finished_ok(run, stored) and not worker_alive(run):
            return run.resolve()
    raise RecipeError([Problem(path="--resume", message=(
        f"no unfinished run of recipe '{recipe.name}' under {root}/; give the run folder: --resume RUN_DIR"))], source)


def _flat(d, prefix="") -> dict[str, object]:
    out = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        for i, v in enumerate(d):
            out.update(_flat(v, f"{prefix}{i}."))
    else:
        out[prefix[:-1]] = d
    return out


def recipe_changes(stored: Recipe, fresh: Recipe) -> list[tuple[str, object, object]]:
    """[(key path, value in the run, value now)] for the keys that decide what is trained."""
    a = _flat(stored.model_dump(mode="json", exclude=set(MAY_CHANGE)))
    b = _flat(fresh.model_dump(mode="json", exclude=set(MAY_CHANGE)))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def data_changes(stored: Recipe) -> list[str]:
    """One sentence per data file that is gone or no longer has the recorded sha256."""
    out = []
    for f, info in ((stored.resolved or {}).get("files") or {}).items():
        p = Path(f)
        if not p.is_file():
            out.append(f"data file {f} is gone since the run started; restore it or start a new run")
        elif info and (p.stat().st_size != info.get("bytes") or sha256_file(p) != info.get("sha256")):
            out.append(f"data file {f} changed since the run started (sha256 mismatch); restore the original "
                       f"or start a new run")
    return out


def check_resumable(run: Path, fresh: Recipe, source: str) -> Recipe:
    """The run's own recipe with today's hardware section, or RecipeError saying why not."""
    try:
        stored = load_recipe(run / "recipe.yaml", check_paths=False)
    except RecipeError as e:
        raise RecipeError([Problem(path="--resume", message=(
            f"{run}/recipe.yaml is damaged ({e.problems[0].message}); this run cannot be resumed"))], source)
    if worker_alive(run):
        raise RecipeError([Problem(path="--resume", message=(
            f"{run} is still running; watch it with `tune-wizard attach {run}` or stop it first"))], source)
    if finished_ok(run, stored):
        raise RecipeError([Problem(path="--resume", message=f"{run} already finished; nothing to resume")], source)
    probs = [Problem(path=k, message=(f"is {old!r} in the run and {new!r} now; resume needs the recipe the run "
                                      f"started with (or start a new run)"))
             for k, old, new in recipe_changes(stored, fresh)]
    probs += [Problem(path="data", message=m) for m in data_changes(stored)]
    if probs:
        raise RecipeError(probs, source)
    stored.hardware = hw = fresh.hardware
    spent_s = elapsed_before(read_events(run / "events.jsonl"))
    spent = spent_s / 3600 * hw.price_per_gpu_hour * hw.gpu_count
    if hw.max_cost_usd is not None and spent >= hw.max_cost_usd:
        raise RecipeError([Problem(path="hardware.max_cost_usd", message=(
            f"the run has already spent ${spent:.2f} of the ${hw.max_cost_usd:.2f} cap; raise it to resume, "
            f"e.g. --set hardware.max_cost_usd={max(hw.max_cost_usd * 2, spent + 1):.0f}"))], source)
    return stored


def plan(run: Path, recipe: Recipe) -> list[dict]:
    """Per stage: {"stage", "done": bool, "checkpoint": path or None}. Used by the worker and by --dry-run."""
    out = []
    for st in recipe.stages:
        done = stage_output(run, st).is_dir()
        ck = None if done else latest_complete(run / "checkpoints" / st.name)
        out.append({"stage": st.name, "done": done, "checkpoint": str(ck) if ck else None})
    return out

