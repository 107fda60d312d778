"""The preflight's child process: real optimizer steps of every stage, real numbers (training/runtime/preflight.py
launches it as `python -m training.runtime.preflight_measure --child TMP --steps N --auto STAGES` and reads the
report it writes to TMP/preflight.json; the steps it takes are described there)."""
from __future__ import annotations

import argparse
import json
import math
import shutil
import statistics
import sys
import time
from pathlib import Path

from training.runtime.preflight import DEFAULT_STEPS, MARGIN, SAMPLE_BYTES, WARMUP
from training.runtime.preflight_memory import PeakMemory, SimulatedOOM, du, find_micro_batch, free_memory, sync


class _Probe:
    """Trainer callback: wall-clock of every optimizer step, the evaluation and the checkpoint save."""

    def __init__(self, cache_dir: Path):
        from transformers import TrainerCallback  # noqa: F401 (the class below is built on it)
        self.cache_dir = cache_dir
        self.t_begin = self.t_end = self.t_eval = self.t_save = None
        self.step_ends: list[tuple[float, int]] = []  # (time, tokens seen)
        self.cache_bytes = 0

    def callback(self):
        from transformers import TrainerCallback
        probe = self

        class Cb(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                probe.t_begin = time.perf_counter()
                probe.cache_bytes = du(probe.cache_dir)
                probe.step_ends.append((probe.t_begin, int(state.num_input_tokens_seen or 0)))

            def on_step_end(self, args, state, control, **kw):
                sync()
                probe.step_ends.append((time.perf_counter(), int(state.num_input_tokens_seen or 0)))

            def on_evaluate(self, args, state, control, **kw):
                probe.t_eval = time.perf_counter()

            def on_save(self, args, state, control, **kw):
                probe.t_save = time.perf_counter()

            def on_train_end(self, args, state, control, **kw):
                probe.t_end = time.perf_counter()
        return Cb()


def _trial_step_fn(st, model_id: str, sim_token_cap: int | None):
    """try_step(micro) -> peak GiB: one forward, backward and AdamW step on a worst-case batch of random ids
    (micro x the stage's full sequence length) through the stage's own model loading."""
    import torch
    from types import SimpleNamespace
    from training.runtime.stages.common import resolve_precision, torch_dtype

    seq = st.seq_len if st.type == "cpt" else st.max_seq_len
    precision = resolve_precision(st.precision)
    if st.type == "sft":
        from training.runtime.stages import sft
        ctx = SimpleNamespace(base_model=model_id, revision=None, trust_remote_code=False)
        model = sft.load_model(st, ctx, "bf16" if st.method == "qlora" and precision == "fp32" else precision)
    else:
        from transformers import AutoModelForCausalLM
        model = AutoModelForCausalLM.from_pretrained(model_id, dtype=torch_dtype(precision))
    if torch.cuda.is_available() and not (st.type == "sft" and st.method == "qlora"):  # QLoRA loads on the GPU
        model.to("cuda")
    if st.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    model.train()
    dev = next(model.parameters()).device
    vocab = model.config.vocab_size
    params = [p for p in model.parameters() if p.requires_grad]

    def try_step(micro: int) -> float:
        if sim_token_cap and micro * seq > sim_token_cap:
            raise SimulatedOOM(f"simulated out of memory: {micro} x {seq} tokens > cap {sim_token_cap}")
        mem = PeakMemory().start()
        opt = torch.optim.AdamW(params, lr=1e-9)
        try:
            ids = torch.randint(0, vocab, (micro, seq), device=dev)
            loss = model(input_ids=ids, labels=ids).loss
            loss.backward()
            opt.step()
            sync()
        finally:
            opt.zero_grad(set_to_none=True)
            del opt
        return mem.stop()["peak_mem_gib"]
    return try_step, model


def _mean_pair_tokens(st, model_id: str, sample: int = 2000) -> float | None:
    """Mean tokens of a pair as the run feeds it (chat template, truncated at max_seq_len), over a sample."""
    import random
    from transformers import AutoTokenizer
    from training.pairs import load_pairs_strict
    from training.runtime.stages.sft import chat_template
    tok = AutoTokenizer.from_pretrained(model_id)
    tok.chat_template = chat_template(tok, st.chat_template)
    rows = load_pairs_strict(Path(st.data), st.format, st.skip_invalid_rows).rows
    rows = random.Random(0).sample(rows, sample) if len(rows) > sample else rows
    lens = [min(st.max_seq_len, len(tok(tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False),
                                        add_special_tokens=False)["input_ids"])) for r in rows]
    return sum(lens) / len(lens) if lens else None


def _sample_corpus(st, tmp: Path) -> tuple[list[str], float, float]:
    """(data for the preflight, corpus bytes, bytes measured): the whole corpus when small, else its first
    documents up to SAMPLE_BYTES written to one .jsonl."""
    from training.data import iter_documents
    from training.recipe_load import expand_data
    files = [f for spec in st.data for f in expand_data(spec)]
    total = float(sum(f.stat().st_size for f in files))
    if total <= SAMPLE_BYTES:
        return list(st.data), total, total
    out = tmp / f"sample-{st.name}.jsonl"
    n = 0
    with open(out, "w", encoding="utf-8") as f:
        for _, _, text in iter_documents(files, st.text_field, whole=True):
            f.write(json.dumps({"text": text}) + "\n")
            n += len(text.encode("utf-8"))
            if n >= SAMPLE_BYTES:
                break
    return [str(out)], total, float(n)


def measure_stage(recipe, i: int, tmp: Path, steps: int, auto: bool, sim_token_cap: int | None,
                  base_model: str) -> dict:
    from training.events import EventWriter, read_events
    from training.runtime.stages.common import Ctx, every, plan_steps

    st = recipe.stages[i]
    run = tmp / f"stage-{i}"
    run.mkdir()
    (run / "checkpoints").mkdir()
    pf = st.model_copy(deep=True)
    search = None
    t0 = time.perf_counter()
    if auto:
        rows = st.micro_batch_size * st.grad_accum
        try_step, model = _trial_step_fn(st, base_model, sim_token_cap)
        search = find_micro_batch(rows, try_step, PeakMemory().stop()["memory_limit_gib"], start=rows)
        del model, try_step
        free_memory()
        if search["micro"] is None:
            raise RuntimeError(f"stage {st.name}: {search['reason']}")
        pf.micro_batch_size, pf.grad_accum = search["micro"], search["accum"]
    search_s = time.perf_counter() - t0
    data_bytes = measured_bytes = 0.0
    prep_s = 0.0
    if st.type == "cpt":
        pf.data, data_bytes, measured_bytes = _sample_corpus(st, tmp)
        if data_bytes > measured_bytes:
            pf.text_field = "text"
    else:
        data_bytes = measured_bytes = float(Path(st.data).stat().st_size)
    pf.max_steps = steps
    pf.save_steps = pf.eval_steps = steps
    pf.logging_steps = 1
    pf.save_total_limit = 1
    probe = _Probe(run / "cache" / st.name)
    ev = EventWriter(run / "events.jsonl")
    ctx = Ctx(run_dir=run, events=ev, stage_index=i, base_model=base_model, tokenizer_src=base_model,
              revision=recipe.model.revision if base_model == recipe.model.id else None,
              trust_remote_code=recipe.model.trust_remote_code, seed=recipe.seed, extra_callbacks=[probe.callback()])
    mem = PeakMemory().start()
    t_call = time.perf_counter()
    if st.type == "cpt":
        from training.runtime.stages import cpt as mod
    else:
        from training.runtime.stages import sft as mod
    res = mod.run(pf, ctx)
    t_done = time.perf_counter()
    m = mem.stop()
    ev.close()
    start = next(e for e in read_events(run / "events.jsonl") if e["event"] == "stage_start")
    # setup: data preparation, model load, Trainer set-up (measured), scaled to the whole corpus for CPT
    setup_s = probe.t_begin - t_call
    if st.type == "cpt":
        rows_measured = start["data"]["train_blocks"]
        rows = rows_measured * data_bytes / measured_bytes
        prep_s = setup_s
    else:
        rows = start["data"]["train_rows"]
        prep_s = setup_s
    scale = data_bytes / measured_bytes if measured_bytes else 1.0
    setup_proj = setup_s + (scale - 1) * prep_s
    # steps: the WARMUP first are not timed
    ends = probe.step_ends
    timed = ends[WARMUP:]
    dts = [b[0] - a[0] for a, b in zip(timed, timed[1:])]
    toks = timed[-1][1] - timed[0][1]
    span = timed[-1][0] - timed[0][0]
    s_step = span / max(1, len(dts))
    tps = toks / span if span > 0 else 0.0
    t_last = ends[-1][0]
    eval_s = (probe.t_eval - t_last) if probe.t_eval else 0.0
    save_s = (probe.t_save - (probe.t_eval or t_last)) if probe.t_save else 0.0
    final_save_s = t_done - (probe.t_end or t_done)
    ckpt = run / "checkpoints" / st.name / f"checkpoint-{steps}"
    ckpt_bytes, out_bytes = du(ckpt), du(run / res["output"])
    _, total = plan_steps(math.ceil(rows), st)
    s_step_run = s_step
    if st.type == "sft" and not st.packing and dts:
        # unpacked pairs come longest first (length-grouped), so the timed steps are the run's longest: carry
        # their time to the run's average step by real tokens per step
        per_step = toks / len(dts)
        mean_len = _mean_pair_tokens(st, base_model)
        if per_step > 0 and mean_len:
            s_step_run = s_step * mean_len * pf.micro_batch_size * pf.grad_accum / per_step
    has_eval = st.eval_fraction > 0
    evals = total // every(total, st.eval_steps) if has_eval else 0
    saves = total // every(total, st.save_steps)
    proj = setup_proj + total * s_step_run + evals * eval_s + saves * save_s + final_save_s
    shutil.rmtree(run, ignore_errors=True)
    method = "full" if st.type == "cpt" else st.method
    return {"stage": st.name, "type": st.type, "method": method, "output_kind": res["kind"],
            "output": res["output"],
            "seq": st.seq_len if st.type == "cpt" else st.max_seq_len,
            "micro_batch_size": pf.micro_batch_size, "grad_accum": pf.grad_accum,
            "batch_search": search, "batch_search_s": search_s,
            "steps_measured": len(ends) - 1, "steps_timed": len(dts),
            "tokens_per_s": tps, "s_per_step": s_step,
            "s_per_step_median": statistics.median(dts) if dts else s_step,
            "s_per_step_projected": s_step_run,
            "first_step_s": ends[1][0] - ends[0][0] if len(ends) > 1 else None,
            **m,
            "checkpoint_bytes": ckpt_bytes, "checkpoint_save_s": save_s, "output_bytes": out_bytes,
            "final_save_s": final_save_s, "eval_s": eval_s, "evals": evals, "saves": saves,
            "setup_s": setup_s, "prep_s_per_gb": prep_s / (measured_bytes / 1e9) if measured_bytes else 0.0,
            "data_bytes": data_bytes, "data_bytes_measured": measured_bytes,
            "total_steps": total, "projected_s": proj,
            "disk": {"checkpoint_bytes": ckpt_bytes, "output_bytes": out_bytes,
                     "cache_bytes_per_corpus_byte": probe.cache_bytes / measured_bytes if st.type == "cpt" and measured_bytes else 0.0}}


def measure(tmp: Path, steps: int, auto: list[str], sim_token_cap: int | None) -> dict:
    """The child's work: every stage measured, the whole run projected. Writes tmp/preflight.json."""
    import datetime as dt
    import torch
    from training.recipe_load import load_recipe
    from training.runtime.diskcheck import estimate_need, free_bytes
    from training.plan.shapes import model_shape
    from training.runtime.stages.common import set_threads

    t0 = time.perf_counter()
    set_threads()
    recipe = load_recipe(tmp / "recipe.yaml", check_paths=False)
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"
    stages = []
    for i, st in enumerate(recipe.stages):
        # an sft stage after a cpt stage starts from its weights: the same shape, so the base model stands in
        stages.append(measure_stage(recipe, i, tmp, steps, st.name in auto, sim_token_cap, recipe.model.id))
    hw = recipe.hardware
    hours = sum(s["projected_s"] for s in stages) / 3600
    for s, st in zip(stages, recipe.stages):  # the measured batch, for the disk projection's save count
        st.micro_batch_size, st.grad_accum = s["micro_batch_size"], s["grad_accum"]
    need = estimate_need(recipe, model_shape(recipe.model.id), torch.cuda.is_available(),
                         {s["stage"]: s["data_bytes"] for s in stages if s["type"] == "cpt"},
                         {s["stage"]: s["disk"] for s in stages})
    free, where = free_bytes(recipe.output_dir)
    from training.runtime.diskcheck import refusal
    peak = max(s["peak_mem_gib"] for s in stages)
    report = {"device": device, "date": dt.date.today().isoformat(), "steps": steps,
              "stages": stages,
              "projected": {"hours": hours, "usd": hours * hw.price_per_gpu_hour * hw.gpu_count,
                            "disk_bytes": need.peak_bytes, "free_bytes": free,
                            "disk_problem": refusal(need, free, where, recipe.output_dir),
                            "peak_mem_gib": peak, "peak_with_margin_gib": peak * (1 + MARGIN),
                            "memory_limit_gib": min(s["memory_limit_gib"] for s in stages)},
              "wall_s": time.perf_counter() - t0}
    try:
        from training.plan.calibration import record_preflight
        record_preflight(report, recipe)
    except Exception as e:  # noqa: BLE001 - calibration is a bonus; a broken file never fails the preflight
        print(f"calibration not recorded: {type(e).__name__}: {e}", file=sys.stderr)
    (tmp / "preflight.json").write_text(json.dumps(report, indent=1), encoding="utf-8")
    return report


def _child(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", required=True)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS)
    ap.add_argument("--auto", default="")
    ap.add_argument("--simulate-batch-token-cap", type=int, default=None)
    a = ap.parse_args(argv)
    measure(Path(a.child), a.steps, [s for s in a.auto.split(",") if s], a.simulate_batch_token_cap)
    return 0


if __name__ == "__main__":
    sys.exit(_child(sys.argv[1:]))
