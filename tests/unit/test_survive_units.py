"""Pure logic behind runs that survive: checkpoint validity, failure explanations, budget, faults, resume
checks, secret redaction. No training here."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from training.runtime import faults
from training.runtime.budget import Budget, elapsed_before
from training.runtime.checkpoints import (MARKER, checkpoint_problem, discard_incomplete, latest_complete, mark_complete,
                                  publish, temp_output)
from training.events import EventWriter
from training.runtime.failures import GIB, MemoryInput, estimate_memory, explain_nan, explain_oom, memory_input
from training.runtime.heartbeat import Heartbeat, read_heartbeat, worker_alive
from training.recipe_load import validate_data
from training.runtime.redact import RedactingStream, redact, secret_values
from training.runtime.resume import data_changes, recipe_changes


def _ckpt(stage_dir: Path, step: int, complete: bool = True) -> Path:
    d = stage_dir / f"checkpoint-{step}"
    d.mkdir(parents=True)
    (d / "model.safetensors").write_bytes(b"w" * 100)
    (d / "optimizer.pt").write_bytes(b"o" * 50)
    (d / "trainer_state.json").write_text("{}")
    if complete:
        mark_complete(d, step)
    return d


# ---------------------------------------------------------------- checkpoints

def test_only_marked_checkpoints_count(tmp_path):
    _ckpt(tmp_path, 2)
    _ckpt(tmp_path, 4, complete=False)  # killed during the save
    assert checkpoint_problem(tmp_path / "checkpoint-4") == "no completion marker (the save was interrupted)"
    assert latest_complete(tmp_path).name == "checkpoint-2"


def test_a_truncated_file_invalidates_a_marked_checkpoint(tmp_path):
    d = _ckpt(tmp_path, 6)
    (d / "optimizer.pt").write_bytes(b"o" * 10)
    assert "optimizer.pt has 10 bytes" in checkpoint_problem(d)
    (d / "optimizer.pt").unlink()
    assert checkpoint_problem(d) == "optimizer.pt is missing"


def test_newest_complete_wins_by_step_not_by_name(tmp_path):
    for s in (2, 10, 8):
        _ckpt(tmp_path, s)
    assert latest_complete(tmp_path).name == "checkpoint-10"


def test_discard_incomplete_keeps_the_good_ones(tmp_path):
    _ckpt(tmp_path, 2)
    _ckpt(tmp_path, 4, complete=False)
    removed = discard_incomplete(tmp_path)
    assert [n for n, _ in removed] == ["checkpoint-4"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2"]
    assert json.loads((tmp_path / "checkpoint-2" / MARKER).read_text())["files"]["optimizer.pt"] == 50


def test_publish_replaces_the_output_in_one_rename(tmp_path):
    final = tmp_path / "model"
    tmp = temp_output(final)
    tmp.mkdir()
    (tmp / "w.bin").write_text("new")
    publish(tmp, final)
    assert (final / "w.bin").read_text() == "new" and not tmp.exists()


# ---------------------------------------------------------------- failures

def test_nan_in_cpt_names_the_learning_rate_first():
    msg, hint = explain_nan("cpt", "full", 2e-3, "bf16", 57)
    assert "step 57" in msg
    assert hint.startswith("likely causes: learning_rate 0.002 is high for continued pre-training")


def test_nan_with_fp16_names_overflow():
    _, hint = explain_nan("sft", "lora", 2e-4, "fp16", 10)
    assert "fp16 overflow" in hint and "learning_rate 0.0002 is high" not in hint


def test_nan_on_first_step_points_at_weights_or_data():
    _, hint = explain_nan("sft", "lora", 2e-4, "bf16", 1)
    assert "first step" in hint


def test_nan_with_sane_settings_still_gives_a_concrete_step():
    _, hint = explain_nan("sft", "lora", 2e-4, "bf16", 300)
    assert "halve it" in hint


def _m8b(**kw) -> MemoryInput:
    cfg = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 128256, "intermediate_size": 14336,
           "num_attention_heads": 32, "num_key_value_heads": 8, "tie_word_embeddings": False}
    args = dict(stage_type="cpt", method="full", seq_len=2048, micro_batch=8, precision="bf16",
                gradient_checkpointing=False)
    args.update(kw)
    return memory_input(cfg, **args)


def test_memory_input_counts_an_8b_llama():
    m = _m8b()
    assert 7.5e9 < m.params < 8.5e9


def test_memory_estimate_grows_with_batch_and_shrinks_with_checkpointing():
    m = _m8b()
    a = estimate_memory(m)["total"]
    assert estimate_memory(MemoryInput(**{**m.__dict__, "micro_batch": 16}))["total"] > a
    assert estimate_memory(MemoryInput(**{**m.__dict__, "gradient_checkpointing": True}))["total"] < a


def test_oom_on_h100_for_8b_lora_suggests_changes_that_fit():
    m = _m8b(stage_type="sft", method="lora", micro_batch=16)
    msg, hint = explain_oom(m, grad_accum=1, available=80 * GIB)
    assert "GPU has 80.0 GiB" in msg and "needs about" in msg
    assert hint.startswith("change the recipe, then resume: ")
    assert "micro_batch_size" in hint or "gradient_checkpointing" in hint


def test_oom_of_8b_full_with_fp32_master_weights_suggests_kahan():
    # the one memory model: fp32 master weights are 18 bytes per parameter, bf16 + Kahan 10
    m = _m8b(micro_batch=1, gradient_checkpointing=True)
    assert estimate_memory(m)["grads_optimizer"] + estimate_memory(m)["weights"] == pytest.approx(18 * m.params, rel=1e-6)
    k = MemoryInput(**{**m.__dict__, "master": "bf16_kahan"})
    assert estimate_memory(k)["grads_optimizer"] + estimate_memory(k)["weights"] == pytest.approx(10 * m.params, rel=1e-6)
    _, hint = explain_oom(m, grad_accum=4, available=100 * GIB)
    assert hint.startswith("change the recipe, then resume: master_weights: bf16_kahan")


def test_oom_when_nothing_fits_says_so():
    m = _m8b()
    _, hint = explain_oom(m, grad_accum=1, available=8 * GIB)
    assert hint.startswith("no single change fits this GPU")


def test_halving_the_micro_batch_keeps_the_effective_batch():
    m = _m8b(stage_type="sft", method="lora", micro_batch=16)
    _, hint = explain_oom(m, grad_accum=2, available=60 * GIB)
    assert "micro_batch_size: 8, grad_accum: 4" in hint or "micro_batch_size: 4, grad_accum: 8" in hint \
        or "gradient_checkpointing" in hint


# ---------------------------------------------------------------- budget

def test_spend_counts_every_segment():
    # a killed segment counts to its last event; a finished one by its runtime (from the worker's start)
    evs = [{"event": "run_start", "t": 100.0}, {"event": "step", "t": 400.0},
           {"event": "run_start", "t": 1000.0}, {"event": "finished", "t": 1300.0, "runtime_s": 300.0}]
    assert elapsed_before(evs) == 600.0
    evs[-1]["runtime_s"] = 320.0
    assert elapsed_before(evs) == 620.0
    b = Budget(cap_usd=10.0, price_per_gpu_hour=4.0, gpu_count=2, t0=0.0, spent_before_s=600.0)
    assert b.spend(1800.0) == pytest.approx(2400 / 3600 * 8)
    assert not b.reached(1800.0)
    assert b.reached(600.0 * 7)  # 4800 s x $8/h = $10.67


def test_projection_warns_before_the_cap():
    b = Budget(cap_usd=5.0, price_per_gpu_hour=3.6, gpu_count=1, t0=0.0)  # $0.001/s
    assert not b.over(1000.0, remaining_s=3000.0)  # $4 projected
    assert b.over(1000.0, remaining_s=5000.0)      # $6 projected
    assert not Budget(None, 3.6, 1, 0.0).over(1e9, 1e9)


# ---------------------------------------------------------------- faults, secrets, heartbeat

def test_fault_spec_parsing():
    assert faults.parse("sigterm@cpt:3, enospc@sft:10") == [("sigterm", "cpt", 3), ("enospc", "sft", 10)]
    with pytest.raises(ValueError, match="not KIND@STAGE:STEP"):
        faults.parse("sigterm-cpt-3")
    with pytest.raises(ValueError, match="unknown fault"):
        faults.parse("oom@cpt:3")


def test_tokens_never_reach_events_or_logs(tmp_path, monkeypatch, capsys):
    token = "hf_abcdefSECRET123456"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-another-secret")
    secrets = secret_values()
    assert token in secrets and "sk-another-secret" in secrets
    w = EventWriter(tmp_path / "events.jsonl")
    w.emit("error", message=f"401 for token {token} and sk-another-secret")
    w.close()
    text = (tmp_path / "events.jsonl").read_text()
    assert token not in text and "sk-another-secret" not in text and "***" in text
    s = RedactingStream(sys.stdout, secrets)
    s.write(f"Authorization: Bearer {token}\n")
    assert token not in capsys.readouterr().out
    assert redact("nothing here", secrets) == "nothing here"


def test_heartbeat_and_liveness(tmp_path):
    run = tmp_path / "demo-1"
    run.mkdir()
    hb = Heartbeat(run, interval=0.05).start()
    hb.update(stage="cpt", step=3)
    time.sleep(0.2)
    hb.stop()
    beat = read_heartbeat(run)
    assert beat["stage"] == "cpt" and beat["step"] == 3 and time.time() - beat["t"] < 5
    # a live process that is not this run's worker (a reused pid) does not count
    (run / "pid").write_text(f"{os.getpid()}\n")
    assert not worker_alive(run)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "training.runtime.worker", str(run)])
    try:
        (run / "pid").write_text(f"{proc.pid}\n")
        assert worker_alive(run)
    finally:
        proc.kill()
        proc.wait()
    assert not worker_alive(run)


# ---------------------------------------------------------------- resume checks

def _recipe(**stage):
    data = {"name": "t", "model": {"id": "builtin:tiny-llama"},
            "stages": [{"type": "cpt", "data": ["/x/a.txt"], **stage}]}
    return validate_data(data, check_paths=False)


def test_recipe_changes_ignore_hardware_but_not_training_keys():
    a, b = _recipe(learning_rate=1e-5), _recipe(learning_rate=1e-5)
    b.hardware.max_cost_usd = 50.0
    assert recipe_changes(a, b) == []
    c = _recipe(learning_rate=2e-5)
    assert recipe_changes(a, c) == [("stages.0.learning_rate", 1e-5, 2e-5)]


def test_data_changes_detects_edits_and_deletions(tmp_path):
    from training.data import sha256_file
    f, g = tmp_path / "a.txt", tmp_path / "b.txt"
    f.write_text("hello")
    g.write_text("world")
    r = _recipe()
    r.resolved = {"files": {str(x): {"sha256": sha256_file(x), "bytes": x.stat().st_size} for x in (f, g)}}
    assert data_changes(r) == []
    f.write_text("hellp")
    g.unlink()
    out = data_changes(r)
    assert any("a.txt changed since the run started (sha256 mismatch)" in m for m in out)
    assert any("b.txt is gone" in m for m in out)

