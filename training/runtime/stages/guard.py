"""The callback that makes a stage survivable, added to every stage's Trainer by the worker.

- every checkpoint the Trainer writes gets its completion marker once all its files are on disk
  (training/runtime/checkpoints.py), so a kill during a save never leaves a checkpoint that resume would trust;
- a loss that is NaN or inf stops training at once (before anything is saved) with the likely causes;
- the budget cap: when the spend reaches hardware.max_cost_usd, checkpoint and stop; when the projected
  spend passes it, one `budget_warning` event;
- the heartbeat learns the current stage and step;
- planned faults (TUNE_WIZARD_FAULT, tests and the fault drill only) fire here.
"""
from __future__ import annotations

import errno
import os
import signal
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.runtime import faults
from training.runtime.budget import Budget
from training.runtime.checkpoints import mark_complete
from training.events import EventWriter
from training.runtime.stages.common import StopFlag


class NonFiniteLoss(RuntimeError):
    def __init__(self, step: int, value: str):
        super().__init__(f"loss became {value} at step {step}")
        self.step, self.value = step, value


class Guard(TrainerCallback):
    def __init__(self, stage_name: str, events: EventWriter, budget: Budget | None = None, heartbeat=None,
                 later_steps: int = 0, is_main: bool = True):
        self.stage, self.events, self.budget, self.hb = stage_name, events, budget, heartbeat
        self.later_steps, self.is_main = later_steps, is_main
        self.faults = faults.for_stage(stage_name)
        self._bad = None  # a 0-dim bool tensor on the model's device: any non-finite loss since the last step
        self._hook = None
        self._warned = False
        self._t_first = None
        self._step_first = 0

    # ---------------------------------------------------------------- NaN/inf, checked once per optimizer step
    def _on_forward(self, module, args, kwargs, output):
        loss = getattr(output, "loss", None)
        if loss is None and isinstance(output, dict):
            loss = output.get("loss")
        if module.training and isinstance(loss, torch.Tensor):
            bad = ~torch.isfinite(loss.detach()).all()
            self._bad = bad if self._bad is None else (self._bad | bad)

    def on_train_begin(self, args, state, control, model=None, **kw):
        if model is not None and self._hook is None:
            self._hook = model.register_forward_hook(self._on_forward, with_kwargs=True)
        self._t_first, self._step_first = time.time(), state.global_step

    def on_train_end(self, args, state, control, **kw):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_step_end(self, args, state, control, **kw):
        step = state.global_step
        if self._bad is not None and bool(self._bad):  # one device sync per optimizer step
            raise NonFiniteLoss(step, "nan or inf")
        self._bad = None
        if self.hb is not None:
            self.hb.update(stage=self.stage, step=step, total_steps=state.max_steps)
        for kind in self.faults.get(step, []):
            self._fire(kind, step)
        if self.budget is not None and self.budget.cap_usd is not None:
            self._check_budget(state, control)
        return control

    def _check_budget(self, state, control) -> None:
        now = time.time()
        b = self.budget
        self._warn_projection(state, now)
        if b.reached(now):
            if not StopFlag.requested:
                StopFlag.requested, StopFlag.reason = True, "budget"
                if self.is_main:
                    self.events.emit("budget_reached", stage=self.stage, step=state.global_step,
                                     spent_usd=b.spend(now), cap_usd=b.cap_usd)
            control.should_save = True
            control.should_training_stop = True

    def _warn_projection(self, state, now: float) -> None:
        b = self.budget
        done = state.global_step - self._step_first
        if self._warned or done < 1:
            return
        per_step = (now - self._t_first) / done
        remaining = per_step * (max(0, state.max_steps - state.global_step) + self.later_steps)
        if b.over(now, remaining):
            self._warned = True
            if self.is_main:
                self.events.emit("budget_warning", stage=self.stage, step=state.global_step,
                                 spent_usd=b.spend(now), projected_usd=b.projected(now, remaining), cap_usd=b.cap_usd,
                                 message=(f"projected cost ${b.projected(now, remaining):.2f} passes the cap "
                                          f"${b.cap_usd:.2f}; the run will checkpoint and stop at the cap"))

    # ---------------------------------------------------------------- checkpoints
    def on_save(self, args, state, control, **kw):
        if not self.is_main:
            return
        ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if ckpt.is_dir():
            mark_complete(ckpt, state.global_step, {"stage": self.stage, "epoch": state.epoch,
                                                    "max_steps": state.max_steps})

    # ---------------------------------------------------------------- planned faults
    def _fire(self, kind: str, step: int) -> None:
        if kind == "sigterm":
            os.kill(os.getpid(), signal.SIGTERM)
        elif kind == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        elif kind == "enospc":
            _fail_next_torch_save()


def _fail_next_torch_save() -> None:
    """The next torch.save (the optimizer state, after the weights) writes a few bytes and then fails
    with ENOSPC, leaving a half-written checkpoint folder, as a full disk does."""
    real = torch.save

    def failing(obj, f, *a, **kw):
        torch.save = real
        if isinstance(f, (str, os.PathLike)):
            with open(f, "wb") as fh:
                fh.write(b"PK\x03\x04 truncated")
        raise OSError(errno.ENOSPC, "No space left on device (injected by TUNE_WIZARD_FAULT)", str(f))

    torch.save = failing
