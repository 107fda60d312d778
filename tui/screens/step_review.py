"""Step 7: review the recipe YAML and where it goes, write it (asking before overwriting), run it."""
from __future__ import annotations

from pathlib import Path

from rich.syntax import Syntax
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Button, Input, Label, Static

from tui import engine
from tui.screens.confirm import Confirm
from tui.screens.wizard import WizardStep


class ReviewStep(WizardStep):
    index = 6
    BINDINGS = [Binding("ctrl+s", "write_only", "write", priority=True),
                Binding("ctrl+r", "next", "write & run", priority=True),
                Binding("ctrl+e", "preflight", "preflight", priority=True, show=False)]

    def body(self) -> ComposeResult:
        with Horizontal(id="path-row"):
            yield Label("Write to ")
            yield Input(self.state.recipe_path, id="path")
            yield Button("Write ^S", id="write")
        yield Static(id="yaml")

    def next_label(self) -> str:
        return "Write & run ^R"

    def on_mount(self) -> None:
        if self.render_recipe():
            self.query_one("#path", Input).focus()  # Enter here must not launch a training run
        self.show_path()

    def render_recipe(self) -> bool:
        """Build the recipe through the engine and the recipe loader; show it, or every problem in it."""
        st = self.state
        try:
            self.text = engine.recipe_text(st.answers, st.facts, st.plan, st.edits, name=self.recipe_name())
        except Exception as e:  # RecipeError: every problem with its key; ValueError: nothing to train
            self.text = None
            lines = e.lines() if hasattr(e, "lines") else [str(e)]
            self.query_one("#yaml", Static).update(
                "[red]the recipe is not valid, nothing was written:[/]\n" + "\n".join(f"[red]- {x}[/]" for x in lines)
                + "\n[dim]go back (Ctrl+B) to the step that holds the value named above[/]")
            return False
        self.query_one("#yaml", Static).update(Syntax(self.text, "yaml", theme="ansi_dark", background_color="default",
                                                      word_wrap=True))
        return True

    def recipe_name(self) -> str:
        stem = Path(self.query_one("#path", Input).value.strip() or "wizard.yaml").stem
        name = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip("-._") or "wizard"
        return name[:64]

    def target(self) -> Path:
        return Path(self.query_one("#path", Input).value.strip() or "wizard.yaml").expanduser().resolve()

    def show_path(self) -> None:
        t = self.target()
        self.evidence(f"recipe -> {t}" + ("  [yellow](exists: you will be asked before it is overwritten)[/]"
                                          if t.exists() else ""),
                      f"runs go to {Path(self.state.answers.get('output_dir') or 'runs').resolve()}/"
                      f"{self.recipe_name()}-<time>; replay headless: tune-wizard --recipe {t.name}")

    def on_input_changed(self, event: Input.Changed) -> None:
        self.state.recipe_path = event.value
        self.show_path()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "write":
            self.action_write_only()
        # next/back: WizardStep's handler runs as well (Textual calls each class's handler in the MRO)

    def action_write_only(self) -> None:
        self.write(then_run=False)

    def save(self) -> str | None:
        return None if self.text else "review step: the recipe is not valid (problems above); nothing was written"

    def finish(self) -> None:
        self.write(then_run=True)

    def write(self, then_run: bool) -> None:
        if not self.render_recipe():  # validated again: the name follows the path field
            self.note("[red]not written: the recipe is not valid (problems above)[/]")
            return
        target = self.target()

        def go(yes: bool | None = True) -> None:
            if not yes:
                self.note("not written")
                return
            engine.write_recipe(target, self.text)
            self.note(f"[green]wrote {target}[/]")
            if then_run:
                self.note("starting the run...")
                self.launch(target)

        if target.exists():
            self.app.push_screen(Confirm(f"{target} exists. Overwrite it?", yes="overwrite", no="keep it"), go)
        else:
            go()

    def action_preflight(self) -> None:
        """Ctrl+E: measure this recipe on this machine (`tune-wizard preflight`, a subprocess) and show the
        measured numbers beside the estimate."""
        if self.text:
            self.note("preflight: training a few real steps of each stage...")
            self.preflight(self.text)

    @work(thread=True, exclusive=True, group="preflight")
    def preflight(self, text: str) -> None:
        import json
        import subprocess
        import sys
        import tempfile
        import yaml
        with tempfile.TemporaryDirectory(prefix="tw-review-") as d:
            path = Path(d) / "recipe.yaml"
            path.write_text(text, encoding="utf-8")
            p = subprocess.run([sys.executable, "-m", "tui.cli", "preflight", str(path), "--json"],
                               capture_output=True, text=True, stdin=subprocess.DEVNULL)
        est = (yaml.safe_load(text) or {}).get("estimate") or {}
        try:
            pr = json.loads(p.stdout)["projected"]
            msg = (f"measured: {pr['hours']:.3f} h, ${pr['usd']:.2f}, peak {pr['peak_mem_gib']:.1f} GiB  |  "
                   f"estimated: {est.get('hours', '-')} h, ${est.get('usd', '-')}, peak {est.get('peak_vram_gib', '-')} GiB")
            if p.returncode == 2:
                msg = f"[red]{msg}; " + "; ".join(x.split('error: ', 1)[-1] for x in p.stderr.splitlines()[-3:]) + "[/]"
        except (ValueError, KeyError):
            msg = f"[red]preflight failed: {(p.stderr.strip().splitlines() or ['no output'])[-1]}[/]"
        self.app.call_from_thread(self.note, msg)

    @work(thread=True, exclusive=True)
    def launch(self, recipe: Path) -> None:
        try:
            run, problem = engine.start_run(recipe), None
        except Exception as e:  # RecipeError lines, or the folder cannot be made: show, do not crash
            run, problem = None, (e.lines() if hasattr(e, "lines") else [str(e)])
        self.app.call_from_thread(self.launched, run, problem)

    def launched(self, run: Path | None, problem: list[str] | None) -> None:
        if run is None:
            self.note(f"[red]{'; '.join(problem or [])}[/]")
            return
        self.app.open_monitor(run)
