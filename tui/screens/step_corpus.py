"""Step 3: the domain text. A scan in a thread worker measures size, duplicates and clean MB."""
from __future__ import annotations

import re
import shlex

from textual import work
from textual.app import ComposeResult
from textual.widgets import Input, Label, ProgressBar

from tui import engine
from tui.screens.wizard import WizardStep


def _n(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


class CorpusStep(WizardStep):
    index = 2

    def body(self) -> ComposeResult:
        yield Label("Domain text: files, folders or globs (.txt .md .jsonl .parquet), space separated; "
                    "empty if you have none")
        yield Input(" ".join(self.state.answers["corpus"]), id="corpus", placeholder="e.g. ~/data/docs/ *.md")
        yield ProgressBar(id="progress", show_eta=False)

    def on_mount(self) -> None:
        self.query_one("#corpus", Input).focus()
        self.rescan()

    def specs(self) -> list[str]:
        try:
            return shlex.split(self.query_one("#corpus", Input).value)
        except ValueError:
            return self.query_one("#corpus", Input).value.split()

    def rescan(self) -> None:
        specs = self.specs()
        if not specs:
            self.state.facts["corpus"] = {"clean_mb": 0.0, "tokens": 0.0, "documents": 0}
            self.evidence(engine.volume_line(0.0) + " (no domain text given)")
            return
        self.state.facts.pop("corpus", None)  # stale until this scan answers: Next waits for it
        self.evidence(f"scanning {' '.join(specs)} ...")
        self.scan(specs)

    @work(thread=True, exclusive=True)
    def scan(self, specs: list[str]) -> None:
        bar = self.query_one(ProgressBar)

        def progress(done: int, total: int) -> None:
            self.app.call_from_thread(bar.update, total=total, progress=done)

        try:
            facts = engine.scan_corpus(specs, progress, self.state.answers.get("model"))
        except Exception as e:  # bad path, unreadable file: one line, the user fixes the field
            self.app.call_from_thread(self.scanned, specs, None, str(e))
            return
        self.app.call_from_thread(self.scanned, specs, facts, None)

    def scanned(self, specs: list[str], facts: dict | None, problem: str | None) -> None:
        if specs != self.specs():
            return  # the field changed meanwhile; its own scan follows
        if facts is None:
            self.state.facts.pop("corpus", None)
            self.evidence(f"[red]{problem}[/]")
            return
        self.state.facts["corpus"] = facts
        source = re.sub(r"^tokenizer \S+", "tokenizer", facts["tokens_source"])  # not this machine's path
        self.evidence(engine.volume_line(facts["clean_mb"]),
                      f"{_n(facts['files'], 'file')}, {facts['bytes'] / 1e6:,.1f} MB, {_n(facts['documents'], 'document')}, "
                      f"{facts['dup_rate']:.1%} exact duplicates"
                      + (f", {facts['near_dup_rate']:.1%} near" if facts.get("near_dup_rate") is not None else "")
                      + f", ~{facts['tokens'] / 1e6:,.2f}M tokens "
                      f"({source})"
                      + (f"; {len(facts['skipped'])} skipped: {facts['skipped'][0]}" if facts["skipped"] else ""))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if self.state.answers["corpus"] == self.specs() and "corpus" in self.state.facts:
            self.action_next()
        else:
            self.state.answers["corpus"] = self.specs()
            self.rescan()

    def save(self) -> str | None:
        specs = self.specs()
        if specs != self.state.answers["corpus"] or "corpus" not in self.state.facts:
            self.state.answers["corpus"] = specs
            self.rescan()
            return "scanning the new paths; press Next again when the evidence shows"
        return None
