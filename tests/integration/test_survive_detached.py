"""A run outlives its terminal, and the budget cap stops it with a checkpoint (real training, CPU)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT, cli, events_of, tiny_recipe, write_recipe
from training.runtime.checkpoints import checkpoint_problem
from training.runtime.heartbeat import read_heartbeat, worker_alive

pytestmark = pytest.mark.integration


def test_terminal_closes_and_the_budget_cap_stops_the_run(tmp_path):
    data = tiny_recipe(tmp_path / "runs", 3000, 4)  # far more steps than the cap allows, on any machine
    data["stages"][0].update(logging_steps=1, save_steps=100, eval_steps=100, micro_batch_size=2)
    # $360 per GPU-hour is $0.10 a second: the $2 cap is reached about 20 s into the run
    data["hardware"].update(price_per_gpu_hour=360.0, max_cost_usd=2.0)
    recipe = write_recipe(tmp_path / "r.yaml", data)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    # the front runs in its own session, like a shell in an SSH terminal
    front = subprocess.Popen([sys.executable, "-m", "tui.cli", "--recipe", str(recipe)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 180
    run = None
    while time.time() < deadline:
        runs = [p for p in (tmp_path / "runs").glob("demo-*")] if (tmp_path / "runs").exists() else []
        if runs and (runs[0] / "events.jsonl").exists() and any(
                e["event"] == "step" for e in events_of(runs[0])):
            run = runs[0]
            break
        time.sleep(0.5)
    assert run is not None, "training never started"
    # the terminal goes away: SIGHUP to the front's process group, then the front dies outright
    os.killpg(front.pid, signal.SIGHUP)
    front.kill()
    front.wait()
    assert worker_alive(run), "the worker died with its terminal"
    while worker_alive(run) and time.time() < deadline + 120:
        time.sleep(0.5)
    evs = events_of(run)
    kinds = [e["event"] for e in evs]
    assert kinds.index("budget_warning") < kinds.index("budget_reached") < kinds.index("stopped")
    warn = next(e for e in evs if e["event"] == "budget_warning")
    assert warn["projected_usd"] > 2.0 and warn["cap_usd"] == 2.0
    stopped = next(e for e in evs if e["event"] == "stopped")
    assert stopped["reason"] == "budget" and stopped["spent_usd"] >= 2.0
    assert 0 < stopped["step"] < 3000
    assert checkpoint_problem(run / stopped["checkpoint"]) is None
    assert evs[-1]["event"] == "finished" and evs[-1]["status"] == "stopped"
    beat = read_heartbeat(run)
    assert beat["status"] == "stopped" and beat["step"] == stopped["step"]

    # another terminal: attach replays the run, the budget lines included, and says it stopped
    r = cli("attach", str(run))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "warning: projected cost $" in r.stdout and "budget cap reached" in r.stdout
    assert "stopped in cpt" in r.stdout
    # the same cap is spent: resuming would stop at once, so it is refused, and says how to raise it
    r = cli("--recipe", str(recipe), "--resume", str(run), "--dry-run")
    assert r.returncode == 2 and "hardware.max_cost_usd: the run has already spent $" in r.stderr
    # a higher cap is a valid resume (hardware may change); --dry-run shows the plan and writes nothing
    before = (run / "recipe.yaml").read_bytes()
    r = cli("--recipe", str(recipe), "--resume", str(run), "--set", "hardware.max_cost_usd=50", "--dry-run")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"cpt: from checkpoint-{stopped['step']}" in r.stdout
    assert (run / "recipe.yaml").read_bytes() == before
