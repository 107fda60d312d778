"""report.md's evidence section: did retrieval close the gap (from the recipe's decision), the guide's budget
row beside the estimate, and the forgetting watch during CPT (replay share, general perplexity per eval step,
warnings). Each number comes with what it means and the rule it feeds."""
from __future__ import annotations


def retrieval_lines(recipe: dict) -> list[str]:
    ev = ((recipe.get("decision") or {}).get("evidence")) or {}
    r = ev.get("retrieval")
    if not r:
        return ["Retrieval was not measured for this plan (run `tune-wizard plan --probe` with a corpus and pairs): "
                "whether RAG alone would have closed the gap is unknown."]
    if r.get("error"):
        return [f"Retrieval was not measured: {r['error']}."]
    gc = r.get("gap_closed")
    out = ["| answer loss (nats/token) | question alone | with the top "
           f"{r.get('passages_k')} retrieved passages | with the answer itself in the prompt |",
           "|---|---|---|---|",
           f"| {r.get('pairs_scored')} sampled pairs | {r.get('answer_loss_base'):.3f} | "
           f"{r.get('answer_loss_with_retrieval'):.3f} | {r.get('answer_loss_oracle', float('nan')):.3f} |", ""]
    if r.get("gap_measurable"):
        out.append(f"Retrieval closes **{gc:.0%}** of the gap between the question alone and the answer in the prompt. "
                   f"The rule (an assumption read from the guide's \"retrieval alone won't bridge the gap\"): 50% or "
                   f"more -> RAG (+ SFT for format), not CPT; less -> CPT is justified.")
    else:
        out.append("The answer in the prompt barely lowers the loss (the base model already knows the answers, or "
                   "cannot use a context): the measurement did not decide.")
    return out


def guide_budget_lines(recipe: dict) -> list[str]:
    g = ((recipe.get("decision") or {}).get("evidence") or {}).get("guide_budget")
    if not g:
        return []
    return ["", f"The guide's budget table ({g.get('source')}): **{g['row']}** ~${g['low_usd']:,}-{g['high_usd']:,}; "
                f"our estimate ${g.get('ours_usd', 0):,.2f} ({g.get('verdict')}). Why they differ: {g.get('why_different')}."]


def forgetting_lines(events: list[dict], recipe: dict) -> list[str]:
    starts = {e["stage"]: e for e in events if e.get("event") == "stage_start" and e.get("type") == "cpt"}
    if not starts:
        return ["No CPT stage: nothing to forget."]
    out = []
    threshold = (recipe.get("eval") or {}).get("forgetting_threshold_pct", 10.0)
    for name, st in starts.items():
        d = st.get("data") or {}
        if d.get("replay_blocks"):
            out.append(f"- {name}: replay mixed {d['replay_tokens']:,} tokens of general text into training "
                       f"({d.get('replay_fraction', 0):.1%} of the tokens; each replay block seen up to "
                       f"{d.get('replay_repeats')}x).")
        else:
            out.append(f"- {name}: no replay (stages.{name}.replay mixes general text in against forgetting).")
        evals = [e for e in events if e.get("event") == "eval" and e.get("stage") == name
                 and isinstance(e.get("general_perplexity"), (int, float))]
        if evals:
            steps = ", ".join(f"step {e['step']}: {e['general_perplexity']:.4g}"
                              + (f" ({e['general_perplexity_change_pct']:+.1f}%)"
                                 if isinstance(e.get("general_perplexity_change_pct"), (int, float)) else "")
                              for e in evals)
            out.append(f"- {name}: general-text perplexity at each eval step: {steps}. A rise past "
                       f"{threshold:g}% (eval.forgetting_threshold_pct) means the model is losing general ability.")
        for w in (e for e in events if e.get("event") == "forgetting_warning" and e.get("stage") == name):
            out.append(f"- **{name}, step {w.get('step')}**: {w.get('message')}")
    for w in (e for e in events if e.get("event") == "warning" and e.get("kind") == "replay_is_general_text"):
        out.append(f"- warning: {w.get('message')}")
    return out


def evidence_section(events: list[dict], recipe: dict) -> list[str]:
    return (["## Evidence: retrieval, budget, forgetting", "", "### Does retrieval close the gap?", ""]
            + retrieval_lines(recipe) + guide_budget_lines(recipe)
            + ["", "### Forgetting during CPT", ""] + forgetting_lines(events, recipe) + [""])
