"""Precision of a stage (training/runtime/precision.py) at every branch, the QLoRA device of each rank, and
the numerics that make full training's master weights necessary: at lr 1e-5, plain bf16 AdamW loses most
updates, fp32 master weights and Kahan-compensated bf16 keep them."""
from __future__ import annotations

import pytest

from training.runtime.precision import KAHAN_OPTIMIZER, Device, PrecisionError, choose_precision, compute_dtype

CPU = Device(cuda=False)
H100 = Device(cuda=True, bf16=True)
T4 = Device(cuda=True, bf16=False)


# ---------------------------------------------------------------- compute dtype

def test_auto_is_fp32_on_the_cpu_bf16_on_new_gpus_fp16_on_old():
    assert compute_dtype("auto", CPU) == ("fp32", [])
    assert compute_dtype("auto", H100) == ("bf16", [])
    c, notes = compute_dtype("auto", T4)
    assert c == "fp16" and "no bf16" in notes[0]


def test_explicit_bf16_on_the_cpu_is_honoured_and_said_to_be_slower():
    c, notes = compute_dtype("bf16", CPU)
    assert c == "bf16" and "can be slower than fp32" in notes[0]


def test_bf16_on_a_gpu_without_it_names_what_to_set():
    with pytest.raises(PrecisionError, match="precision: fp16 or auto"):
        compute_dtype("bf16", T4)


def test_fp16_needs_a_gpu():
    c, notes = compute_dtype("fp16", CPU)
    assert c == "fp32" and "CUDA" in notes[0]


# ---------------------------------------------------------------- full training's master weights

def test_full_on_a_bf16_gpu_loads_fp32_master_weights_under_bf16_autocast():
    p = choose_precision("auto", "full", H100)
    assert (p.compute, p.load_dtype, p.master, p.optimizer) == ("bf16", "fp32", "fp32", "adamw_torch_fused")


def test_full_with_bf16_kahan_loads_bf16_and_uses_the_compensated_optimizer():
    p = choose_precision("bf16", "full", H100, master="bf16_kahan")
    assert (p.compute, p.load_dtype, p.master, p.optimizer) == ("bf16", "bf16", "bf16_kahan", KAHAN_OPTIMIZER)
    assert p.kahan


def test_full_on_a_gpu_without_bf16_is_fp32_master_with_fp16_autocast():
    # fp16 weights + the Trainer's fp16 loss scaling fail ("Attempting to unscale FP16 gradients")
    p = choose_precision("auto", "full", T4)
    assert (p.compute, p.load_dtype, p.master) == ("fp16", "fp32", "fp32")
    k = choose_precision("fp16", "full", T4, master="bf16_kahan")  # no bf16 to compensate in
    assert (k.load_dtype, k.master) == ("fp32", "fp32") and any("needs bf16" in n for n in k.notes)


def test_full_on_the_cpu():
    p = choose_precision("auto", "full", CPU)
    assert (p.compute, p.load_dtype, p.master, p.optimizer) == ("fp32", "fp32", "fp32", "adamw_torch")
    b = choose_precision("bf16", "full", CPU)
    assert (b.compute, b.load_dtype, b.master) == ("bf16", "fp32", "fp32")
    k = choose_precision("bf16", "full", CPU, master="bf16_kahan")
    assert (k.compute, k.load_dtype, k.master) == ("bf16", "bf16", "bf16_kahan")
    f = choose_precision("fp32", "full", CPU, master="bf16_kahan")
    assert f.master == "fp32" and any("needs precision: bf16" in n for n in f.notes)


def test_sharded_full_training_keeps_fp32_master_shards():
    p = choose_precision("auto", "full", H100, master="bf16_kahan", sharded=True)
    assert (p.compute, p.load_dtype, p.master, p.optimizer) == ("bf16", "bf16", "fp32", "adamw_torch_fused")
    assert any("not used under FSDP" in n for n in p.notes)


def test_lora_and_qlora_load_the_base_in_the_compute_dtype():
    lo = choose_precision("auto", "lora", H100)
    assert (lo.compute, lo.load_dtype, lo.master) == ("bf16", "bf16", None)
    assert choose_precision("auto", "lora", T4).load_dtype == "fp16"
    assert choose_precision("fp32", "qlora", H100).compute == "bf16"  # 4-bit compute is never fp32
    assert choose_precision("fp32", "qlora", T4).compute == "fp16"


def test_unknown_master_mode_is_refused():
    with pytest.raises(PrecisionError, match="master_weights"):
        choose_precision("auto", "full", H100, master="fp8")


# ---------------------------------------------------------------- several GPUs

def test_qlora_loads_on_the_local_rank_not_cuda_0():
    from training.runtime.stages.common import local_device_index
    assert local_device_index({"LOCAL_RANK": "3", "RANK": "11"}) == 3
    assert local_device_index({}) == 0


# ---------------------------------------------------------------- the numerics

def _changed_after(mode: str, steps: int = 10, lr: float = 1e-5) -> float:
    """Fraction of a bf16-representable N(0, 0.02) weight matrix whose value (as trained: fp32 master or
    bf16) differs from the start after `steps` AdamW steps with random gradients of a fixed sign pattern."""
    import torch
    g = torch.Generator().manual_seed(0)
    w0 = (torch.randn(256, 256, generator=g) * 0.02).to(torch.bfloat16)
    signs = torch.randn(256, 256, generator=g).sign()
    if mode == "fp32_master":
        p = torch.nn.Parameter(w0.float())
        opt = torch.optim.AdamW([p], lr=lr, weight_decay=0.0)
    elif mode == "bf16_plain":
        p = torch.nn.Parameter(w0.clone())
        opt = torch.optim.AdamW([p], lr=lr, weight_decay=0.0)
    else:
        from optimi import AdamW
        p = torch.nn.Parameter(w0.clone())
        opt = AdamW([p], lr=lr, weight_decay=0.0, kahan_sum=True)
    for _ in range(steps):
        p.grad = (signs * (1 + 0.1 * torch.rand(256, 256, generator=g))).to(p.dtype)
        opt.step()
    return float((p.detach().float() != w0.float()).float().mean())


def test_plain_bf16_loses_lr_1e5_updates_that_master_weights_and_kahan_keep():
    plain, master, kahan = (_changed_after(m) for m in ("bf16_plain", "fp32_master", "bf16_kahan"))
    assert plain < 0.3          # the old engine's mode: most updates round away
    assert master == 1.0        # every weight moved
    assert kahan > plain + 0.4  # ten 1e-5 steps add up to more than half an ulp for most weights
