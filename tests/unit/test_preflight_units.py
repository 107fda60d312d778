"""Pure parts of the measured preflight: the disk need, the micro-batch search, calibration, refusals."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.plan import calibration
from training.plan.estimate import StepConfig, card_mfu_scale, computed_flops_per_token, flops_per_token, \
    tokens_per_second
from training.plan.shapes import KNOWN
from training.recipe import RecipeError
from training.recipe_load import validate_data
from training.runtime import diskcheck
from training.runtime.preflight import problems
from training.runtime.preflight_memory import SimulatedOOM, find_micro_batch

SHAPE = KNOWN["llama-3.2-1b"]


def recipe(**stage):
    st = {"type": "cpt", "data": ["x.txt"], "max_steps": 100, **stage}
    return validate_data({"version": 1, "name": "t", "output_dir": "/nowhere", "model": {"id": "m"},
                          "stages": [st, {"type": "sft", "data": "p.jsonl", "max_steps": 50}]}, check_paths=False)


def test_disk_need_counts_kept_checkpoints_outputs_and_cache():
    r = recipe()
    need = diskcheck.estimate_need(r, SHAPE, on_gpu=True, corpus_bytes={"cpt": 1e9})
    cpt, sft = need.stages
    p = SHAPE.total_params
    assert cpt.checkpoint_bytes == pytest.approx(3 * 2 * p)          # bf16 weights + AdamW m, v
    assert cpt.kept == 3                                             # save_total_limit 2, +1 while rotating
    assert cpt.output_bytes == pytest.approx(2 * p)
    assert cpt.cache_bytes == pytest.approx(diskcheck.CACHE_PER_CORPUS_BYTE * 1e9)
    assert sft.checkpoint_bytes == pytest.approx(12 * SHAPE.lora_params(16))
    # the peak: cpt's everything, or cpt's checkpoints + output (its cache gone) with all of sft
    peak = max(cpt.total, cpt.checkpoint_bytes * 3 + cpt.output_bytes + sft.total)
    assert need.peak_bytes == pytest.approx(peak * diskcheck.MARGIN + diskcheck.FIXED_BYTES)
    fewer = diskcheck.estimate_need(recipe(save_total_limit=1), SHAPE, True, {"cpt": 1e9})
    assert fewer.stages[0].kept == 2 and fewer.peak_bytes < need.peak_bytes


def test_disk_need_uses_measured_sizes():
    need = diskcheck.estimate_need(recipe(), None, False, {"cpt": 1e6},
                                   {"cpt": {"checkpoint_bytes": 10e6, "output_bytes": 4e6, "cache_bytes_per_corpus_byte": 2},
                                    "sft": {"checkpoint_bytes": 1e6, "output_bytes": 0.5e6}})
    assert need.source == "preflight"
    assert need.stages[0].checkpoint_bytes == 10e6 and need.stages[0].cache_bytes == 2e6
    assert diskcheck.estimate_need(recipe(), None, False) is None  # nothing known: no check


def test_refusal_names_needed_free_and_the_keys(tmp_path):
    r = recipe()
    r.output_dir = str(tmp_path / "out")
    with pytest.raises(RecipeError) as e:
        diskcheck.check_disk(r, "r.yaml", measured={"cpt": {"checkpoint_bytes": 50e6, "output_bytes": 20e6},
                                                    "sft": {"checkpoint_bytes": 1e6, "output_bytes": 1e6}},
                             free_fn=lambda p: (10e6, tmp_path))
    (line,) = e.value.lines()
    assert "output_dir" in line and "9.5 MiB free" in line and "needs about" in line
    assert "save_total_limit" in line and "save_steps" in line
    assert not (tmp_path / "out").exists()  # nothing written
    need = diskcheck.check_disk(r, "r.yaml", measured={"cpt": {"checkpoint_bytes": 1e6}, "sft": {}},
                                free_fn=lambda p: (1e12, tmp_path))
    assert need is not None


def test_free_bytes_walks_up_to_an_existing_folder(tmp_path):
    free, where = diskcheck.free_bytes(tmp_path / "a" / "b")
    assert where == tmp_path and free > 0


def test_micro_batch_search_halves_on_oom_and_keeps_rows_per_step():
    seen = []

    def step(m):  # a card that holds 5 rows: out of memory above, peak grows with the rows
        seen.append(m)
        if m > 5:
            raise SimulatedOOM("simulated")
        return 1.0 + m

    r = find_micro_batch(16, step, limit_gib=10.0, margin=0.1)
    assert seen == [16, 8, 4] and r["micro"] == 4 and r["accum"] == 4 and r["fits"]
    assert "16, 8, 4" in r["reason"] and "16 rows" in r["reason"]
    # fits in memory but not within the margin: halve again
    r = find_micro_batch(16, lambda m: 1.0 + m, limit_gib=10.0, margin=0.1)
    assert r["micro"] == 8 and r["accum"] == 2  # 9 GiB <= 90% of 10
    r = find_micro_batch(6, lambda m: 1.0 + m, limit_gib=5.0, margin=0.1)
    assert r["micro"] == 3 and r["accum"] == 2


def test_micro_batch_search_other_errors_propagate():
    def step(m):
        raise ValueError("bad config")
    with pytest.raises(ValueError):
        find_micro_batch(4, step, 10.0)


def _report(peak=1.0, limit=8.0, usd=1.0, disk=None):
    return {"device": "cpu", "stages": [{"stage": "cpt", "peak_mem_gib": peak}],
            "projected": {"peak_with_margin_gib": peak * 1.1, "memory_limit_gib": limit, "disk_problem": disk,
                          "usd": usd, "hours": 2.0}}


def test_problems_one_line_each_memory_disk_cost():
    r = recipe()
    assert problems(_report(), r) == []
    r.hardware.max_cost_usd = 0.5
    r.hardware.price_per_gpu_hour = 0.5
    lines = problems(_report(peak=7.5, disk="output_dir '/x' has 1 MiB free ..."), r)
    assert len(lines) == 3
    assert lines[0].startswith("stages.cpt: measured peak memory 7.50 GiB") and "micro_batch_size" in lines[0]
    assert lines[1].startswith("output_dir")
    assert lines[2].startswith("hardware.max_cost_usd") and "$1.00" in lines[2]


def test_checkpointing_costs_a_second_forward_and_cards_scale():
    plain = StepConfig("full", 2048, 4)
    ck = StepConfig("full", 2048, 4, checkpointing=True)
    assert computed_flops_per_token(SHAPE, ck) > flops_per_token(SHAPE, ck) == computed_flops_per_token(SHAPE, plain)
    assert tokens_per_second(SHAPE, ck, 989) < tokens_per_second(SHAPE, plain, 989)
    assert card_mfu_scale("H200", 989) == pytest.approx(1.0)
    assert card_mfu_scale("H100", 989) < 1.0 < card_mfu_scale("A100-80GB", 312)
    assert card_mfu_scale("unknown", 100) == 1.0


def test_calibration_nearest_point_on_this_card(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_WIZARD_CALIBRATION", str(tmp_path / "cal.jsonl"))
    small = KNOWN["llama-3.2-1b"]
    big = KNOWN["llama-3.1-8b"]
    assert calibration.nearest("H100", "full", small, 2048) is None
    calibration.append([calibration.point("preflight", "NVIDIA H100 80GB HBM3", small, "full", 2048, 4, 1, 40000.0, 30.0),
                        calibration.point("run", "NVIDIA H100 80GB HBM3", big, "full", 2048, 4, 1, 9000.0, 60.0),
                        calibration.point("run", "NVIDIA H100 80GB HBM3", big, "lora", 2048, 4, 1, 12000.0, 20.0)])
    hit = calibration.nearest("H100", "full", small, 2048)   # the price table's name finds CUDA's name
    assert hit.point["params"] == small.total_params and hit.tokens_per_s == pytest.approx(40000.0)
    hit = calibration.nearest("h100", "full", big, 4096)      # the 8B point, carried to seq 4096 by FLOPs
    f2 = calibration.flops_per_token(big.flops_params, big.layers, big.hidden, 2048, "full")
    f4 = calibration.flops_per_token(big.flops_params, big.layers, big.hidden, 4096, "full")
    assert hit.tokens_per_s == pytest.approx(9000.0 * f2 / f4)
    assert "measured on this card" in hit.describe()
    assert calibration.nearest("A100", "full", small, 2048) is None  # another card: nothing
    with open(tmp_path / "cal.jsonl", "a") as f:
        f.write('{"torn": \n')                                     # a torn line is skipped
    assert len(calibration.load()) == 3
    monkeypatch.setenv("TUNE_WIZARD_CALIBRATION", "off")
    assert calibration.load() == [] and calibration.append([{"x": 1}]) is None


def test_report_sets_the_run_against_the_preflight():
    from training.report.sections import preflight_lines as report_lines
    recipe = {"estimate": {"hours": 0.01, "source": "preflight", "preflight": {
        "device": "cpu", "date": "2026-12-01", "steps": 8,
        "stages": [{"stage": "cpt", "tokens_per_s": 1000.0, "s_per_step": 0.5, "peak_mem_gib": 0.8, "projected_s": 30.0}]}}}
    events = [{"event": "step", "stage": "cpt", "step": s, "tokens_per_s": 900.0 + s, "step_time_s": 0.6}
              for s in (1, 2, 3, 4)] + [{"event": "stage_end", "stage": "cpt", "runtime_s": 33.0, "peak_mem_gib": 0.9}]
    lines = report_lines(recipe, events)
    assert "| cpt | preflight | 1,000 | 0.500 | 0.80 | 30.0 |" in lines
    assert "| cpt | this run | 903 | 0.600 | 0.90 | 33.0 |" in lines   # median of steps 2..4
    assert report_lines({"estimate": {"hours": 1}}, events) == []


def test_a_finished_run_feeds_the_calibration_file(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNE_WIZARD_CALIBRATION", str(tmp_path / "cal.jsonl"))
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 128, "intermediate_size": 352,
                                                   "num_hidden_layers": 4, "num_attention_heads": 4,
                                                   "num_key_value_heads": 2, "vocab_size": 4096,
                                                   "tie_word_embeddings": True}))
    run = tmp_path / "run"
    run.mkdir()
    (run / "recipe.yaml").write_text(json.dumps({"version": 1, "name": "t", "model": {"id": str(model)}, "stages": [
        {"type": "cpt", "data": ["x.txt"], "seq_len": 256, "micro_batch_size": 8}]}))
    ev = [{"event": "run_start", "device": "cpu"}] + \
        [{"event": "step", "stage": "cpt", "step": s, "tokens_per_s": t} for s, t in ((1, 10.0), (2, 100.0), (3, 300.0), (4, 200.0))] + \
        [{"event": "stage_end", "stage": "cpt", "peak_mem_gib": 0.7}]
    (run / "events.jsonl").write_text("\n".join(json.dumps(e) for e in ev) + "\n")
    assert calibration.record_run(run) is not None
    (pt,) = calibration.load()
    assert (pt["source"], pt["card"], pt["method"], pt["seq"], pt["micro_batch"]) == ("run", "cpu", "full", 256, 8)
    assert pt["tokens_per_s"] == 200.0 and pt["peak_mem_gib"] == 0.7  # the median after the first step
