"""Replay against forgetting and the forgetting watch, through the real command on the demo's tiny model."""
from __future__ import annotations

import math

import pytest

from conftest import ROOT, cli, events_of, only_run, tiny_recipe, write_recipe

pytestmark = pytest.mark.integration


def cpt_only(out, steps, **eval_keys):
    data = tiny_recipe(out, cpt_steps=steps)
    data["stages"] = data["stages"][:1]
    data["eval"].update(eval_keys)
    return data


def test_replay_mixes_general_text_and_eval_events_carry_general_perplexity(tmp_path):
    out = tmp_path / "runs"
    data = cpt_only(out, 8)
    data["stages"][0]["replay"] = {"data": [str(ROOT / "recipes" / "general_reference.txt")], "fraction": 0.1}
    res = cli("--recipe", str(write_recipe(tmp_path / "r.yaml", data)))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    ev = events_of(only_run(out))
    d = next(e for e in ev if e["event"] == "stage_start")["data"]
    assert d["replay_blocks"] > 0 and d["replay_tokens"] == d["replay_blocks"] * 256
    assert abs(d["replay_fraction"] - 0.1) < 0.01, d
    evals = [e for e in ev if e["event"] == "eval" and e["stage"] == "cpt"]
    assert evals and all(math.isfinite(e["general_perplexity"]) for e in evals)
    assert all(isinstance(e["general_perplexity_change_pct"], float) for e in evals)
    # the replayed file is also the text the watch scores: said, not hidden
    assert any(e["event"] == "warning" and e["kind"] == "replay_is_general_text" for e in ev)
    assert "general ppl" in res.stdout and ev[-1]["status"] == "ok"


def test_forgetting_stop_checkpoints_first_then_stops(tmp_path):
    # a "general text" of CJK characters: byte pieces the demo's Python documentation never contains, so every
    # step of training pushes their probability down (measured: perplexity 4.3k at init, 26k after 16 steps)
    noise = tmp_path / "cjk.txt"
    noise.write_text("".join(chr(0x4E00 + (i * 7919) % 20000) for i in range(3000)), encoding="utf-8")
    out = tmp_path / "runs"
    data = cpt_only(out, 20, general_text=str(noise), forgetting_threshold_pct=5.0, stop_on_forgetting=True)
    data["stages"][0]["eval_steps"] = 5
    res = cli("--recipe", str(write_recipe(tmp_path / "r.yaml", data)))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    run = only_run(out)
    ev = events_of(run)
    warn = [e for e in ev if e["event"] == "forgetting_warning"]
    assert len(warn) == 1 and warn[0]["stopping"] is True and warn[0]["change_pct"] > 5.0
    step = warn[0]["step"]
    assert step < 20
    ck = [e for e in ev if e["event"] == "checkpoint" and e["step"] == step]
    assert ck and (run / ck[0]["path"]).is_dir()  # saved before stopping
    stopped = next(e for e in ev if e["event"] == "stopped")
    assert stopped["reason"] == "forgetting" and stopped["step"] == step
    assert not any(e["event"] == "stage_end" for e in ev) and ev[-1]["status"] == "stopped"
    assert "FORGETTING" in res.stdout


def test_missing_replay_text_or_a_misspelt_key_is_one_clear_line_and_exit_2(tmp_path):
    data = cpt_only(tmp_path / "runs", 4)
    data["stages"][0]["replay"] = {"data": ["nowhere/general.txt"], "fraction": 0.05}
    res = cli("--recipe", str(write_recipe(tmp_path / "r.yaml", data)), "--dry-run")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "stages.0.replay.data.0" in res.stderr and "nowhere/general.txt" in res.stderr
    data["eval"]["stop_on_forgeting"] = True
    res = cli("--recipe", str(write_recipe(tmp_path / "r.yaml", data)), "--dry-run")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "eval.stop_on_forgeting" in res.stderr and "did you mean 'stop_on_forgetting'" in res.stderr
