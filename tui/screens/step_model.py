"""Step 1: which base model, and what should it learn to know or do."""
from __future__ import annotations

import os

from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Button, Input, Label

from tui import engine
from tui.screens.wizard import WizardStep


def describe_model(model: str) -> str:
    if not model:
        return "no model yet (Ctrl+T: the demo's tiny model, corpus and pairs)"
    if model == "builtin:tiny-llama":
        return "builtin:tiny-llama: the demo's 1.4M-parameter Llama, built here, trains on a CPU in minutes"
    if os.path.isdir(os.path.expanduser(model)):
        has_cfg = os.path.isfile(os.path.join(os.path.expanduser(model), "config.json"))
        return f"local folder {model}: " + ("config.json found" if has_cfg else "no config.json: is it a model?")
    if model.startswith(("/", ".", "~")):
        return f"[red]no folder {model} on this machine[/]: give a local model folder or a Hugging Face id"
    if any(c.isspace() for c in model):
        return f"[red]'{model}' has a space[/]: a Hugging Face id has none (e.g. meta-llama/Llama-3.1-8B)"
    return f"Hugging Face id {model}: needs the offline cache or network on the box that trains"


class ModelStep(WizardStep):
    index = 0
    BINDINGS = [Binding("ctrl+t", "demo", "try the demo data", priority=True)]

    def body(self) -> ComposeResult:
        a = self.state.answers
        yield Label("Base model (Hugging Face id, local folder, or builtin:tiny-llama)")
        yield Input(a["model"], placeholder="e.g. meta-llama/Llama-3.1-8B or builtin:tiny-llama", id="model")
        yield Label("Goal: what should the tuned model know or do?")
        yield Input(a["goal"], placeholder="e.g. answer questions about our internal API, in our format", id="goal")
        yield Button("Use demo data ^T (tiny model, stdlib docs corpus, Q&A pairs)", id="demo")

    def on_mount(self) -> None:
        self.query_one("#model", Input).focus()
        self.show_model(self.state.answers["model"])

    def show_model(self, model: str) -> None:
        self.evidence(describe_model(model.strip()),
                      "next: measure the gap, the text and the pairs; the guide's tables make the plan")

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "model":
            self.show_model(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "model":
            self.query_one("#goal", Input).focus()
        else:
            self.action_next()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "demo":
            self.action_demo()
        # next/back: WizardStep's handler runs as well (Textual calls each class's handler in the MRO)

    def action_demo(self) -> None:
        self.state.use_demo()
        self.query_one("#model", Input).value = self.state.answers["model"]
        self.query_one("#goal", Input).value = self.state.answers["goal"]
        self.query_one("#next").focus()
        self.note("demo data filled in")

    def save(self) -> str | None:
        model = self.query_one("#model", Input).value.strip()
        if not model:
            return "give a model (or press Ctrl+T for the demo data)"
        if any(c.isspace() for c in model) and not os.path.isdir(os.path.expanduser(model)):
            return f"model step: '{model}' has a space and is no folder here; a Hugging Face id has none"
        problem, note = engine.check_model(model)
        if problem:
            return problem
        if note:
            self.note(note)
        self.state.answers.update(model=model, goal=self.query_one("#goal", Input).value.strip())
        return None
