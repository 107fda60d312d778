"""decide(): the guide's tables at every threshold (just under, at, over), budget and card rules."""
from __future__ import annotations

import pytest

from training.plan.decide import Facts, decide
from training.plan.to_recipe import recipe_from_decision
from training.plan.pairs_scan import PairsFacts
from training.plan.scan import CorpusFacts
from training.plan.shapes import resolve_shape

MB = 1e6
LLAMA8B = resolve_shape("meta-llama/Llama-3.1-8B")


def facts(mb: float, pairs: int, gap=None, budget=None, gpu="H100", gpus=1, shape=LLAMA8B, **kw) -> Facts:
    return Facts(model="meta-llama/Llama-3.1-8B", shape=shape, corpus=CorpusFacts.from_declared(mb * MB),
                 pairs=PairsFacts.from_declared(pairs) if pairs else None, gap=gap, budget_usd=budget, gpu=gpu,
                 gpu_count=gpus, **kw)


@pytest.mark.parametrize("mb,path,band", [(9.99, "sft", "< 10 MB"), (10.0, "sft", "10-500 MB"),
                                          (10.01, "sft", "10-500 MB"), (499.9, "sft", "10-500 MB"),
                                          (500.0, "cpt_sft", "500 MB - 10 GB"), (500.1, "cpt_sft", "500 MB - 10 GB")])
def test_text_volume_thresholds_10mb_and_500mb(mb, path, band):
    d = decide(facts(mb, 2000, gap="knowledge", budget=10_000))
    assert d.path == path, d.reasons
    assert band in d.reasons[0]
    # without pairs, text under 500 MB only feeds RAG
    assert decide(facts(mb, 0, gap="knowledge")).path == ("rag_only" if mb < 500 else "cpt")


@pytest.mark.parametrize("mb,band", [(9_999, "500 MB - 10 GB"), (10_000, "500 MB - 10 GB"), (10_001, "> 10 GB")])
def test_text_volume_threshold_10gb(mb, band):
    d = decide(facts(mb, 2000, gap="knowledge", budget=1e6, gpus=8))
    assert d.path == "cpt_sft"
    assert any(band in r for r in d.reasons), d.reasons


def test_large_corpus_without_pairs_is_cpt_with_a_warning():
    d = decide(facts(20_000, 0, gap="knowledge", budget=1e6, gpus=8))
    assert (d.path, d.method) == ("cpt", None)
    assert any("not follow instructions" in w for w in d.warnings)


@pytest.mark.parametrize("pairs,path,method", [(499, "rag_only", None), (500, "sft", "lora"), (501, "sft", "lora"),
                                               (4999, "sft", "lora"), (5000, "sft", "lora"), (5001, "sft", "full")])
def test_pairs_thresholds_500_and_5000(pairs, path, method):
    # an H200: full fine-tuning of 8B with update-keeping weights (bf16 + Kahan, 10 bytes per parameter,
    # training/plan/memory.py) needs ~82 GiB at micro-batch 4, more than an H100 has
    d = decide(facts(50, pairs, gap="behavior", budget=10_000, gpu="H200"))
    assert (d.path, d.method) == (path, method), d.reasons
    if pairs == 499:
        assert any("fewer than 500 pairs" in w for w in d.warnings)


def test_over_5000_pairs_on_a_small_card_is_longer_qlora():
    d = decide(facts(50, 8000, gap="behavior", budget=10_000, gpu="RTX4090"))
    assert (d.path, d.method) == ("sft", "qlora")
    assert "longer training" in " ".join(d.reasons)


def test_lora_that_does_not_fit_falls_back_to_qlora():
    d = decide(facts(50, 2000, gap="behavior", gpu="RTX4090"))  # 8B bf16 base = 15 GiB + activations > 23 GiB
    assert (d.path, d.method) == ("sft", "qlora")


def test_budget_under_100_drops_cpt_for_qlora_sft_even_when_cpt_would_fit():
    d = decide(facts(800, 3000, gap="knowledge", budget=20))
    assert (d.path, d.method) == ("sft", "qlora")
    assert any("under $100" in w for w in d.warnings)


@pytest.mark.parametrize("delta,path", [(-0.01, "sft"), (0.0, "cpt_sft"), (50, "cpt_sft")])
def test_budget_over_and_under_the_estimate(delta, path):
    """At or over the estimate of cpt_sft the plan stays; a cent under it, a cheaper plan that fits is taken."""
    probe = decide(facts(8000, 3000, gap="knowledge", budget=None))
    assert probe.path == "cpt_sft"
    cost = probe.estimate.usd
    assert cost > 100
    d = decide(facts(8000, 3000, gap="knowledge", budget=cost + delta))
    assert d.path == path, (cost, d.warnings)
    if delta < 0:
        assert any("over budget" in w for w in d.warnings)
        assert d.estimate.usd <= cost + delta


def test_behaviour_gap_with_a_big_corpus_is_flagged_and_fine_tunes_only():
    d = decide(facts(2000, 2000, gap="behavior", budget=10_000))
    assert d.path == "sft"
    assert any("conflicting evidence" in w for w in d.warnings)


def test_no_gap_means_no_training():
    assert decide(facts(2000, 2000, gap="none", budget=10_000)).path == "rag_only"


def test_unknown_gap_is_a_warning_and_volume_decides():
    d = decide(facts(2000, 2000, budget=10_000))
    assert d.path == "cpt_sft"
    assert any("gap unknown" in w for w in d.warnings)


def test_model_too_large_for_the_card_warns_and_shards_on_several():
    seventy = resolve_shape(None, params=70e9)
    one = decide(facts(50_000, 0, gap="knowledge", budget=1e6, shape=seventy))
    assert one.path == "cpt" and any("too large for the card" in w for w in one.warnings)
    eight = decide(facts(50_000, 0, gap="knowledge", budget=1e6, shape=seventy, gpus=8))
    assert any("FSDP" in r for r in eight.reasons)


def test_override_keeps_the_rules_and_warns():
    d = decide(facts(50, 100, gap="knowledge", override_path="cpt_sft", override_method="lora"))
    assert (d.path, d.method) == ("cpt_sft", "lora")
    assert any("less than 500 MB" in w for w in d.warnings) and any("fewer than 500 pairs" in w for w in d.warnings)


def test_alternatives_are_every_other_candidate_with_estimates():
    d = decide(facts(800, 3000, gap="knowledge", budget=1000))
    js = d.to_dict()
    assert {(a["path"], a["method"]) for a in js["alternatives"]} | {(d.path, d.method)} == \
        {(e.path, e.method) for e in d.estimates}
    assert all(a["hours"] >= 0 and a["usd"] >= 0 and a["peak_vram_gib"] > 0 for a in js["alternatives"])


def test_recipe_from_decision_validates(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("text " * 100)
    pairs = tmp_path / "p.jsonl"
    pairs.write_text('{"prompt": "a", "completion": "b"}\n')
    f = facts(800, 3000, gap="knowledge", budget=1000)
    d = decide(f)
    r = recipe_from_decision(d, f, [str(corpus)], str(pairs), name="t")
    assert [s.type for s in r.stages] == ["cpt", "sft"]
    assert r.stages[0].learning_rate == 1e-5 and r.stages[1].method == d.method
    assert r.hardware.gpu == "H100" and r.hardware.price_source and r.hardware.budget_usd == 1000
    with pytest.raises(ValueError):
        recipe_from_decision(decide(facts(1, 0)), f, None, None)


@pytest.mark.parametrize("near,mode", [(0.0, "exact"), (0.009, "exact"), (0.01, "near"), (0.3, "near")])
def test_written_cpt_stage_dedups_what_the_scan_measured(tmp_path, near, mode):
    corpus = tmp_path / "c.txt"
    corpus.write_text("text " * 100)
    f = facts(800, 0, gap="knowledge", budget=1000)
    f.corpus = CorpusFacts(total_bytes=int(800 * MB), unique_bytes=int(800 * MB), clean_bytes=int(800 * MB),
                           clean_mb=800, tokens=200e6, near_dup_rate=near, documents=10_000)
    r = recipe_from_decision(decide(f), f, [str(corpus)], None, name="t")
    assert r.stages[0].type == "cpt" and r.stages[0].dedup == mode
