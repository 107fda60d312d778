"""Step 6: the recommendation, the candidate plans side by side, and the user's overrides.

Enter on a row picks that plan; the fields below override method and hyperparameters; the table's
estimates are recomputed as they change.
"""
from __future__ import annotations

from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, Input, Label, Select, Static

from tui import engine
from tui.engine_plan import plan_label
from tui.screens.wizard import WizardStep

FIELDS = [("cpt", "learning_rate", "lr", float), ("cpt", "max_steps", "max steps", int),
          ("cpt", "epochs", "epochs", float), ("sft", "learning_rate", "lr", float),
          ("sft", "max_steps", "max steps", int), ("sft", "lora_r", "LoRA r", int)]


def _h(x) -> str:
    if x is None:
        return "-"
    if x < 1 / 60:
        return f"{x * 3600:.0f} s"
    return f"{x * 60:.0f} min" if x < 1 else f"{x:,.1f} h"


def _usd(x) -> str:
    return "-" if x is None else (f"${x:,.0f}" if x >= 100 else f"${x:,.2f}")


class RecommendStep(WizardStep):
    index = 5

    def body(self) -> ComposeResult:
        st = self.state
        self.invalid: dict[str, str] = {}  # field id -> problem; Next is blocked while any is here
        self.rec = st.recommendation = engine.recommend(st.answers, st.facts)
        if st.plan is None:
            st.plan = (self.rec["path"], self.rec["method"])
        if st.edits is None:
            st.edits = engine.default_edits(st.answers)
        yield Static(id="decision")
        yield DataTable(id="plans", cursor_type="row", zebra_stripes=True)
        with Horizontal(id="cpt-row", classes="ov-row"):
            yield Label("CPT  ", classes="stage")
            yield from self.fields("cpt")
        with Horizontal(id="sft-row", classes="ov-row"):
            yield Label("SFT  ", classes="stage")
            yield Select([(m, m) for m in ("lora", "qlora", "full")], value=st.plan[1] or "lora",
                         allow_blank=False, id="method")
            yield from self.fields("sft")

    def values(self) -> dict:
        st = self.state
        return engine.stage_values(st.answers, st.facts, st.plan, st.edits)

    def engine_values(self) -> dict:
        """The recipe's stage values as the engine sets them for the current plan (no edits), once per plan."""
        cache = self.__dict__.setdefault("_engine_values", {})
        st = self.state
        if st.plan not in cache:
            cache[st.plan] = engine.stage_values(st.answers, st.facts, st.plan, None)
        return cache[st.plan]

    def fields(self, which: str) -> ComposeResult:
        now = self.values()
        for stage, key, label, _ in FIELDS:
            if stage == which:
                v = (now.get(stage) or {}).get(key)
                yield Label(f" {label} ")
                yield Input("" if v is None else f"{v:g}", id=f"ov-{stage}-{key}", classes="ov",
                            disabled=stage not in now)

    def on_mount(self) -> None:
        self.refresh_table()
        # focus without scrolling to it: on a small terminal the body would scroll the recommendation itself,
        # the step's first line, out of sight
        self.query_one(DataTable).focus(scroll_visible=False)
        self.call_after_refresh(lambda: self.query_one("#body").scroll_home(animate=False))

    def show_decision(self) -> None:
        r = self.rec
        lines = [f"[b]recommended: {plan_label(r['path'], r['method'])}[/b]"]
        lines += [f"  because {x}" for x in r["reasons"]]
        lines += [f"  [yellow]⚠ {w}[/]" for w in r["warnings"]]
        lines += [f"  [dim]suggestion: {escape(x)}[/]" for x in r.get("suggestions") or []]
        g = r.get("guide_budget")
        if g:  # the guide's budget table beside our estimate, and why they differ
            lines.append(f"  guide's table: {g['row']} ~${g['low_usd']:,}-{g['high_usd']:,}; ours ${g['ours_usd']:,.2f} "
                         f"({g['verdict']}) [dim]{escape(g['why_different'])}[/]")
        self.query_one("#decision", Static).update("\n".join(lines))

    def refresh_fields(self) -> None:
        """After a new plan: the stages' values as the engine sets them for that plan, plus the user's edits."""
        now = self.values()
        for stage, key, _, _ in FIELDS:
            field = self.query_one(f"#ov-{stage}-{key}", Input)
            field.disabled = stage not in now
            if field.id not in self.invalid:
                v = (now.get(stage) or {}).get(key)
                with field.prevent(Input.Changed):
                    field.value = "" if v is None else f"{v:g}"

    def refresh_table(self) -> None:
        st = self.state
        self.show_decision()
        est = engine.estimate_plans(st.answers, st.facts, st.plan)
        self.plans = st.plans = est["plans"]
        others = [g for g in est["gpus"] if g != st.answers["gpu"]][:3]
        table = self.query_one(DataTable)
        if not table.columns:
            table.add_columns("", "plan", "time", "VRAM", f"$ {st.answers['gpu']}", *[f"$ {g}" for g in others])
        table.clear()
        row_of_choice = 0
        for i, p in enumerate(self.plans):
            chosen = (p["path"], p["method"]) == st.plan
            row_of_choice = i if chosen else row_of_choice
            over = st.answers.get("budget") is not None and p.get("usd") is not None and p["usd"] > st.answers["budget"]
            table.add_row("▶" if chosen else " ", p["label"], _h(p.get("hours")),
                          "-" if p.get("vram_gib") is None else f"{p['vram_gib']:.0f} GiB" +
                          (" ✗" if p.get("fits") is False else ""),
                          _usd(p.get("usd")) + (" ⚠" if over else ""),
                          *[_usd((p.get("usd_on") or {}).get(g)) for g in others])
        table.move_cursor(row=row_of_choice)
        chosen = next((p for p in self.plans if (p["path"], p["method"]) == st.plan), None)
        budget = st.answers.get("budget")
        line = f"your plan: {plan_label(*st.plan)}"
        if chosen and chosen.get("usd") is not None:
            line += f", {_h(chosen['hours'])}, {_usd(chosen['usd'])} on {st.answers['gpu']}"
            if budget is not None:
                line += f" vs budget {_usd(budget)}" + (": [red]over[/]" if chosen["usd"] > budget else ": within")
        self.evidence(line, est["note"] or "Enter on a row picks it; ✗ = does not fit the card; ⚠ = over budget")

    def pick(self, path: str, method: str | None) -> None:
        self.state.plan = (path, method)
        self.refresh_table()
        self.refresh_fields()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        p = self.plans[event.cursor_row]
        if p["method"]:
            with self.query_one("#method", Select).prevent(Select.Changed):
                self.query_one("#method", Select).value = p["method"]
        self.pick(p["path"], p["method"])

    def on_select_changed(self, event: Select.Changed) -> None:
        path, method = self.state.plan
        if path in ("sft", "cpt_sft") and event.value != method:
            self.pick(path, str(event.value))

    def on_input_changed(self, event: Input.Changed) -> None:
        for stage, key, label, kind in FIELDS:
            if event.input.id == f"ov-{stage}-{key}":
                try:
                    v = kind(event.value) if event.value.strip() else None
                except ValueError:
                    self.invalid[event.input.id] = f"{stage.upper()} {label}: '{event.value}' is not a number"
                    self.note(f"[red]{self.invalid[event.input.id]}[/]")
                    return
                self.invalid.pop(event.input.id, None)
                self.note("")
                edits = self.state.edits.setdefault(stage, {})
                if v == (self.engine_values().get(stage) or {}).get(key):
                    edits.pop(key, None)  # the engine's own value: no edit
                else:
                    edits[key] = v  # the estimates do not depend on these fields: the table stays

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_next()

    def save(self) -> str | None:
        if self.invalid:
            return "plan step: " + "; ".join(self.invalid.values()) + "; fix it to go on"
        if self.state.plan[0] == "rag_only":
            return "RAG only trains nothing: no recipe to write. Pick a training plan to go on"
        return None
