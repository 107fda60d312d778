"""Failures explained: pure functions from numbers to the words a person reads. No torch here.

explain_nan()     loss became NaN or inf: the likely causes for this stage, most likely first.
estimate_memory() bytes a training step needs on the GPU (weights, gradients, optimizer, activations).
explain_oom()     CUDA out of memory: estimated vs available, and concrete recipe changes that would fit.

The numbers are estimates (within ~30% for dense decoder models); their job is to rank the changes
and say which ones fit, not to predict the allocator to the byte.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

GIB = 1024 ** 3


def explain_nan(stage_type: str, method: str, learning_rate: float, precision: str, step: int,
                value: str = "nan") -> tuple[str, str]:
    """(message, hint) for a loss that stopped being finite at `step`."""
    causes = []
    if stage_type == "cpt" and learning_rate > 1e-4:
        causes.append(f"learning_rate {learning_rate:g} is high for continued pre-training "
                      f"(about 10% of the original pre-training rate, typically 1e-5); lower it")
    elif stage_type == "sft" and method in ("lora", "qlora") and learning_rate > 1e-3:
        causes.append(f"learning_rate {learning_rate:g} is high for LoRA (2e-4 is the usual start); lower it")
    elif stage_type == "sft" and method == "full" and learning_rate > 1e-4:
        causes.append(f"learning_rate {learning_rate:g} is high for a full fine-tune (1e-5..5e-5 is usual); lower it")
    if precision == "fp16":
        causes.append("fp16 overflow (activations above 65504): use precision: bf16 on a GPU that has it "
                      "(A100, H100, RTX 30xx and newer), or fp32")
    if step <= 1:
        causes.append("the loss was not finite on the first step: check the base model's weights and the data "
                      "(a row whose completion is empty leaves no token to learn from)")
    if not causes:
        causes.append(f"learning_rate {learning_rate:g} may still be too high for this model and data: halve it "
                      f"and raise warmup_ratio")
    causes.append("resume from the last good checkpoint after changing the recipe, or start a new run")
    message = f"loss became {value} at step {step}; training stopped at once and no checkpoint was written after it"
    return message, "likely causes: " + "; ".join(causes)


@dataclass(frozen=True)
class MemoryInput:
    """What decides a training step's GPU memory. Counts, not tensors, so tests can build one by hand."""
    params: int                  # all parameters of the model
    hidden: int
    layers: int
    vocab: int
    seq_len: int
    micro_batch: int
    precision: str = "bf16"      # bf16 | fp16 | fp32
    method: str = "full"         # full | lora | qlora
    trainable: int | None = None  # LoRA parameters; None means all (full)
    gradient_checkpointing: bool = False


def estimate_memory(m: MemoryInput) -> dict[str, int]:
    """Bytes by part: weights, grads_optimizer, activations, logits, overhead; and `total`."""
    wbytes = {"bf16": 2, "fp16": 2, "fp32": 4}.get(m.precision, 2)
    if m.method == "qlora":
        weights = int(m.params * 0.56)  # NF4 with double quantization, plus the layers kept in 16 bit
    else:
        weights = m.params * wbytes
    trainable = m.params if m.method == "full" else (m.trainable or max(1, m.params // 100))
    # gradients in the weights' dtype, AdamW's two moments in fp32
    grads_opt = trainable * (wbytes + 8)
    tokens = m.micro_batch * m.seq_len
    act_bytes = 2 if m.precision in ("bf16", "fp16") or m.method == "qlora" else 4
    # per layer and token ~17 activation values of width `hidden` (sdpa attention, no s^2 term)
    per_layer = tokens * m.hidden * 17 * act_bytes
    if m.gradient_checkpointing:
        activations = m.layers * tokens * m.hidden * act_bytes + per_layer
    else:
        activations = m.layers * per_layer
    logits = tokens * m.vocab * 4 * 2  # fp32 logits and their gradient
    overhead = GIB  # CUDA context, allocator fragmentation
    parts = {"weights": weights, "grads_optimizer": grads_opt, "activations": activations, "logits": logits,
             "overhead": overhead}
    parts["total"] = sum(parts.values())
    return parts


def _gib(b: int) -> str:
    return f"{b / GIB:.1f} GiB"


def oom_changes(m: MemoryInput, grad_accum: int, available: int) -> list[tuple[str, int]]:
    """Recipe changes, one at a time and then combined, each with its estimate: those that fit come first."""
    cands: list[tuple[str, MemoryInput]] = []
    mb, ga = m.micro_batch, grad_accum
    while mb > 1:
        mb, ga = mb // 2, ga * 2
        cands.append((f"micro_batch_size: {mb}, grad_accum: {ga} (same effective batch)",
                      replace(m, micro_batch=mb)))
        if estimate_memory(replace(m, micro_batch=mb))["total"] <= available:
            break
    if not m.gradient_checkpointing:
        cands.append(("gradient_checkpointing: true (about 30% slower steps)",
                      replace(m, gradient_checkpointing=True)))
        cands.append(("gradient_checkpointing: true and micro_batch_size: 1 "
                      f"(grad_accum: {grad_accum * m.micro_batch})",
                      replace(m, gradient_checkpointing=True, micro_batch=1)))
    if m.method in ("full", "lora"):
        cands.append(("method: qlora (4-bit base weights, LoRA adapters)",
                      replace(m, method="qlora", trainable=m.trainable or max(1, m.params // 100),
                              gradient_checkpointing=True)))
    if m.seq_len > 512:
        cands.append((f"seq_len / max_seq_len: {m.seq_len // 2}", replace(m, seq_len=m.seq_len // 2)))
    scored = [(text, estimate_memory(x)["total"]) for text, x in cands]
    fits = [c for c in scored if c[1] <= available]
    rest = [c for c in scored if c[1] > available]
    return fits + rest


def explain_oom(m: MemoryInput, grad_accum: int, available: int) -> tuple[str, str]:
    """(message, hint) for CUDA out of memory: estimate vs available and the changes that would fit."""
    est = estimate_memory(m)
    message = (f"GPU out of memory: this step needs about {_gib(est['total'])} (weights {_gib(est['weights'])}, "
               f"gradients+optimizer {_gib(est['grads_optimizer'])}, activations {_gib(est['activations'])}, "
               f"logits {_gib(est['logits'])}) and the GPU has {_gib(available)}")
    changes = oom_changes(m, grad_accum, available)
    fits = [f"{text} -> ~{_gib(b)}" for text, b in changes if b <= available]
    if fits:
        hint = "change the recipe, then resume: " + "; or ".join(fits[:3])
    else:
        best = min(changes, key=lambda c: c[1]) if changes else None
        hint = ("no single change fits this GPU; " + (f"the smallest is {best[0]} -> ~{_gib(best[1])}; " if best else "")
                + "use a GPU with more memory or a smaller model")
    return message, hint


def memory_input(config: dict, stage_type: str, method: str, seq_len: int, micro_batch: int, precision: str,
                 gradient_checkpointing: bool, lora_r: int = 16) -> MemoryInput:
    """A MemoryInput from a model's config.json (a dict) and the stage's settings."""
    h = int(config.get("hidden_size") or config.get("n_embd") or 4096)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 32)
    vocab = int(config.get("vocab_size") or 32000)
    inter = int(config.get("intermediate_size") or 4 * h)
    heads = int(config.get("num_attention_heads") or 32)
    kv = int(config.get("num_key_value_heads") or heads)
    attn = h * h * 2 + 2 * h * (h * kv // heads)
    per_layer = attn + 3 * h * inter
    emb = vocab * h * (1 if config.get("tie_word_embeddings", True) else 2)
    params = layers * per_layer + emb
    trainable = None
    if method in ("lora", "qlora"):
        # r x (in + out) for each of the 7 linear layers of a Llama block (all-linear)
        trainable = layers * lora_r * (2 * (h + h) + 2 * (h + h * kv // heads) + 3 * (h + inter))
    return MemoryInput(params=params, hidden=h, layers=layers, vocab=vocab, seq_len=seq_len, micro_batch=micro_batch,
                       precision=precision, method=method if stage_type == "sft" else "full", trainable=trainable,
                       gradient_checkpointing=gradient_checkpointing)
