"""The wizard's spine: the answers kept across steps, the step order, and the base every step screen shares.

Each step is a Screen pushed on the previous one, so Back (Ctrl+B) pops it and the earlier screen
still holds what the user typed; Next (Ctrl+N, or Enter in the last field) saves the step's answers
into the shared WizardState and pushes the next step, built fresh from those answers.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Static

STEPS = [  # (title, "module:Class", short name for the breadcrumb)
    ("model & goal", "tui.screens.step_model:ModelStep", "model"),
    ("gap probe", "tui.screens.step_gap:GapStep", "gap"),
    ("domain text", "tui.screens.step_corpus:CorpusStep", "text"),
    ("labeled pairs", "tui.screens.step_pairs:PairsStep", "pairs"),
    ("budget & hardware", "tui.screens.step_budget:BudgetStep", "budget"),
    ("recommendation", "tui.screens.step_recommend:RecommendStep", "plan"),
    ("review & write", "tui.screens.step_review:ReviewStep", "review"),
]


@dataclass
class WizardState:
    answers: dict = field(default_factory=lambda: {"model": "", "goal": "", "gap": None, "corpus": [],
                                                   "pairs": "", "budget": None, "gpu": "cpu", "gpu_count": 1,
                                                   "price": 0.0, "output_dir": "runs"})
    facts: dict = field(default_factory=dict)  # corpus, pairs, probe
    plan: tuple[str, str | None] | None = None  # (path, method) the user goes with
    overrides: dict = field(default_factory=dict)
    recipe_path: str = "wizard.yaml"
    recommendation: dict | None = None  # engine.recommend(): path, method, reasons, warnings
    plans: list = field(default_factory=list)  # engine.estimate_plans()["plans"] for the chosen GPU

    def use_demo(self) -> None:
        from tui.engine import DEMO
        self.answers.update(model=DEMO["model"], corpus=[DEMO["corpus"]], pairs=DEMO["pairs"],
                            goal=self.answers.get("goal") or "answer questions about the Python standard library")


def start_wizard(app, state: WizardState | None = None) -> None:
    app.wizard = state or WizardState()
    app.push_screen(make_step(0))


def make_step(i: int) -> "WizardStep":
    mod, cls = STEPS[i][1].split(":")
    return getattr(importlib.import_module(mod), cls)()


class WizardStep(Screen):
    """Breadcrumb, the step's body, the evidence line(s), Back/Next. Subclasses fill body() and save()."""

    index = 0
    BINDINGS = [Binding("ctrl+n", "next", "next", priority=True), Binding("ctrl+b", "back", "back", priority=True)]

    @property
    def state(self) -> WizardState:
        return self.app.wizard

    def compose(self) -> ComposeResult:
        crumbs = " > ".join(f"[b reverse] {t} [/]" if i == self.index else short
                            for i, (t, _, short) in enumerate(STEPS))
        yield Static(f"{self.index + 1}/{len(STEPS)} {crumbs}", id="crumbs")
        with VerticalScroll(id="body"):
            yield from self.body()
        yield Static("", id="evidence")
        with Horizontal(id="nav"):
            yield Static("", id="nav-note")
            yield Button("Back ^B", id="back", disabled=self.index == 0)
            yield Button(self.next_label(), id="next", variant="primary")
        yield Footer()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        # Textual calls this as well as a step's own on_mount. A headless app (tests, the benchmark)
        # has nobody to see a blinking cursor, and a blink would make screenshots differ run to run.
        if self.app.is_headless:
            for field in self.query("Input, TextArea"):
                field.cursor_blink = False

    def next_label(self) -> str:
        return "Next ^N"

    def evidence(self, *lines: str) -> None:
        """Each line: the evidence and the rule it feeds, with the guide's threshold."""
        self.query_one("#evidence", Static).update("\n".join(lines))

    def note(self, text: str) -> None:
        self.query_one("#nav-note", Static).update(text)

    def save(self) -> str | None:
        """Store this step's answers in the state; return a problem to show instead of moving on."""
        return None

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "next":
            event.stop()
            self.action_next()
        elif event.button.id == "back":
            event.stop()
            self.action_back()

    def action_next(self) -> None:
        problem = self.save()
        if problem:
            self.note(f"[red]{problem}[/]")
            return
        self.note("")
        if self.index + 1 < len(STEPS):
            self.app.push_screen(make_step(self.index + 1))
        else:
            self.finish()

    def finish(self) -> None:
        pass

    def action_back(self) -> None:
        if self.index > 0:
            self.app.pop_screen()
