"""Supervised fine-tuning on instruction pairs: LoRA, QLoRA or full weights, through TRL's SFTTrainer.

Reads straight through: setup -> data -> model -> train -> save.
Unlike the guide's sample: `processing_class=` (not the removed `tokenizer=`), a BitsAndBytesConfig
(NF4, double quantization, bf16 compute) instead of `load_in_4bit=True`, prepare_model_for_kbit_training
for QLoRA, LoRA on all linear layers by default (attention and feed-forward, as in the QLoRA paper),
and the loss on completions only.
"""
from __future__ import annotations

from pathlib import Path

from training.runtime.checkpoints import publish, temp_output
from training.data import DataError, doc_hash
from training.pairs import load_pairs_strict
from training.recipe import SftStage
from training.tokens import fit_to_template
from training.runtime.stages.common import (Ctx, EventCallback, attn_implementation, count_params, cuda, every,
                                    load_tokenizer, local_device_index, optimizer_cls_and_kwargs, plan_steps,
                                    precision_plan, set_threads, torch_dtype, training_args_kwargs)

# used when the tokenizer has no chat template of its own (base models usually have none)
PLAIN_CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def chat_template(tok, spec: str) -> str:
    """The template the stage trains with; a tokenizer without one (a base model) gets the plain template
    (no_template_note() says so)."""
    if spec == "auto":
        return tok.chat_template or PLAIN_CHAT_TEMPLATE
    if spec == "plain":
        return PLAIN_CHAT_TEMPLATE
    p = Path(spec)
    if not p.is_file():
        raise DataError(f"chat_template: '{spec}' is not a file; use auto, plain or a .jinja file")
    return p.read_text(encoding="utf-8")


def no_template_note(tok, spec: str) -> str | None:
    """The line for train.log and report.md when a base model without a chat template gets the plain one."""
    if spec == "auto" and not tok.chat_template:
        return ("the tokenizer has no chat template (a base model): training with the plain template "
                "<|role|>\\n...EOS; give chat_template: FILE.jinja to use another")
    return None


def split_pairs(rows: list[dict], fraction: float) -> tuple[list[dict], list[dict]]:
    """Held-out pairs chosen by content hash (stable across runs and resumes)."""
    train, ev = [], []
    for r in rows:
        key = r["prompt"][-1]["content"] + "\x00" + r["completion"][0]["content"]
        (ev if fraction > 0 and int.from_bytes(doc_hash(key)[:4], "big") < fraction * 2**32 else train).append(r)
    return train, ev


def load_model(st: SftStage, ctx: Ctx, prec):
    """`prec`: the stage's PrecisionPlan (training/runtime/precision.py): weights load in prec.load_dtype
    (fp32 master weights for full training unless bf16 + Kahan; the compute dtype for a frozen LoRA base)."""
    import torch
    from transformers import AutoModelForCausalLM

    precision = prec.compute
    kw = dict(revision=ctx.revision, trust_remote_code=ctx.trust_remote_code,
              attn_implementation=attn_implementation(st, ctx.base_model, ctx.revision, ctx.trust_remote_code))
    if st.method == "qlora":
        if not cuda():
            raise DataError("method: qlora needs a CUDA GPU (bitsandbytes 4-bit); on this machine use method: lora")
        from transformers import BitsAndBytesConfig
        from peft import prepare_model_for_kbit_training
        kw["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
        model = AutoModelForCausalLM.from_pretrained(ctx.base_model, dtype=torch_dtype(precision),
                                                     device_map={"": local_device_index()}, **kw)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=st.gradient_checkpointing)
    else:
        model = AutoModelForCausalLM.from_pretrained(ctx.base_model, dtype=torch_dtype(prec.load_dtype), **kw)
    if st.method in ("lora", "qlora"):
        from peft import LoraConfig, get_peft_model
        lcfg = LoraConfig(r=st.lora.r, lora_alpha=st.lora.alpha, lora_dropout=st.lora.dropout,
                          target_modules=st.lora.target_modules, task_type="CAUSAL_LM")
        if st.gradient_checkpointing and st.method == "lora":
            model.enable_input_require_grads()
        model = get_peft_model(model, lcfg)
    return model


def run(st: SftStage, ctx: Ctx) -> dict:
    from datasets import Dataset
    from transformers import set_seed
    from trl import SFTConfig, SFTTrainer

    # setup
    set_seed(ctx.seed)
    set_threads()
    prec = precision_plan(st, "full" if st.method == "full" else st.method)
    tok = load_tokenizer(ctx)
    if note := no_template_note(tok, st.chat_template):
        print(f"[{st.name}] {note}", flush=True)
        ctx.events.emit("warning", kind="no_chat_template", stage=st.name, message=note)
    tok.chat_template = chat_template(tok, st.chat_template)

    # data: every pair through the template once (a refused system message is folded into the user turn)
    pairs = load_pairs_strict(Path(st.data), st.format, st.skip_invalid_rows)
    rows, folded = fit_to_template(tok, pairs.rows, pairs.lines, st.data)
    if folded:
        note = (f"the chat template refuses a system message: in {folded} pairs the system text was put before "
                f"the first user turn")
        print(f"[{st.name}] {note}", flush=True)
        ctx.events.emit("warning", kind="system_folded", stage=st.name, pairs=folded, message=note)
    fitted = {id(a): b for a, b in zip(pairs.rows, rows)}  # split by the rows as written (evaluate.py does too)
    train_rows, eval_rows = ([fitted[id(r)] for r in part] for part in split_pairs(pairs.rows, st.eval_fraction))
    if not train_rows:
        raise DataError(f"{st.data}: every pair fell into the eval split; lower eval_fraction")
    train_ds = Dataset.from_list(train_rows)
    eval_ds = Dataset.from_list(eval_rows) if eval_rows else None
    per_epoch, total = plan_steps(len(train_rows), st, ctx.world_size)

    # training arguments before the model (FSDP / ZeRO-3 state must exist for sharded loading).
    # Packing (training/runtime/defaults.py): TRL's best-fit-decreasing bins, run padding-free; exact on
    # flash-attention (varlen) and on sdpa (a block-diagonal mask from position_ids, as the trainer passes no cache).
    # Unpacked, micro-batches of similar lengths keep the padding small.
    kw = training_args_kwargs(st, ctx, prec, total, eval_ds is not None)
    kw.pop("include_num_input_tokens_seen")
    args = SFTConfig(**kw, include_num_input_tokens_seen="non_padding", max_length=st.max_seq_len,
                     packing=st.packing, packing_strategy="bfd", completion_only_loss=st.completion_only_loss,
                     train_sampling_strategy="group_by_length" if st.group_by_length else "random",
                     dataset_num_proc=None)

    # model
    model = load_model(st, ctx, prec)
    n_total, n_train = count_params(model)
    # train
    cb = EventCallback(ctx, st, total)
    trainer = SFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                         processing_class=tok, callbacks=[*ctx.extra_callbacks, cb],
                         optimizer_cls_and_kwargs=optimizer_cls_and_kwargs(prec, args))
    if st.packing and not st.max_steps:  # epochs are counted in packed rows, fewer than pairs
        per_epoch, total = plan_steps(len(trainer.train_dataset), st, ctx.world_size)
        args.max_steps, cb.total = total, total
        args.warmup_steps = max(0, round(st.warmup_ratio * total))
        args.save_steps = every(total, st.save_steps)
        if eval_ds is not None:
            args.eval_steps = every(total, st.eval_steps)
    ctx.events.emit("stage_start", stage=st.name, index=ctx.stage_index, type="sft", method=st.method,
                    base=ctx.base_model, total_steps=total, steps_per_epoch=per_epoch, epochs=st.epochs,
                    precision=prec.compute, master_weights=prec.master, optimizer=prec.optimizer,
                    params=n_total, trainable_params=n_train,
                    data={"pairs": len(pairs.rows), "formats": pairs.formats, "invalid_rows": len(pairs.invalid),
                          "train_pairs": len(train_rows), "eval_pairs": len(eval_rows),
                          "train_rows": len(trainer.train_dataset), "packed": st.packing})
    result = trainer.train(resume_from_checkpoint=ctx.resume_from)

    # save: an adapter for LoRA/QLoRA (its base is recorded in adapter_config.json), else the full model
    kind = "model" if st.method == "full" else "adapter"
    out = ctx.run_dir / st.name / kind
    # stopped early (signal, budget) -> the checkpoint is the output; else save into a temporary folder and
    # rename it into place, so an output folder that exists is complete (resume skips this stage then)
    stopped = trainer.state.global_step < total
    if not stopped:
        tmp = temp_output(out) if ctx.is_main else out.with_name(f".{out.name}.partial")
        trainer.save_model(str(tmp))  # every rank calls it (FSDP/ZeRO-3 gather); only rank 0 writes
        if ctx.is_main:
            tok.save_pretrained(str(tmp))
            publish(tmp, out)
    return {"output": str(out.relative_to(ctx.run_dir)), "kind": kind, "train_loss": result.training_loss,
            "steps": trainer.state.global_step, "stopped": stopped, "last_loss": cb.last_loss}
