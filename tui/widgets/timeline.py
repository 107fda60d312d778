"""The stage timeline: cpt -> sft with each stage's state, step/total, tokens/s and ETA."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.headless import fmt_duration, fmt_num
from tui.runstate import RunState

MARK = {"pending": ("○", "dim"), "running": ("◐", "bold green"), "done": ("●", "green"),
        "stopped": ("◼", "yellow"), "failed": ("✗", "bold red")}


def timeline_text(st: RunState) -> Text:
    t = Text()
    for i, s in enumerate(st.stages):
        if i:
            t.append("  →  ", style="dim")
        mark, style = MARK.get(s.state, ("?", ""))
        total = s.total_steps or s.planned_steps
        what = s.type + (f"/{s.method}" if s.type == "sft" and s.method else "")
        t.append(f"{mark} {s.name} ", style=style)
        t.append(f"({what}) {s.step}/{total if total else '?'} {s.state}")
    cur = st.current()
    if cur is not None and cur.preparing:
        t.append("\n" + cur.preparing)
    elif cur is not None and cur.state == "running":
        total = cur.total_steps or cur.planned_steps or 0
        frac = cur.step / total if total else 0.0
        bar_w = 24
        fill = int(round(frac * bar_w))
        t.append("\n")
        t.append("█" * fill, style="green")
        t.append("░" * (bar_w - fill), style="dim")
        t.append(f" {frac:4.0%}  {fmt_num(cur.tokens_per_s)} tok/s  step {cur.step_time_s or 0:.2f}s  "
                 f"ETA stage {fmt_duration(cur.eta_s)}  run {fmt_duration(st.remaining_s())}")
    watched = [s for s in st.stages if s.general_ppl is not None]
    if watched:  # the forgetting watch (training/runtime/forgetting.py): general text at each eval step
        s = cur if cur is not None and cur.general_ppl is not None else watched[-1]
        ch = f" ({s.general_ppl_change_pct:+.1f}%)" if isinstance(s.general_ppl_change_pct, (int, float)) else ""
        t.append(f"\n{s.name}: general-text perplexity {s.general_ppl:,.4g}{ch} since the stage began")
        if s.forgetting:
            t.append("  forgetting: past the threshold", style="bold yellow")
    return t


class Timeline(Static):
    def show(self, st: RunState) -> None:
        self.update(timeline_text(st))
