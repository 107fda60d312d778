"""Pure logic of the before/after measurements, the report and the eval/estimate recipe keys."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import ROOT
from training.runtime.evaluate import change_pct, forgetting, token_blocks
from training.recipe import RecipeError
from training.recipe_load import validate_data
from training.report.report import before_after_table, cost_lines, md_cell, verdicts
from training.report.sections import decision_lines


def _recipe(**top) -> dict:
    data = {"name": "t", "model": {"id": "gpt2"},
            "stages": [{"type": "sft", "data": "pairs.jsonl"}]}
    data.update(top)
    return data


@pytest.mark.parametrize("before,after,warn", [
    (100.0, 110.0, False),    # exactly at the threshold: no warning
    (100.0, 110.01, True),    # just over
    (100.0, 60.0, False),     # fell: the model got better at general text
    (None, 110.0, False),     # nothing measured before
])
def test_forgetting_threshold_boundary(before, after, warn):
    ch, w = forgetting(before, after, 10.0)
    assert w is warn
    if before is None:
        assert ch is None
    else:
        assert ch == pytest.approx((after - before) / before * 100)


def test_change_pct_needs_two_finite_numbers():
    assert change_pct(0.0, 5.0) is None
    assert change_pct(2.0, float("inf")) is None
    assert change_pct(4.0, 2.0) == -50.0


def test_token_blocks_cap_and_tail():
    ids = list(range(10))
    assert token_blocks(ids, 4, 100) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert token_blocks(ids, 4, 5) == [[0, 1, 2, 3], [4, 5]]  # max_tokens + 1 tokens kept
    assert token_blocks(list(range(9)), 4, 100) == [[0, 1, 2, 3], [4, 5, 6, 7]]  # a 1-token tail predicts nothing


def test_md_cell_keeps_a_table_intact():
    assert md_cell("a | b\nc") == "a \\| b<br>c"
    assert md_cell(None) == "-"
    assert md_cell("") == "(empty)"
    assert md_cell("x" * 500).endswith("...")


def test_cost_against_estimate_and_budget():
    rec = {"hardware": {"gpu": "H100", "gpu_count": 4, "price_per_gpu_hour": 2.0, "budget_usd": 3.0},
           "estimate": {"hours": 0.25, "source": "plan"}}
    text = "\n".join(cost_lines(rec, 0.5))
    assert "| cost (USD) | $4.0000 | $2.0000 | +100% |" in text  # 0.5 h x $2 x 4 GPUs; estimate 0.25 h
    assert "| GPU-hours | 2.0000 | 1.0000 | +100% |" in text
    assert "OVER BUDGET" in text and "The estimate came from: plan." in text
    rec["estimate"] = {"hours": 0.25, "usd": 5.0}
    assert "| cost (USD) | $4.0000 | $5.0000 | -20% |" in "\n".join(cost_lines(rec, 0.5))


def test_cost_without_estimate_says_so():
    text = "\n".join(cost_lines({"hardware": {"price_per_gpu_hour": 1.0}}, 1.0))
    assert "| cost (USD) | $1.0000 | no estimate | - |" in text
    assert "carries no estimate" in text


def test_decision_section_present_or_absent():
    absent = decision_lines({"stages": [{"name": "cpt", "type": "cpt"}, {"name": "sft", "type": "sft", "method": "qlora"}]})
    assert "no decision section" in absent[0] and "cpt (cpt) -> sft (sft/qlora)" in absent[0]
    present = decision_lines({"decision": {"path": "cpt_sft", "method": "lora", "reasons": ["600 MB of clean text"]}})
    assert present[0] == "Plan: **cpt_sft**, method **lora**."
    assert "- 600 MB of clean text" in present


def test_before_after_table_and_forgetting_warning():
    meas = {"cpt": {"before": {"type": "cpt", "domain_ppl": 100.0, "general_ppl": 50.0, "domain_tokens": 10},
                    "after": {"type": "cpt", "domain_ppl": 40.0, "general_ppl": 60.0, "domain_tokens": 10,
                              "domain_ppl_change_pct": -60.0, "general_ppl_change_pct": 20.0,
                              "forgetting_threshold_pct": 10.0, "forgetting_warning": True}}}
    table = "\n".join(before_after_table(meas))
    assert "| cpt | domain perplexity (held-out corpus) (10 tokens) | 100 | 40 | -60.0% |" in table
    text = "\n".join(verdicts(meas))
    assert "domain perplexity fell" in text and "Forgetting check: WARNING" in text and "+20.0%" in text


def test_eval_section_defaults_and_strictness(tmp_path):
    r = validate_data(_recipe(), check_paths=False)
    assert r.eval.enabled and r.eval.probe_prompts == [] and r.eval.forgetting_threshold_pct == 10.0
    assert r.estimate is None
    with pytest.raises(RecipeError) as e:
        validate_data(_recipe(eval={"probe_prompt": ["x"]}, estimate={"hours": -1}), check_paths=False)
    paths = {p.path for p in e.value.problems}
    assert {"eval.probe_prompt", "estimate.hours"} <= paths


def test_missing_general_text_is_named(tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text('{"prompt": "a", "completion": "b"}\n')
    data = _recipe(eval={"general_text": str(tmp_path / "nope.txt")})
    data["stages"][0]["data"] = str(pairs)
    with pytest.raises(RecipeError) as e:
        validate_data(data)
    assert [p.path for p in e.value.problems] == ["eval.general_text"]


def test_report_and_commands_stay_light():
    code = ("import sys, tui.run_commands, training.report.report, training.report.export\n"
            "heavy = [m for m in ('torch', 'transformers', 'peft', 'textual', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_report_of_a_failed_run_without_measurements(tmp_path):
    """A run folder as a crashed worker leaves it: steps and an error, no measure events, no finished event."""
    import json

    import yaml
    from training.report.report import write_report

    run = tmp_path / "run-1"
    run.mkdir()
    (run / "recipe.yaml").write_text(yaml.safe_dump(_recipe(hardware={"price_per_gpu_hour": 2.0})))
    evs = [{"event": "run_start", "t": 1000.0, "device": "cpu"},
           {"event": "stage_start", "t": 1001.0, "stage": "sft", "type": "sft"},
           *({"event": "step", "t": 1001.0 + s, "stage": "sft", "step": s, "loss": 3.0 - 0.1 * s, "tokens": 100 * s,
              "elapsed_s": float(s)} for s in range(1, 6)),
           {"event": "eval", "t": 1006.0, "stage": "sft", "step": 5, "eval_loss": 2.9},
           {"event": "error", "t": 1007.0, "stage": "sft", "kind": "oom", "message": "GPU out of memory", "hint": "lower it"}]
    (run / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in evs))
    text = write_report(run).read_text()
    assert "status **unfinished" in text and "> error in sft: GPU out of memory (lower it)" in text
    assert "No before/after measurements" in text and "no decision section" in text
    assert "| sft | 5 | 500 | 100 |" in text  # 500 tokens over 5 s of training loop
    assert "| cost (USD) | $0.0039 | no estimate | - |" in text  # 7 s at $2/h
    assert (run / "plots" / "loss-sft.png").read_bytes()[:4] == b"\x89PNG"
