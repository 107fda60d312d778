"""Several GPUs: the sharding chooser at its boundaries, memory per GPU under each strategy, scaled
time and cost, and the recipe a sharded plan writes."""
from __future__ import annotations

import pytest

from training.plan.decide import Facts, decide
from training.plan.to_recipe import recipe_from_decision
from training.plan.memory import step_bytes
from training.plan.estimate import CONTEXT_GIB, GIB, SCALING_EFF, StepConfig, Workload, estimate_all, find_card, \
    peak_vram_gib
from training.plan.scan import CorpusFacts
from training.plan.sharding import (INTER_NODE_EFF, OFFLOAD_EFF, SHARDED_EFF, choose_sharding, layout,
                               min_gpus_for_fsdp, per_gpu_memory, scaling_efficiency)
from training.plan.shapes import resolve_shape

H100 = find_card("H100")
BUDGET = H100.memory_gib - CONTEXT_GIB
FULL = StepConfig(kind="full", seq=2048, micro_batch=4, checkpointing=True)
M70, M8 = resolve_shape(None, params=70e9), resolve_shape(None, params=8e9)


def test_layout_fills_whole_nodes():
    assert layout(1) == (1, 1) and layout(8) == (1, 8)
    assert layout(16) == (2, 8) and layout(12) == (2, 6) and layout(64) == (8, 8)


def test_scaling_efficiency_is_stated_per_factor():
    assert scaling_efficiency(1) == 1.0
    assert scaling_efficiency(8) == pytest.approx(SCALING_EFF)
    assert scaling_efficiency(16) == pytest.approx(SCALING_EFF * INTER_NODE_EFF)
    assert scaling_efficiency(8, "fsdp") == pytest.approx(SCALING_EFF * SHARDED_EFF)
    assert scaling_efficiency(8, "deepspeed-zero3", offload=True) == pytest.approx(SCALING_EFF * SHARDED_EFF * OFFLOAD_EFF)


def test_memory_per_gpu_under_each_strategy():
    one = per_gpu_memory(M70, FULL, 1)
    assert len(set(one.values())) == 1  # one GPU: nothing to shard
    eight = per_gpu_memory(M70, FULL, 8)
    assert eight["ddp"] == pytest.approx(peak_vram_gib(M70, FULL))
    # FSDP mixed precision keeps fp32 sharded params and grads (accelerate upcasts them) and fp32 AdamW state:
    # 16 bytes per parameter over 8 GPUs, plus the gathered layers, activations and logits of the step
    gather = 3 * (M70.total_params - M70.embed_params) / M70.layers * 2 / GIB
    bf16_step = step_bytes(M70, StepConfig(**{**FULL.__dict__, "master": "bf16"}))
    rest = (bf16_step["activations"] + bf16_step["logits"]) / GIB
    assert eight["fsdp"] == pytest.approx(M70.total_params * 16 / 8 / GIB + gather + rest)
    assert eight["fsdp"] == pytest.approx(peak_vram_gib(M70, FULL, shards=8))
    assert eight["zero3"] == eight["fsdp"]
    # offload: the fp32 master and m, v (12 bytes per parameter) go to CPU RAM
    assert eight["fsdp"] - eight["zero3_offload"] == pytest.approx(M70.total_params * 12 / 8 / GIB)
    assert eight["zero3_offload"] < eight["fsdp"] < eight["ddp"] / 4


def test_ddp_while_a_full_copy_fits_then_fsdp_just_past_it():
    ddp_peak = per_gpu_memory(M8, FULL, 8)["ddp"]
    at = choose_sharding(M8, FULL, ddp_peak, 8, "H100")
    assert (at.strategy, at.fits, at.micro_batch) == ("ddp", True, 4) and "fits one H100" in at.reason
    past = choose_sharding(M8, FULL, ddp_peak - 0.01, 8, "H100")
    assert past.strategy == "fsdp" and past.fits and past.per_gpu_gib < ddp_peak / 2
    assert "native PyTorch" in past.reason


def test_seventy_b_on_eight_h100_needs_the_optimizer_offloaded():
    # FSDP's fp32 shards: 70e9 x 16 bytes / 8 = 130 GiB per GPU before activations (the old model counted
    # 8 bytes and called it fsdp at micro-batch 1, about 2x low): only ZeRO-3 with offload fits 8 H100s
    ch = choose_sharding(M70, FULL, BUDGET, 8, "H100")
    assert (ch.strategy, ch.micro_batch, ch.fits, ch.offload_optimizer) == ("deepspeed-zero3", 1, True, True)
    assert ch.memory["fsdp"] > M70.total_params * 16 / 8 / GIB > BUDGET >= ch.per_gpu_gib
    sixteen = choose_sharding(M70, FULL, BUDGET, 16, "H100")
    assert (sixteen.strategy, sixteen.micro_batch, sixteen.fits) == ("fsdp", 1, True)
    assert "tight" in sixteen.reason  # honest: within 10% of the card


def test_when_sharding_alone_is_not_enough_zero3_offloads_the_optimizer():
    ch = choose_sharding(M70, FULL, BUDGET, 4, "H100")
    assert (ch.strategy, ch.offload_optimizer, ch.fits) == ("deepspeed-zero3", True, True)
    assert ch.memory["fsdp"] > BUDGET >= ch.per_gpu_gib == ch.memory["zero3_offload"]
    assert "CPU RAM" in ch.reason and "GB per node" in ch.reason


def test_nothing_fits_names_the_gpus_needed():
    one = choose_sharding(M70, FULL, BUDGET, 1, "H100")
    assert not one.fits and one.min_gpus == 16 and "FSDP would fit on 16 GPUs" in one.reason
    m405 = resolve_shape(None, params=405e9)
    big = choose_sharding(m405, FULL, BUDGET, 8, "H100")
    need = min_gpus_for_fsdp(m405, FULL, BUDGET)
    assert not big.fits and big.min_gpus == need and need > 8 and need % 8 == 0
    assert per_gpu_memory(m405, StepConfig(**{**FULL.__dict__, "micro_batch": 1}), need)["fsdp"] <= BUDGET
    assert per_gpu_memory(m405, StepConfig(**{**FULL.__dict__, "micro_batch": 1}), need - 8)["fsdp"] > BUDGET


def test_qlora_is_never_sharded():
    q = StepConfig(kind="qlora", seq=2048, micro_batch=4, checkpointing=True)
    ch = choose_sharding(M70, q, 10.0, 8, "card")
    assert ch.strategy == "ddp" and not ch.fits and "QLoRA" in ch.reason


def test_time_and_cost_scale_with_gpus_and_efficiency():
    w = Workload(corpus_tokens=12.5e9)
    cpt = {n: next(e for e in estimate_all(M70, w, H100, n) if e.path == "cpt") for n in (8, 16, 32)}
    e8, e16, e32 = cpt[8], cpt[16], cpt[32]
    assert e8.strategy == "deepspeed-zero3" and e8.offload_optimizer
    assert e8.scaling_efficiency == pytest.approx(SCALING_EFF * SHARDED_EFF * OFFLOAD_EFF)
    assert e16.strategy == "fsdp" and e32.strategy == "fsdp" and (e16.nodes, e16.processes_per_node) == (2, 8)
    assert e16.scaling_efficiency == pytest.approx(SCALING_EFF * SHARDED_EFF * INTER_NODE_EFF)
    assert e32.hours == pytest.approx(e16.hours * (16 * e16.scaling_efficiency) / (32 * e32.scaling_efficiency))
    assert e16.usd == pytest.approx(e16.hours * 16 * H100.price_per_hour)
    assert e32.stages[0].micro_batch == 4 and e16.stages[0].micro_batch == 1  # 32 shards leave room
    assert e16.stages[0].master == "fp32" and "fp32 master shards" in e16.stages[0].master_reason


def test_sharded_plan_writes_a_recipe_the_launcher_reads():
    facts = Facts(model="my-70b", shape=M70, corpus=CorpusFacts.from_declared(50e9), gap="knowledge",
                  gpu="H100", gpu_count=8)
    d = decide(facts)
    # 70B on 8 H100: FSDP's fp32 shards need 142 GiB per GPU, so ZeRO-3 offloads the optimizer to CPU RAM
    assert d.path == "cpt" and d.estimate.strategy == "deepspeed-zero3" and d.estimate.offload_optimizer
    assert any(r.startswith("cpt: deepspeed-zero3") for r in d.reasons)
    assert any("60% scaling efficiency" in r for r in d.reasons)
    r = recipe_from_decision(d, facts, ["/data/corpus"], None, check_paths=False)
    hw = r.hardware
    assert (hw.num_processes, hw.num_nodes, hw.strategy, hw.offload_optimizer, hw.gpu_count) == \
        (8, 1, "deepspeed-zero3", True, 8)
    st = r.stages[0]
    assert (st.micro_batch_size, st.grad_accum, st.gradient_checkpointing) == (1, 32, True)  # same batch as 4 x 8
    f16 = Facts(**{**facts.__dict__, "gpu_count": 16})
    d16 = decide(f16)
    assert d16.estimate.strategy == "fsdp" and any(r.startswith("cpt: fsdp:") for r in d16.reasons)
    sixteen = recipe_from_decision(d16, f16, ["/d"], None, check_paths=False).hardware
    assert (sixteen.num_nodes, sixteen.num_processes, sixteen.gpu_count, sixteen.strategy) == (2, 8, 16, "fsdp")
