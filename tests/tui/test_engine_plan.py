"""The wizard's door to the plan engine, without the UI: decide() on "cpu" (the demo here) and the edits."""
from __future__ import annotations

import pytest

from training.plan.decide import Facts, decide
from training.plan.to_recipe import apply_edits
from training.plan.pairs_scan import PairsFacts
from tui.engine_plan import facts_of, plan_label


def test_cpu_is_rules_only_and_unknown_cards_still_fail():
    d = decide(Facts(model="builtin:tiny-llama", pairs=PairsFacts.from_declared(1657), gpu="cpu"))
    assert (d.path, d.method, d.estimates, d.card) == ("sft", "lora", [], None)
    with pytest.raises(ValueError, match="unknown GPU 'K80'"):
        decide(Facts(pairs=PairsFacts.from_declared(1657), gpu="K80"))


def test_edits_apply_on_top_and_only_to_editable_keys():
    data = {"stages": [{"type": "cpt", "learning_rate": 1e-5}, {"type": "sft", "learning_rate": 2e-4,
                                                                "lora": {"r": 16, "alpha": 32, "dropout": 0.05}}]}
    out = apply_edits(data, {"cpt": {"max_steps": 6}, "sft": {"lora_r": 8, "learning_rate": 1e-4}})
    assert out["stages"][0] == {"type": "cpt", "learning_rate": 1e-5, "max_steps": 6}
    assert out["stages"][1]["lora"] == {"r": 8, "alpha": 16, "dropout": 0.05}
    assert out["stages"][1]["learning_rate"] == 1e-4
    with pytest.raises(ValueError, match="sft.method is not an editable field"):
        apply_edits(data, {"sft": {"method": "full"}})


def test_the_table_price_is_not_an_override_and_a_changed_one_is():
    a = {"model": "meta-llama/Llama-3.1-8B", "gpu": "H100", "gpu_count": 2, "price": None}
    from training.plan.estimate import find_card
    a["price"] = find_card("H100").price_per_hour
    assert facts_of(a, {}).price_per_hour is None
    a["price"] = 1.0
    assert facts_of(a, {}).price_per_hour == 1.0 and facts_of(a, {}).gpu_count == 2


def test_plan_labels_say_cpt_trains_every_weight():
    assert plan_label("cpt_sft", "qlora") == "CPT (full weights) -> SFT (qlora)"
    assert (plan_label("cpt", None), plan_label("sft", "lora"), plan_label("rag_only", None)) == \
        ("CPT (full weights)", "SFT (lora)", "RAG only")
