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
        pr = facts.probe
        L.append(f"probe     perplexity domain/reference {pr.get('ppl_ratio', 0):.2f}, fertility domain/reference "
                 f"{pr.get('fertility_ratio', 0):.2f}; {pr.get('summary', '')}")
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
    if d.estimate is not None and d.estimate.stages:
        L.append("  time from: " + "; ".join(f"{s.stage}: {s.throughput_source}" for s in d.estimate.stages
                                             if s.throughput_source))
    L.append("")
    L.append(f"recipe written: {written}  (run it: tune-wizard --recipe {written})" if written else
             "no recipe written (add -o recipe.yaml)" if d.path != "rag_only" else
             "nothing to train: index the corpus for retrieval (RAG)")
    return "\n".join(L)
