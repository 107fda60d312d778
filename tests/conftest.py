"""Shared fixtures. Integration tests train the built-in tiny model for real, on the CPU."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session", autouse=True)
def demo_home(tmp_path_factory):
    """One demo-asset cache for the whole session (built once, about 5 s), never the user's ~/.cache."""
    home = os.environ.get("TUNE_WIZARD_TEST_HOME") or str(tmp_path_factory.mktemp("tw-home"))
    os.environ["TUNE_WIZARD_HOME"] = home
    return Path(home)


def cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `tune-wizard ARGS` exactly as a user would (a fresh interpreter), capturing output."""
    e = dict(os.environ)
    e["PYTHONPATH"] = str(ROOT) + (os.pathsep + e["PYTHONPATH"] if e.get("PYTHONPATH") else "")
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "tui.cli", *args], cwd=cwd or ROOT, capture_output=True, text=True,
                          timeout=timeout, env=e)


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def tiny_recipe(out_dir: Path, cpt_steps: int = 12, sft_steps: int = 8, **top) -> dict:
    """The demo recipe, shortened for tests: still real training on real text, a few seconds per stage."""
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    data["output_dir"] = str(out_dir)
    data["stages"][0].update(max_steps=cpt_steps, logging_steps=2, eval_steps=max(1, cpt_steps // 2))
    data["stages"][1].update(max_steps=sft_steps, logging_steps=2, eval_steps=max(1, sft_steps // 2))
    data.update(top)
    return data


def events_of(run_dir: Path) -> list[dict]:
    """Every line of the run's events.jsonl, each checked against the contract in training/events.py."""
    from training.events import problems
    evs = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines() if line.strip()]
    bad = [(e.get("event"), p) for e in evs for p in problems(e)]
    assert not bad, f"{run_dir}/events.jsonl outside the events contract (training/events.py EVENTS): {bad[:5]}"
    return evs


def only_run(out_dir: Path) -> Path:
    runs = [p for p in out_dir.iterdir() if (p / "recipe.yaml").exists()]
    assert len(runs) == 1, runs
    return runs[0]
