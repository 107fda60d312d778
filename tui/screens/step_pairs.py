"""Step 4: the labeled pairs. A scan counts valid rows per format, invalid rows with lines, duplicates."""
from __future__ import annotations

from textual import work
from textual.app import ComposeResult
from textual.widgets import Input, Label

from tui import engine
from tui.screens.wizard import WizardStep


class PairsStep(WizardStep):
    index = 3

    def body(self) -> ComposeResult:
        yield Label("Labeled pairs: a .jsonl file (messages, prompt/completion or instruction/output); "
                    "empty if you have none")
        yield Input(self.state.answers["pairs"], id="pairs", placeholder="e.g. ~/data/pairs.jsonl")

    def on_mount(self) -> None:
        self.query_one("#pairs", Input).focus()
        self.rescan()

    def spec(self) -> str:
        return self.query_one("#pairs", Input).value.strip()

    def rescan(self) -> None:
        spec = self.spec()
        if not spec:
            self.state.facts["pairs"] = {"valid": 0, "tokens_mean": 0.0}
            self.evidence(engine.pairs_line(0) + " (no pairs given)")
            return
        self.state.facts.pop("pairs", None)  # stale until this scan answers: Next waits for it
        self.evidence(f"reading {spec} ...")
        self.scan(spec)

    @work(thread=True, exclusive=True)
    def scan(self, spec: str) -> None:
        try:
            facts, problem = engine.scan_pairs(spec, self.state.answers.get("model")), None
        except Exception as e:  # missing file, not UTF-8: one line
            facts, problem = None, str(e)
        self.app.call_from_thread(self.scanned, spec, facts, problem)

    def scanned(self, spec: str, facts: dict | None, problem: str | None) -> None:
        if spec != self.spec():
            return
        if facts is None:
            self.state.facts.pop("pairs", None)
            self.evidence(f"[red]{problem}[/]")
            return
        self.state.facts["pairs"] = facts
        formats = ", ".join(f"{n:,} {k}" for k, n in facts["formats"].items()) or "none"
        bad = "".join(f"; line {ln}: {why}" for ln, why in facts["invalid_shown"][:2])
        self.evidence(engine.pairs_line(facts["valid"]),
                      f"formats: {formats}; {facts['invalid']} invalid{bad}; {facts['duplicates']} duplicates; "
                      f"~{facts['tokens_mean']:.0f} tokens a pair (p95 {facts['tokens_p95']:.0f})")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_next()

    def save(self) -> str | None:
        spec = self.spec()
        if spec != self.state.answers["pairs"] or "pairs" not in self.state.facts:
            self.state.answers["pairs"] = spec
            self.rescan()
            return "reading the new file; press Next again when the evidence shows"
        return None
