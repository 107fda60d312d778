"""Continued pre-training: raw domain text, next-token prediction, all weights.

Reads straight through: setup -> data -> model -> train -> save.
Unlike the guide's sample: documents (training/data.py's rule) are deduplicated, split, tokenized by the
fast tokenizer in several processes, joined with the tokenizer's document affixes and packed into seq_len
blocks (no padding, no truncation waste) by training/runtime/prepare.py, and a causal-LM collator makes
the labels (the guide's sample has none, so its Trainer cannot compute a loss).
"""
from __future__ import annotations

import shutil

from training.runtime.checkpoints import publish, temp_output
from training.recipe import CptStage
from training.runtime.prepare import load_splits, prepare
from training.runtime.forgetting import ForgettingWatch
from training.runtime.stages.common import (Ctx, EventCallback, attn_implementation, count_params, load_tokenizer,
                                    main_rank_first, optimizer_cls_and_kwargs, plan_steps, precision_plan,
                                    set_threads, torch_dtype, training_args_kwargs)


class CausalLMCollator:
    """Blocks are all seq_len long: stack them; labels are the inputs (the model shifts them)."""

    def __call__(self, rows):
        import torch
        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}


def run(st: CptStage, ctx: Ctx) -> dict:
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, set_seed

    # setup
    set_seed(ctx.seed)
    set_threads()
    # full weights: fp32 master weights or bf16 + Kahan summation, never plain bf16 updates (runtime/precision.py)
    prec = precision_plan(st, "full")
    tok = load_tokenizer(ctx)

    # data: documents -> dedup -> held-out split -> tokens -> packed blocks, cached in the run folder
    cache = ctx.run_dir / "cache" / st.name
    with main_rank_first(ctx):  # rank 0 prepares the cache, the other ranks then find it
        data = prepare(st, tok, cache, ctx.events.emit if ctx.is_main else None)
    train_ds, eval_ds = load_splits(data)
    print(f"[{st.name}] data: train {data['train_documents']:,} documents, {data['train_tokens']:,} tokens "
          f"({data['train_blocks']:,} blocks of {st.seq_len}); eval {data['eval_documents']:,} documents, "
          f"{data['eval_tokens']:,} tokens ({data['eval_blocks']:,} blocks); dedup {st.dedup}: "
          f"{data['duplicates_dropped']:,} dropped; {len(data['skipped_files'])} files skipped"
          f"{' (cache reused)' if data['cached'] else ''}"
          + (f"; no held-out document gave a full block, so the last {data['move_to_eval']} train blocks are the "
             f"eval split" if data["move_to_eval"] else ""), flush=True)
    if not data["cached"]:
        via = data.get("units_via_tokenizer", 0) if data.get("encoder") == "word cache" else 0
        print(f"[{st.name}] data step: {data['bytes_total'] / 1e6:,.1f} MB in {data['seconds']:.1f} s on "
              f"{data['processes']} processes, encoded by the {data.get('encoder', 'tokenizer')}"
              + (f" ({via:,} units through the tokenizer)" if via else ""), flush=True)
    for why in data["skipped_files"][:5]:
        print(f"[{st.name}] skipped {why}", flush=True)
    rstats: dict = {}
    if st.replay:  # general text at replay.fraction of the training tokens (training/runtime/replay.py)
        from training.runtime.replay import mix_replay, overlap_warning
        train_ds = mix_replay(train_ds, st, tok, rstats)
        if ctx.is_main and ctx.eval_spec is not None and (why := overlap_warning(st, ctx.eval_spec.general_text)):
            ctx.events.emit("warning", kind="replay_is_general_text", stage=st.name, message=why)
    per_epoch, total = plan_steps(len(train_ds), st, ctx.world_size)

    # training arguments before the model: under FSDP / ZeRO-3 they set up the accelerate / DeepSpeed state
    # that from_pretrained needs to load sharded (ZeRO-3's zero.Init) instead of a full copy per rank
    kw = training_args_kwargs(st, ctx, prec, total, eval_ds is not None)
    kw["include_num_input_tokens_seen"] = "all"  # packed blocks hold no padding: every token is real
    args = TrainingArguments(**kw)

    # model (the attention kernel its class supports: Gemma2 refuses sdpa)
    attn = attn_implementation(st, ctx.base_model, ctx.revision, ctx.trust_remote_code)
    model = AutoModelForCausalLM.from_pretrained(ctx.base_model, revision=ctx.revision,
                                                 trust_remote_code=ctx.trust_remote_code,
                                                 dtype=torch_dtype(prec.load_dtype),
                                                 attn_implementation=attn)
    n_total, n_train = count_params(model)
    ctx.events.emit("stage_start", stage=st.name, index=ctx.stage_index, type="cpt", method="full",
                    base=ctx.base_model, total_steps=total, steps_per_epoch=per_epoch, epochs=st.epochs,
                    tokens_per_step=st.micro_batch_size * st.grad_accum * st.seq_len * ctx.world_size,
                    precision=prec.compute, master_weights=prec.master, optimizer=prec.optimizer,
                    params=n_total, trainable_params=n_train,
                    data={k: data[k] for k in ("train_documents", "train_tokens", "train_blocks", "eval_documents",
                                                "eval_tokens", "eval_blocks", "duplicates_dropped", "exact_dropped",
                                                "near_dropped", "dropped_tokens", "files", "cached",
                                                "move_to_eval", "move_to_train")}
                    | {"documents": data["train_documents"], "dedup": st.dedup,
                       "skipped_files": len(data["skipped_files"])} | rstats)

    # train
    cb = EventCallback(ctx, st, total)
    spec = ctx.eval_spec
    watch = [ForgettingWatch(ctx, st, spec, spec.general_text, tok)] \
        if spec is not None and spec.enabled and spec.general_text and eval_ds is not None else []
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=CausalLMCollator(), callbacks=[*ctx.extra_callbacks, *watch, cb],
                      optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(prec, args))
    result = trainer.train(resume_from_checkpoint=ctx.resume_from)

    # save
    out = ctx.run_dir / st.name / "model"
    # stopped early (signal, budget) -> the checkpoint is the output; else save into a temporary folder and
    # rename it into place, so an output folder that exists is complete (resume skips this stage then)
    stopped = trainer.state.global_step < total
    if not stopped:
        tmp = temp_output(out) if ctx.is_main else out.with_name(f".{out.name}.partial")
        trainer.save_model(str(tmp))  # every rank calls it (FSDP/ZeRO-3 gather); only rank 0 writes
        if ctx.is_main:
            tok.save_pretrained(str(tmp))
            publish(tmp, out)
            shutil.rmtree(cache, ignore_errors=True)  # the tokenized corpus; a resume rebuilds it
            try:
                cache.parent.rmdir()
            except OSError:
                pass
    return {"output": str(out.relative_to(ctx.run_dir)), "kind": "model", "train_loss": result.training_loss,
            "steps": trainer.state.global_step, "stopped": stopped, "last_loss": cb.last_loss}
