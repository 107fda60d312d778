"""The live run monitor: timeline, loss per stage, hardware, cost, the end of train.log.

Everything comes from the run directory, so it works the same for a run just launched and for one
attached to later. A thread worker tails events.jsonl and train.log and samples the hardware; it hands
what it read to the UI thread with call_from_thread, and only the UI thread touches the widgets.
"""
from __future__ import annotations

import time
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from training.events import EventTail
from tui.headless import pid_alive, stop
from tui.runstate import RunState, tail_lines
from tui.screens.confirm import Confirm
from tui.widgets.cost_meter import CostMeter
from tui.widgets.gpu_panel import GpuPanel
from tui.widgets.loss_chart import LossChart
from tui.widgets.timeline import Timeline


class MonitorScreen(Screen):
    BINDINGS = [
        Binding("s", "stop_run", "stop (checkpoint)"),
        Binding("d", "detach", "detach"),
        Binding("q", "quit_monitor", "quit"),
        Binding("question_mark", "app.help", "help", key_display="?"),
        Binding("ctrl+q", "detach", "detach", show=False, priority=True),  # never leave without saying how to return
    ]

    def __init__(self, run: Path, interval: float = 0.5, sampler=None, now: float | None = None):
        """sampler: an object with sample() and close() (default: NVML or the host); now: a fixed clock (tests)."""
        super().__init__()
        self.run = Path(run).resolve()
        self.state = RunState.from_run(self.run)
        self.interval = interval
        self.sampler = sampler
        self.alive = True
        self.stop_sent = False
        self.frozen_now = now

    def compose(self) -> ComposeResult:
        yield Static(id="mon-title")
        yield Timeline(id="timeline")
        with Horizontal(id="charts"):
            for s in self.state.stages:
                yield LossChart(s.name, id=f"chart-{s.name}", classes="chart")
        with Horizontal(id="panels"):
            yield GpuPanel(id="gpu")
            yield CostMeter(id="cost")
        yield Static(id="log")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(GpuPanel).show(None)
        self.redraw()
        self.watch_run()

    @work(thread=True, exclusive=True, group="monitor")
    def watch_run(self) -> None:
        worker = get_current_worker()
        tail = EventTail(self.run / "events.jsonl")
        sampler = self.sampler
        if sampler is None:
            from tui.sysmon import Sampler
            sampler = Sampler()
        last_sample = 0.0
        try:
            while not worker.is_cancelled:
                events = tail.poll()
                alive = pid_alive(self.run)
                log = tail_lines(self.run / "train.log", 6)
                sample = None
                if self.state.machine is None and time.time() - last_sample >= 1.0:  # no `gpu` events: here
                    sample, last_sample = sampler.sample(), time.time()
                self.app.call_from_thread(self.update_from, events, alive, log, sample)
                if not alive and not events and self.state.finished:
                    break
                time.sleep(self.interval)
        finally:
            sampler.close()

    def update_from(self, events: list[dict], alive: bool, log: list[str], sample) -> None:
        for ev in events:
            self.state.apply(ev)
        self.alive = alive
        self.query_one("#log", Static).update(self.log_text(log))
        if self.state.machine is not None:
            from tui.sysmon import sample_from
            sample = sample_from(self.state.machine)
            sample.from_run = True
        if sample is not None:
            self.query_one(GpuPanel).show(sample)
        self.redraw()

    def log_text(self, log: list[str]) -> str:
        """The end of train.log; before the first step, what the run is doing instead (the libraries' start-up
        warnings in those seconds look like a failure and are not one)."""
        st = self.state
        started = any(s.train or s.state in ("done", "failed", "stopped") for s in st.stages)
        if self.alive and not started and not st.finished and not st.errors:
            what = "loading the model and preparing the data" if st.n_events else "starting the training process"
            return f"[b]train.log[/b]\n[dim]{what}... (the first step follows; train.log has the details)[/]"
        return "\n".join(["[b]train.log[/b]", *(_escape(x) for x in log)])

    def redraw(self) -> None:
        st = self.state
        status = st.state(self.alive)
        if self.stop_sent and status == "running":
            status = "stopping (saving a checkpoint)"
        style = {"running": "green", "ok": "green", "failed": "red", "dead": "red"}.get(status, "yellow")
        self.query_one("#mon-title", Static).update(
            f"[b]{st.name}[/b]  [{style}]{status}[/]  {self.run}")
        self.query_one(Timeline).show(st)
        for s in st.stages:
            for chart in self.query(f"#chart-{s.name}").results(LossChart):
                chart.set_data(s.name, s.train, s.eval, s.total_steps or s.planned_steps)
        self.query_one(CostMeter).show(st, self.frozen_now)

    # ---------------------------------------------------------------- keys
    def action_stop_run(self) -> None:
        if not self.alive or self.state.finished:
            self.notify("the run is not running", severity="warning")
            return

        def done(yes: bool | None) -> None:
            if yes:
                self.stop_sent = stop(self.run)
                self.notify("asked the run to save a checkpoint and stop" if self.stop_sent
                            else "could not signal the run (already gone?)")
                self.redraw()

        self.app.push_screen(Confirm("Stop this run? It saves a checkpoint first, then stops.",
                                     yes="stop it", no="keep going"), done)

    def action_detach(self) -> None:
        self.app.exit(result=self.leave_message(detached=True))

    def action_quit_monitor(self) -> None:
        if self.alive and not self.state.finished:
            def done(yes: bool | None) -> None:
                if yes:
                    self.action_detach()

            self.app.push_screen(Confirm("The run is still going. Quit and leave it running in the background?",
                                         yes="quit, keep it running", no="stay"), done)
            return
        self.app.exit(result=self.leave_message(detached=False))

    def leave_message(self, detached: bool) -> str:
        """What the terminal says after the monitor: how to come back, stop, or resume the run."""
        if self.alive and not self.state.finished:
            return (f"training goes on in the background.\n  watch it:  tune-wizard attach {self.run}\n"
                    f"  stop it:   tune-wizard stop {self.run}   (saves a checkpoint first)")
        status = self.state.state(self.alive)
        out = f"run folder: {self.run} ({status})"
        if status in ("stopped", "dead", "failed"):
            out += (f"\n  resume it: tune-wizard --recipe {self.run / 'recipe.yaml'} --resume {self.run}"
                    f"   (from its last checkpoint)")
        if status != "dead":
            out += f"\n  look back: tune-wizard attach {self.run}"
        return out


def _escape(s: str) -> str:
    return s.replace("[", r"\[")
