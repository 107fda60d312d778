"""Fault drill: kill a demo run at random points, resume it, and check it ends where an uninterrupted run ends.

  python bench/fault_drill.py [--seed 7] [--sigterm 5] [--sigkill 3] [--cpt-steps 12] [--sft-steps 8]

1. one uninterrupted run of recipes/demo.yaml (shortened with --set, logging every step) is the reference;
2. each trial starts the same recipe, waits for a random number of logged steps (0..cpt+sft, uniform, so
   start-up, both stages and the stage change are all hit; counting steps, not seconds, keeps the points
   spread on a loaded machine) plus 0-1.5 s, sends SIGTERM or SIGKILL to the worker,
   then runs `tune-wizard --recipe R --resume RUN` until the run finishes;
3. a trial passes when the first segment exits as it should (SIGTERM: exit 0 and a `stopped` event;
   SIGKILL: the process died), every stage ends at its planned step count, and every loss, the final one
   included, is within --tol of the reference at the same step.

Prints one line per trial and a summary; --json writes the numbers. Exit status 0 when every trial passed.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from training.events import read_events  # noqa: E402


def cli(args: list[str], env: dict | None = None, wait: bool = True):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    p = subprocess.Popen([sys.executable, "-m", "tui.cli", *args], cwd=ROOT, env=e, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    if wait:
        out, _ = p.communicate()
        return p.returncode, out
    return p


def losses(events: list[dict]) -> dict:
    return {(e["stage"], e["step"]): e["loss"] for e in events if e.get("event") == "step"}


def overrides(a) -> list[str]:
    return ["--set", f"stages.cpt.max_steps={a.cpt_steps}", "--set", f"stages.sft.max_steps={a.sft_steps}",
            "--set", "stages.cpt.logging_steps=1", "--set", "stages.sft.logging_steps=1",
            "--set", f"stages.cpt.micro_batch_size={a.batch}", "--set", f"stages.sft.micro_batch_size={a.batch}",
            "--set", f"stages.cpt.save_steps={a.save_steps}", "--set", f"stages.sft.save_steps={a.save_steps}",
            "--set", f"stages.cpt.eval_steps={a.cpt_steps}", "--set", f"stages.sft.eval_steps={a.sft_steps}"]


def start(a, out: Path):
    return cli(["--recipe", str(a.recipe), "--set", f"output_dir={out}", *overrides(a)], wait=False)


def run_folder(out: Path, timeout: float = 60) -> Path | None:
    end = time.time() + timeout
    while time.time() < end:
        runs = [p for p in out.glob("demo-*") if (p / "pid").exists()]
        if runs:
            return runs[0]
        time.sleep(0.05)
    return None


def wait_for_steps(run: Path, n: int, front, timeout: float = 600) -> None:
    """Until the run has logged `n` steps in all (0: not at all), or has ended."""
    end = time.time() + timeout
    while time.time() < end and front.poll() is None:
        if sum(1 for e in read_events(run / "events.jsonl") if e.get("event") == "step") >= n:
            return
        time.sleep(0.05)


def trial(a, kind: str, target: int, delay: float, out: Path, ref: dict) -> dict:
    """Kill the worker `delay` seconds after the run logged its `target`-th step (0: during start-up)."""
    front = start(a, out)
    run = run_folder(out)
    wait_for_steps(run, target, front)
    time.sleep(delay)
    pid = int((run / "pid").read_text())
    before = [e for e in read_events(run / "events.jsonl") if e.get("event") == "step"]
    try:
        os.kill(pid, signal.SIGTERM if kind == "SIGTERM" else signal.SIGKILL)
    except ProcessLookupError:  # the run finished first: that trial tested nothing, and fails below
        kind = "missed"
    first_out, _ = front.communicate()
    first_code = front.returncode
    seg1 = read_events(run / "events.jsonl")
    at = f"{before[-1]['stage']}:{before[-1]['step']}" if before else "start-up"
    stopped = [e for e in seg1 if e.get("event") == "stopped"]
    last = [e for e in seg1 if e.get("event") == "step"]
    last_step = last[-1]["step"] if last else 0
    resumes, code, text = 0, None, ""
    while resumes < 3:
        resumes += 1
        code, text = cli(["--recipe", str(a.recipe), "--resume", str(run), *overrides(a)])
        evs = read_events(run / "events.jsonl")
        if evs and evs[-1].get("event") == "finished" and evs[-1].get("status") == "ok":
            break
    evs = read_events(run / "events.jsonl")
    resumed_from = next((e for e in evs[len(seg1):] if e.get("event") == "resume" and not e.get("done")), None)
    got = losses(evs)
    diffs = [abs(got[k] - v) for k, v in ref.items() if k in got]
    final_key = max((k for k in ref if k[0] == "sft"), key=lambda k: k[1])
    planned = {"cpt": a.cpt_steps, "sft": a.sft_steps}
    steps_ok = all(max((s for (st, s) in got if st == name), default=0) == n for name, n in planned.items()) \
        and set(got) == set(ref)
    lost = (last_step - (resumed_from or {}).get("step", 0)) if kind == "SIGKILL" and resumed_from else 0
    first_ok = (first_code == 0 and bool(stopped)) if kind == "SIGTERM" else first_code != 0
    res = {"signal": kind, "target_step": target, "delay_s": round(delay, 2), "at": at, "first_exit": first_code,
           "stopped_event": bool(stopped), "resumes": resumes, "resumed_from": (resumed_from or {}).get("checkpoint"),
           "steps_redone": lost, "final_status": evs[-1].get("status") if evs else None,
           "steps_ok": steps_ok, "final_loss": got.get(final_key), "ref_final_loss": ref[final_key],
           "max_abs_diff": max(diffs) if diffs else None}
    res["pass"] = bool(first_ok and steps_ok and res["final_status"] == "ok" and diffs
                       and max(diffs) <= a.tol and len(diffs) == len(ref))
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, default=ROOT / "recipes" / "demo.yaml")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--sigterm", type=int, default=5)
    p.add_argument("--sigkill", type=int, default=3)
    p.add_argument("--cpt-steps", type=int, default=12)
    p.add_argument("--sft-steps", type=int, default=8)
    p.add_argument("--batch", type=int, default=4, help="micro_batch_size of both stages (small: a shared 2-core box)")
    p.add_argument("--save-steps", type=int, default=3)
    p.add_argument("--tol", type=float, default=1e-4, help="absolute loss tolerance against the reference")
    p.add_argument("--json", type=Path)
    a = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="fault-drill-"))
    t0 = time.time()
    code, out = cli(["--recipe", str(a.recipe), "--set", f"output_dir={work / 'ref'}", *overrides(a)])
    ref_wall = time.time() - t0
    if code != 0:
        print(out)
        return 1
    ref_run = next((work / "ref").glob("demo-*"))
    ref = losses(read_events(ref_run / "events.jsonl"))
    print(f"reference: {len(ref)} logged steps in {ref_wall:.0f} s, final sft loss "
          f"{ref[('sft', a.sft_steps)]:.6f}  (work folder {work})", flush=True)
    rng = random.Random(a.seed)
    plan = ["SIGTERM"] * a.sigterm + ["SIGKILL"] * a.sigkill
    rng.shuffle(plan)
    results = []
    total = a.cpt_steps + a.sft_steps
    for i, kind in enumerate(plan):
        # a random point of the run: after a random number of logged steps (0: start-up), plus a random fraction of a step, so saves, evals and the stage change are hit too
        target, delay = rng.randint(0, total - 1), rng.uniform(0.0, 1.5)
        r = trial(a, kind, target, delay, work / f"t{i}", ref)
        results.append(r)
        print(f"trial {i + 1}: {kind:<7} {r['delay_s']:>4.2f} s after step {target:>2}, last logged {r['at']:<10} first exit {r['first_exit']:>3}  "
              f"resumed from {r['resumed_from'] or 'the start'}  redone {r['steps_redone']}  "
              f"final loss {r['final_loss']}  max |diff| {r['max_abs_diff']}  {'PASS' if r['pass'] else 'FAIL'}",
              flush=True)
    ok = sum(r["pass"] for r in results)
    print(f"{ok}/{len(results)} trials passed (tolerance {a.tol:g}); {time.time() - t0:.0f} s in all")
    if a.json:
        a.json.write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "host": platform.node(),
                                      "cpu_count": os.cpu_count(), "reference_wall_s": ref_wall, "tol": a.tol,
                                      "reference_final_loss": ref[("sft", a.sft_steps)], "trials": results}, indent=1))
    return 0 if ok == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
