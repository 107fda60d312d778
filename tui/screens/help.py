"""`?`: the keys and what each screen is for."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """\
[b]tune-wizard: keys[/b]  (keyboard only; no mouse needed)

[b]Everywhere[/b]
  ? or F1      this help              Esc / q  close help
  Tab/Shift+Tab  next/previous field  Enter    activate / continue
  Ctrl+Q       quit the app

[b]Wizard[/b]  model & goal > gap probe > domain text > pairs >
        budget & hardware > recommendation > review > run
  Ctrl+N / Ctrl+B   next step / back one step (answers are kept)
  Enter in a field goes on; arrows move in lists and tables
  Each step shows its evidence and the rule it feeds, with the
  guide's threshold. Change any answer by going back.
  Recommendation: the engine's decision (as `tune-wizard plan`);
  pick another plan or method and the estimates follow; the
  numbers start at the engine's values, your edits go on top.
  Step 1: Ctrl+T fills in the demo (tiny model, corpus, pairs).
  Review: shows the recipe YAML and its path; Ctrl+S writes it
  (asks before overwriting); Ctrl+R writes it and starts the run.

[b]Run monitor[/b]
  s   stop: the run saves a checkpoint, then stops
  d   detach (or Ctrl+Q): quit, the run keeps going
  q   quit (asks first while the run is going)
  Come back any time:  tune-wizard attach [RUN_DIR]
  Leaving prints how to attach, stop or resume the run
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "close", "close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-box"):
            yield Static(HELP, id="help-text")

    def action_close(self) -> None:
        self.dismiss(None)
