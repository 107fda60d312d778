"""Failures explained: pure functions from numbers to the words a person reads. No torch here.

explain_nan()     loss became NaN or inf: the likely causes for this stage, most likely first.
estimate_memory() bytes a training step needs on the GPU (weights, gradients, optimizer, master weights,
                  activations), by the one memory model (training/plan/memory.py).
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
    """What decides a training step's GPU memory: the model's shape (training/plan/shapes.py) and the stage's
    settings. Counted by the one memory model, training/plan/memory.py, as the estimate and the defaults are."""
    shape: object                # a ModelShape
    seq_len: int
    micro_batch: int
    precision: str = "bf16"      # bf16 | fp16 | fp32 (the compute dtype)
    method: str = "full"         # full | lora | qlora
    gradient_checkpointing: bool = False
    lora_r: int = 16
    master: str = "fp32"         # full training: fp32 | bf16_kahan
    liger: bool = False

    @property
    def params(self) -> float:
        return self.shape.total_params


def _step(m: MemoryInput):
    from training.plan.memory import StepConfig
    return StepConfig(kind=m.method, seq=m.seq_len, micro_batch=m.micro_batch, liger=m.liger,
                      checkpointing=m.gradient_checkpointing, lora_r=m.lora_r,
                      master=m.master if m.master in ("fp32", "bf16_kahan", "bf16") else "fp32",
                      compute=m.precision if m.precision in ("bf16", "fp16", "fp32") else "bf16")


def estimate_memory(m: MemoryInput) -> dict[str, int]:
    """Bytes by part: weights, grads_optimizer (with master weights / compensation), activations, logits,
    overhead; and `total`."""
    from training.plan.memory import step_bytes
    b = step_bytes(m.shape, _step(m))
    parts = {"weights": int(b["weights"]), "grads_optimizer": int(b["grads"] + b["optimizer"] + b["master"]),
             "activations": int(b["activations"]), "logits": int(b["logits"]),
             "overhead": GIB}  # CUDA context, allocator fragmentation
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
    if m.method == "full" and m.master == "fp32" and m.precision == "bf16":
        cands.append(("master_weights: bf16_kahan (bf16 weights with Kahan-compensated AdamW: 10 instead of "
                      "18 bytes per parameter, the updates still kept)", replace(m, master="bf16_kahan")))
    if m.method in ("full", "lora"):
        cands.append(("method: qlora (4-bit base weights, LoRA adapters)",
                      replace(m, method="qlora", precision="bf16" if m.precision == "fp32" else m.precision,
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
                 gradient_checkpointing: bool, lora_r: int = 16, master: str = "fp32",
                 liger: bool = False) -> MemoryInput:
    """A MemoryInput from a model's config.json (a dict; Llama-8B-like sizes stand in for missing keys)."""
    from training.plan.shapes import from_config
    cfg = {"hidden_size": 4096, "num_hidden_layers": 32, "vocab_size": 32000, **(config or {})}
    cfg.setdefault("tie_word_embeddings", True)
    shape = from_config(cfg, "oom", "config.json")
    return MemoryInput(shape=shape, seq_len=seq_len, micro_batch=micro_batch, precision=precision,
                       method=method if stage_type == "sft" else "full", gradient_checkpointing=gradient_checkpointing,
                       lora_r=lora_r, master=master, liger=liger)
