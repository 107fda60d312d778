"""The decision written down: a validated recipe for the decided path (`recipe_from_decision`), the recipe's
`decision` section, and the fields the wizard's plan step lets the user edit before it is written."""
from __future__ import annotations

from training.plan.decide import LONG_QLORA_EPOCHS, PAIRS_FULL, SFT_EPOCHS, Decision, Facts

NEAR_DUP_DEDUP = 0.01  # scanned near-duplicate share from which a written cpt stage drops near-copies too


def sft_epochs(method: str | None, n_pairs: int) -> float:
    """The guide's 3 epochs; QLoRA on more than 5,000 pairs trains longer (LONG_QLORA_EPOCHS)."""
    return float(LONG_QLORA_EPOCHS if method == "qlora" and n_pairs > PAIRS_FULL else SFT_EPOCHS)


def recipe_from_decision(d: Decision, facts: Facts, corpus_paths: list[str] | None, pairs_path: str | None,
                         name: str = "plan", output_dir: str = "runs", check_paths: bool = True):
    """A validated Recipe for the decided path (training.recipe.RecipeError if something is off).
    rag_only has nothing to train: ValueError."""
    from training.recipe_load import validate_data

    if d.path == "rag_only":
        raise ValueError("the decision is rag_only: there is nothing to train, so no recipe")
    stages = {s.stage: s for s in (d.estimate.stages if d.estimate else [])}
    max_pos = facts.shape.max_positions if facts.shape and facts.shape.max_positions else 4096
    out = []
    if "cpt" in d.path:
        if not corpus_paths:
            raise ValueError("a CPT stage needs corpus files (a declared --corpus-size has none)")
        st = stages.get("cpt")
        micro = st.micro_batch if st else 4  # sharding may lower it; grad_accum keeps the batch
        # dedup: what the scan measured. Near-copies worth a second pass over the data (>= 1% of the documents)
        # -> near; else exact (one pass, the schema's default)
        near = bool(facts.corpus and not facts.corpus.declared and facts.corpus.near_dup_rate >= NEAR_DUP_DEDUP)
        out.append({"type": "cpt", "data": list(corpus_paths), "dedup": "near" if near else "exact",
                    "seq_len": min(2048, max_pos), "learning_rate": 1e-5,
                    "lr_scheduler": "cosine", "warmup_ratio": 0.03, "epochs": 1.0, "micro_batch_size": micro,
                    "grad_accum": 8 * 4 // micro, "gradient_checkpointing": bool(st and st.checkpointing)})
    if "sft" in d.path:
        if not pairs_path:
            raise ValueError("an SFT stage needs a pairs file (a declared --pairs-count has none)")
        st = stages.get("sft")
        max_len = facts.pairs.max_len if facts.pairs and facts.pairs.max_len else 1024
        micro = st.micro_batch if st else 4
        out.append({"type": "sft", "method": d.method or "lora", "data": pairs_path,
                    "learning_rate": 2e-5 if d.method == "full" else 2e-4,
                    "epochs": sft_epochs(d.method, facts.pairs.valid if facts.pairs else 0),
                    "micro_batch_size": micro, "grad_accum": 4 * 4 // micro, "max_seq_len": min(max(max_len, 128), max_pos),
                    "gradient_checkpointing": bool(st and st.checkpointing),
                    "lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}})
    card = d.card
    price = facts.price_per_hour if facts.price_per_hour is not None else (card.price_per_hour if card else 0.0)
    hw = {"gpu": card.name if card else facts.gpu, "gpu_count": facts.gpu_count, "price_per_gpu_hour": price,
          "price_source": "--price" if facts.price_per_hour is not None else (card.price_source if card else None),
          "price_date": None if facts.price_per_hour is not None else (card.price_date if card else None),
          "budget_usd": facts.budget_usd}
    e = d.estimate
    if e and e.gpu_count > 1:  # one process per GPU, through accelerate launch (README: Beyond one GPU)
        hw.update(num_processes=e.processes_per_node, num_nodes=e.nodes, strategy=e.strategy,
                  offload_optimizer=e.offload_optimizer)
    data = {"version": 1, "name": name, "seed": 42, "output_dir": output_dir, "model": {"id": facts.model},
            "hardware": hw, "stages": out, "decision": decision_record(d, facts)}
    if e is not None:  # the run's report sets what was spent against this
        data["estimate"] = {"hours": float(f"{e.hours:.4g}"), "usd": float(f"{e.usd:.4g}"),
                            "peak_vram_gib": float(f"{e.peak_vram_gib:.4g}"),
                            "source": f"tune-wizard estimate for {e.gpu_count} x {e.gpu}"}
    return validate_data(data, check_paths=check_paths)


EDITABLE = {"cpt": ("learning_rate", "epochs", "max_steps", "seq_len", "micro_batch_size", "grad_accum",
                    "warmup_ratio", "logging_steps"),
            "sft": ("learning_rate", "epochs", "max_steps", "max_seq_len", "micro_batch_size", "grad_accum",
                    "warmup_ratio", "logging_steps", "lora_r")}


def apply_edits(data: dict, edits: dict) -> dict:
    """The user's field edits on a recipe's data (the wizard's plan step): {"cpt"|"sft": {key: value}}.
    `lora_r` sets the LoRA rank and keeps alpha = 2 r (the guide's r=16, alpha=32). None clears a key
    (max_steps: train by epochs). The result still goes through the recipe loader."""
    for st in data.get("stages", []):
        for key, value in (edits.get(st.get("type")) or {}).items():
            if key not in EDITABLE.get(st["type"], ()):
                raise ValueError(f"{st['type']}.{key} is not an editable field")
            if key == "lora_r":
                if st.get("lora") is not None and value is not None:
                    st["lora"] = dict(st["lora"], r=value, alpha=2 * value)
            else:
                st[key] = value
    return data


def decision_record(d: Decision, facts: Facts) -> dict:
    """The recipe's `decision` section: what was decided, the rules that fired and the evidence in brief."""
    import datetime as _dt
    ev: dict = {"gap": facts.gap or "unknown", "budget_usd": facts.budget_usd, "gpu": facts.gpu,
                "gpu_count": facts.gpu_count}
    if facts.corpus is not None:
        ev["corpus_clean_mb"] = round(facts.corpus.clean_mb, 2)
    if facts.pairs is not None:
        ev["pairs_valid"] = facts.pairs.valid
    if facts.shape is not None:
        ev["model_params"] = float(f"{facts.shape.total_params:.4g}")
    r = (facts.probe or {}).get("retrieval")
    if r:  # the retrieval measurement in brief (the examples stay in `plan --json`)
        ev["retrieval"] = {k: v for k, v in r.items() if k != "examples"}
    if d.guide_budget:
        ev["guide_budget"] = d.guide_budget
    return {"path": d.path, "method": d.method, "reasons": list(d.reasons), "warnings": list(d.warnings),
            "evidence": {k: v for k, v in ev.items() if v is not None},
            "decided_by": f"tune-wizard {_dt.date.today().isoformat()}"}
