"""The Textual app: a thin shell that opens the wizard or the monitor. Screens do the work."""
from __future__ import annotations

from pathlib import Path

from textual.app import App
from textual.binding import Binding


class TuneWizardApp(App[str]):
    # absolute, so subclasses defined elsewhere (the first-frame benchmark) find the stylesheets too
    CSS_PATH = [Path(__file__).parent / f for f in ("app.tcss", "wizard.tcss", "monitor.tcss")]
    TITLE = "tune-wizard"
    BINDINGS = [Binding("question_mark", "help", "help", key_display="?"),
                Binding("f1", "help", "help", show=False),
                Binding("ctrl+q", "quit", "quit", show=False)]

    def __init__(self, run: Path | None = None, monitor_opts: dict | None = None, **wizard_opts):
        """run: open the monitor on this run folder, else the wizard. monitor_opts go to MonitorScreen."""
        super().__init__()
        self.theme = "ansi-dark"  # the terminal's own 16 colours: readable over any SSH client
        self.run_dir = run
        self.monitor_opts = monitor_opts or {}
        self.wizard_opts = wizard_opts

    def on_mount(self) -> None:
        if self.run_dir is not None:
            self.open_monitor(self.run_dir)
        else:
            from tui.screens.wizard import start_wizard
            start_wizard(self, **self.wizard_opts)

    def open_monitor(self, run: Path) -> None:
        from tui.screens.monitor import MonitorScreen
        self.push_screen(MonitorScreen(run, **self.monitor_opts))

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())


def _finish(app: TuneWizardApp) -> int:
    result = app.run()
    if result:
        print(result)
    return app.return_code or 0


def run_app() -> int:
    """`tune-wizard` with no arguments: the wizard."""
    return _finish(TuneWizardApp())


def attach_app(run: Path) -> int:
    """`tune-wizard attach RUN` in a terminal: the monitor."""
    return _finish(TuneWizardApp(run=Path(run)))
