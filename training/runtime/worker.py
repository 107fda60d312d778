"""The training process: `python -m training.runtime.worker RUN_DIR`.

Started by the runner in its own session (a dropped SSH connection does not reach it), with stdout and
stderr going to RUN_DIR/train.log. It reads the resolved RUN_DIR/recipe.yaml, runs the stages in
order (an sft stage after a full-weight stage starts from that stage's model), and writes
RUN_DIR/events.jsonl, RUN_DIR/pid and RUN_DIR/heartbeat.

The same command resumes a run: a stage whose output folder exists is done and skipped; a stage with a
complete checkpoint continues from the newest one (half-written checkpoints are removed first).
Exit status: 0 finished or stopped (signal or budget cap), 1 training failure, 2 bad input.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _rel(run: Path, p) -> str | None:
    return str(Path(p).relative_to(run)) if p else None


def _disk_full(exc: BaseException, run: Path) -> bool:
    """ENOSPC anywhere in the exception chain, or a failed write with the run's file system (almost) full:
    torch.save reports a full disk as RuntimeError("... unexpected pos ..."), without the errno."""
    e: BaseException | None = exc
    while e is not None:
        if (isinstance(e, OSError) and e.errno == errno.ENOSPC) or "No space left" in str(e):
            return True
        e = e.__cause__ or e.__context__
    try:
        u = shutil.disk_usage(run)
    except OSError:
        return False
    return isinstance(exc, (OSError, RuntimeError)) and u.free < min(256 << 20, u.total // 100)


def _explain(exc: BaseException, stage, run: Path, base: str) -> tuple[str, str, str]:
    """(kind, message, hint) for the error event and the one line the user sees."""
    import torch
    from training.runtime import failures
    from training.runtime.checkpoints import discard_incomplete, latest_complete
    from training.runtime.stages.common import resolve_precision
    from training.runtime.stages.guard import NonFiniteLoss

    ck_dir = run / "checkpoints" / stage.name if stage is not None else None
    last = latest_complete(ck_dir) if ck_dir else None
    keep = f"the last good checkpoint is {_rel(run, last)}" if last else "no checkpoint had been written yet"
    msg = " ".join(str(exc).split())[:500] or type(exc).__name__
    if isinstance(exc, NonFiniteLoss):
        message, hint = failures.explain_nan(stage.type, getattr(stage, "method", "full"), stage.learning_rate,
                                             resolve_precision(stage.precision), exc.step, exc.value)
        return "nan_loss", f"{message}; {keep}", hint
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in msg.lower():
        try:
            cfg = json.loads((Path(base) / "config.json").read_text())
        except (OSError, ValueError):
            cfg = {}
        seq = getattr(stage, "seq_len", None) or getattr(stage, "max_seq_len", 1024)
        m = failures.memory_input(cfg, stage.type, getattr(stage, "method", "full"), seq, stage.micro_batch_size,
                                  resolve_precision(stage.precision), stage.gradient_checkpointing,
                                  getattr(getattr(stage, "lora", None), "r", 16), master=stage.master_weights,
                                  liger=bool(stage.liger_kernel))
        available = torch.cuda.mem_get_info()[1] if torch.cuda.is_available() else 0
        message, hint = failures.explain_oom(m, stage.grad_accum, available)
        return "oom", message, hint
    if _disk_full(exc, run):
        removed = discard_incomplete(ck_dir) if ck_dir else []
        gone = f"; removed the half-written {', '.join(n for n, _ in removed)}" if removed else ""
        return ("disk_full", f"disk full while writing {getattr(exc, 'filename', None) or 'a checkpoint'}{gone}; {keep}, intact",
                "free disk space on the run folder's file system (or lower save_total_limit), then "
                "tune-wizard --recipe R.yaml --resume")
    return ("exception", f"{type(exc).__name__}: {msg}", "see train.log in the run folder for the traceback")


def _bad_input(exc: BaseException, base: str):
    """The DataError to show when the failure is the user's input (bad data, not a causal LM), else None."""
    from training.data import DataError
    if isinstance(exc, DataError):
        return exc
    if isinstance(exc, ValueError) and "Unrecognized configuration class" in str(exc):
        return DataError(f"model.id: {base} is not a causal language model ({str(exc).splitlines()[0][:160]}); "
                         f"give a decoder model (Llama, Mistral, Qwen, ...)")
    return None


def main(run_dir: str) -> int:
    # a stop that arrives while torch is still importing is kept and honoured at the first step
    early: list[str] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: early.append(signal.Signals(signum).name))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    os.umask(0o077)  # everything the run writes (checkpoints, outputs) is readable by its owner only
    _quiet()
    run = Path(run_dir).resolve()
    from training.runtime.redact import RedactingStream, secret_values
    secrets = secret_values()
    if secrets:
        sys.stdout, sys.stderr = RedactingStream(sys.stdout, secrets), RedactingStream(sys.stderr, secrets)
    from training.runtime.budget import Budget, elapsed_before
    from training.runtime.checkpoints import discard_incomplete, latest_complete, step_of
    from training.runtime.distributed import is_main, rank, world_size
    from training.events import EventWriter, read_events
    from training.runtime.heartbeat import Heartbeat
    from training.recipe_load import load_recipe
    from training.runtime.resume import stage_output

    # under `accelerate launch` every rank runs this; only rank 0 writes events, the heartbeat, measures
    # and reports (the others log to train.log); the pid file names the launcher then (runner.launch)
    main_rank = is_main()
    if world_size() == 1:
        (run / "pid").write_text(f"{os.getpid()}\n")
    else:
        print(f"tune-wizard worker: rank {rank()}/{world_size()}, pid {os.getpid()}", flush=True)
    hb = Heartbeat(run).start() if main_rank else None
    recipe = load_recipe(run / "recipe.yaml", check_paths=False)
    earlier = read_events(run / "events.jsonl")
    ev = EventWriter(run / "events.jsonl", enabled=main_rank)
    t0 = time.time()
    hw = recipe.hardware
    budget = Budget(hw.max_cost_usd, hw.price_per_gpu_hour, hw.gpu_count, t0, elapsed_before(earlier))
    from training.runtime.evaluate import Measurer, peak_memory, reset_peak_memory
    from training.runtime.stages.common import Ctx, StopFlag, cuda
    from training.runtime.stages.guard import Guard

    StopFlag.install()
    if early:
        StopFlag.requested, StopFlag.reason = True, early[0]
    import torch
    device = torch.cuda.get_device_name(0) if cuda() else "cpu"
    ev.emit("run_start", run_id=run.name, name=recipe.name, pid=os.getpid(), device=device, resumed=bool(earlier),
            world_size=world_size(), strategy=recipe.hardware.strategy,
            stages=[{"name": s.name, "type": s.type, "method": getattr(s, "method", "full")} for s in recipe.stages])
    from training.runtime.machine import MachineEvents
    machine = MachineEvents(ev).start() if main_rank else None  # `gpu` events: the run's own machine
    if recipe.model.trust_remote_code:
        ev.emit("warning", kind="trust_remote_code", message=(
            f"model.trust_remote_code is on: Python code shipped with {recipe.model.id} runs in this process"))
    if recipe.report_to:  # trackers are extra views; say where they log (and when wandb went offline)
        from training.runtime.trackers import tracker_env
        for note in tracker_env(recipe.report_to, run, "-", run.name)[1]:
            ev.emit("warning", kind="tracker", message=note)
    base = recipe.model.id
    tok_src = base
    outputs: dict[str, str] = {}
    status, code, stage = "ok", EXIT_OK, None
    measurer = Measurer(recipe, run, ev)

    def measure(*args, **kw) -> None:  # rank 0 only; the other ranks wait for it at the next collective
        if main_rank:
            measurer.measure(*args, **kw)
    try:
        for i, stage in enumerate(recipe.stages):
            out = stage_output(run, stage)
            if out.is_dir():  # finished in an earlier segment: never redone
                ev.emit("resume", stage=stage.name, done=True, output=_rel(run, out))
                outputs[stage.name] = _rel(run, out)
                if out.name == "model":
                    base = tok_src = str(out)
                continue
            if StopFlag.requested:  # a stop that arrived while the previous stage was saving its output
                ev.emit("stopped", stage=stage.name, step=0, reason=StopFlag.reason or "signal")
                status = "stopped"
                break
            ck_dir = run / "checkpoints" / stage.name
            removed = discard_incomplete(ck_dir) if main_rank else []
            barrier()  # no rank looks for a checkpoint while rank 0 is removing half-written ones
            ck = latest_complete(ck_dir)
            if ck or removed:
                ev.emit("resume", stage=stage.name, done=False, checkpoint=_rel(run, ck), step=step_of(ck) if ck else 0,
                        discarded=[{"checkpoint": n, "why": why} for n, why in removed])
            later = sum(s.max_steps or 0 for s in recipe.stages[i + 1:])
            guard = Guard(stage.name, ev, budget, hb, later_steps=later, is_main=main_rank)
            ctx = Ctx(run_dir=run, events=ev, stage_index=i, base_model=base, tokenizer_src=tok_src,
                      revision=recipe.model.revision if base == recipe.model.id else None,
                      trust_remote_code=recipe.model.trust_remote_code, seed=recipe.seed,
                      is_main=main_rank, world_size=world_size(),
                      resume_from=str(ck) if ck else None, extra_callbacks=[guard], report_to=recipe.report_to,
                      eval_spec=recipe.eval)
            if ck is None:  # a resumed stage was measured before its first segment
                measure(i, "before", base, tok_src)
            t_stage = time.time()
            if stage.type == "cpt":
                from training.runtime.stages import cpt as mod
            else:
                from training.runtime.stages import sft as mod
            reset_peak_memory()
            res = mod.run(stage, ctx)
            peak = peak_memory()
            barrier()  # every rank waits until rank 0 has written this stage's output
            if res["stopped"]:
                ev.emit("stopped", stage=stage.name, step=res["steps"], reason=StopFlag.reason or "signal",
                        checkpoint=_rel(run, latest_complete(ck_dir)), spent_usd=budget.spend(time.time()))
                status = "stopped"
                break
            outputs[stage.name] = res["output"]
            ev.emit("stage_end", stage=stage.name, output=res["output"], kind=res["kind"],
                    train_loss=res["train_loss"], last_loss=res["last_loss"], steps=res["steps"],
                    runtime_s=time.time() - t_stage, **peak)
            if res["kind"] == "model":  # later stages start from this stage's weights
                base = tok_src = str(run / res["output"])
                measure(i, "after", base, tok_src)
            else:
                measure(i, "after", base, str(run / res["output"]), adapter=str(run / res["output"]))
    except BaseException as e:  # noqa: BLE001 - every failure must end in an error event, a report, `finished`
        status = "failed"
        bad = _bad_input(e, base)
        if bad is not None:
            code = EXIT_BAD_INPUT
            ev.emit("error", stage=getattr(stage, "name", None), kind="bad_input", message=str(bad),
                    hint="fix the input named above, then run the recipe again")
            print(f"error: {bad}", file=sys.stderr)
        else:
            code = EXIT_FAIL
            traceback.print_exc()
            try:
                kind, message, hint = _explain(e, stage, run, base)
            except Exception:  # noqa: BLE001 - explaining must never hide the failure itself
                traceback.print_exc()
                kind, message, hint = "exception", f"{type(e).__name__}: {e}", "see train.log in the run folder"
            ev.emit("error", stage=getattr(stage, "name", None), kind=kind, message=message, hint=hint)
    finish = dict(status=status, outputs=outputs, runtime_s=time.time() - t0, spent_usd=budget.spend(time.time()))
    try:  # the report reads the events so far; a broken report never changes the run's status
        if main_rank:
            from training.report.report import write_report
            ev.emit("report", path=str(write_report(run, pending_finish=finish).relative_to(run)))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        ev.emit("report", error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
    if machine is not None:
        machine.stop()
    if main_rank and status == "ok":  # measured throughput for the next plan (training/plan/calibration.py)
        try:
            from training.plan.calibration import record_run
            record_run(run)
        except Exception as e:  # noqa: BLE001 - calibration never changes the run's status
            print(f"calibration not recorded: {type(e).__name__}: {e}", file=sys.stderr)
    ev.emit("finished", **finish)
    ev.close()
    if hb is not None:
        hb.update(status=status)
        hb.stop()
    if code == EXIT_OK:
        _shutdown_process_group()
    return code


def barrier() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def _shutdown_process_group() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
