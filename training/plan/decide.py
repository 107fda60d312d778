"""The decision: the guide's tables applied to measured facts. Pure (no torch, no I/O but the price table).

Public API (what `tune-wizard plan` and the wizard call; every facts object has `to_dict()`):

    from training.plan.scan import scan_corpus, CorpusFacts       # scan_corpus(paths, tokenizer_dir=None, progress=None)
                                                              # progress(done_bytes, total_bytes, current_file)
                                                              # CorpusFacts.from_declared(bytes) for --corpus-size
    from training.plan.pairs_scan import scan_pairs, PairsFacts   # scan_pairs(path, tokenizer_dir=None)
    from training.plan.probe import run_probe, GapFacts            # run_probe(model, prompts, corpus_paths, ...) runs
                                                              # `python -m training.plan.probe` in a subprocess
    from training.plan.shapes import resolve_shape                 # resolve_shape("meta-llama/Llama-3.1-8B", params=None)
    from training.plan.estimate import estimate_all, Workload, load_cards, find_card
    from training.plan.decide import Facts, decide, recipe_from_decision

    facts = Facts(model="meta-llama/Llama-3.1-8B", shape=resolve_shape(...), corpus=..., pairs=...,
                  gap="knowledge", budget_usd=300, gpu="H100", gpu_count=1)
    d = decide(facts)            # Decision: path, method, reasons, warnings, estimate, alternatives
    d.to_dict()                  # JSON-ready; d.estimates holds every candidate (PlanEstimate.to_dict())
    recipe = recipe_from_decision(d, facts, corpus_paths=[...], pairs_path="...", name="my-plan")

Overrides: set `facts.override_path` / `facts.override_method` to force a plan; decide() keeps the rules'
reasons and adds a warning for each rule the override breaks. Units: 1 MB = 1e6 bytes, 1 GB = 1e9 bytes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from training.plan.estimate import Card, PlanEstimate, Workload, estimate_all, find_card, find_plan, load_cards
from training.plan.pairs_scan import PairsFacts
from training.plan.scan import CorpusFacts
from training.plan.shapes import ModelShape

RAG_MAX_MB = 10          # < 10 MB: RAG only
CPT_MIN_MB = 500         # 500 MB - 10 GB: CPT -> SFT
CPT_REQUIRED_MB = 10_000  # > 10 GB: CPT required, SFT shapes output
PAIRS_MIN = 500          # < 500 pairs: RAG or few-shot, SFT would overfit
PAIRS_FULL = 5000        # 500 - 5,000: LoRA/QLoRA; > 5,000: full fine-tune or longer QLoRA
CHEAP_BUDGET = 100       # under ~$100: RAG + QLoRA SFT, revisit CPT later
PATHS = ("rag_only", "sft", "cpt_sft", "cpt")


@dataclass
class Facts:
    model: str | None = None
    shape: ModelShape | None = None
    corpus: CorpusFacts | None = None
    pairs: PairsFacts | None = None
    gap: str | None = None           # knowledge | behavior | none | None (unknown)
    probe: dict | None = None        # GapFacts.to_dict() when the probe ran
    budget_usd: float | None = None
    gpu: str = "H100"
    gpu_count: int = 1
    price_per_hour: float | None = None  # overrides the table
    liger: bool = False
    override_path: str | None = None
    override_method: str | None = None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = self.shape.to_dict() if self.shape else None
        return d

    def workload(self) -> Workload:
        c, p = self.corpus, self.pairs
        return Workload(corpus_tokens=c.tokens if c else 0.0, pairs=p.valid if p else 0,
                        pair_tokens_mean=p.mean_tokens if p else 0.0, pair_max_len=(p.max_len if p and p.max_len else 1024),
                        pair_pad_efficiency=p.pad_efficiency if p else 0.6, liger=self.liger)


@dataclass
class Decision:
    path: str
    method: str | None
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    estimate: PlanEstimate | None = None
    estimates: list[PlanEstimate] = field(default_factory=list)
    card: Card | None = None

    @property
    def alternatives(self) -> list[PlanEstimate]:
        return [e for e in self.estimates if (e.path, e.method) != (self.path, self.method)]

    def to_dict(self) -> dict:
        return {"path": self.path, "method": self.method, "reasons": self.reasons, "warnings": self.warnings,
                "estimate": self.estimate.to_dict() if self.estimate else None,
                "alternatives": [e.to_dict() for e in self.alternatives]}


NEAR_DUP_DEDUP = 0.01  # scanned near-duplicate share from which a written cpt stage drops near-copies too

def _usd(x: float) -> str:
    return f"${x:,.0f}" if x >= 10 else f"${x:,.2f}"


def _sft_method(n_pairs: int, est: list[PlanEstimate], path: str, budget: float | None) -> tuple[str, str]:
    """The SFT method from the pairs table, then the card: (method, reason)."""
    lora, qlora, full = (find_plan(est, path, k) for k in ("lora", "qlora", "full"))
    if n_pairs > PAIRS_FULL:
        if full and full.fits and (budget is None or full.usd <= budget):
            return "full", f"{n_pairs:,} pairs > {PAIRS_FULL:,}: full fine-tuning (fits the card: {full.peak_vram_gib:.0f} GiB)"
        return "qlora", f"{n_pairs:,} pairs > {PAIRS_FULL:,}: QLoRA with longer training (full fine-tuning " \
                        f"{'does not fit the card' if full and not full.fits else 'is over budget'})"
    if lora and lora.fits:
        return "lora", f"{n_pairs:,} pairs (500-5,000): LoRA, bf16 base fits the card ({lora.peak_vram_gib:.0f} GiB)"
    return "qlora", f"{n_pairs:,} pairs (500-5,000): QLoRA, a bf16 LoRA base does not fit the card"


def decide(facts: Facts, cards: list[Card] | None = None) -> Decision:
    card = find_card(facts.gpu, cards or load_cards())
    if card is None and facts.gpu.strip().lower() != "cpu":
        raise ValueError(f"unknown GPU '{facts.gpu}'; see recipes/gpu_prices.yaml")
    mb = facts.corpus.clean_mb if facts.corpus else 0.0
    n = facts.pairs.valid if facts.pairs else 0
    gap, budget = facts.gap, facts.budget_usd
    if gap is None and facts.probe and facts.probe.get("suggested_gap"):
        gap = facts.probe["suggested_gap"]
    # no card (gpu "cpu", the wizard's demo on this machine): the rules alone, no estimate
    est = estimate_all(facts.shape, facts.workload(), card, facts.gpu_count, facts.price_per_hour) \
        if facts.shape and card else []
    d = Decision(path="rag_only", method=None, estimates=est, card=card)
    R, W = d.reasons.append, d.warnings.append

    # data volume (clean text)
    if mb < RAG_MAX_MB:
        R(f"{mb:,.1f} MB clean text: < 10 MB -> RAG only for the text (too little for a CPT signal)")
    elif mb < CPT_MIN_MB:
        R(f"{mb:,.1f} MB clean text: 10-500 MB -> RAG + fine-tuning")
    elif mb <= CPT_REQUIRED_MB:
        R(f"{mb:,.0f} MB clean text: 500 MB - 10 GB -> CPT on the corpus, then SFT on the task format")
    else:
        R(f"{mb / 1000:,.1f} GB clean text: > 10 GB -> CPT required; SFT shapes the output")
    # labeled pairs
    if n < PAIRS_MIN:
        R(f"{n:,} labeled pairs: < 500 -> RAG or few-shot prompting (SFT would overfit)")
    elif n <= PAIRS_FULL:
        R(f"{n:,} labeled pairs: 500-5,000 -> LoRA / QLoRA fine-tuning")
    else:
        R(f"{n:,} labeled pairs: > 5,000 -> full fine-tuning or QLoRA with longer training")
    # the gap
    if gap == "knowledge":
        R("knowledge gap (the base model confuses domain rules or invents terms) -> CPT first")
    elif gap == "behavior":
        R("behaviour gap (right facts, wrong format) -> fine-tuning only")
    elif gap == "none":
        R("no gap: the base model already answers well -> no training; RAG for facts that change")
    else:
        W("no gap evidence (no gap probe, no verdict): the data volume alone decides")
    if facts.gap is None and gap is not None:
        d.reasons[-1] += f" (suggested by the gap probe: {facts.probe.get('summary', '')}; give --gap to decide yourself)"

    want_cpt = mb >= CPT_MIN_MB and gap in (None, "knowledge")
    want_sft = n >= PAIRS_MIN and gap != "none"
    if gap == "behavior" and mb >= CPT_MIN_MB:
        W(f"conflicting evidence: {mb:,.0f} MB is enough for CPT but the gap is behaviour; taking the cheaper "
          "safe path (fine-tuning only)")
    if gap == "knowledge" and mb < CPT_MIN_MB:
        W(f"knowledge gap but only {mb:,.1f} MB of clean text (< 500 MB for CPT): RAG has to carry the facts")
    if 0 < n < PAIRS_MIN:
        W(f"fewer than 500 pairs ({n}): too few for SFT; put examples in the prompt (few-shot)")
    if mb > CPT_REQUIRED_MB and n < PAIRS_MIN and want_cpt:
        W("no SFT after CPT: the model will continue text but not follow instructions; add >= 500 pairs")
    d.path = {(True, True): "cpt_sft", (True, False): "cpt", (False, True): "sft"}.get((want_cpt, want_sft), "rag_only")
    if d.path in ("sft", "cpt_sft") and est:
        d.method, why = _sft_method(n, est, d.path, budget)
        R(why)
    elif d.path in ("sft", "cpt_sft"):
        d.method = "lora" if n <= PAIRS_FULL else "qlora"

    # budget: the guide's anchor first, then the estimate
    plan = find_plan(est, d.path, d.method)
    if budget is not None and "cpt" in d.path and budget < CHEAP_BUDGET:
        fits = f" (the estimate, {_usd(plan.usd)}, would fit)" if plan and plan.usd <= budget else ""
        d.path, d.method = ("sft", "qlora") if want_sft else ("rag_only", None)
        W(f"budget {_usd(budget)} is under ${CHEAP_BUDGET}: the guide says RAG + QLoRA SFT now, revisit CPT "
          f"later{fits}; taking the cheaper safe path: {d.path}{'/' + d.method if d.method else ''}")
    elif budget is not None and plan and plan.usd > budget:
        W(f"plan over budget: {d.path}{'/' + d.method if d.method else ''} is estimated at {_usd(plan.usd)} "
          f"> budget {_usd(budget)}")
        order = [("cpt_sft", "lora"), ("cpt_sft", "qlora"), ("sft", "lora"), ("sft", "qlora"), ("cpt", None)]
        allowed = [(p, m) for p, m in order if (p != "cpt" or not want_sft) and ("cpt" not in p or want_cpt)
                   and ("sft" not in p or want_sft)] + [("rag_only", None)]
        for p, m in allowed:
            alt = find_plan(est, p, m)
            if alt and alt.fits and alt.usd <= budget:
                d.path, d.method = p, m
                R(f"cheaper plan within budget: {p}{'/' + m if m else ''} at {_usd(alt.usd)}")
                break

    # user override
    if facts.override_path:
        d.path, d.method = facts.override_path, facts.override_method
        if d.path in ("sft", "cpt_sft") and not d.method:
            d.method = "lora"
        if d.path == "cpt":
            d.method = None
        R(f"user override: {d.path}{'/' + d.method if d.method else ''}")
        if "cpt" in d.path and mb < CPT_MIN_MB:
            W(f"less than 500 MB of clean text for CPT ({mb:,.1f} MB): the guide expects little domain lift")
        if "sft" in d.path and n < PAIRS_MIN:
            W(f"fewer than 500 pairs for SFT ({n}): expect overfitting")

    d.estimate = find_plan(est, d.path, d.method)
    if d.estimate:
        e = d.estimate
        if budget is not None and e.usd > budget:
            W(f"plan over budget: estimated {_usd(e.usd)} > budget {_usd(budget)}")
        if not e.fits:
            need = max((s.min_gpus or 0 for s in e.stages), default=0)
            W(f"model too large for the card: peak {e.peak_vram_gib:,.0f} GiB > {card.memory_gib:.0f} GiB per "
              f"{card.name}; use more GPUs (sharding{f': FSDP fits on {need}' if need else ''}) or QLoRA")
        for s in e.stages:  # the strategy over the GPUs and why (training/plan/sharding.py)
            if s.sharded or e.gpu_count > 1:
                R(f"{s.stage}: {s.strategy}{' with optimizer offload' if s.offload_optimizer else ''}: "
                  f"{s.strategy_reason}")
        if e.gpu_count > 1:
            R(f"time scales with {e.gpu_count} GPUs ({e.nodes} node{'s' if e.nodes > 1 else ''} x "
              f"{e.processes_per_node}) at an assumed {e.scaling_efficiency:.0%} scaling efficiency (90% within a "
              f"node, x0.85 across nodes, x0.95 sharded, x0.70 optimizer offload; stated, not measured); "
              f"cost = time x {e.gpu_count} GPUs x price")
    return d


def recipe_from_decision(d: Decision, facts: Facts, corpus_paths: list[str] | None, pairs_path: str | None,
                         name: str = "plan", output_dir: str = "runs", check_paths: bool = True):
    """A validated Recipe for the decided path (training.recipe.RecipeError if something is off).
    rag_only has nothing to train: ValueError."""
    from training.recipe import validate_data

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
                    "learning_rate": 2e-5 if d.method == "full" else 2e-4, "epochs": 3.0,
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
    return {"path": d.path, "method": d.method, "reasons": list(d.reasons), "warnings": list(d.warnings),
            "evidence": {k: v for k, v in ev.items() if v is not None},
            "decided_by": f"tune-wizard {_dt.date.today().isoformat()}"}
