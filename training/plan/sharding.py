"""Several GPUs: which strategy a stage needs (DDP, FSDP or DeepSpeed ZeRO-3), its memory per GPU under
each, and how time scales with the GPU count. Pure arithmetic on top of training/plan/memory.py (the one
memory model); no torch, and nothing from estimate.py (which builds on this module).

Memory per GPU (GiB), memory.per_gpu_gib (weights, gradients, optimizer state and master weights, plus
activations and logits of one micro-batch):
    ddp            every GPU holds everything, in the stage's master-weights mode (fp32: 18 bytes per
                   parameter; bf16 + Kahan: 10)
    fsdp           full training: 16 bytes per parameter / N (FSDP mixed precision keeps fp32 sharded
                   params and grads, accelerate upcasts them), plus the layers held whole for a moment:
                   the layer computing and the one prefetched (bf16), and one layer's gradients before the
                   reduce-scatter: (3 full, 2 LoRA) x params per layer x 2 bytes
    zero3          16 / N as well (bf16 params and grads + fp32 master + fp32 m, v), same gathered layers
    zero3_offload  4 / N: the fp32 master and m, v (12 bytes per parameter) live in CPU RAM, stepped by
                   DeepSpeed's CPU Adam
The chooser: DDP when a full copy fits one card (simplest, fastest); else FSDP (native PyTorch, no extra
package, the saved model is an ordinary folder), halving the micro-batch down to 1 if needed (the
recipe raises grad_accum to keep the batch); else ZeRO-3 with the optimizer offloaded to CPU RAM
(DeepSpeed's CPU Adam is the mature path for that); else the GPU count FSDP would need.

Scaling (stated assumptions, not measured here; no multi-GPU machine was available to calibrate them):
    efficiency = 0.90 on several GPUs of one node (NVLink; SCALING_EFF)
               x 0.85 when the GPUs span nodes (InfiniBand between nodes)
               x 0.95 when sharded (all-gather / reduce-scatter of every layer, mostly overlapped)
               x 0.70 with the optimizer stepped on the CPU
    time = tokens / (tokens/s of one GPU x N x efficiency);  cost = time x N x price per GPU-hour
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

from training.plan.memory import StepConfig, per_gpu_gib
from training.plan.shapes import ModelShape

GPUS_PER_NODE = 8
INTER_NODE_EFF = 0.85
SHARDED_EFF = 0.95
OFFLOAD_EFF = 0.70
SCALING_EFF = 0.90          # data-parallel efficiency for more than one GPU on a node (DDP/FSDP)
HOST_OPTIM_BYTES = 12       # ZeRO-3 offload: fp32 master + fp32 AdamW m, v per parameter in CPU RAM


def layout(n_gpus: int, gpus_per_node: int = GPUS_PER_NODE) -> tuple[int, int]:
    """(nodes, processes per node) for N GPUs: whole nodes of gpus_per_node once N exceeds one node."""
    if n_gpus <= gpus_per_node:
        return 1, n_gpus
    nodes = math.ceil(n_gpus / gpus_per_node)
    return nodes, math.ceil(n_gpus / nodes)


def scaling_efficiency(n_gpus: int, strategy: str = "ddp", offload: bool = False,
                       gpus_per_node: int = GPUS_PER_NODE) -> float:
    if n_gpus <= 1:
        return OFFLOAD_EFF if offload else 1.0
    eff = SCALING_EFF
    if layout(n_gpus, gpus_per_node)[0] > 1:
        eff *= INTER_NODE_EFF
    if strategy != "ddp":
        eff *= SHARDED_EFF
    if offload:
        eff *= OFFLOAD_EFF
    return eff


def per_gpu_memory(m: ModelShape, cfg: StepConfig, n_gpus: int) -> dict[str, float]:
    """Peak GiB per GPU under each strategy for this step on N GPUs (training/plan/memory.py)."""
    return per_gpu_gib(m, cfg, n_gpus)


@dataclass(frozen=True)
class ShardingChoice:
    strategy: str                 # ddp | fsdp | deepspeed-zero3 (the recipe's hardware.strategy)
    offload_optimizer: bool
    micro_batch: int
    per_gpu_gib: float            # peak for the chosen setup
    fits: bool
    memory: dict = field(default_factory=dict)  # per-GPU GiB under each of STRATEGIES at that micro-batch
    reason: str = ""
    min_gpus: int | None = None   # when nothing fits: the GPUs FSDP would need at micro-batch 1

    def to_dict(self) -> dict:
        d = asdict(self)
        d["per_gpu_gib"] = round(self.per_gpu_gib, 1)
        d["memory"] = {k: round(v, 1) for k, v in self.memory.items()}
        return d


def _with_micro(cfg: StepConfig, micro: int) -> StepConfig:
    return StepConfig(**{**asdict(cfg), "micro_batch": micro})


def min_gpus_for_fsdp(m: ModelShape, cfg: StepConfig, budget_gib: float, limit: int = 4096) -> int | None:
    """The fewest GPUs (2, 4, then whole nodes) on which FSDP fits at micro-batch 1; None beyond `limit`."""
    one = _with_micro(cfg, 1)
    for n in [2, 4, *range(GPUS_PER_NODE, limit + 1, GPUS_PER_NODE)]:
        if per_gpu_memory(m, one, n)["fsdp"] <= budget_gib:
            return n
    return None


def choose_sharding(m: ModelShape, cfg: StepConfig, budget_gib: float, n_gpus: int, card: str = "GPU") -> ShardingChoice:
    """The strategy for one stage's step on N cards with budget_gib usable each, and why."""
    mem = per_gpu_memory(m, cfg, n_gpus)
    if mem["ddp"] <= budget_gib:
        why = (f"a full copy needs {mem['ddp']:,.1f} GiB and fits one {card}"
               + (f": DDP, each of the {n_gpus} GPUs trains on its own share of the batches" if n_gpus > 1 else ""))
        return ShardingChoice("ddp", False, cfg.micro_batch, mem["ddp"], True, mem, why)
    too_big = f"weights, gradients and optimizer need {mem['ddp']:,.0f} GiB with a full copy per GPU > {budget_gib:,.0f} GiB usable on one {card}"
    if n_gpus <= 1 or cfg.kind == "qlora":
        need = min_gpus_for_fsdp(m, cfg, budget_gib) if cfg.kind != "qlora" else None
        hint = (f"; FSDP would fit on {need} GPUs" if need else "") if n_gpus <= 1 else \
            "; QLoRA's 4-bit base runs one copy per GPU here (no sharding)"
        return ShardingChoice("ddp", False, cfg.micro_batch, mem["ddp"], False, mem, too_big + hint, need)
    micro = cfg.micro_batch
    while True:
        mem = per_gpu_memory(m, _with_micro(cfg, micro), n_gpus)
        if mem["fsdp"] <= budget_gib:
            smaller = f", micro-batch {micro} (grad_accum up to keep the batch)" if micro < cfg.micro_batch else ""
            if mem["fsdp"] > 0.9 * budget_gib:
                smaller += f" (tight: within 10% of the card; ZeRO-3 with optimizer offload needs {mem['zero3_offload']:,.1f} GiB)"
            why = (f"{too_big}: FSDP shards them over {n_gpus} GPUs, {mem['fsdp']:,.1f} GiB each{smaller}; FSDP "
                   f"rather than ZeRO-3 because it is native PyTorch (no extra package) and the sharded state "
                   f"fits on the GPUs without offloading")
            return ShardingChoice("fsdp", False, micro, mem["fsdp"], True, mem, why)
        if micro == 1:
            break
        micro = max(1, micro // 2)
    if mem["zero3_offload"] <= budget_gib:
        host = m.total_params * HOST_OPTIM_BYTES / 1e9 / layout(n_gpus)[0]
        why = (f"{too_big}; sharded over {n_gpus} GPUs it still needs {mem['fsdp']:,.1f} GiB each even at "
               f"micro-batch 1: DeepSpeed ZeRO-3 with the optimizer state offloaded to CPU RAM (about "
               f"{host:,.0f} GB per node) needs {mem['zero3_offload']:,.1f} GiB per GPU; ZeRO-3 rather than FSDP "
               f"because its CPU Adam makes optimizer offload practical (expect a slower step)")
        return ShardingChoice("deepspeed-zero3", True, 1, mem["zero3_offload"], True, mem, why)
    need = min_gpus_for_fsdp(m, cfg, budget_gib)
    why = (f"{too_big}; even sharded over {n_gpus} GPUs with the optimizer offloaded it needs "
           f"{mem['zero3_offload']:,.1f} GiB each" + (f": use at least {need} GPUs (FSDP)" if need else ""))
    return ShardingChoice("fsdp", False, 1, mem["fsdp"], False, mem, why, need)
