"""What a run is doing, folded from its run directory: events.jsonl, recipe.yaml, pid, train.log.

Pure bookkeeping shared by the TUI monitor and `tune-wizard runs`; reads files only, never imports torch.
Cost is wall-clock time of the run times the hourly price of the hardware in recipe.yaml (what a
rented box bills), and the projection adds the time the remaining steps will take at the measured pace.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class StageState:
    name: str
    type: str = "?"
    method: str | None = None
    planned_steps: int | None = None  # from the recipe, known before the stage starts
    total_steps: int | None = None  # from stage_start, the real number
    step: int = 0
    state: str = "pending"  # pending | running | done | stopped | failed
    train: list[tuple[int, float]] = field(default_factory=list)  # (step, loss)
    eval: list[tuple[int, float]] = field(default_factory=list)
    step_time_s: float | None = None
    tokens_per_s: float | None = None
    eta_s: float | None = None
    runtime_s: float | None = None
    general_ppl: float | None = None  # the forgetting watch at the last eval step (cpt stages)
    general_ppl_change_pct: float | None = None
    forgetting: str | None = None  # the forgetting_warning's message, once one came
    prepare: dict | None = None  # the last `prepare` event (data preparation before the first step)

    @property
    def preparing(self) -> str | None:
        """'preparing data: 35%, 2.1 GB of 6 GB' while the stage prepares its data, else None."""
        p = self.prepare
        if p is None or self.state != "running" or self.train or p.get("phase") in ("done", "cached"):
            return None
        return (f"preparing data: {float(p.get('fraction') or 0):.0%}, {fmt_bytes(p.get('bytes_done'))} of "
                f"{fmt_bytes(p.get('bytes_total'))}" + (" (finding near duplicates)" if p.get("phase") == "dedup" else ""))

    @property
    def steps_left(self) -> int | None:
        total = self.total_steps or self.planned_steps
        if self.state in ("done", "stopped", "failed"):
            return 0
        return None if total is None else max(0, total - self.step)


@dataclass
class RunState:
    run: Path
    name: str = "?"
    price_per_hour: float = 0.0  # all GPUs together
    budget_usd: float | None = None
    hardware: str = "?"
    device: str | None = None
    stages: list[StageState] = field(default_factory=list)
    t_start: float | None = None
    t_last: float | None = None
    finished: dict | None = None
    stopped: dict | None = None
    errors: list[dict] = field(default_factory=list)
    n_events: int = 0
    machine: dict | None = None  # the latest `gpu` event: the run's own machine
    segments: list[dict] = field(default_factory=list)  # run_start / finished events: what the budget counts

    # ------------------------------------------------------------ reading
    @classmethod
    def from_run(cls, run: Path) -> "RunState":
        st = cls(run=Path(run))
        st.read_recipe()
        return st

    def read_recipe(self) -> None:
        try:
            data = yaml.safe_load((self.run / "recipe.yaml").read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            data = {}
        self.name = data.get("name", self.run.name)
        hw = data.get("hardware") or {}
        self.price_per_hour = float(hw.get("price_per_gpu_hour") or 0.0) * int(hw.get("gpu_count") or 1)
        self.budget_usd = hw.get("budget_usd")
        self.hardware = f"{hw.get('gpu', 'auto')} x{hw.get('gpu_count', 1)}"
        for i, s in enumerate(data.get("stages") or []):
            self.stages.append(StageState(name=s.get("name") or s.get("type", f"stage{i}"), type=s.get("type", "?"),
                                          method=s.get("method") if s.get("type") == "sft" else "full",
                                          planned_steps=s.get("max_steps")))

    def stage(self, name: str) -> StageState:
        for s in self.stages:
            if s.name == name:
                return s
        s = StageState(name=name)
        self.stages.append(s)
        return s

    def apply(self, ev: dict) -> None:
        self.n_events += 1
        e, t = ev.get("event"), ev.get("t")
        if e == "run_start" and self.t_last is not None:  # where the segment before ended (killed: its last event)
            self.segments.append({"event": "segment_end", "t": self.t_last})
        if isinstance(t, (int, float)):
            self.t_start = t if self.t_start is None else min(self.t_start, t)
            self.t_last = t if self.t_last is None else max(self.t_last, t)
        if e in ("run_start", "finished"):
            self.segments.append(ev)
        if e == "gpu":
            self.machine = ev
        elif e == "run_start":
            self.device = ev.get("device")
            self.finished = self.stopped = None  # a resumed run: a new segment starts
        elif e == "resume" and ev.get("done"):
            self.stage(ev["stage"]).state = "done"
        elif e == "stage_start":
            s = self.stage(ev["stage"])
            s.type, s.method, s.state = ev.get("type", s.type), ev.get("method", s.method), "running"
            s.total_steps = ev.get("total_steps") or s.total_steps
        elif e == "prepare":
            s = self.stage(ev["stage"])
            s.prepare, s.state = ev, ("running" if s.state == "pending" else s.state)
        elif e == "step":
            s = self.stage(ev["stage"])
            s.state = "running" if s.state == "pending" else s.state
            s.step = ev.get("step", s.step)
            s.total_steps = ev.get("total_steps") or s.total_steps
            if isinstance(ev.get("loss"), (int, float)):
                s.train.append((s.step, float(ev["loss"])))
            s.step_time_s, s.tokens_per_s, s.eta_s = ev.get("step_time_s"), ev.get("tokens_per_s"), ev.get("eta_s")
        elif e == "eval":
            if isinstance(ev.get("eval_loss"), (int, float)):
                self.stage(ev["stage"]).eval.append((ev.get("step", 0), float(ev["eval_loss"])))
            if isinstance(ev.get("general_perplexity"), (int, float)):
                s = self.stage(ev["stage"])
                s.general_ppl, s.general_ppl_change_pct = ev["general_perplexity"], ev.get("general_perplexity_change_pct")
        elif e == "forgetting_warning":
            self.stage(ev["stage"]).forgetting = ev.get("message") or "general perplexity passed the threshold"
        elif e == "stage_end":
            s = self.stage(ev["stage"])
            s.state, s.runtime_s, s.eta_s = "done", ev.get("runtime_s"), 0
            s.step = ev.get("steps") or s.step
        elif e == "stopped":
            self.stopped = ev
            if ev.get("stage"):
                self.stage(ev["stage"]).state = "stopped"
        elif e == "error":
            self.errors.append(ev)
            if ev.get("stage"):
                self.stage(ev["stage"]).state = "failed"
        elif e == "finished":
            self.finished = ev

    # ------------------------------------------------------------ derived
    def state(self, alive: bool) -> str:
        if self.finished:
            return str(self.finished.get("status", "finished"))
        if alive:
            return "running" if self.n_events else "starting"
        return "dead"

    def current(self) -> StageState | None:
        running = [s for s in self.stages if s.state == "running"]
        if running:
            return running[-1]
        started = [s for s in self.stages if s.state != "pending"]
        return started[-1] if started else (self.stages[0] if self.stages else None)

    def last_loss(self) -> float | None:
        cur = self.current()
        return cur.train[-1][1] if cur and cur.train else None

    def elapsed_s(self, now: float | None = None) -> float:
        """Billed seconds, by the budget cap's rule (training/runtime/budget.py): each segment of a resumed
        run from its run_start to its end, the time between segments not counted."""
        from training.runtime.budget import elapsed_before
        if self.t_start is None:
            return 0.0
        end = self.t_last if self.finished else (now or time.time())
        if not self.segments:  # a run without run_start yet (or an old file): first event to now
            return max(0.0, end - self.t_start)
        return elapsed_before([*self.segments, {"event": "now", "t": end}])

    def remaining_s(self) -> float | None:
        """Time the steps not yet run will take, at the pace measured so far (None if nothing is measured)."""
        if self.finished:
            return 0.0
        pace = [s.step_time_s for s in self.stages if s.step_time_s]
        if not pace:
            return None
        total = 0.0
        for s in self.stages:
            left = s.steps_left
            if left is None:
                return None
            total += left * (s.step_time_s or pace[-1])
        return total

    def cost_so_far(self, now: float | None = None) -> float:
        return self.elapsed_s(now) / 3600 * self.price_per_hour

    def projected_cost(self, now: float | None = None) -> float | None:
        rem = self.remaining_s()
        return None if rem is None else self.cost_so_far(now) + rem / 3600 * self.price_per_hour

    def over_budget(self, now: float | None = None) -> bool:
        proj = self.projected_cost(now)
        spent = self.cost_so_far(now)
        if self.budget_usd is None:
            return False
        return spent > self.budget_usd or (proj is not None and proj > self.budget_usd)


def tail_lines(path: Path, n: int = 8, max_bytes: int = 16384) -> list[str]:
    """The last n lines of a text file, reading only its end; progress bars' carriage returns folded."""
    try:
        with open(path, "rb") as f:
            f.seek(0, 2)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read().decode("utf-8", "replace")
    except OSError:
        return []
    lines = [ln.rsplit("\r", 1)[-1] for ln in data.replace("\r\n", "\n").split("\n")]
    return [ln for ln in lines if ln.strip()][-n:]


def load_run(run: Path) -> RunState:
    from training.events import read_events
    st = RunState.from_run(run)
    for ev in read_events(run / "events.jsonl"):
        st.apply(ev)
    return st


def runs_table(root: Path) -> list[str]:
    """`tune-wizard runs`: one line per run folder under root, oldest first."""
    from tui.headless import pid_alive
    runs = sorted((x for x in root.iterdir() if (x / "recipe.yaml").exists()), key=lambda x: x.name) \
        if root.is_dir() else []
    if not runs:
        return []
    out = [f"{'run':<34} {'state':<8} {'stage':<8} {'step':>9} {'loss':>7} {'cost':>9}"]
    for r in runs:
        st = load_run(r)
        cur = st.current()
        step = f"{cur.step}/{cur.total_steps or cur.planned_steps or '?'}" if cur else "-"
        loss = st.last_loss()
        out.append(f"{r.name:<34} {st.state(pid_alive(r)):<8} {(cur.name if cur else '-'):<8} {step:>9} "
                   f"{f'{loss:.4f}' if loss is not None else '-':>7} {money(st.cost_so_far()):>9}")
    return out


def fmt_bytes(n) -> str:
    """Decimal units, as file managers and `df -H` show them: 2.1 GB, 640 MB."""
    if not isinstance(n, (int, float)):
        return "?"
    for unit, div in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= div:
            return f"{n / div:.1f} {unit}".replace(".0 ", " ")
    return f"{n:.0f} B"


def money(x: float | None) -> str:
    """Dollars; small amounts keep four decimals so a cheap run's cost visibly moves."""
    if x is None:
        return "?"
    return f"${x:.2f}" if x >= 10 else f"${x:.4f}"
