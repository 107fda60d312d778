"""The training process: `python -m training.worker RUN_DIR`.

Started by the runner in its own session (a dropped SSH connection does not reach it), with stdout and
stderr going to RUN_DIR/train.log. It reads the resolved RUN_DIR/recipe.yaml, runs the stages in
order (an sft stage after a full-weight stage starts from that stage's model), and writes
RUN_DIR/events.jsonl. Exit status: 0 finished or stopped on request, 1 training failure, 2 bad input.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from pathlib import Path

EXIT_OK, EXIT_FAIL, EXIT_BAD_INPUT = 0, 1, 2


def _quiet() -> None:
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")


def _explain(exc: BaseException, stage) -> tuple[str, str, str]:
    """(kind, message, hint) for the error event and the one line the user sees."""
    import torch
    msg = " ".join(str(exc).split())[:500] or type(exc).__name__
    if isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in msg.lower():
        return ("oom", f"GPU out of memory: {msg[:200]}",
                "lower micro_batch_size (raise grad_accum to keep the batch), set gradient_checkpointing: true, "
                "shorten seq_len / max_seq_len, or use method: qlora")
    if isinstance(exc, OSError) and getattr(exc, "errno", None) == 28:
        return ("disk_full", f"disk full: {msg}", "free disk space in the run folder's file system, then resume")
    return ("exception", f"{type(exc).__name__}: {msg}", "see train.log in the run folder for the traceback")


def main(run_dir: str) -> int:
    _quiet()
    run = Path(run_dir).resolve()
    from training.events import EventWriter
    from training.recipe import load_recipe

    recipe = load_recipe(run / "recipe.yaml", check_paths=False)
    ev = EventWriter(run / "events.jsonl")
    t0 = time.time()
    from training.data import DataError
    from training.evaluate import Measurer, peak_memory, reset_peak_memory
    from training.stages.common import Ctx, StopFlag, cuda

    StopFlag.install()
    import torch
    device = torch.cuda.get_device_name(0) if cuda() else "cpu"
    ev.emit("run_start", run_id=run.name, name=recipe.name, pid=os.getpid(), device=device,
            stages=[{"name": s.name, "type": s.type, "method": getattr(s, "method", "full")} for s in recipe.stages])
    base = recipe.model.id
    tok_src = base
    outputs: dict[str, str] = {}
    status, code, stage = "ok", EXIT_OK, None
    measurer = Measurer(recipe, run, ev)
    try:
        for i, stage in enumerate(recipe.stages):
            ctx = Ctx(run_dir=run, events=ev, stage_index=i, base_model=base, tokenizer_src=tok_src,
                      revision=recipe.model.revision if base == recipe.model.id else None,
                      trust_remote_code=recipe.model.trust_remote_code, seed=recipe.seed)
            measurer.measure(i, "before", base, tok_src)
            t_stage = time.time()
            if stage.type == "cpt":
                from training.stages import cpt as mod
            else:
                from training.stages import sft as mod
            reset_peak_memory()
            res = mod.run(stage, ctx)
            peak = peak_memory()
            if res["stopped"]:
                ev.emit("stopped", stage=stage.name, step=res["steps"], reason=StopFlag.reason or "signal")
                status = "stopped"
                break
            outputs[stage.name] = res["output"]
            ev.emit("stage_end", stage=stage.name, output=res["output"], kind=res["kind"],
                    train_loss=res["train_loss"], last_loss=res["last_loss"], steps=res["steps"],
                    runtime_s=time.time() - t_stage, **peak)
            if res["kind"] == "model":  # later stages start from this stage's weights
                base = tok_src = str(run / res["output"])
                measurer.measure(i, "after", base, tok_src)
            else:
                measurer.measure(i, "after", base, str(run / res["output"]), adapter=str(run / res["output"]))
    except DataError as e:
        status, code = "failed", EXIT_BAD_INPUT
        ev.emit("error", stage=getattr(stage, "name", None), kind="bad_input", message=str(e),
                hint="fix the input named above, then run the recipe again")
        print(f"error: {e}", file=sys.stderr)
    except BaseException as e:  # noqa: BLE001 - every failure must end in an error event
        status, code = "failed", EXIT_FAIL
        kind, message, hint = _explain(e, stage)
        traceback.print_exc()
        ev.emit("error", stage=getattr(stage, "name", None), kind=kind, message=message, hint=hint)
    finish = dict(status=status, outputs=outputs, runtime_s=time.time() - t0)
    try:  # the report reads the events so far; a broken report never changes the run's status
        from training.report import write_report
        ev.emit("report", path=str(write_report(run, pending_finish=finish).relative_to(run)))
    except Exception as e:  # noqa: BLE001
        traceback.print_exc()
        ev.emit("report", error=f"{type(e).__name__}: {' '.join(str(e).split())[:300]}")
    ev.emit("finished", **finish)
    ev.close()
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
