"""Issue 15 in decide(): the retrieval rule, the guide's budget rows beside our estimate, and >5,000 pairs
changing the recipe (not only a reason)."""
from __future__ import annotations

import pytest

from training.plan.decide import (LONG_QLORA_EPOCHS, MIN_GAP_NATS, PAIRS_FULL, RETRIEVAL_CLOSES, SFT_EPOCHS, Facts,
                                  decide)
from training.plan.pairs_scan import PairsFacts
from training.plan.scan import CorpusFacts
from training.plan.shapes import resolve_shape
from training.plan.to_recipe import recipe_from_decision

MB = 1e6


def facts(mb, pairs, gap=None, params=8e9, gpu="H100", gpus=1, probe=None, budget=None) -> Facts:
    return Facts(model="m", shape=resolve_shape(None, params), corpus=CorpusFacts.from_declared(mb * MB) if mb else None,
                 pairs=PairsFacts.from_declared(pairs) if pairs else None, gap=gap, probe=probe, gpu=gpu,
                 gpu_count=gpus, budget_usd=budget)


def retrieval(closed, gap_nats=2.0):
    return {"retrieval": {"answer_loss_base": 3.0, "answer_loss_with_retrieval": 3.0 - closed * gap_nats,
                          "answer_loss_oracle": 3.0 - gap_nats, "gap_nats": gap_nats, "gap_closed": closed,
                          "gap_measurable": gap_nats >= MIN_GAP_NATS, "passages_k": 3, "examples": []}}


@pytest.mark.parametrize("closed,path", [(RETRIEVAL_CLOSES - 0.01, "cpt_sft"), (RETRIEVAL_CLOSES, "sft"),
                                         (0.9, "sft")])
def test_retrieval_that_closes_most_of_the_gap_means_rag_plus_sft_not_cpt(closed, path):
    d = decide(facts(2000, 2000, gap="knowledge", probe=retrieval(closed)))
    assert d.path == path
    assert any("retrieval closes" in r for r in d.reasons)


def test_retrieval_that_does_not_close_the_gap_is_a_measured_knowledge_gap():
    d = decide(facts(2000, 2000, probe=retrieval(0.1)))
    assert d.path == "cpt_sft"
    assert any("CPT is justified" in r for r in d.reasons)
    assert not any("gap unknown" in w for w in d.warnings)


def test_unmeasurable_gap_does_not_decide_and_the_gap_stays_unknown():
    d = decide(facts(2000, 2000, probe=retrieval(0.9, gap_nats=MIN_GAP_NATS / 2)))
    assert d.path == "cpt_sft"  # the volume decides, as without a measurement
    assert any("does not decide" in r for r in d.reasons)
    assert any("gap unknown" in w for w in d.warnings)


def test_guide_budget_cpt_7b_row():
    d = decide(facts(10_000, 0, gap="knowledge", params=7e9, gpu="A100-80GB"))
    g = d.to_dict()["guide_budget"]
    assert g["row"] == "CPT, 7B, 10 GB corpus" and (g["low_usd"], g["high_usd"]) == (150, 300)
    assert "GPU-hour" in g["why_different"] and "MFU" in g["why_different"]


def test_guide_budget_70b_row_says_the_guide_needs_more_than_the_card():
    d = decide(facts(50_000, 0, gap="knowledge", params=70e9, gpu="A100-80GB", gpus=8))
    g = d.guide_budget
    assert g["row"] == "CPT, 70B, 50 GB corpus" and g["ours_usd"] > g["high_usd"]
    assert "not reachable" in g["why_different"]


@pytest.mark.parametrize("params,pairs,mb,gap,row", [
    (7e9, 2000, 0, "behavior", "QLoRA SFT, 7B, 2,000 examples"),
    (70e9, 5000, 0, "behavior", "QLoRA SFT, 70B, 5,000 examples"),
    (7e9, 2000, 2000, "knowledge", "CPT + SFT, 7B, full pipeline"),
    (1e9, 2000, 0, "behavior", None),     # no 1B row
    (20e9, 2000, 0, "behavior", None),    # between the size bands
])
def test_guide_budget_rows_match_by_path_and_size(params, pairs, mb, gap, row):
    d = decide(facts(mb, pairs, gap=gap, params=params, gpus=8 if params > 50e9 else 1))
    assert (d.guide_budget or {}).get("row") == row


@pytest.mark.parametrize("pairs,epochs", [(PAIRS_FULL, SFT_EPOCHS), (PAIRS_FULL + 1, LONG_QLORA_EPOCHS)])
def test_over_5000_pairs_with_qlora_trains_longer_in_the_recipe_and_the_estimate(tmp_path, pairs, epochs):
    (tmp_path / "p.jsonl").write_text('{"prompt": "a", "completion": "b"}\n')
    f = facts(50, pairs, gap="behavior", gpu="RTX4090")  # 8B: only QLoRA fits a 24 GiB card
    d = decide(f)
    assert (d.path, d.method) == ("sft", "qlora")
    r = recipe_from_decision(d, f, None, str(tmp_path / "p.jsonl"))
    assert r.stages[0].epochs == epochs
    three = decide(facts(50, pairs, gap="behavior", gpu="RTX4090"))
    sft = next(s for s in d.estimate.stages if s.stage == "sft")
    per_epoch = pairs * f.workload().pair_tokens_mean
    assert sft.tokens == pytest.approx(per_epoch * epochs)
    assert (epochs > SFT_EPOCHS) == any("epochs instead of" in x for x in three.reasons)


def test_over_5000_pairs_full_fine_tune_when_it_fits():
    d = decide(facts(50, PAIRS_FULL + 1, gap="behavior", params=1e9, budget=10_000))
    assert d.method == "full"


def test_cpt_plans_suggest_a_replay_share_and_say_why():
    d = decide(facts(2000, 2000, gap="knowledge"))
    assert "cpt" in d.path and any("fraction: 0.05" in s and "forgetting" in s for s in d.suggestions)
    assert decide(facts(50, 2000, gap="behavior")).suggestions == []
