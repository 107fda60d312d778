"""Continued pre-training: raw domain text, next-token prediction, all weights.

Reads straight through: setup -> data -> model -> train -> save.
Unlike the guide's sample: documents are tokenized in batches by the fast tokenizer in several
processes, joined with EOS and packed into seq_len blocks (no padding, no truncation waste), and a
causal-LM collator makes the labels (the guide's sample has none, so its Trainer cannot compute a loss).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

from training.runtime.checkpoints import publish, temp_output
from training.data import doc_hash, iter_documents
from training.recipe import CptStage, expand_data
from training.runtime.stages.tokens import doc_affixes
from training.runtime.forgetting import ForgettingWatch
from training.runtime.stages.common import (Ctx, EventCallback, attn_implementation, count_params, load_tokenizer,
                                    main_rank_first, plan_steps, resolve_precision, set_threads, torch_dtype,
                                    training_args_kwargs)


def held_out(text: str, fraction: float) -> bool:
    """A document goes to the eval split by its content hash: stable across runs, orders and resumes."""
    if fraction <= 0:
        return False
    return int.from_bytes(doc_hash(text)[:4], "big") < fraction * 2**32


def document_rows(files: list[Path], st: CptStage, split: str, stats: dict):
    """Rows {"text", "first", "last"}: text chunks; `first`/`last` mark a document's start and end, where the
    tokenizer's document affixes go (tokens.doc_affixes)."""
    seen: set[bytes] = set()
    for path, _, text in iter_documents(files, st.text_field, whole=True):
        if not text.strip():
            continue
        if st.dedup:
            h = doc_hash(text)
            if h in seen:
                stats["duplicates"] = stats.get("duplicates", 0) + 1
                continue
            seen.add(h)
        if held_out(text, st.eval_fraction) != (split == "eval"):
            continue
        stats["documents"] = stats.get("documents", 0) + 1
        # split very long documents so one row never holds megabytes (tokenization stays parallel)
        step = 1 << 20
        for i in range(0, len(text), step):
            yield {"text": text[i:i + step], "first": i == 0, "last": i + step >= len(text)}


def tokenize_and_pack(files: list[Path], st: CptStage, tok, split: str, cache: Path):
    """Dataset of {"input_ids": [seq_len]} blocks, documents joined with EOS. Packing works on groups
    of 1,000 rows (memory stays bounded); each group's tail shorter than seq_len is dropped, well under
    1% of the tokens for documents of a few hundred tokens (stats["dropped_tokens"] counts it)."""
    from datasets import Dataset

    stats: dict = {}
    # rows stream to Arrow files in this run's own cache folder (fresh, so never stale; memory stays flat)
    ds = Dataset.from_generator(document_rows, cache_dir=str(cache / split),
                                gen_kwargs={"files": files, "st": st, "split": split, "stats": stats})
    if len(ds) == 0:
        return None, stats
    prefix, suffix = doc_affixes(tok)
    nproc = max(1, min(os.cpu_count() or 1, len(ds) // 2000)) if len(ds) > 4000 else None

    def tokenize(batch):
        enc = tok(batch["text"], add_special_tokens=False)["input_ids"]
        ids = [(prefix if first else []) + e + (suffix if last else [])
               for e, first, last in zip(enc, batch["first"], batch["last"])]
        return {"ids": ids, "n": [len(x) for x in ids]}

    ds = ds.map(tokenize, batched=True, batch_size=256, num_proc=nproc, remove_columns=["text", "first", "last"],
                desc=None)
    seq = st.seq_len

    n_tokens = sum(ds["n"])

    def pack(batch):
        flat = [t for ids in batch["ids"] for t in ids]
        n = len(flat) // seq * seq
        return {"input_ids": [flat[i:i + seq] for i in range(0, n, seq)]}

    ds = ds.map(pack, batched=True, batch_size=1000, remove_columns=["ids", "n"])
    stats["tokens"] = len(ds) * seq
    stats["dropped_tokens"] = n_tokens - stats["tokens"]
    stats["blocks"] = len(ds)
    return (ds if len(ds) else None), stats


class CausalLMCollator:
    """Blocks are all seq_len long: stack them; labels are the inputs (the model shifts them)."""

    def __call__(self, rows):
        import torch
        ids = torch.tensor([r["input_ids"] for r in rows], dtype=torch.long)
        return {"input_ids": ids, "labels": ids.clone()}


def run(st: CptStage, ctx: Ctx) -> dict:
    import torch
    from transformers import AutoModelForCausalLM, Trainer, TrainingArguments, set_seed

    # setup
    set_seed(ctx.seed)
    set_threads()
    precision = resolve_precision(st.precision)
    tok = load_tokenizer(ctx)

    # data
    files = [f for spec in st.data for f in expand_data(spec)]
    cache = ctx.run_dir / "cache" / st.name
    with main_rank_first(ctx):  # rank 0 tokenizes into the cache, the other ranks then read it
        train_ds, tstats = tokenize_and_pack(files, st, tok, "train", cache)
        if train_ds is None:
            from training.data import DataError
            raise DataError(f"stage {st.name}: the corpus gives fewer than seq_len={st.seq_len} tokens of training "
                            f"text; add text or lower seq_len")
        eval_ds, estats = tokenize_and_pack(files, st, tok, "eval", cache) if st.eval_fraction > 0 else (None, {})
        if st.replay:  # general text at replay.fraction of the training tokens (training/runtime/replay.py)
            from training.runtime.replay import mix_replay
            train_ds = mix_replay(train_ds, st, tok, tstats)
            from training.runtime.replay import overlap_warning
            if ctx.is_main and ctx.eval_spec is not None and (why := overlap_warning(st, ctx.eval_spec.general_text)):
                ctx.events.emit("warning", kind="replay_is_general_text", stage=st.name, message=why)
    per_epoch, total = plan_steps(len(train_ds), st, ctx.world_size)

    # model
    model = AutoModelForCausalLM.from_pretrained(ctx.base_model, revision=ctx.revision,
                                                 trust_remote_code=ctx.trust_remote_code,
                                                 dtype=torch_dtype(precision) if precision != "fp32" else torch.float32,
                                                 attn_implementation=attn_implementation(st))
    n_total, n_train = count_params(model)
    ctx.events.emit("stage_start", stage=st.name, index=ctx.stage_index, type="cpt", method="full",
                    base=ctx.base_model, total_steps=total, steps_per_epoch=per_epoch, epochs=st.epochs,
                    tokens_per_step=st.micro_batch_size * st.grad_accum * st.seq_len * ctx.world_size,
                    precision=precision,
                    params=n_total, trainable_params=n_train,
                    data={"documents": tstats.get("documents", 0), "duplicates_dropped": tstats.get("duplicates", 0),
                          "train_tokens": tstats["tokens"], "train_blocks": tstats["blocks"],
                          "eval_documents": estats.get("documents", 0), "eval_tokens": estats.get("tokens", 0),
                          **{k: v for k, v in tstats.items() if k.startswith("replay_")}})

    # train
    kw = training_args_kwargs(st, ctx, precision, total, eval_ds is not None)
    kw["include_num_input_tokens_seen"] = "all"  # packed blocks hold no padding: every token is real
    args = TrainingArguments(**kw)
    cb = EventCallback(ctx, st, total)
    spec = ctx.eval_spec
    watch = [ForgettingWatch(ctx, st, spec, spec.general_text, tok)] \
        if spec is not None and spec.enabled and spec.general_text and eval_ds is not None else []
    trainer = Trainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                      data_collator=CausalLMCollator(), callbacks=[*ctx.extra_callbacks, *watch, cb])
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
