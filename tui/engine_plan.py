"""The plan half of the engine door: recommendation, estimates per candidate plan, the recipe text.

answers: model, goal, gap (knowledge | behavior | none), corpus [specs], pairs spec, budget, gpu, gpu_count, price
facts:   corpus (scan_corpus), pairs (scan_pairs), probe (or None)
overrides: {"cpt": {learning_rate, epochs, max_steps}, "sft": {learning_rate, epochs, max_steps, lora_r}}
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLANS = [("rag_only", None), ("sft", "lora"), ("sft", "qlora"), ("sft", "full"), ("cpt_sft", "lora"),
         ("cpt_sft", "qlora"), ("cpt_sft", "full"), ("cpt", None)]


def plan_label(path: str, method: str | None) -> str:
    names = {"rag_only": "RAG only", "sft": "SFT", "cpt_sft": "CPT -> SFT", "cpt": "CPT only"}
    return names.get(path, path) + (f" ({method})" if method else "")


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


# ---------------------------------------------------------------- recommendation

def recommend(answers: dict, facts: dict) -> dict:
    """path, method, reasons, warnings, source. The engine's decide() when this build has it."""
    scanned = [(facts.get(k) or {}).get("obj") for k in ("corpus", "pairs")]
    if not _has("training.plan.decide") or all(x is None for x in scanned):
        return _fallback_decide(answers, facts)
    from training.plan.decide import Facts, decide
    from training.plan.estimate import find_card, load_cards
    from training.plan.shapes import resolve_shape

    cards = load_cards()
    card = find_card(str(answers.get("gpu")), cards)
    f = Facts(model=answers.get("model"), shape=resolve_shape(answers.get("model")) if card else None,
              corpus=(facts.get("corpus") or {}).get("obj"), pairs=(facts.get("pairs") or {}).get("obj"),
              gap=answers.get("gap"), probe=facts.get("probe"), budget_usd=answers.get("budget"),
              gpu=card.name if card else cards[0].name, gpu_count=int(answers.get("gpu_count") or 1),
              price_per_hour=answers.get("price") if card else None)
    d = decide(f, cards)
    src = "training.decide" if card else f"training.decide; {answers.get('gpu')} has no estimate, rules only"
    return {"path": d.path, "method": d.method, "reasons": list(d.reasons), "warnings": list(d.warnings),
            "source": src, "guide_budget": d.guide_budget, "suggestions": list(d.suggestions)}


def _fallback_decide(a: dict, facts: dict) -> dict:
    mb = (facts.get("corpus") or {}).get("clean_mb", 0.0)
    pairs = (facts.get("pairs") or {}).get("valid", 0)
    gap = a.get("gap") or "knowledge"
    reasons, warnings = [], []
    if mb >= 500 and gap != "behavior":
        path = "cpt_sft" if pairs >= 500 else "cpt"
        reasons.append(f"{mb:,.0f} MB clean text >= 500 MB and a knowledge gap -> continued pre-training first")
    elif pairs >= 500:
        path = "sft"
        reasons.append(f"{mb:,.1f} MB clean text < 500 MB: too little for CPT -> RAG for facts + fine-tuning")
    else:
        path = "rag_only"
        reasons.append(f"{pairs} pairs < 500 and {mb:,.1f} MB < 500 MB -> RAG or few-shot, nothing to train yet")
    method = None
    if path in ("sft", "cpt_sft"):
        method = "full" if pairs > 5000 else ("qlora" if a.get("gpu") not in ("cpu", None) else "lora")
        reasons.append(f"{pairs:,} pairs -> {method}" + (" (no GPU here: LoRA, QLoRA needs CUDA)"
                                                          if a.get("gpu") == "cpu" and pairs <= 5000 else ""))
    if gap == "behavior":
        reasons.append("behaviour gap (right facts, wrong format) -> fine-tuning only")
    if path in ("cpt", "cpt_sft") and mb < 500:
        warnings.append(f"only {mb:,.1f} MB of clean text for CPT; the guide wants 500 MB or more")
    if path in ("sft", "cpt_sft") and pairs < 500:
        warnings.append(f"only {pairs} pairs; the guide wants 500 or more for LoRA")
    return {"path": path, "method": method, "reasons": reasons, "warnings": warnings,
            "source": "guide tables, interim rules"}


# ---------------------------------------------------------------- estimates

def estimate_plans(answers: dict, facts: dict, overrides: dict | None = None) -> dict:
    """{"plans": [{path, method, label, hours, usd, vram_gib, fits, usd_on {gpu: usd}}], "gpus": [names], "note"}"""
    if not (_has("training.plan.estimate") and _has("training.plan.shapes")):
        return {"plans": [{"path": p, "method": m, "label": plan_label(p, m)} for p, m in PLANS],
                "gpus": [], "note": "no estimator in this build (issue 3 brings training.plan.estimate)"}
    from training.plan.estimate import estimate_all, load_cards
    from training.plan.shapes import resolve_shape

    shape = resolve_shape(answers.get("model"))
    if shape is None:
        return {"plans": [{"path": p, "method": m, "label": plan_label(p, m)} for p, m in PLANS], "gpus": [],
                "note": f"unknown model size for {answers.get('model')}; no estimates"}
    w = workload(facts, overrides or {})
    n = int(answers.get("gpu_count") or 1)
    cards = load_cards()
    by_card = {c.name: {(e.path, e.method): e for e in estimate_all(shape, w, c, n)} for c in cards}
    chosen = next((c for c in cards if c.name.lower() == str(answers.get("gpu", "")).lower()), None)
    mine = {(e.path, e.method): e for e in estimate_all(shape, w, chosen, n, price=answers.get("price") or None)} \
        if chosen is not None else {}
    out = []
    for (path, method) in by_card[cards[0].name]:
        e = mine.get((path, method))
        out.append({"path": path, "method": method, "label": plan_label(path, method),
                    "hours": e.hours if e else None, "usd": e.usd if e else None,
                    "vram_gib": e.peak_vram_gib if e else by_card[cards[0].name][(path, method)].peak_vram_gib,
                    "fits": e.fits if e else None,
                    "usd_on": {n: est[(path, method)].usd for n, est in by_card.items() if (path, method) in est}})
    return {"plans": out, "gpus": [c.name for c in cards], "note": None if chosen else
            f"{answers.get('gpu')} is not in the price table: time and cost shown for the table's GPUs"}


def workload(facts: dict, ov: dict):
    from training.plan.estimate import Workload
    c, p = facts.get("corpus") or {}, facts.get("pairs") or {}
    w = Workload(corpus_tokens=c.get("tokens", 0.0), pairs=p.get("valid", 0),
                 pair_tokens_mean=p.get("tokens_mean", 0.0))
    cpt, sft = ov.get("cpt") or {}, ov.get("sft") or {}
    if cpt.get("max_steps") and w.corpus_tokens:
        w.cpt_epochs = cpt["max_steps"] * w.micro_batch * w.cpt_seq / w.corpus_tokens
    elif cpt.get("epochs"):
        w.cpt_epochs = cpt["epochs"]
    if sft.get("max_steps") and w.pairs:
        w.sft_epochs = sft["max_steps"] * w.micro_batch / w.pairs
    elif sft.get("epochs"):
        w.sft_epochs = sft["epochs"]
    return w


# ---------------------------------------------------------------- recipe

def default_overrides(answers: dict, path: str, method: str | None) -> dict:
    """Starting hyperparameters: the guide's (DESIGN.md), or the demo recipe's for the built-in tiny model."""
    ov = {"cpt": {"learning_rate": 1e-5, "epochs": 1.0, "max_steps": None},
          "sft": {"learning_rate": 2e-4, "epochs": 3.0, "max_steps": None, "lora_r": 16}}
    if answers.get("model") == "builtin:tiny-llama":
        demo = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
        for st in demo["stages"]:
            ov[st["type"]].update(learning_rate=st["learning_rate"], max_steps=st.get("max_steps"))
    return ov


def recipe_dict(answers: dict, path: str, method: str | None, ov: dict, name: str = "wizard") -> dict:
    if path == "rag_only":
        raise ValueError("RAG only trains nothing, so there is no recipe to run; pick a training plan to write one")
    stages = []
    demo = answers.get("model") == "builtin:tiny-llama"
    if path in ("cpt", "cpt_sft"):
        c = ov.get("cpt") or {}
        st = {"type": "cpt", "data": list(answers["corpus"]), "learning_rate": c.get("learning_rate", 1e-5),
              "epochs": c.get("epochs") or 1.0}
        if c.get("max_steps"):
            st["max_steps"] = int(c["max_steps"])
        if demo:
            st.update(seq_len=256, micro_batch_size=8, logging_steps=5, warmup_ratio=0.05)
        stages.append(st)
    if path in ("sft", "cpt_sft"):
        s = ov.get("sft") or {}
        st = {"type": "sft", "method": method or "lora", "data": answers["pairs"],
              "learning_rate": s.get("learning_rate", 2e-4), "epochs": s.get("epochs") or 3.0}
        if s.get("max_steps"):
            st["max_steps"] = int(s["max_steps"])
        if st["method"] != "full":
            r = int(s.get("lora_r") or 16)
            st["lora"] = {"r": r, "alpha": 2 * r}
        if demo:
            st.update(micro_batch_size=16, max_seq_len=256, logging_steps=5)
        stages.append(st)
    hw = {"gpu": answers.get("gpu") or "auto", "gpu_count": int(answers.get("gpu_count") or 1),
          "price_per_gpu_hour": float(answers.get("price") or 0.0)}
    if answers.get("budget") is not None:
        hw["budget_usd"] = float(answers["budget"])
    return {"version": 1, "name": name, "seed": 42, "output_dir": answers.get("output_dir") or "runs",
            "model": {"id": answers["model"]}, "hardware": hw, "stages": stages}


def why(state) -> dict:
    """The recipe's `decision` and `estimate` sections from the wizard's state: what the rules said, what
    the user chose (an override of the recommendation is said so), the evidence in brief, the estimate."""
    import datetime as _dt
    path, method = state.plan
    rec = state.recommendation or {}
    warnings = list(rec.get("warnings", []))
    if rec and (rec.get("path"), rec.get("method")) != (path, method):
        warnings.append(f"the user chose {plan_label(path, method)} over the recommended "
                        f"{plan_label(rec.get('path'), rec.get('method'))}")
    c, p = state.facts.get("corpus") or {}, state.facts.get("pairs") or {}
    evidence = {"gap": state.answers.get("gap") or "unknown", "budget_usd": state.answers.get("budget"),
                "gpu": state.answers.get("gpu"), "corpus_clean_mb": c.get("clean_mb"), "pairs_valid": p.get("valid")}
    out = {"decision": {"path": path, "method": method, "reasons": list(rec.get("reasons", [])), "warnings": warnings,
                        "evidence": {k: v for k, v in evidence.items() if v is not None},
                        "decided_by": f"tune-wizard wizard {_dt.date.today().isoformat()}"}}
    chosen = next((x for x in state.plans if (x["path"], x["method"]) == (path, method)), None)
    if chosen and chosen.get("hours") is not None:
        out["estimate"] = {"hours": float(f"{chosen['hours']:.4g}"), "usd": float(f"{chosen['usd']:.4g}"),
                           "peak_vram_gib": float(f"{chosen['vram_gib']:.4g}"),
                           "source": f"tune-wizard estimate for {state.answers.get('gpu_count', 1)} x "
                                     f"{state.answers.get('gpu')}"}
    return out


def recipe_text(answers: dict, path: str, method: str | None, ov: dict, name: str = "wizard",
                why: dict | None = None) -> str:
    """The recipe YAML, validated by the strict schema (a RecipeError says what is wrong)."""
    from training.recipe import Recipe
    data = recipe_dict(answers, path, method, ov, name)
    data.update(why or {})
    Recipe.model_validate(data)  # strict: unknown keys or bad values fail here, not in the run
    head = (f"# written by the tune-wizard wizard: {plan_label(path, method)} for {answers['model']}\n"
            f"# goal: {answers.get('goal') or '-'}\n"
            f"# every other key takes its default; `tune-wizard schema` lists them\n")
    return head + yaml.safe_dump(data, sort_keys=False)
