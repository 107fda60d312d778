"""Precision of a training stage: the compute dtype, the dtype the weights load in, full training's master
weights and the optimizer that updates them. Pure Python (no torch): the stage asks torch what the device
can do, this module decides, and the tests walk every branch.

Why it matters: at the CPT learning rate (1e-5) one AdamW step is below half a bf16 ulp for every weight
above ~0.0026 in magnitude, so updating bf16 weights directly rounds most updates away. Full training
therefore keeps its updates in one of two ways (`master_weights`, resolved by training/runtime/defaults.py
with the one memory model, training/plan/memory.py):

    fp32        fp32 weights (and AdamW state); the forward runs under bf16 / fp16 autocast, so the
                matrix products are as fast as bf16 weights'. 18 bytes per parameter.
    bf16_kahan  bf16 weights with torch-optimi's AdamW(kahan_sum=True): a bf16 compensation buffer keeps
                the low bits each update loses and adds them back the next step. 10 bytes per parameter;
                for a model whose fp32 master weights do not fit the card (8B full on one 80 GB card).

GPUs without bf16 (V100, T4): fp32 master weights with fp16 autocast and loss scaling (loading fp16
weights and asking the Trainer for fp16 fails with "Attempting to unscale FP16 gradients").
FSDP / ZeRO-3 keep fp32 master shards themselves: the weights load in the compute dtype and the
strategy upcasts the trained ones.
The CPU: `auto` trains in fp32; an explicit `precision: bf16` is honoured (bf16 autocast over fp32 master
weights, or bf16 weights with Kahan summation), so the GPU's numerics can be tested here; it can be
slower than fp32 on a CPU without bf16 matrix instructions (bench/precision.py measures it).
"""
from __future__ import annotations

from dataclasses import dataclass, field

MASTER_MODES = ("auto", "fp32", "bf16_kahan")
KAHAN_OPTIMIZER = "optimi.AdamW(kahan_sum=True)"


class PrecisionError(ValueError):
    """A precision the device cannot run; the message says what to set instead."""


@dataclass(frozen=True)
class Device:
    cuda: bool
    bf16: bool = False          # the GPU computes in bf16 (compute capability 8.0 and newer)


@dataclass(frozen=True)
class PrecisionPlan:
    compute: str                # bf16 | fp16 | fp32: the Trainer's autocast (fp32: none)
    load_dtype: str             # the dtype from_pretrained loads the weights in
    master: str | None          # full training: fp32 | bf16_kahan; None for LoRA / QLoRA (fp32 adapters)
    optimizer: str              # adamw_torch | adamw_torch_fused | optimi.AdamW(kahan_sum=True)
    notes: tuple = field(default_factory=tuple)  # lines for train.log

    @property
    def kahan(self) -> bool:
        return self.master == "bf16_kahan"


def compute_dtype(requested: str, device: Device) -> tuple[str, list[str]]:
    """The autocast dtype for `precision: requested` on this device, and what to say about it."""
    if requested == "auto":
        if not device.cuda:
            return "fp32", []
        return ("bf16", []) if device.bf16 else ("fp16", ["this GPU has no bf16: fp16 autocast with loss scaling"])
    if requested == "bf16":
        if device.cuda and not device.bf16:
            raise PrecisionError("precision: bf16 needs a GPU with bf16 (A100, H100, RTX 30xx and newer); "
                                 "this one has none: set precision: fp16 or auto")
        if not device.cuda:
            return "bf16", ["precision: bf16 on the CPU, as the recipe asks (to test the GPU's numerics): bf16 "
                            "autocast can be slower than fp32 on a CPU without bf16 matrix instructions; "
                            "precision: auto trains in fp32"]
        return "bf16", []
    if requested == "fp16" and not device.cuda:
        return "fp32", ["precision: fp16 needs a CUDA GPU (loss scaling); training in fp32 on the CPU"]
    return requested, []


def choose_precision(requested: str, kind: str, device: Device, master: str = "auto",
                     sharded: bool = False) -> PrecisionPlan:
    """Compute dtype, load dtype, master weights and optimizer for a stage.
    kind: full (CPT, method: full) | lora | qlora. master: the stage's master_weights (auto = fp32 here;
    the defaults layer resolves auto with the memory model before the run starts)."""
    if master not in MASTER_MODES:
        raise PrecisionError(f"master_weights: {master!r} is not one of {', '.join(MASTER_MODES)}")
    compute, notes = compute_dtype(requested, device)
    plain = "adamw_torch_fused" if device.cuda else "adamw_torch"
    if kind == "qlora" and compute == "fp32":
        compute = "bf16" if device.bf16 or not device.cuda else "fp16"
    if kind != "full":  # the frozen base in the compute dtype; PEFT keeps the adapters in fp32
        return PrecisionPlan(compute, compute, None, plain, tuple(notes))
    if compute == "fp32":
        if master == "bf16_kahan":
            notes.append("master_weights: bf16_kahan needs precision: bf16; training fp32 weights")
        return PrecisionPlan("fp32", "fp32", "fp32", plain, tuple(notes))
    if sharded:
        if master == "bf16_kahan":
            notes.append("master_weights: bf16_kahan is not used under FSDP / ZeRO-3, which keep fp32 master shards")
        notes.append(f"FSDP / ZeRO-3 keep fp32 master shards of the {compute} weights")
        return PrecisionPlan(compute, compute, "fp32", plain, tuple(notes))
    if compute == "fp16":
        if master == "bf16_kahan":
            notes.append("master_weights: bf16_kahan needs bf16; this GPU trains fp32 master weights")
        notes.append("fp32 master weights with fp16 autocast and loss scaling")
        return PrecisionPlan("fp16", "fp32", "fp32", plain, tuple(notes))
    if master == "bf16_kahan":
        notes.append("bf16 weights with Kahan-compensated AdamW (torch-optimi): the low bits of every update are "
                     "carried to the next step instead of being rounded away")
        return PrecisionPlan("bf16", "bf16", "bf16_kahan", KAHAN_OPTIMIZER, tuple(notes))
    notes.append("fp32 master weights with bf16 autocast: every update is kept")
    return PrecisionPlan("bf16", "fp32", "fp32", plain, tuple(notes))
