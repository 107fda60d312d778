"""The plainer sections of report.md: the decision, throughput and memory, data hashes, outputs."""
from __future__ import annotations

from pathlib import Path

import yaml


def _num(x, digits: int = 4) -> str:
    if isinstance(x, int):
        return f"{x:,}"
    return "-" if not isinstance(x, float) else (f"{x:,.{digits}g}" if abs(x) < 1e6 else f"{x:,.0f}")


def decision_lines(recipe: dict) -> list[str]:
    """The recipe's `decision` section (path, method, reasons, warnings, ...) or a plain note of its absence."""
    d = recipe.get("decision")
    if not d:
        return ["The recipe carries no decision section: it was written by hand or by a tool that records no "
                "reasons, so this report cannot say why this plan was chosen. The plan itself: "
                + " -> ".join(f"{s.get('name') or s.get('type')} ({s.get('type')}"
                              f"{'/' + s.get('method', 'lora') if s.get('type') == 'sft' else ''})"
                              for s in recipe.get("stages", [])) + "."]
    if not isinstance(d, dict):
        return [str(d)]
    out = []
    if d.get("path"):
        out.append(f"Plan: **{d['path']}**" + (f", method **{d['method']}**" if d.get("method") else "") + ".")
    for key, title in (("reasons", "Rules that fired"), ("warnings", "Warnings")):
        items = d.get(key) or []
        if items:
            out += ["", f"{title}:", ""] + [f"- {x}" for x in items]
    rest = {k: v for k, v in d.items() if k not in ("path", "method", "reasons", "warnings")}
    if rest:
        out += ["", "```yaml", yaml.safe_dump(rest, sort_keys=False, allow_unicode=True).rstrip(), "```"]
    return out


def throughput_lines(events: list[dict]) -> list[str]:
    """Per stage: steps, tokens trained, tokens/s over the training loop, stage wall time, peak memory."""
    stages: dict[str, dict] = {}
    for ev in events:
        kind, name = ev.get("event"), ev.get("stage")
        if kind == "stage_start":
            stages.setdefault(name, {})["start"] = ev
        elif kind == "step":
            stages.setdefault(name, {})["last_step"] = ev
        elif kind == "stage_end":
            stages.setdefault(name, {})["end"] = ev
    if not stages:
        return ["No stage ran."]
    lines = ["| stage | steps | tokens trained | tokens/s | stage time | peak memory |", "|---|---|---|---|---|---|"]
    kinds = set()
    for name, s in stages.items():
        st, end = s.get("last_step") or {}, s.get("end") or {}
        tokens, elapsed = st.get("tokens"), st.get("elapsed_s")
        tps = tokens / elapsed if isinstance(tokens, (int, float)) and elapsed else None
        mem = end.get("peak_mem_gib")
        if end.get("peak_mem_kind"):
            kinds.add(end["peak_mem_kind"])
        rt = end.get("runtime_s")
        lines.append(f"| {name} | {end.get('steps', st.get('step', '-'))} | {_num(tokens)} | {_num(tps)} | "
                     f"{'-' if rt is None else f'{rt / 60:.1f} min'} | "
                     f"{'-' if mem is None else f'{mem:.2f} GiB'} |")
    lines.append("")
    lines.append("Tokens/s counts the non-padding input tokens over the training loop (data preparation, "
                 "evaluation and saving are in the stage time).")
    if "cuda_max_allocated" in kinds:
        lines.append("Peak memory is torch.cuda.max_memory_allocated during the stage (GPU 0).")
    if "rss_peak" in kinds:
        lines.append("Peak memory is the worker process's peak resident set size so far (no GPU: it trained on the CPU).")
    return lines


def data_lines(recipe: dict) -> list[str]:
    files = ((recipe.get("resolved") or {}).get("files")) or {}
    if not files:
        return ["No data hashes recorded (the recipe was not resolved by the runner)."]
    lines = ["| file | bytes | sha256 |", "|---|---|---|"]
    for f, info in files.items():
        info = info or {}
        lines.append(f"| `{f}` | {info.get('bytes', '-'):,} | `{info.get('sha256', '-')}` |"
                     if isinstance(info.get("bytes"), int) else f"| `{f}` | - | `{info.get('sha256', '-')}` |")
    hub = (recipe.get("resolved") or {}).get("datasets") or {}
    if hub:  # hf: dataset ids: what they resolved to (the snapshot file is hashed above)
        lines += ["", "| dataset id | revision | rows | snapshot |", "|---|---|---|---|"]
        lines += [f"| `{k}` | `{v.get('revision')}` | {v.get('rows', '-'):,} | `{v.get('file')}` |" for k, v in hub.items()]
    vers = (recipe.get("resolved") or {}).get("versions") or {}
    if vers:
        lines += ["", "Packages: " + ", ".join(f"{k} {v}" for k, v in vers.items() if v) + "."]
    return lines


def outputs_lines(run: Path, events: list[dict]) -> list[str]:
    ends = [e for e in events if e.get("event") == "stage_end"]
    if not ends:
        return ["No stage finished, so there is nothing to export."]
    lines = [f"- {e['stage']}: `{e.get('output')}` ({e.get('kind', 'model')})" for e in ends]
    last = ends[-1]
    if last.get("kind") == "adapter":
        lines += ["", f"The final result is a LoRA adapter. A standalone model: `tune-wizard export {run} --merge`; "
                      f"the adapter with loading instructions: `tune-wizard export {run}`."]
    else:
        lines += ["", f"The final result is a full model: `tune-wizard export {run}` copies it out."]
    return lines

def preflight_lines(recipe: dict, events: list[dict]) -> list[str]:
    """report.md: the preflight's measured numbers (estimate.preflight) beside what the run did, per stage."""
    import statistics as st
    pf = (recipe.get("estimate") or {}).get("preflight")
    if not pf:
        return []
    L = [f"Measured by the preflight on {pf.get('device')} ({pf.get('date')}, {pf.get('steps')} steps per stage) "
         f"against this run:", "",
         "| stage | | tokens/s | s/step | peak GiB | stage time (s) |", "|---|---|---|---|---|---|"]

    def f(x, d=2):
        return "-" if x is None else f"{x:,.{d}f}"
    for s in pf.get("stages", []):
        name = s.get("stage")
        steps = [e for e in events if e.get("event") == "step" and e.get("stage") == name and e.get("step", 0) > 1]
        end = next((e for e in events if e.get("event") == "stage_end" and e.get("stage") == name), {})
        tps = st.median([e["tokens_per_s"] for e in steps if e.get("tokens_per_s")]) if steps else None
        sps = st.median([e["step_time_s"] for e in steps if e.get("step_time_s")]) if steps else None
        L.append(f"| {name} | preflight | {f(s.get('tokens_per_s'), 0)} | {f(s.get('s_per_step'), 3)} | "
                 f"{f(s.get('peak_mem_gib'))} | {f(s.get('projected_s'), 1)} |")
        L.append(f"| {name} | this run | {f(tps, 0)} | {f(sps, 3)} | {f(end.get('peak_mem_gib'))} | "
                 f"{f(end.get('runtime_s'), 1)} |")
    return L + [""]
