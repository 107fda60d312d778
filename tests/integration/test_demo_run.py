"""Real training of the built-in tiny model through the real command, asserting on what the run wrote."""
from __future__ import annotations

import json
import stat

import pytest
import yaml

from conftest import cli, events_of, only_run, tiny_recipe, write_recipe

pytestmark = pytest.mark.integration


def losses(events, stage):
    return [e["loss"] for e in events if e["event"] == "step" and e["stage"] == stage]


def test_cpt_then_sft_trains_for_real(tmp_path):
    out = tmp_path / "runs"
    rp = write_recipe(tmp_path / "r.yaml", tiny_recipe(out, cpt_steps=16, sft_steps=12))
    res = cli("--recipe", str(rp))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    run = only_run(out)
    ev = events_of(run)
    kinds = [e["event"] for e in ev]
    assert kinds[0] == "run_start" and kinds[-1] == "finished" and ev[-1]["status"] == "ok"
    assert all(e["v"] == 1 and isinstance(e["t"], float) for e in ev)

    starts = {e["stage"]: e for e in ev if e["event"] == "stage_start"}
    assert list(starts) == ["cpt", "sft"]
    assert starts["cpt"]["method"] == "full" and starts["cpt"]["trainable_params"] == starts["cpt"]["params"]
    assert starts["sft"]["method"] == "lora" and starts["sft"]["trainable_params"] < starts["sft"]["params"] / 2
    assert starts["sft"]["base"] == str(run / "cpt" / "model")  # SFT starts from the CPT result

    for stage, total in (("cpt", 16), ("sft", 12)):
        steps = [e for e in ev if e["event"] == "step" and e["stage"] == stage]
        assert steps[-1]["step"] == total == steps[-1]["total_steps"]
        for key in ("epoch", "loss", "lr", "grad_norm", "tokens", "tokens_per_s", "eta_s"):
            assert all(key in s for s in steps), key
        assert steps[-1]["tokens"] > steps[0]["tokens"] > 0
        ls = losses(ev, stage)
        third = max(1, len(ls) // 3)
        assert sum(ls[-third:]) / third < sum(ls[:third]) / third, (stage, ls)  # loss falls
        assert any(e["event"] == "eval" and e["stage"] == stage for e in ev)
        assert any(e["event"] == "checkpoint" and e["stage"] == stage for e in ev)
    # CPT packs: every optimizer step sees exactly micro_batch x seq_len real tokens
    cpt_steps = [e for e in ev if e["event"] == "step" and e["stage"] == "cpt"]
    assert cpt_steps[-1]["tokens"] == 16 * 8 * 256

    # the outputs: a full model after CPT, an adapter on top of it after SFT
    assert (run / "cpt" / "model" / "config.json").exists()
    adapter_cfg = json.loads((run / "sft" / "adapter" / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(run / "cpt" / "model")
    assert set(adapter_cfg["target_modules"]) >= {"q_proj", "v_proj", "gate_proj", "down_proj"}  # all linear
    assert (run / "train.log").exists() and (run / "checkpoints" / "cpt").is_dir()

    resolved = yaml.safe_load((run / "recipe.yaml").read_text())["resolved"]
    assert set(resolved["versions"]) >= {"torch", "transformers", "peft", "trl", "bitsandbytes"}
    assert resolved["files"] and all(len(f["sha256"]) == 64 for f in resolved["files"].values())
    assert stat.S_IMODE(run.stat().st_mode) == 0o700

    # the headless front: one line per logging step and a summary
    assert "[cpt] step 16/16" in res.stdout and "[sft] step 12/12" in res.stdout and "ETA" in res.stdout
    assert "cpt/model" in res.stdout and "sft/adapter" in res.stdout


def test_dry_run_trains_nothing(tmp_path):
    out = tmp_path / "runs"
    rp = write_recipe(tmp_path / "r.yaml", tiny_recipe(out))
    res = cli("--recipe", str(rp), "--dry-run", "--set", "stages.sft.lora.r=4")
    assert res.returncode == 0, res.stderr
    assert "stage 2 sft: sft/lora" in res.stdout and "LoRA r=4" in res.stdout and "starts from cpt" in res.stdout
    assert not out.exists()


def test_three_mistakes_exit_2_without_traceback(tmp_path):
    data = tiny_recipe(tmp_path / "runs")
    data["stages"][0]["seq_len"] = "long"
    data["stages"][0]["learnin_rate"] = 1e-5
    data["stages"][1]["method"] = "qlora2"
    rp = write_recipe(tmp_path / "bad.yaml", data)
    res = cli("--recipe", str(rp), "--dry-run")
    assert res.returncode == 2
    errs = [x for x in res.stderr.splitlines() if x.startswith("tune-wizard: error:")]
    assert len(errs) == 3, res.stderr
    assert "Traceback" not in res.stderr + res.stdout
    assert "3 problems" in res.stderr


def test_qlora_without_cuda_suggests_lora(tmp_path):
    data = tiny_recipe(tmp_path / "runs")
    data["stages"][1]["method"] = "qlora"
    rp = write_recipe(tmp_path / "q.yaml", data)
    res = cli("--recipe", str(rp))
    assert res.returncode == 2 and "method: lora" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "runs").exists()


def test_demo_assets_are_the_same_on_every_build(tmp_path, demo_home, monkeypatch):
    """The demo is a reference: its corpus, pairs, tokenizer and weights must not differ between two builds
    (v1's signatures printed memory addresses, so every build trained a different tokenizer)."""
    import hashlib
    from training.demo import ensure_assets
    first = ensure_assets()
    monkeypatch.setenv("TUNE_WIZARD_HOME", str(tmp_path / "again"))
    second = ensure_assets()  # a fresh interpreter, as every build

    def digests(root):
        return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(root.rglob("*")) if p.is_file()}
    assert second != first and digests(first) == digests(second)
    assert {"tiny-llama/tokenizer.json", "corpus/stdlib-docs.jsonl", "pairs.jsonl"} <= set(digests(first))
    assert " at 0x" not in (first / "pairs.jsonl").read_text()
