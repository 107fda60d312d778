"""Step 5: budget and hardware. The GPU list is the dated price table plus what NVML finds here."""
from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Label, Select

from tui import engine
from tui.screens.wizard import WizardStep


def _num(text: str, kind=float):
    text = text.strip().lstrip("$")
    if not text:
        return None
    return kind(text)


class BudgetStep(WizardStep):
    index = 4

    def body(self) -> ComposeResult:
        a = self.state.answers
        self.cards, self.found = engine.hardware_choices()
        options = [("cpu (no GPU)", "cpu")] + [(f"{c['name']} {c['memory_gib']:.0f} GiB, ${c['price']}/h "
                                                 f"({c['date']})", c["name"]) for c in self.cards]
        options += [(f"{g} (found here)", g) for g in self.found if g not in {v for _, v in options}]
        with Horizontal(id="budget-row"):
            with Vertical():
                yield Label("GPU")
                yield Select(options, value=a["gpu"] if a["gpu"] in {v for _, v in options} else "cpu",
                             allow_blank=False, id="gpu")
            with Vertical(classes="narrow"):
                yield Label("GPUs")
                yield Input(str(a["gpu_count"]), id="gpu_count", type="integer")
        with Horizontal(id="price-row"):
            with Vertical():
                yield Label("Price, USD per GPU-hour")
                yield Input(f"{a['price']:g}", id="price", type="number")
            with Vertical():
                yield Label("Budget, USD (empty: none)")
                yield Input("" if a["budget"] is None else f"{a['budget']:g}", id="budget", type="number")

    def on_mount(self) -> None:
        self.query_one("#gpu", Select).focus()
        self.show()

    def on_select_changed(self, event: Select.Changed) -> None:
        card = next((c for c in self.cards if c["name"] == event.value), None)
        if card is not None and card.get("price") is not None:
            self.query_one("#price", Input).value = f"{card['price']:g}"
        self.show()

    def on_input_changed(self, event: Input.Changed) -> None:
        self.show()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.action_next()

    def show(self) -> None:
        try:
            gpu, n, price, budget = self.values()
        except ValueError:
            self.evidence("[red]GPUs must be a whole number; price and budget numbers[/]")
            return
        here = f"found here: {', '.join(self.found)}" if self.found else "no NVIDIA GPU found on this machine"
        card = next((c for c in self.cards if c["name"] == gpu), None)
        src = f" (price table, {card['date']})" if card else ""
        self.evidence(f"{gpu} x{n} at ${price:g}/GPU-hour{src}; {here}",
                      f"budget {'$' + format(budget, 'g') if budget is not None else 'none'}: the guide's budget "
                      "table is an anchor; the next step estimates each plan for this model, data and GPU")

    def values(self):
        gpu = self.query_one("#gpu", Select).value
        n = _num(self.query_one("#gpu_count", Input).value, int) or 1
        price = _num(self.query_one("#price", Input).value) or 0.0
        budget = _num(self.query_one("#budget", Input).value)
        return str(gpu), n, price, budget

    def save(self) -> str | None:
        try:
            gpu, n, price, budget = self.values()
        except ValueError:
            return "budget step: GPUs must be a whole number; price and budget numbers"
        if n < 1 or price < 0 or (budget is not None and budget < 0):
            return "budget step: GPUs at least 1; price and budget not negative"
        self.state.answers.update(gpu=gpu, gpu_count=n, price=price, budget=budget)
        return None
