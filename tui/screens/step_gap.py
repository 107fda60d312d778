"""Step 2: the gap probe. The base model answers domain prompts (in a subprocess, when this build has
the probe); the user judges the answers: a knowledge gap or a behaviour gap."""
from __future__ import annotations

from rich.markup import escape
from textual import work
from textual.app import ComposeResult
from textual.widgets import Button, Label, RadioButton, RadioSet, Static, TextArea

from tui import engine
from tui.screens.wizard import WizardStep

VERDICTS = [("knowledge", "knowledge gap: confuses domain rules or invents terms"),
            ("behavior", "behaviour gap: right facts, wrong format or tone"),
            ("none", "no gap: the answers are fine")]


class GapStep(WizardStep):
    index = 1

    def body(self) -> ComposeResult:
        a = self.state.answers
        prompts = a.get("prompts") or (engine.DEMO_PROMPTS if a["model"] == engine.DEMO["model"] else [])
        yield Label("Domain prompts for the base model, one per line")
        yield TextArea("\n".join(prompts), id="prompts")
        yield Button("Run the probe", id="probe", disabled=not engine.gap_probe_available())
        yield Static("", id="answers")
        yield Label("Your verdict on its answers (none picked: unknown)")
        with RadioSet(id="verdict"):
            for key, text in VERDICTS:
                yield RadioButton(text, value=key == a["gap"], name=key)

    def on_mount(self) -> None:
        self.query_one("#prompts", TextArea).focus()  # type prompts first; no verdict before any answer
        if not engine.gap_probe_available():
            self.query_one("#answers", Static).update(
                "[dim]the automatic probe is not in this build; judge from your own tries of the model[/]")
        self.show(self.state.answers["gap"])

    def show(self, gap: str | None) -> None:
        if gap is None:  # nothing decided silently: no verdict and no measurement is "unknown"
            self.evidence("gap unknown: run the probe (with pairs: does retrieval close the gap?) or pick a verdict")
            return
        self.evidence(f"your verdict: {gap} -> {engine.GAP_RULES[gap]}")

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        self.show(event.pressed.name)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "probe":
            event.button.disabled = True
            self.query_one("#answers", Static).update("probing the base model (subprocess)...")
            self.probe()
        # next/back: WizardStep's handler runs as well (Textual calls each class's handler in the MRO)

    @work(thread=True, exclusive=True)
    def probe(self) -> None:
        a = self.state.answers
        try:
            res = engine.run_gap_probe(a["model"], self.prompts(), a.get("corpus") or [], pairs=a.get("pairs"))
            text = "\n".join(f"Q: {x.get('prompt')}\nA: {' '.join(str(x.get('answer')).split())[:150]}"
                             for x in res.get("answers", []))
            text += "\n" + "\n".join(escape(x) for x in engine.probe_explained(res))
        except Exception as e:  # the subprocess said why; show it, the user can still judge
            res, text = None, f"[red]probe failed: {e}[/]"
        self.app.call_from_thread(self.probed, res, text)

    def probed(self, res: dict | None, text: str) -> None:
        self.state.facts["probe"] = res
        self.query_one("#answers", Static).update(text)
        self.query_one("#probe", Button).disabled = False

    def prompts(self) -> list[str]:
        return [p.strip() for p in self.query_one("#prompts", TextArea).text.splitlines() if p.strip()]

    def save(self) -> str | None:
        pressed = self.query_one("#verdict", RadioSet).pressed_button
        self.state.answers.update(gap=pressed.name if pressed else None, prompts=self.prompts())
        return None
