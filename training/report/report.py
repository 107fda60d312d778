"""report.md: did the run work, what it cost, and how to reproduce it. Written by the worker at the end of
a run and again by `tune-wizard report RUN_DIR`; it reads only the run folder (recipe.yaml, events.jsonl).

Sections: outcome (the before/after table of training/runtime/evaluate.py's `measure` events, the forgetting check,
lm-eval, probe answers side by side), what was decided and why (when the recipe carries a `decision`),
loss curves (PNG, training/report/plots.py), throughput and peak memory, time and cost against the estimate
made before the run, data hashes, outputs, and the recipe itself.
"""
from __future__ import annotations

import datetime as _dt
import math
from pathlib import Path

import yaml

from training.events import read_events
from training.report.sections import data_lines, decision_lines, outputs_lines, throughput_lines

PLOTS = "plots"


def md_cell(v, limit: int = 400) -> str:
    """A value made safe for one markdown table cell."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt_num(v)
    s = " ".join(str(v).split()) if "\n" not in str(v) else str(v).strip().replace("\n", "<br>")
    s = s[:limit] + ("..." if len(s) > limit else "")
    return s.replace("|", "\\|") or "(empty)"


def fmt_num(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    if isinstance(x, int):
        return f"{x:,}"
    return f"{x:,.{digits}g}" if abs(x) < 1e6 else f"{x:,.0f}"


def fmt_pct(x: float | None) -> str:
    return "-" if x is None else f"{x:+.1f}%"


def spent_hours(events: list[dict], finish: dict | None) -> float | None:
    start = next((e for e in events if e.get("event") == "run_start"), None)
    if finish and isinstance(finish.get("runtime_s"), (int, float)):
        return finish["runtime_s"] / 3600
    if start and events:
        return (events[-1]["t"] - start["t"]) / 3600
    return None


def cost_lines(recipe: dict, hours: float | None) -> list[str]:
    """Time and money spent (hours x price per GPU-hour x GPU count) against the estimate made before the run."""
    hw = recipe.get("hardware") or {}
    price, count = float(hw.get("price_per_gpu_hour") or 0.0), int(hw.get("gpu_count") or 1)
    est = recipe.get("estimate") or (recipe.get("decision") or {}).get("estimate")
    spent_usd = hours * price * count if hours is not None else None
    est_hours = est.get("hours") if est else None
    est_usd = (est.get("usd") if est.get("usd") is not None else
               (est_hours * price * count if est_hours is not None else None)) if est else None
    lines = ["| | spent | estimated before the run | difference |", "|---|---|---|---|"]

    def row(name, a, b, fmt):
        diff = f"{(a - b) / b * 100:+.0f}%" if (a is not None and b) else "-"
        lines.append(f"| {name} | {fmt(a)} | {fmt(b) if est else 'no estimate'} | {diff} |")

    row("wall time (hours)", hours, est_hours, lambda x: "-" if x is None else f"{x:.4f}")
    row("GPU-hours", None if hours is None else hours * count, None if est_hours is None else est_hours * count,
        lambda x: "-" if x is None else f"{x:.4f}")
    row("cost (USD)", spent_usd, est_usd, lambda x: "-" if x is None else f"${x:,.4f}")
    src = ", ".join(x for x in (hw.get("price_source"), hw.get("price_date")) if x)
    lines.append("")
    lines.append(f"Cost = hours x ${price:g} per GPU-hour x {count} GPU{'s' if count != 1 else ''} "
                 f"({hw.get('gpu', 'auto')}{'; price: ' + src if src else ''}).")
    if est and est.get("source"):
        lines.append(f"The estimate came from: {est['source']}.")
    if not est:
        lines.append("The recipe carries no estimate (`estimate:` with hours and usd), so there is nothing to compare with.")
    budget = hw.get("budget_usd")
    if budget is not None and spent_usd is not None:
        lines.append(f"Budget: ${budget:g}; {'within budget' if spent_usd <= budget else 'OVER BUDGET'} "
                     f"({spent_usd / budget * 100:.0f}% used)." if budget else f"Budget: $0; spent ${spent_usd:.4f}.")
    return lines


def measures(events: list[dict]) -> dict[str, dict[str, dict]]:
    """{stage: {"before": event, "after": event}} from the `measure` events (the latest of each wins)."""
    out: dict[str, dict[str, dict]] = {}
    for ev in events:
        if ev.get("event") == "measure":
            out.setdefault(ev["stage"], {})[ev.get("when", "after")] = ev
    return out


METRICS = (("domain_ppl", "domain perplexity (held-out corpus)", "domain_tokens", "tokens"),
           ("general_ppl", "general-text perplexity", "general_tokens", "tokens"),
           ("heldout_pairs_loss", "held-out pairs loss (per completion token)", "heldout_pairs", "pairs"))


def before_after_table(meas: dict[str, dict[str, dict]]) -> list[str]:
    lines = ["| stage | measure | before | after | change |", "|---|---|---|---|---|"]
    for stage, m in meas.items():
        b, a = m.get("before", {}), m.get("after", {})
        for key, label, nkey, unit in METRICS:
            if b.get(key) is None and a.get(key) is None:
                continue
            n = a.get(nkey) or b.get(nkey)
            bv, av = b.get(key), a.get(key)
            ch = (av - bv) / bv * 100 if isinstance(av, (int, float)) and isinstance(bv, (int, float)) and bv else None
            lines.append(f"| {md_cell(stage)} | {label}{f' ({n} {unit})' if n else ''} | {fmt_num(bv)} | "
                         f"{fmt_num(av)} | {fmt_pct(ch)} |")
        for when, ev in (("before", b), ("after", a)):
            if ev.get("error"):
                lines.append(f"| {md_cell(stage)} | measurement {when} failed | {md_cell(ev['error'], 200)} | | |")
    return lines


def verdicts(meas: dict[str, dict[str, dict]]) -> list[str]:
    out = []
    for stage, m in meas.items():
        b, a = m.get("before", {}), m.get("after", {})
        if a.get("type") == "cpt":
            db, da = b.get("domain_ppl"), a.get("domain_ppl")
            if db is not None and da is not None:
                word = "fell" if da < db else "did NOT fall"
                out.append(f"- **{stage}: domain perplexity {word}** from {fmt_num(db)} to {fmt_num(da)} "
                           f"({fmt_pct(a.get('domain_ppl_change_pct'))}) on text the stage never trained on.")
            else:
                out.append(f"- {stage}: no held-out domain text was scored (eval_fraction is 0 or the corpus "
                           f"gave no held-out document).")
            ch, thr = a.get("general_ppl_change_pct"), a.get("forgetting_threshold_pct")
            if ch is not None:
                if a.get("forgetting_warning"):
                    out.append(f"- **Forgetting check: WARNING.** General-text perplexity rose {fmt_pct(ch)} after "
                               f"{stage}, above the {thr:g}% threshold (eval.forgetting_threshold_pct): the model may be "
                               f"losing general ability. Lower the learning rate, train fewer steps, or mix general "
                               f"text into the corpus.")
                else:
                    out.append(f"- Forgetting check: general-text perplexity changed {fmt_pct(ch)} after {stage} "
                               f"(a warning fires above +{thr:g}%): no sign of forgetting.")
        elif a.get("type") == "sft":
            lb, la = b.get("heldout_pairs_loss"), a.get("heldout_pairs_loss")
            if lb is not None and la is not None:
                out.append(f"- {stage}: held-out pairs loss {'fell' if la < lb else 'did NOT fall'} from "
                           f"{fmt_num(lb)} to {fmt_num(la)}.")
            ch = a.get("general_ppl_change_pct")
            if ch is not None:
                out.append(f"- {stage}: general-text perplexity changed {fmt_pct(ch)}.")
    return out


def lm_eval_lines(meas: dict[str, dict[str, dict]]) -> list[str]:
    found = [(s, w, ev["lm_eval"]) for s, m in meas.items() for w, ev in m.items() if ev.get("lm_eval")]
    statuses = {r.get("status") for _, _, r in found}
    if not found or statuses == {"not_installed"}:
        return ["- lm-eval-harness: **not run**: the `lm-eval` package is not installed, so no benchmark tasks "
                "(hellaswag, mmlu, ...) were scored; the forgetting check rests on the general-text perplexity alone."]
    if statuses == {"no_tasks"}:
        return ["- lm-eval-harness: installed, but the recipe lists no `eval.lm_eval_tasks`, so none were run."]
    out = []
    for stage, when, r in found:
        if r.get("status") == "ok":
            scores = "; ".join(f"{t}: " + ", ".join(f"{k} {fmt_num(v)}" for k, v in m.items() if "stderr" not in k)
                               for t, m in r.get("results", {}).items())
            out.append(f"- lm-eval-harness, {stage} {when} (limit {r.get('limit')} per task): {scores}")
        elif r.get("status") == "failed":
            out.append(f"- lm-eval-harness, {stage} {when}: **failed** (task data not available offline?): "
                       f"{r.get('message')}")
    return out


def answers_table(stage: str, m: dict[str, dict]) -> list[str]:
    def shown(x: dict) -> str:
        if x.get("answer"):
            return x["answer"]
        n = x.get("new_tokens")
        return "(no text: it stopped at once)" if n == 0 else f"(no text: {n} tokens of whitespace)" if n else ""

    before = {x["prompt"]: shown(x) for x in m.get("before", {}).get("answers") or []}
    after = {x["prompt"]: shown(x) for x in m.get("after", {}).get("answers") or []}
    prompts = list(dict.fromkeys(list(before) + list(after)))
    if not prompts:
        return []
    lines = [f"### Probe answers, {stage}: before and after", "", "| prompt | before | after |", "|---|---|---|"]
    lines += [f"| {md_cell(p)} | {md_cell(before.get(p))} | {md_cell(after.get(p))} |" for p in prompts]
    return lines + [""]


def build_report(run: Path, pending_finish: dict | None = None) -> str:
    from training.report.plots import plot_losses

    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8")) or {}
    events = read_events(run / "events.jsonl")
    finish = next((e for e in reversed(events) if e.get("event") == "finished"), None) or pending_finish
    start = next((e for e in events if e.get("event") == "run_start"), {})
    hours = spent_hours(events, finish)
    meas = measures(events)
    status = finish.get("status") if finish else "unfinished (running, or ended without a finished event)"
    when = _dt.datetime.fromtimestamp(start["t"]).strftime("%Y-%m-%d %H:%M") if start.get("t") else "-"
    out = [f"# Run report: {recipe.get('name', run.name)}", "",
           f"Run `{run.name}` started {when} on {start.get('device', '-')}; status **{status}**; "
           f"{(hours or 0) * 60:.1f} minutes in all.", ""]
    errs = [e for e in events if e.get("event") == "error"]
    out += [f"> error in {e.get('stage')}: {e.get('message')} ({e.get('hint')})" for e in errs] + ([""] if errs else [])
    warns = [e for e in events if e.get("event") == "warning" and e.get("kind") in ("no_chat_template", "system_folded")]
    out += [f"> note ({e.get('stage')}): {e.get('message')}" for e in warns] + ([""] if warns else [])
    out += ["## Did it work?", ""]
    if meas:
        out += before_after_table(meas) + [""] + verdicts(meas) + lm_eval_lines(meas) + [""]
        for stage, m in meas.items():
            out += answers_table(stage, m)
    else:
        out += ["No before/after measurements in this run (eval.enabled is false, or the run ended first).", ""]
    out += ["## What was decided and why", ""] + decision_lines(recipe) + [""]
    from training.report.evidence import evidence_section
    out += evidence_section(events, recipe)
    out += ["## Loss curves", ""]
    plots = plot_losses(events, run / PLOTS)
    out += [f"![loss curves of {s}]({p.relative_to(run).as_posix()})" for s, p in plots.items()] or ["No losses were logged."]
    out += ["", "## Throughput and memory", ""] + throughput_lines(events) + [""]
    out += ["## Time and cost", ""] + cost_lines(recipe, hours) + [""]
    from training.report.sections import preflight_lines
    out += preflight_lines(recipe, events)
    out += ["## Data", ""] + data_lines(recipe) + [""]
    out += ["## Outputs", ""] + outputs_lines(run, events) + [""]
    from training.report.export import serve_lines
    out += ["## Serve it", ""] + serve_lines(run) + [""]
    rec_text = (run / "recipe.yaml").read_text(encoding="utf-8")
    out += ["## Recipe", "", "The resolved recipe (`recipe.yaml` in this folder) replays this run:", "",
            "```yaml", rec_text.rstrip(), "```", ""]
    return "\n".join(out)


def write_report(run: str | Path, pending_finish: dict | None = None) -> Path:
    """Write RUN/report.md (and RUN/plots/*.png); returns the path of report.md."""
    run = Path(run)
    text = build_report(run, pending_finish)
    path = run / "report.md"
    tmp = run / ".report.md.tmp"
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path
