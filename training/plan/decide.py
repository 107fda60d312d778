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
    from training.plan.decide import Facts, decide
    from training.plan.to_recipe import recipe_from_decision

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
from dataclasses import replace as _replace

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
SFT_EPOCHS = 3           # the guide's SFT starting point (DESIGN.md: hyperparameter rules)
LONG_QLORA_EPOCHS = 5    # > 5,000 pairs without full fine-tuning: "QLoRA with longer training". How much longer
                         # is our assumption (the guide gives no number): 5 epochs instead of 3, +67% steps

REPLAY_FRACTION = 0.05  # suggested replay share for CPT: 5% of the tokens, the share Ibrahim et al. 2024
                        # ("Simple and Scalable Strategies to Continually Pre-train LLMs") found enough against
                        # forgetting under a weak distribution shift; they needed ~25% for a strong one

# Does retrieval close the gap? (training/plan/retrieval.py measures it.) The guide: "Choose continued
# pre-training if your base model has no grounding in your domain and retrieval alone won't bridge the gap",
# and its FAQ: "skip CPT and use RAG if your domain facts are retrievable at inference time". "Most of the gap"
# is our reading of those sentences, an assumption, not a number from the guide:
RETRIEVAL_CLOSES = 0.5   # gap_closed >= 0.5: retrieval closes most of the gap -> RAG (+ SFT for format), not CPT
MIN_GAP_NATS = 0.1       # answer loss with the question alone minus with the answer itself in the prompt, in
                         # nats/token: below it the model already predicts the answers; no gap to close

# The guide's "Budget thresholds (USD, 2026 Lambda Labs pricing)" table, quoted row by row
# (reference/000_0fa6357b6d73ae02.txt, lines 75-82). params: the row's model size; size band: 7B rows match
# 3-15B models, 70B rows 30-120B; tokens: the row's workload in tokens where it names one (10 GB at 4 bytes
# per token, our guess; the guide names no tokenizer).
GUIDE_BUDGET_SOURCE = "reference guide, 'Budget thresholds (USD, 2026 Lambda Labs pricing)'"
GUIDE_BUDGET = (
    {"row": "QLoRA SFT, 7B, 2,000 examples", "path": "sft", "params": 7e9, "low_usd": 5, "high_usd": 15,
     "pairs": 2000},
    {"row": "QLoRA SFT, 70B, 5,000 examples", "path": "sft", "params": 70e9, "low_usd": 80, "high_usd": 150,
     "pairs": 5000},
    {"row": "CPT, 7B, 10 GB corpus", "path": "cpt", "params": 7e9, "low_usd": 150, "high_usd": 300,
     "tokens": 10e9 / 4},
    {"row": "CPT, 70B, 50 GB corpus", "path": "cpt", "params": 70e9, "low_usd": 1500, "high_usd": 4000,
     "tokens": 50e9 / 4},
    {"row": "CPT + SFT, 7B, full pipeline", "path": "cpt_sft", "params": 7e9, "low_usd": 200, "high_usd": 400},
)


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
    guide_budget: dict | None = None  # the guide's budget row beside our estimate (guide_budget_row())
    suggestions: list[str] = field(default_factory=list)  # not rules: what the user may add (replay share)

    @property
    def alternatives(self) -> list[PlanEstimate]:
        return [e for e in self.estimates if (e.path, e.method) != (self.path, self.method)]

    def to_dict(self) -> dict:
        return {"path": self.path, "method": self.method, "reasons": self.reasons, "warnings": self.warnings,
                "estimate": self.estimate.to_dict() if self.estimate else None,
                "alternatives": [e.to_dict() for e in self.alternatives], "guide_budget": self.guide_budget,
                "suggestions": self.suggestions}


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
    if n > PAIRS_FULL and est:
        # "QLoRA with longer training": a QLoRA recipe then trains LONG_QLORA_EPOCHS, so its estimates must too
        longer = estimate_all(facts.shape, _replace(facts.workload(), sft_epochs=LONG_QLORA_EPOCHS), card,
                              facts.gpu_count, facts.price_per_hour)
        est = [find_plan(longer, e.path, e.method) if e.method == "qlora" else e for e in est]
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
    elif not retrieval_measured(facts.probe):
        W("gap unknown (no verdict, no usable probe: see --probe, --gap): data volume decides")
    if facts.gap is None and gap is not None:
        d.reasons[-1] += f" (suggested by the gap probe: {facts.probe.get('summary', '')}; give --gap to decide yourself)"
    retrievable, gap = _retrieval_rule(facts, gap, R)

    want_cpt = mb >= CPT_MIN_MB and gap in (None, "knowledge") and not retrievable
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

    if d.method == "qlora" and n > PAIRS_FULL:
        R(f"{n:,} pairs > {PAIRS_FULL:,} with QLoRA: {LONG_QLORA_EPOCHS} epochs instead of {SFT_EPOCHS} "
          f"(the guide's 'longer training'; how much longer is our assumption)")
    if "cpt" in d.path:
        d.suggestions.append(
            f"replay {REPLAY_FRACTION:.0%} general text during CPT (stages.cpt.replay: {{data: [your general text], "
            f"fraction: {REPLAY_FRACTION}}}): the share Ibrahim et al. 2024 found enough against forgetting for a "
            f"modest domain shift (~25% for a strong one); the forgetting watch shows general perplexity at "
            f"every eval step either way")
    d.estimate = find_plan(est, d.path, d.method)
    d.guide_budget = guide_budget_row(d, facts)
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


def retrieval_measured(probe: dict | None) -> bool:
    r = (probe or {}).get("retrieval") or {}
    return bool(r.get("gap_measurable")) and not r.get("error")


def _retrieval_rule(facts: Facts, gap: str | None, R) -> tuple[bool, str | None]:
    """(retrieval closes the gap, the gap after the measurement). The rule in RETRIEVAL_CLOSES's comment."""
    r = (facts.probe or {}).get("retrieval") or {}
    if r.get("gap_closed") is None or r.get("error"):
        return False, gap
    if not r.get("gap_measurable", True):
        if r.get("gap_nats") is not None:
            R(f"retrieval probe: the answer loss drops only {r['gap_nats']:.2f} nats/token even with the answer "
              f"itself in the prompt (< {MIN_GAP_NATS}): the base model already knows the answers or cannot use a "
              f"context; the retrieval measurement does not decide")
        return False, gap
    gc, k = r["gap_closed"], r.get("passages_k", 0)
    losses = (f"answer loss {r['answer_loss_base']:.2f} -> {r['answer_loss_with_retrieval']:.2f} nats/token with "
              f"the top {k} passages")
    if gc >= RETRIEVAL_CLOSES:
        R(f"retrieval closes {gc:.0%} of the gap (>= {RETRIEVAL_CLOSES:.0%}; {losses}): the facts are retrievable "
          f"-> RAG (+ SFT for format), not CPT")
        return True, gap
    R(f"retrieval closes only {gc:.0%} of the gap (< {RETRIEVAL_CLOSES:.0%}; {losses}): retrieval alone won't "
      f"bridge it -> CPT is justified")
    if gap is None:
        d_gap = "knowledge"
        R("knowledge gap (measured: the answers are not in what retrieval finds) -> CPT first "
          "(give --gap to decide yourself)")
        return False, d_gap
    return False, gap


def _size_band(params: float) -> float | None:
    if 3e9 <= params <= 15e9:
        return 7e9
    if 30e9 <= params <= 120e9:
        return 70e9
    return None


def guide_budget_row(d: Decision, facts: Facts) -> dict | None:
    """The guide's budget row for this plan (same path, same size band) beside our estimate, and why they
    differ; None when no row matches or there is no estimate."""
    e = d.estimate
    if e is None or facts.shape is None:
        return None
    band = _size_band(facts.shape.total_params)
    row = next((r for r in GUIDE_BUDGET if r["path"] == d.path and r["params"] == band), None)
    if row is None:
        return None
    price, n = e.price_per_hour, e.gpu_count
    hours_lo, hours_hi = row["low_usd"] / max(price * n, 1e-9), row["high_usd"] / max(price * n, 1e-9)
    why = [f"ours: {_usd(e.usd)} = {e.hours:,.1f} h x {n} x {e.gpu} at ${price:.2f}/GPU-hour"]
    why.append(f"the guide's range buys {hours_lo:,.1f}-{hours_hi:,.1f} h of that hardware at that price "
               f"(the guide priced Lambda Labs GPUs in 2026 and names no GPU)")
    toks = sum(s.tokens for s in e.stages)
    tps = sum(s.tokens for s in e.stages) / max(e.hours * 3600, 1e-9)
    ours_w = f"{toks / 1e9:,.2f}B tokens" if toks >= 1e8 else f"{toks / 1e6:,.1f}M tokens"
    if row.get("tokens"):
        why.append(f"workload: ours {ours_w}, the row's ~{row['tokens'] / 1e9:,.1f}B tokens (bytes/4)")
        card = d.card
        if card is not None:  # what utilisation the guide's high end would need for the row's own workload
            flops = 6 * row["params"] * row["tokens"]
            need = flops / (hours_hi * 3600 * n * card.peak_bf16_tflops * 1e12)
            why.append(f"the guide's high end would need {need:.0%} MFU for its own row on this hardware"
                       + (" (more than the card can do: the guide's range is not reachable here)" if need > 1 else ""))
    elif row.get("pairs"):
        have = facts.pairs.valid if facts.pairs else 0
        why.append(f"workload: ours {have:,} pairs ({ours_w}, {d.method or '-'}), the row's {row['pairs']:,} "
                   f"examples with QLoRA")
    else:
        why.append(f"workload: ours {ours_w}; the row names no corpus size")
    why.append(f"our throughput {tps:,.0f} tokens/s from the estimator's MFU model (training/plan/estimate.py)")
    ratio = e.usd / ((row["low_usd"] + row["high_usd"]) / 2)
    verdict = ("within the guide's range" if row["low_usd"] <= e.usd <= row["high_usd"] else
               f"{ratio:.2g}x the middle of the guide's range")
    return {"row": row["row"], "low_usd": row["low_usd"], "high_usd": row["high_usd"],
            "source": GUIDE_BUDGET_SOURCE, "ours_usd": round(e.usd, 2), "verdict": verdict,
            "why_different": "; ".join(why)}
