"""The plain-text report of `tune-wizard plan`: evidence, decision with its reasons, estimates table."""
from __future__ import annotations


def _gib(x: float) -> str:
    return f"{x:,.1f}"


def _hours(h: float) -> str:
    return f"{h * 60:,.1f} min" if h < 1 else f"{h:,.1f} h"


def render(facts, d, written: str | None) -> str:
    L = []
    c, p, s = facts.corpus, facts.pairs, facts.shape
    L.append("== evidence")
    n = s.total_params
    size = f"{n / 1e9:,.2f}B" if n >= 1e9 else f"{n / 1e6:,.1f}M"
    L.append(f"model     {facts.model or '-'}: {size} parameters (shape from {s.source})")
    if c and c.declared:
        L.append(f"corpus    declared {c.clean_mb:,.0f} MB (taken as clean), ~{c.tokens / 1e6:,.0f}M tokens ({c.tokens_method})")
    elif c:
        L.append(f"corpus    {c.files} files, {c.total_bytes / 1e6:,.1f} MB, {c.documents:,} documents in {c.seconds:.1f} s")
        L.append(f"          exact duplicates {c.exact_dup_rate:.1%} (all documents), near duplicates "
                 f"{c.near_dup_rate:.1%} (MinHash/LSH on all {c.near_dup_sample:,} documents)")
        L.append(f"          clean {c.clean_mb:,.1f} MB, ~{c.tokens / 1e6:,.1f}M tokens ({c.tokens_method})")
        for line in c.skipped[:10] + c.bad_row_examples:
            L.append(f"          ! {line}")
        if c.bad_rows:
            L.append(f"          ! {c.bad_rows} bad .jsonl rows skipped")
    else:
        L.append("corpus    none")
    if p and p.declared:
        L.append(f"pairs     declared {p.valid:,} ({p.tokens_method})")
    elif p:
        fm = ", ".join(f"{k} {v:,}" for k, v in p.formats.items()) or "none"
        L.append(f"pairs     {p.valid:,} valid ({fm}), {p.invalid:,} invalid, {p.duplicates:,} duplicates")
        if p.prompt_tokens:
            L.append(f"          tokens p50/p95: prompt {p.prompt_tokens['p50']}/{p.prompt_tokens['p95']}, "
                     f"response {p.response_tokens['p50']}/{p.response_tokens['p95']} ({p.tokens_method})")
        for r in p.invalid_rows[:5]:
            L.append(f"          ! {p.path}:{r['line']}: {r['reason']}")
    else:
        L.append("pairs     none")
    if facts.probe:
        L.extend(probe_lines(facts.probe))
    L.append(f"gap       {facts.gap or ('probe: ' + facts.probe['suggested_gap'] if facts.probe and facts.probe.get('suggested_gap') else 'unknown')}")
    card = d.card
    price = facts.price_per_hour if facts.price_per_hour is not None else card.price_per_hour
    L.append(f"hardware  {facts.gpu_count} x {card.name} ({card.memory_gib:.0f} GiB, {card.peak_bf16_tflops:.0f} TFLOP/s bf16) "
             f"at ${price:.2f}/GPU-hour ({'--price' if facts.price_per_hour is not None else card.price_source})")
    L.append(f"budget    {'$' + format(facts.budget_usd, ',.0f') if facts.budget_usd is not None else 'none given'}")
    L.append("")
    L.append(f"== decision: {d.path}{' / ' + d.method if d.method else ''}")
    L.extend(f"  - {r}" for r in d.reasons)
    L.extend(f"  ! {w}" for w in d.warnings)
    L.extend(f"  + suggestion: {x}" for x in getattr(d, "suggestions", []))
    g = getattr(d, "guide_budget", None)
    if g:
        L.append(f"  guide's budget table: {g['row']} ~${g['low_usd']:,}-{g['high_usd']:,}; our estimate "
                 f"${g['ours_usd']:,.2f} ({g['verdict']})")
        L.append(f"    why they differ: {g['why_different']}")
    L.append("")
    e0 = d.estimate or (d.estimates[-1] if d.estimates else None)
    scale = (f" ({e0.nodes} node{'s' if e0.nodes > 1 else ''} x {e0.processes_per_node}, assumed "
             f"{e0.scaling_efficiency:.0%} scaling efficiency)" if e0 and facts.gpu_count > 1 else "")
    L.append(f"== estimates on {facts.gpu_count} x {card.name}{scale}")
    L.append(f"  {'path':<9} {'method':<7} {'time':>10} {'cost':>10} {'peak GiB/GPU':>13}  notes")
    for e in d.estimates:
        mark = "*" if (e.path, e.method) == (d.path, d.method) else " "
        notes = []
        if not e.fits:
            notes.append("does not fit")
        if any(s.checkpointing for s in e.stages):
            notes.append("checkpointing")
        if any(s.sharded for s in e.stages):
            notes.append(f"sharded: {e.strategy}{' + optimizer offload' if e.offload_optimizer else ''}")
        L.append(f"{mark} {e.path:<9} {e.method or '-':<7} {_hours(e.hours):>10} {'$' + format(e.usd, ',.2f'):>10} "
                 f"{_gib(e.peak_vram_gib):>13}  {', '.join(notes)}")
    sources = [f"{s.stage}: {s.throughput_source}" for s in (d.estimate.stages if d.estimate else [])
               if s.throughput_source]
    if sources:  # none for a plan that trains nothing
        L.append("  time from: " + "; ".join(sources))
    L.append("")
    L.append(f"recipe written: {written}  (run it: tune-wizard --recipe {written})" if written else
             "no recipe written (add -o recipe.yaml)" if d.path != "rag_only" else
             "nothing to train: index the corpus for retrieval (RAG)")
    return "\n".join(L)


def probe_lines(pr: dict) -> list[str]:
    """The gap probe's numbers, each with what it means and the rule it feeds (training/plan/probe.py,
    training/plan/retrieval.py, training/plan/decide.py hold the thresholds)."""
    from training.plan.decide import RETRIEVAL_CLOSES
    from training.plan.probe import FERTILITY_RATIO, PPL_RATIO
    L = []
    if pr.get("ppl_ratio"):
        L.append(f"probe     perplexity domain/reference {pr['ppl_ratio']:.2f}: how surprised the base model is by "
                 f"your text relative to general prose (1 = as familiar; > {PPL_RATIO:g} suggests a knowledge gap)")
        L.append(f"          fertility domain/reference {pr.get('fertility_ratio', 0):.2f}: tokens per word on your "
                 f"text relative to general prose (> {FERTILITY_RATIO:g}: the vocabulary splits your terms; CPT "
                 f"helps, RAG does not)")
        L.append(f"          {pr.get('summary', '')}")
    r = pr.get("retrieval") or {}
    if r.get("error"):
        L.append(f"retrieval not measured: {r['error']}")
    elif r.get("answer_loss_base") is not None:
        gc = r.get("gap_closed")
        L.append(f"retrieval answer loss {r['answer_loss_base']:.2f} (question alone) -> "
                 f"{r['answer_loss_with_retrieval']:.2f} (top {r.get('passages_k')} {r.get('retriever', 'BM25')} "
                 f"passages) vs {r.get('answer_loss_oracle', float('nan')):.2f} (answer itself in the prompt), "
                 f"nats/token on {r.get('pairs_scored')} held-out pairs")
        L.append(f"          gap closed {gc:.0%}: the share of the drop to the answer-in-prompt floor that retrieval "
                 f"achieves (>= {RETRIEVAL_CLOSES:.0%}: RAG (+ SFT for format), not CPT; below: CPT is justified)"
                 if r.get("gap_measurable") else
                 f"          gap closed {gc:.0%}, but the answer in the prompt lowers the loss by only "
                 f"{r.get('gap_nats', 0):.2f} nats/token: the model already knows the answers or cannot use a "
                 f"context, so this does not decide")
        for ex in (r.get("examples") or [])[:2]:
            L.append(f"          e.g. Q: {ex['question'][:70]!r} loss {ex['loss_base']:.2f} -> {ex['loss_with_retrieval']:.2f}"
                     f"; top passage: {ex['top_passage'][:70]!r}")
    return L
