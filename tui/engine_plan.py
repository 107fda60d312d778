"""The plan half of the engine door: the wizard's answers as the engine's `Facts`, the engine's `decide()`
with the user's pick as the override, and the recipe from `recipe_from_decision` plus the user's field edits.

Nothing here decides, estimates or picks a default: `training.plan.decide` does, exactly as for
`tune-wizard plan`, so the same answers write the same recipe (tests/tui/test_wizard_equals_plan.py).

answers: model, goal, gap (knowledge | behavior | none | None: unknown), corpus [specs], pairs spec, budget,
         gpu (a card of recipes/gpu_prices.yaml or "cpu"), gpu_count, price
facts:   corpus, pairs (the scans' dicts, the engine's object under "obj"), probe (or None)
pick:    (path, method) the user goes with, or None for the recommendation
edits:   {"cpt": {recipe stage key: value}, "sft": {...}}: only the fields the user changed
"""
from __future__ import annotations

import os

PLANS = [("rag_only", None), ("sft", "lora"), ("sft", "qlora"), ("sft", "full"), ("cpt_sft", "lora"),
         ("cpt_sft", "qlora"), ("cpt_sft", "full"), ("cpt", None)]  # the rows shown when nothing can be estimated


_CARDS: list = []


def cards() -> list:
    """The dated price table, read once per wizard (parsing the YAML was 95% of a decide() call)."""
    if not _CARDS:
        from training.plan.estimate import load_cards
        _CARDS.extend(load_cards())
    return _CARDS


def plan_label(path: str | None, method: str | None) -> str:
    """`SFT (lora)`, `CPT (full weights) -> SFT (qlora)`: CPT always trains every weight, SFT by its method."""
    sft = f"SFT ({method})" if method else "SFT"
    return {"rag_only": "RAG only", "sft": sft, "cpt_sft": f"CPT (full weights) -> {sft}",
            "cpt": "CPT (full weights)"}.get(path or "", str(path))


def _spec_path(spec: str) -> str:
    """Paths as `tune-wizard plan` writes them: absolute; the demo's builtin: names stay as they are."""
    from training.recipe import BUILTIN
    return spec if spec.startswith(BUILTIN) else os.path.abspath(os.path.expanduser(spec))


def facts_of(answers: dict, facts: dict, pick: tuple | None = None):
    """The engine's Facts for these answers (what `tune-wizard plan` builds from its flags)."""
    from training.plan.decide import Facts
    from training.plan.estimate import find_card
    from training.plan.shapes import resolve_shape

    gpu = str(answers.get("gpu") or "cpu")
    card = find_card(gpu, cards())
    price = answers.get("price")
    if card is not None and price is not None and float(price) == card.price_per_hour:
        price = None  # the table's price: the recipe names the table as its source, as plan does without --price
    if card is None and not price:
        price = None  # no price given for the CPU: nothing to name as its source
    path, method = pick if pick else (None, None)
    return Facts(model=answers.get("model") or None, shape=resolve_shape(answers.get("model")),
                 corpus=(facts.get("corpus") or {}).get("obj"), pairs=(facts.get("pairs") or {}).get("obj"),
                 gap=answers.get("gap"), probe=facts.get("probe"), budget_usd=answers.get("budget"),
                 gpu=card.name if card else gpu, gpu_count=int(answers.get("gpu_count") or 1),
                 price_per_hour=None if price is None else float(price), override_path=path,
                 override_method=method if path in ("sft", "cpt_sft") else None)


def decide_for(answers: dict, facts: dict, pick: tuple | None = None):
    """(Facts, Decision): decide() on the answers; the user's pick is an override only where it differs from
    the rules' own choice (as `plan` without --path/--method when the user takes the recommendation)."""
    from training.plan.decide import decide
    f = facts_of(answers, facts)
    d = decide(f, cards())
    if pick and tuple(pick) != (d.path, d.method):
        f = facts_of(answers, facts, pick)
        d = decide(f, cards())
    return f, d


def recommend(answers: dict, facts: dict) -> dict:
    """The rules' own choice (no override): path, method, reasons, warnings."""
    _, d = decide_for(answers, facts)
    return {"path": d.path, "method": d.method, "reasons": list(d.reasons), "warnings": list(d.warnings),
            "guide_budget": d.guide_budget, "suggestions": list(d.suggestions)}


def estimate_plans(answers: dict, facts: dict, pick: tuple | None = None) -> dict:
    """{"plans": [{path, method, label, hours, usd, vram_gib, fits, usd_on {gpu: usd}}], "gpus": [names], "note"}:
    the engine's estimates of every candidate on the chosen card, and the cost on the table's other cards."""
    from training.plan.estimate import estimate_all

    f, d = decide_for(answers, facts, pick)
    table = cards()
    if f.shape is None:
        return {"plans": [{"path": p, "method": m, "label": plan_label(p, m)} for p, m in PLANS], "gpus": [],
                "note": f"unknown model size for {answers.get('model')}; no estimates"}
    w = f.workload()
    by_card = {c.name: {(e.path, e.method): e for e in estimate_all(f.shape, w, c, f.gpu_count)} for c in table}
    mine = {(e.path, e.method): e for e in d.estimates}
    out = []
    for key in (mine or by_card[table[0].name]):
        e = mine.get(key)
        out.append({"path": key[0], "method": key[1], "label": plan_label(*key),
                    "hours": e.hours if e else None, "usd": e.usd if e else None,
                    "vram_gib": (e or by_card[table[0].name][key]).peak_vram_gib, "fits": e.fits if e else None,
                    "usd_on": {n: est[key].usd for n, est in by_card.items() if key in est}})
    return {"plans": out, "gpus": [c.name for c in table], "note": None if d.card else
            f"{answers.get('gpu')} is not in the price table: time and cost shown for the table's GPUs"}


def default_edits(answers: dict) -> dict:
    """The demo's random-init tiny model learns only at the demo recipe's values (recipes/demo.yaml);
    any other model starts from the engine's recipe unchanged."""
    if answers.get("model") != "builtin:tiny-llama":
        return {}
    from pathlib import Path

    import yaml
    demo = yaml.safe_load((Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml").read_text())
    keep = ("seq_len", "max_seq_len", "learning_rate", "warmup_ratio", "max_steps", "micro_batch_size", "grad_accum",
            "logging_steps")
    return {st["type"]: {k: st[k] for k in keep if k in st} for st in demo["stages"]}


def recipe_data(answers: dict, facts: dict, pick: tuple, edits: dict | None = None, name: str = "wizard") -> dict:
    """recipe_from_decision(...) as plain data, then the user's edits applied (not validated yet)."""
    from training.plan.to_recipe import apply_edits, recipe_from_decision

    f, d = decide_for(answers, facts, pick)
    corpus = [_spec_path(s) for s in answers.get("corpus") or []] or None
    pairs = _spec_path(answers["pairs"]) if answers.get("pairs") else None
    recipe = recipe_from_decision(d, f, corpus, pairs, name=name, output_dir=answers.get("output_dir") or "runs",
                                  check_paths=False)
    data = recipe.model_dump(mode="json", exclude_none=False)
    data.pop("resolved", None)
    return apply_edits(data, edits or {})


def stage_values(answers: dict, facts: dict, pick: tuple, edits: dict | None = None) -> dict:
    """{"cpt": {key: value}, "sft": {...}}: what the recipe's stages hold, to fill the edit fields."""
    try:
        data = recipe_data(answers, facts, pick, edits)
    except ValueError:  # rag_only, or a stage without its data: nothing to edit
        return {}
    out = {}
    for st in data["stages"]:
        out[st["type"]] = dict(st, lora_r=(st.get("lora") or {}).get("r"))
    return out


def recipe_text(answers: dict, facts: dict, pick: tuple, edits: dict | None = None, name: str = "wizard") -> str:
    """The recipe YAML, byte for byte what `tune-wizard plan -o` writes for the same answers and no edits.
    Raises training.recipe.RecipeError (every problem, with its key) or ValueError (rag_only)."""
    from training.recipe import dump_recipe
    from training.recipe_load import validate_data
    return dump_recipe(validate_data(recipe_data(answers, facts, pick, edits, name)))
