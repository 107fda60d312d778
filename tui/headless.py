"""The headless front: run a recipe or follow a run, one readable line per logging step.

It reads only the run directory (events.jsonl, pid), like every monitor, so it never imports torch.
"""
from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from training.events import EventTail


def fmt_duration(s: float | None) -> str:
    if s is None or s != s or s == float("inf"):
        return "--:--"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def fmt_num(n: float | None) -> str:
    if n is None:
        return "-"
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            return f"{n / div:.1f}{unit}"
    return f"{n:.0f}"


def render(ev: dict) -> str | None:
    """One line for an event, or None for events a person need not read line by line."""
    e = ev.get("event")
    if e == "run_start":
        names = " -> ".join(f"{s['name']} ({s['type']}{'/' + s['method'] if s['type'] == 'sft' else ''})"
                            for s in ev.get("stages", []))
        return f"run {ev.get('run_id')} on {ev.get('device')}: {names}"
    if e == "stage_start":
        d = ev.get("data", {})
        what = (f"{fmt_num(d.get('train_tokens'))} train tokens in {d.get('documents')} documents"
                if ev.get("type") == "cpt" else f"{d.get('train_pairs')} train pairs, {d.get('eval_pairs')} held out")
        return (f"== {ev['stage']}: {ev.get('type')}/{ev.get('method')}, {ev.get('total_steps')} steps, "
                f"{fmt_num(ev.get('trainable_params'))} of {fmt_num(ev.get('params'))} params trained, {what}, "
                f"{ev.get('precision')}")
    if e == "step":
        w = len(str(ev.get("total_steps", "")))
        lr = ev.get("lr")
        return (f"[{ev['stage']}] step {ev['step']:>{w}}/{ev['total_steps']}  loss {ev['loss']:.4f}  "
                f"lr {lr:.2e}  {fmt_num(ev.get('tokens_per_s'))} tok/s  ETA {fmt_duration(ev.get('eta_s'))}"
                if isinstance(lr, (int, float)) and isinstance(ev.get("loss"), (int, float)) else
                f"[{ev['stage']}] step {ev['step']}/{ev['total_steps']}  loss {ev.get('loss')}")
    if e == "eval":
        g = ev.get("general_perplexity")
        gen = (f"  general ppl {g:.1f}" + (f" ({ev['general_perplexity_change_pct']:+.1f}%)"
                                           if isinstance(ev.get("general_perplexity_change_pct"), (int, float)) else "")
               if isinstance(g, (int, float)) else "")
        return f"[{ev['stage']}] eval at step {ev['step']}: loss {ev['eval_loss']:.4f}  perplexity {ev['perplexity']:.1f}{gen}"
    if e == "forgetting_warning":
        return f"[{ev.get('stage')}] FORGETTING: {ev.get('message')}"
    if e == "measure":
        if ev.get("error"):
            return f"[{ev['stage']}] measurement {ev.get('when')} failed: {ev['error']}"
        parts = [f"{label} {ev[k]:.4g}" + (f" ({ev[k + '_change_pct']:+.1f}%)" if isinstance(ev.get(k + "_change_pct"), (int, float)) else "")
                 for k, label in (("domain_ppl", "domain ppl"), ("general_ppl", "general ppl"))
                 if isinstance(ev.get(k), (int, float))]
        if isinstance(ev.get("heldout_pairs_loss"), (int, float)):
            parts.append(f"held-out pairs loss {ev['heldout_pairs_loss']:.4f}")
        warn = "  WARNING: general perplexity rose above the forgetting threshold" if ev.get("forgetting_warning") else ""
        return f"[{ev['stage']}] {ev.get('when')}: {', '.join(parts) or 'measured'}{warn}"
    if e == "report":  # the summary names the written report with its full path
        return None if ev.get("path") else f"report failed: {ev.get('error')}"
    if e == "checkpoint":
        return f"[{ev['stage']}] checkpoint {ev['path']}"
    if e == "stage_end":
        return f"== {ev['stage']} done in {fmt_duration(ev.get('runtime_s'))}: {ev.get('steps')} steps -> {ev.get('output')}"
    if e == "error":
        return f"error [{ev.get('kind')}] {ev.get('message')}\n  what to do: {ev.get('hint')}"
    if e == "stopped":
        saved = f"checkpoint {ev['checkpoint']}" if ev.get("checkpoint") else "no checkpoint of this stage yet"
        return (f"stopped in {ev.get('stage')} at step {ev.get('step')} ({ev.get('reason')}); {saved}; "
                f"continue with: tune-wizard --recipe R.yaml --resume")
    if e == "resume":
        if ev.get("done"):
            return f"== {ev['stage']}: done earlier -> {ev.get('output')}"
        gone = "".join(f"; discarded {d['checkpoint']} ({d['why']})" for d in ev.get("discarded") or [])
        return f"== {ev['stage']}: resuming from {ev.get('checkpoint') or 'the start'} (step {ev.get('step')}){gone}"
    if e == "budget_warning":
        return f"warning: {ev.get('message')}"
    if e == "budget_reached":
        return f"budget cap reached: ${ev.get('spent_usd', 0):.2f} of ${ev.get('cap_usd', 0):.2f}; checkpointing and stopping"
    if e == "warning":
        return f"warning: {ev.get('message')}"
    if e == "finished":
        return f"finished: {ev.get('status')} in {fmt_duration(ev.get('runtime_s'))}"
    return None


def summary(events: list[dict], run: Path) -> list[str]:
    lines = ["", f"run folder: {run}"]
    stages: dict[str, dict] = {}
    for ev in events:
        if ev.get("event") == "step" and isinstance(ev.get("loss"), (int, float)):
            s = stages.setdefault(ev["stage"], {})
            s.setdefault("first", ev["loss"])
            s.setdefault("first_step", ev["step"])
            s["last"], s["last_step"] = ev["loss"], ev["step"]
            s["steps"] = max(s.get("steps", 0), ev["step"])
        elif ev.get("event") == "stage_end":
            s = stages.setdefault(ev["stage"], {})
            s["out"], s["time"] = ev.get("output"), ev.get("runtime_s")
            if isinstance(ev.get("steps"), int):  # the steps it ran, not the last one logged
                s["steps"] = ev["steps"]
        elif ev.get("event") == "eval":
            stages.setdefault(ev["stage"], {})["eval"] = ev.get("eval_loss")
    for name, s in stages.items():
        if "first" not in s:
            loss = "no steps logged"
        elif s["first_step"] == s["last_step"]:  # logging_steps longer than the stage
            loss = f"loss {s['last']:.3f} (logged at step {s['last_step']} only)"
        else:
            loss = f"loss {s['first']:.3f} -> {s['last']:.3f}"
        ev_ = f", eval loss {s['eval']:.3f}" if s.get("eval") is not None else ""
        lines.append(f"  {name:<10} {s.get('steps', 0):>5} steps  {loss}{ev_}  {fmt_duration(s.get('time'))}  "
                     f"{s.get('out') or '(no output)'}")
    if (run / "report.md").exists():
        lines.append(f"report: {run / 'report.md'}")
    return lines


def pid_alive(run: Path) -> bool:
    """The run's worker is alive (not a zombie, not a reused pid)."""
    from training.runtime.heartbeat import worker_alive
    return worker_alive(run)


def last_segment_offset(run: Path) -> int:
    """Byte offset of the newest run_start line: a resumed run is followed from its latest start."""
    pos, start = 0, 0
    try:
        with open(run / "events.jsonl", "rb") as f:
            for line in f:
                if b'"event": "run_start"' in line:
                    start = pos
                pos += len(line)
    except OSError:
        return 0
    return start


def follow(run: Path, proc=None, out=sys.stdout, offset: int = 0) -> int:
    """Print events (from byte `offset` of events.jsonl) until the run finishes; returns the exit status to
    use (0 ok or stopped, 1 failed, 2 bad input).

    Ctrl-C leaves the run going (it is detached) and says how to come back or stop it: exit 130."""
    tail = EventTail(run / "events.jsonl", offset)
    seen: list[dict] = []
    finished = None
    try:
        while True:
            got = tail.poll()
            for ev in got:
                seen.append(ev)
                line = render(ev)
                if line:
                    print(line, file=out, flush=True)
                if ev.get("event") == "finished":
                    finished = ev
            if finished:
                break
            alive = proc.poll() is None if proc is not None else pid_alive(run)
            if not alive and not got:
                if not tail.poll():
                    break
                continue
            time.sleep(0.3)
    except KeyboardInterrupt:
        print(f"\ntraining goes on in the background.\n  watch it:  tune-wizard attach {run}\n"
              f"  stop it:   tune-wizard stop {run}   (saves a checkpoint first)", file=out, flush=True)
        return 130
    for line in summary(seen, run):
        print(line, file=out)
    if proc is not None:
        code = proc.wait()
        if finished is not None and (run / "accelerate_config.yaml").exists():
            # accelerate's launcher exits 1 whatever the worker's status; the events say what happened
            bad = any(e.get("event") == "error" and e.get("kind") == "bad_input" for e in seen)
            code = {"ok": 0, "stopped": 0}.get(finished.get("status"), 2 if bad else 1)
        if code not in (0, 1, 2) or finished is None:
            print(f"the training process died before finishing (exit {code}); last lines of "
                  f"{run / 'train.log'}:", file=out)
            print(log_tail(run), file=out)
            print(f"  continue from its last complete checkpoint: tune-wizard --recipe R.yaml --resume {run}",
                  file=out)
            code = code if code in (1, 2) else 1
        return code
    if finished is None:
        print(f"the training process ended without finishing; last lines of {run / 'train.log'}:", file=out)
        print(log_tail(run), file=out)
        return 1
    return {"ok": 0, "stopped": 0}.get(finished.get("status"), 1)


def log_tail(run: Path, n: int = 8) -> str:
    try:
        with open(run / "train.log", "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()[-n:]
    except OSError:
        return "  (no train.log)"
    return "\n".join("  " + x for x in lines)


def stop(run: Path) -> bool:
    """Ask a run to checkpoint and stop (SIGTERM to its process). False when it is not running."""
    if not pid_alive(run):
        return False
    try:
        pid = int((run / "pid").read_text().strip())
        for target in _workers(run, pid):
            os.kill(target, signal.SIGTERM)
        return True
    except (OSError, ValueError):
        return False


def _workers(run: Path, pid: int) -> list[int]:
    """The processes to signal. A multi-process run's pid names the `accelerate launch` process, whose
    children are the workers: they get the signal (and agree on the step to stop at), so the launcher is
    not interrupted and gives them all the time a checkpoint takes."""
    if not (run / "accelerate_config.yaml").exists():
        return [pid]
    import psutil
    try:
        kids = [c.pid for c in psutil.Process(pid).children()]
    except psutil.Error:
        kids = []
    return kids or [pid]
