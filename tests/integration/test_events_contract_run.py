"""A real tiny run (CPT then LoRA SFT on the CPU), every line of its events.jsonl checked against the contract
in training/events.py, and the worker's `gpu` events describing the machine it ran on."""
from __future__ import annotations

import socket

import pytest
from conftest import cli, events_of, only_run, tiny_recipe, write_recipe

from training.events import problems


@pytest.mark.integration
def test_every_line_of_a_real_run_is_inside_the_contract(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", tiny_recipe(tmp_path / "runs", cpt_steps=2, sft_steps=2))
    p = cli("--recipe", str(recipe), timeout=900)
    assert p.returncode == 0, (p.stdout + p.stderr)[-3000:]
    run = only_run(tmp_path / "runs")
    evs = events_of(run)
    bad = [(e["event"], x) for e in evs for x in problems(e)]
    assert not bad, bad
    kinds = {e["event"] for e in evs}
    assert {"run_start", "gpu", "stage_start", "step", "stage_end", "measure", "finished"} <= kinds
    gpu = [e for e in evs if e["event"] == "gpu"]
    assert gpu[0]["hostname"] == socket.gethostname()
    assert gpu[0].get("gpus") or gpu[0]["host"]["cores"] >= 1
    assert evs.index(gpu[0]) < next(i for i, e in enumerate(evs) if e["event"] == "stage_start")
