"""Fast-by-default training settings, each with the reason it was chosen. Pure Python, no torch.

`apply_defaults(recipe, machine)` fills in, for every stage, the settings that a person did not write
(pydantic's `model_fields_set` tells an explicit key from a schema default; an explicit key always wins)
and returns a list of {stage, key, value, reason} that the runner records as `resolved.defaults` in the
run's recipe.yaml. What it decides:

- SFT packing: with flash-attention, TRL best-fit-decreasing packing (`packing_strategy="bfd"`), which TRL
  runs padding-free: a micro-batch is one flattened row with `position_ids` restarting at every pair and
  the varlen kernel keeps pairs apart. Without it (sdpa, the CPU) the stated fallback is no packing and
  length-grouped micro-batches (`group_by_length`), padded to their longest pair. Packing on sdpa is
  exact (transformers 5.x derives a block-diagonal causal mask from those position_ids when the forward
  gets no attention mask and no cache, and the SFT trainer passes `use_cache=False`;
  tests/integration/test_fast_packing.py checks the logits) but the mask is dense over the whole
  flattened row, so attention grows with its square: on the demo, grouped padding was about twice as fast
  (bench/RESULTS.md). A recipe that asks for packing on sdpa gets micro-batches of at most
  SDPA_PACKED_ROW_TOKENS tokens.
- attention: flash_attention_2 when CUDA and the flash_attn package are present, else sdpa.
- Liger kernels (RMSNorm, RoPE, SwiGLU; fused linear cross-entropy in CPT) when CUDA and liger-kernel
  are present (`pip install tune-wizard[gpu]`).
- micro-batch and gradient accumulation: the recipe's rows per optimizer step (micro_batch_size x
  grad_accum) are kept; the largest micro-batch that divides them and fits the detected card's memory
  (by the VRAM estimate of training/plan/estimate.py; on the CPU, half the free host memory) is chosen, and accumulation makes up the
  rest. A person who sets either key keeps both as written.
- gradient checkpointing only when not even a micro-batch of 1 fits without it.
- full training's master weights (`master_weights`, training/runtime/precision.py): fp32 where the step
  fits the card by the one memory model (training/plan/memory.py, 18 bytes per parameter), else bf16 with
  Kahan-compensated AdamW (10); fp32 on the CPU, under FSDP / ZeRO-3 and on GPUs without bf16.
- precision: recorded as it will run; an explicit bf16 on the CPU is honoured, with a note that it can be slower.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Callable

GIB = 2**30
CONTEXT_GIB = 1.5             # CUDA context, allocator fragmentation, kernels' workspaces (not in the estimate)
MAX_MICRO = 64
SDPA_PACKED_ROW_TOKENS = 8192  # sdpa builds a dense (T x T) mask for a flattened padding-free row


@dataclass(frozen=True)
class Machine:
    cuda: bool                 # an NVIDIA GPU is visible (NVML)
    gpu_name: str | None = None
    gpu_mem_gib: float | None = None
    liger: bool = False        # liger_kernel importable
    flash_attn: bool = False   # flash_attn importable
    cpus: int = 1
    host_mem_gib: float | None = None  # available host memory: the CPU's "card" when there is no GPU
    bf16: bool = True          # the GPU computes in bf16 (compute capability 8.0+); False on V100, T4


def _has(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def detect() -> Machine:
    """The first GPU through NVML (no torch import), and which optional kernels are installed."""
    name = mem = None
    bf16 = True
    try:
        import pynvml
        pynvml.nvmlInit()
        try:
            if pynvml.nvmlDeviceGetCount() > 0:
                h = pynvml.nvmlDeviceGetHandleByIndex(0)
                n = pynvml.nvmlDeviceGetName(h)
                name = n.decode() if isinstance(n, bytes) else n
                mem = pynvml.nvmlDeviceGetMemoryInfo(h).total / GIB
                try:
                    bf16 = pynvml.nvmlDeviceGetCudaComputeCapability(h)[0] >= 8
                except Exception:
                    pass
        finally:
            pynvml.nvmlShutdown()
    except Exception:
        pass
    gpu = name is not None
    try:
        import psutil
        host = psutil.virtual_memory().available / GIB
    except Exception:
        host = None
    return Machine(cuda=gpu, gpu_name=name, gpu_mem_gib=mem, liger=gpu and _has("liger_kernel"),
                   flash_attn=gpu and _has("flash_attn"), cpus=os.cpu_count() or 1, host_mem_gib=host,
                   bf16=bf16)


def loader_settings(cuda: bool, cpus: int | None = None) -> dict:
    """Dataloader workers and pinned memory: overlap collation and host->GPU copies with the GPU step."""
    cpus = cpus or os.cpu_count() or 1
    if not cuda:
        return {"dataloader_num_workers": 0, "dataloader_pin_memory": False}
    return {"dataloader_num_workers": max(1, min(4, cpus // 2)), "dataloader_pin_memory": True}


# ---------------------------------------------------------------- VRAM estimate

def step_config(kind: str, micro: int, seq: int, checkpointing: bool, liger: bool, lora=None,
                master: str = "fp32", compute: str = "bf16"):
    from training.plan.memory import StepConfig
    kw = {} if lora is None else dict(lora_r=lora.r, lora_dropout=lora.dropout,
                                      lora_targets=lora.target_modules if isinstance(lora.target_modules, str)
                                      else tuple(lora.target_modules))
    return StepConfig(kind=kind, seq=seq, micro_batch=micro, packed=True, liger=liger, checkpointing=checkpointing,
                      master=master, compute=compute, **kw)


def peak_gib(shape, kind: str, micro: int, seq: int, checkpointing: bool, liger: bool, lora=None,
             master: str = "fp32", compute: str = "bf16", strategy: str = "ddp", shards: int = 1) -> float:
    """Peak GiB of one training step, by the one memory model (training/plan/memory.py)."""
    from training.plan.memory import step_gib
    return step_gib(shape, step_config(kind, micro, seq, checkpointing, liger, lora, master, compute), shards,
                    strategy)




# ---------------------------------------------------------------- the batch-size chooser

@dataclass(frozen=True)
class BatchChoice:
    micro: int
    accum: int
    checkpointing: bool
    peak_gib: float | None
    fits: bool = True


def choose_batch(rows_per_step: int, peak: Callable[[int, bool], float], budget_gib: float,
                 max_micro: int = MAX_MICRO) -> BatchChoice:
    """The largest micro-batch that divides rows_per_step and fits budget_gib by `peak(micro, checkpointing)`;
    checkpointing only when no micro-batch fits without it. Keeps micro x accum == rows_per_step."""
    sizes = [d for d in range(min(rows_per_step, max_micro), 0, -1) if rows_per_step % d == 0]
    for ckpt in (False, True):
        for m in sizes:
            g = peak(m, ckpt)
            if g <= budget_gib:
                return BatchChoice(m, rows_per_step // m, ckpt, round(g, 2))
    return BatchChoice(1, rows_per_step, True, round(peak(1, True), 2), fits=False)


# ---------------------------------------------------------------- applying them to a recipe

def _explicit(st, key: str) -> bool:
    return key in st.model_fields_set


def apply_defaults(recipe, machine: Machine, shape=None) -> list[dict]:
    """Set every default-valued speed setting of each stage in place; return what was set and why.
    `shape` is a training.plan.shapes.ModelShape (None: no memory estimate, the recipe's batch is kept)."""
    out: list[dict] = []

    def put(st, key, value, reason):
        if _explicit(st, key):
            out.append({"stage": st.name, "key": key, "value": getattr(st, key), "reason": "set in the recipe"})
            return
        setattr(st, key, value)
        st.model_fields_set.discard(key)  # still a default: a later resolve may choose again
        out.append({"stage": st.name, "key": key, "value": value, "reason": reason})

    for i, st in enumerate(recipe.stages):
        if machine.cuda and machine.flash_attn:
            put(st, "attention", "flash_attention_2", "CUDA and flash_attn are installed: varlen kernels, no mask")
        else:
            put(st, "attention", "sdpa", "PyTorch's fused attention; flash_attn is not installed"
                if machine.cuda else "PyTorch's fused attention (the CPU has no flash-attention)")
        if machine.cuda and machine.liger:
            put(st, "liger_kernel", True, "CUDA and liger-kernel are present: fused RMSNorm, RoPE, SwiGLU and "
                "cross-entropy kernels cut activation memory and time")
        else:
            put(st, "liger_kernel", False, "liger-kernel is not installed (pip install 'tune-wizard[gpu]')"
                if machine.cuda else "Liger's Triton kernels need a CUDA GPU")
        seq = st.seq_len if st.type == "cpt" else st.max_seq_len
        if st.type == "cpt":
            put(st, "packing", True, "documents joined with EOS into seq_len blocks: no padding, no truncation waste")
        elif st.attention == "flash_attention_2":
            put(st, "packing", True, "best-fit-decreasing packing, padding-free: no compute spent on padding, "
                "and flash-attention's varlen kernel keeps the pairs apart")
            put(st, "group_by_length", False, "packed rows are all about max_seq_len long")
        else:
            put(st, "packing", False, "no flash-attention: sdpa would mask the whole flattened packed row (exact, "
                "but its attention grows with the square of the row; measured slower in bench/RESULTS.md)")
            put(st, "group_by_length", not st.packing, "micro-batches of similar lengths: little padding, "
                "no packed-row mask" if not st.packing else "packed rows are all about max_seq_len long")
        compute, master = _precision(recipe, i, st, machine, shape, seq, put, out)
        _batch(st, machine, shape, seq, st.packing, put, master, compute, _sharding(recipe.hardware))
    why = "CUDA: collation and host-to-GPU copies overlap the GPU step" if machine.cuda else \
        "CPU: worker processes would compete with training for the cores"
    for key, value in loader_settings(machine.cuda, machine.cpus).items():
        out.append({"stage": None, "key": key, "value": value, "reason": why})
    out.append({"stage": None, "key": "optim", "value": "adamw_torch_fused" if machine.cuda else "adamw_torch",
                "reason": "one fused kernel for the whole AdamW update" if machine.cuda else "no fused AdamW on the CPU"})
    return out


def _sharding(hw) -> tuple[str, int]:
    """The memory model's strategy name and shard count for the recipe's hardware."""
    if hw.strategy == "fsdp":
        return "fsdp", hw.gpu_count
    if hw.strategy == "deepspeed-zero3":
        return ("zero3_offload" if hw.offload_optimizer else "zero3"), hw.gpu_count
    return "ddp", 1


def _budget(machine: Machine) -> tuple[float, str]:
    if machine.cuda:
        return (machine.gpu_mem_gib or 0) - CONTEXT_GIB, gpu_text(machine)
    return 0.5 * (machine.host_mem_gib or 0), "half the free host memory"


def _precision(recipe, i: int, st, machine: Machine, shape, seq: int, put, out: list) -> tuple[str, str]:
    """Record the precision a stage will run in; resolve full training's master weights. Returns
    (compute dtype, master weights) for the memory estimate (training/runtime/precision.py decides)."""
    from training.recipe import Problem, RecipeError
    from training.runtime.precision import Device, PrecisionError, compute_dtype

    try:
        compute, notes = compute_dtype(st.precision, Device(machine.cuda, machine.bf16))
    except PrecisionError as e:
        raise RecipeError([Problem(path=f"stages.{i}.precision", message=str(e))]) from None
    kind = "full" if st.type == "cpt" else st.method
    if kind == "qlora" and compute == "fp32":
        compute = "bf16" if machine.bf16 else "fp16"
    if _explicit(st, "precision"):
        why = "set in the recipe" + (f"; {notes[0]}" if notes else "")
    elif not machine.cuda:
        why = "auto on the CPU: fp32 (set precision: bf16 to test the GPU's numerics here)"
    else:
        why = "auto: " + (notes[0] if notes else "this GPU computes in bf16")
    out.append({"stage": st.name, "key": "precision", "value": compute, "reason": why})
    if kind != "full":
        return compute, "fp32"
    strategy, shards = _sharding(recipe.hardware)
    if compute == "fp32":
        master, why = "fp32", "fp32 training: the weights are their own master copy"
    elif strategy != "ddp":
        master, why = "fp32", f"{recipe.hardware.strategy} keeps fp32 master shards (16 bytes per parameter / GPUs)"
    elif compute == "fp16":
        master, why = "fp32", "no bf16 on this GPU: fp32 master weights with fp16 autocast and loss scaling"
    else:
        budget, where = _budget(machine)
        if shape is None or budget <= 0:
            master, why = "fp32", ("no memory estimate (model shape unknown): fp32 master weights keep every update; "
                                   "set master_weights: bf16_kahan if they do not fit")
        else:
            from training.plan.memory import choose_master
            cfg = step_config("full", st.micro_batch_size, seq, True, bool(st.liger_kernel), compute=compute)
            master, why = choose_master(shape, cfg, budget)
            why += f" (in {where})"
    put(st, "master_weights", master, why)
    return compute, st.master_weights if st.master_weights != "auto" else master


def _batch(st, machine: Machine, shape, seq: int, packed: bool, put, master: str = "fp32", compute: str = "bf16",
           sharding: tuple[str, int] = ("ddp", 1)) -> None:
    rows = st.micro_batch_size * st.grad_accum
    sdpa_packed = st.type == "sft" and packed and st.attention != "flash_attention_2"
    cap = max(1, SDPA_PACKED_ROW_TOKENS // seq) if sdpa_packed else MAX_MICRO
    kind = "full" if st.type == "cpt" else st.method
    # SFT without Liger is estimated with full logits although TRL's trainer chunks them: on the safe side
    liger, lora = bool(st.liger_kernel), (st.lora if st.type == "sft" else None)
    budget, where = _budget(machine)  # the CPU leaves half the free memory alone
    where += f" ({compute}" + (f", {master} master weights)" if kind == "full" else ")")
    estimate = shape is not None and budget > 0
    strategy, shards = sharding

    def peak(micro: int, ckpt: bool) -> float:
        return peak_gib(shape, kind, micro, seq, ckpt, liger, lora, master, compute, strategy, shards)

    if _explicit(st, "micro_batch_size") or _explicit(st, "grad_accum"):  # a person split the batch: keep it
        for key in ("micro_batch_size", "grad_accum"):
            put(st, key, getattr(st, key), "kept: the recipe sets the micro-batch or the accumulation")
        need = bool(estimate) and peak(st.micro_batch_size, False) > budget
        put(st, "gradient_checkpointing", need, "no memory estimate (model shape unknown)" if not estimate else
            f"the estimate says micro-batch {st.micro_batch_size} x {seq} " + ("does not fit" if need else "fits")
            + f" in {where} without it")
        return
    if not estimate:
        micro = max(d for d in range(1, min(rows, cap) + 1) if rows % d == 0)
        put(st, "micro_batch_size", micro, "no memory estimate (model shape unknown): the recipe's batch"
            + ("" if micro == rows else f", at most {cap} rows: sdpa masks the whole flattened packed row"))
        put(st, "grad_accum", rows // micro, f"keeps the recipe's {rows} rows per optimizer step")
        put(st, "gradient_checkpointing", False, "no memory estimate says it is needed")
        return
    c = choose_batch(rows, peak, budget, cap)
    fit = f"estimated peak {c.peak_gib} GiB of {budget:.0f} GiB usable in {where}"
    why = "" if machine.cuda else "; on the CPU, bigger matrix products amortize per-operation overhead"
    put(st, "micro_batch_size", c.micro, f"largest micro-batch dividing {rows} rows per step that fits: {fit}{why}"
        + ("" if c.fits else " (NOT fitting even with checkpointing: expect out-of-memory)"))
    put(st, "grad_accum", c.accum, f"keeps the recipe's {rows} rows ({rows * seq} tokens) per optimizer step")
    put(st, "gradient_checkpointing", c.checkpointing, "micro-batch 1 does not fit without it" if c.checkpointing
        else "not needed: the chosen micro-batch fits without recomputation")


def gpu_text(m: Machine) -> str:
    return f"{m.gpu_name} ({m.gpu_mem_gib:.0f} GiB)" if m.gpu_name and m.gpu_mem_gib else "the GPU"
