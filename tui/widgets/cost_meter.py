"""Cost so far and projected total against the budget, with a warning when the projection passes it."""
from __future__ import annotations

import time

from rich.text import Text
from textual.widgets import Static

from tui.headless import fmt_duration
from tui.runstate import RunState, money


def cost_text(st: RunState, now: float | None = None) -> Text:
    now = now or time.time()
    t = Text("cost\n", style="bold")
    spent, proj = st.cost_so_far(now), st.projected_cost(now)
    t.append(f" {st.hardware} at ${st.price_per_hour:g}/h, {fmt_duration(st.elapsed_s(now))} so far\n")
    t.append(" so far ")
    t.append(money(spent), style="bold")
    t.append("  projected ")
    t.append(money(proj), style="bold")
    t.append("\n")
    if st.budget_usd is not None:
        t.append(f" budget {money(st.budget_usd)}: ")
        if st.over_budget(now):
            t.append("⚠ OVER: the projection passes it", style="bold red")
        else:
            t.append("within budget", style="green")
    else:
        t.append(" no budget set", style="dim")
    return t


class CostMeter(Static):
    def show(self, st: RunState, now: float | None = None) -> None:
        self.update(cost_text(st, now))
