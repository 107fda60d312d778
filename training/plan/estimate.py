"""Time, peak VRAM and cost of a training step and of each candidate plan. Pure arithmetic, no torch.

Throughput (per GPU):
    FLOPs per token   F = k * N + 6 * L * h * s      k = 6 (full weights: forward 2N, backward 4N)
                                                      k = 4 (LoRA/QLoRA: no weight gradients for the frozen base)
                                                      6*L*h*s: causal attention score/value matmuls, forward+backward
    computed per token  F + 2N (+2*L*h*s) with gradient checkpointing: every layer's forward runs twice
    tokens/s          = MFU * peak_bf16 * card_mfu_scale / computed FLOPs   (real tokens: padding not counted)
    MFU               = MFU_BASE[kind] * (LIGER_GAIN if fused kernels)
                        * (PADDED_STEP_EFF[kind] * pad_efficiency if batches are padded instead of packed)
    card_mfu_scale    the H200 constants carried to another card by its memory bandwidth per peak FLOP,
                      sqrt((bw/peak) / (bw/peak of the H200)), within 0.7..1.3: a card with less bandwidth per
                      FLOP waits longer on the memory-bound kernels (norms, activations, optimizer)
    Before any of this, `plan` uses the nearest point measured on the card (training/plan/calibration.py).
    SFT is estimated packed on a GPU (runs pack with flash-attention by default) and padded on the CPU.
Peak VRAM (per GPU, what torch.cuda.max_memory_allocated reports; the CUDA context adds ~0.5-1 GiB):
    training/plan/memory.py, the one memory model (weights, gradients, optimizer, master weights,
    activations, logits per mode and sharding strategy). Full training counts the master weights the
    runtime will use: fp32 (18 bytes per parameter with autocast) where a step fits the card, else bf16
    with Kahan summation (10 bytes); sharded strategies keep fp32 master shards.
Calibrated on the H200 rows in /work/shared/bench/2026-11-28-h200-anchor.jsonl (tests/unit/test_estimate.py
keeps every row within +-25% for tokens/s and peak GiB; the full-weight rows ran bf16 weights with bf16
AdamW state, master="bf16" in the memory model, and are computed in that mode).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from training.plan.memory import GIB, NF4_BYTES, StepConfig, choose_master, step_gib  # noqa: F401 (re-exported)
from training.plan.cards import PRICES_FILE, Card, find_card, load_cards  # noqa: F401 (re-exported)
from training.plan.shapes import ModelShape
from training.plan.sharding import SCALING_EFF, choose_sharding, layout, scaling_efficiency  # noqa: F401

# expected model-FLOPs utilisation of a packed step on an H100/H200-class card (measured, see the anchor rows)
# (useful FLOPs over the FLOPs computed: the checkpointed anchor rows -- every LoRA/QLoRA row, the 8B full row --
# are divided by their recompute share, so these are per FLOP computed)
MFU_BASE = {"full": 0.42, "lora": 0.27 * 6 / 4, "qlora": 0.195 * 6 / 4}
# memory bandwidth, TB/s, for the per-card scale (NVIDIA datasheets, SXM parts)
MEM_BW_TBS = {"H200": 4.8, "H100": 3.35, "A100-80GB": 2.04, "A100-40GB": 1.56, "L40S": 0.864, "RTX4090": 1.008}
H200_BW_PER_TFLOP = 4.8 / 989
LIGER_GAIN = 1.17           # fused RMSNorm/RoPE/SwiGLU/linear-cross-entropy: 38.2% -> 47.7..52.8% MFU measured
# padded batches with an attention mask (no flash kernel), per processed token, relative to packed:
# measured on the guide-style rows (full 1B: 3.8% MFU; QLoRA 8B q/v: 4.7%) after removing the padding waste
PADDED_STEP_EFF = {"full": 0.18, "lora": 0.42, "qlora": 0.42}
SFT_PAD_EFFICIENCY = 0.6    # real/processed tokens of padded SFT batches when the pairs scan gave none
RAG_EMBED_PARAMS = 110e6    # a small embedding model indexes the corpus for RAG: forward only, 2N FLOPs/token
STATIC_SOURCE = "static constants (MFU measured on an H200, scaled to the card by memory bandwidth where known)"
CONTEXT_GIB = 1.0           # CUDA context and allocator slack, added when checking that a plan fits


def flops_per_token(m: ModelShape, cfg: StepConfig) -> float:
    k = 6 if cfg.kind == "full" else 4
    return k * m.flops_params + 6 * m.layers * m.hidden * cfg.seq


def mfu(cfg: StepConfig) -> float:
    u = MFU_BASE[cfg.kind] * (LIGER_GAIN if cfg.liger else 1.0)
    if not cfg.packed:
        u *= PADDED_STEP_EFF[cfg.kind] * cfg.pad_efficiency
    return u


def computed_flops_per_token(m: ModelShape, cfg: StepConfig) -> float:
    """FLOPs the card really runs per token: checkpointing recomputes every layer's forward in the backward."""
    f = flops_per_token(m, cfg)
    if cfg.checkpointing:
        f += 2 * m.flops_params + 2 * m.layers * m.hidden * cfg.seq
    return f


def card_mfu_scale(card_name: str | None, card_tflops: float) -> float:
    """The H200-measured MFU carried to another card (module docstring); 1.0 for unknown cards."""
    bw = MEM_BW_TBS.get(card_name or "")
    if bw is None or card_tflops <= 0:
        return 1.0
    return min(1.3, max(0.7, ((bw / card_tflops) / H200_BW_PER_TFLOP) ** 0.5))


def tokens_per_second(m: ModelShape, cfg: StepConfig, card_tflops: float, card_name: str | None = None) -> float:
    """Real (non-padding) tokens per second on one GPU."""
    return mfu(cfg) * card_mfu_scale(card_name, card_tflops) * card_tflops * 1e12 / computed_flops_per_token(m, cfg)


def peak_vram_gib(m: ModelShape, cfg: StepConfig, shards: int = 1) -> float:
    """Peak allocated GiB on one GPU (training/plan/memory.py); `shards` > 1: FSDP over that many GPUs."""
    return step_gib(m, cfg, shards, "fsdp" if shards > 1 else "ddp")


# ---------------------------------------------------------------- plans

@dataclass
class StageEstimate:
    stage: str                  # cpt | sft | rag_index
    method: str | None
    tokens: float               # real tokens processed, all epochs
    tokens_per_s: float         # all GPUs together
    hours: float
    peak_vram_gib: float
    checkpointing: bool = False
    sharded: bool = False       # weights/grads/optimizer split over the GPUs (FSDP / ZeRO-3)
    micro_batch: int = 4
    seq: int = 2048
    # several GPUs (training/plan/sharding.py): the strategy chosen and why, time's scaling efficiency,
    # peak GiB per GPU under each strategy (ddp, fsdp, zero3, zero3_offload)
    strategy: str = "ddp"
    offload_optimizer: bool = False
    scaling_efficiency: float = 1.0
    memory_per_gpu: dict = field(default_factory=dict)
    strategy_reason: str = ""
    min_gpus: int | None = None
    throughput_source: str = ""  # the calibration point measured on this card, or the static constants
    # full training's weights (training/plan/memory.py): fp32 master or bf16_kahan, and why; None for LoRA
    master: str | None = None
    master_reason: str = ""


@dataclass
class PlanEstimate:
    path: str                   # rag_only | sft | cpt_sft | cpt
    method: str | None          # lora | qlora | full | None (the SFT method)
    hours: float
    usd: float
    peak_vram_gib: float
    fits: bool
    gpu: str
    gpu_count: int
    price_per_hour: float
    stages: list[StageEstimate] = field(default_factory=list)
    strategy: str = "ddp"       # the run's hardware.strategy: what its most demanding stage needs
    offload_optimizer: bool = False
    nodes: int = 1
    processes_per_node: int = 1
    scaling_efficiency: float = 1.0

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(hours=round(self.hours, 3), usd=round(self.usd, 2), peak_vram_gib=round(self.peak_vram_gib, 1))
        return d


@dataclass
class Workload:
    """What a plan trains on: corpus tokens, pairs and their lengths, epochs."""
    corpus_tokens: float = 0.0
    pairs: int = 0
    pair_tokens_mean: float = 0.0
    pair_max_len: int = 1024          # padded row length for SFT batches (pairs p95, rounded up)
    pair_pad_efficiency: float = SFT_PAD_EFFICIENCY
    cpt_epochs: float = 1.0
    sft_epochs: float = 3.0
    cpt_seq: int = 2048
    micro_batch: int = 4
    liger: bool = False
    sft_packed: bool | None = None   # None: packed on a GPU (flash-attention runs pack), padded on the CPU


def stage_estimate(m: ModelShape, stage: str, kind: str, tokens: float, seq: int, micro: int, packed: bool,
                   pad_eff: float, liger: bool, card: Card, n_gpus: int) -> StageEstimate:
    """Pick checkpointing only when the step does not fit without it; then the strategy over the GPUs
    (training/plan/sharding.py: DDP when a full copy fits, else FSDP, else ZeRO-3 with optimizer offload)."""
    budget = card.memory_gib - CONTEXT_GIB
    cfg = StepConfig(kind=kind, seq=seq, micro_batch=micro, packed=packed, liger=liger,
                     pad_efficiency=1.0 if packed else pad_eff)
    master, master_reason = choose_master(m, cfg, budget) if kind == "full" else (None, "")
    if master:
        cfg = StepConfig(**{**asdict(cfg), "master": master})
    if peak_vram_gib(m, cfg) > budget:
        cfg = StepConfig(**{**asdict(cfg), "checkpointing": True})
    ch = choose_sharding(m, cfg, budget, n_gpus, card.name)
    if master and ch.strategy != "ddp":
        master, master_reason = "fp32", "sharded: FSDP / ZeRO-3 keep fp32 master shards (16 bytes per parameter / GPUs)"
    eff = scaling_efficiency(n_gpus, ch.strategy, ch.offload_optimizer)
    from training.plan.calibration import nearest
    hit = nearest(card.name, kind, m, seq)
    one = hit.tokens_per_s if hit else tokens_per_second(m, cfg, card.peak_bf16_tflops, card.name)
    tps = one * n_gpus * eff
    return StageEstimate(stage=stage, method=kind, tokens=tokens, tokens_per_s=tps, hours=tokens / tps / 3600,
                         throughput_source=hit.describe() if hit else STATIC_SOURCE,
                         peak_vram_gib=ch.per_gpu_gib, checkpointing=cfg.checkpointing, sharded=ch.strategy != "ddp",
                         micro_batch=ch.micro_batch, seq=seq, strategy=ch.strategy,
                         offload_optimizer=ch.offload_optimizer, scaling_efficiency=eff,
                         memory_per_gpu={k: round(v, 1) for k, v in ch.memory.items()},
                         strategy_reason=ch.reason, min_gpus=ch.min_gpus, master=master,
                         master_reason=master_reason)


def _plan(path: str, method: str | None, stages: list[StageEstimate], card: Card, n: int, price: float) -> PlanEstimate:
    hours = sum(s.hours for s in stages)
    peak = max((s.peak_vram_gib for s in stages), default=0.0)
    order = ("ddp", "fsdp", "deepspeed-zero3")
    strategy = max((s.strategy for s in stages), key=order.index, default="ddp")
    nodes, per_node = layout(n)
    return PlanEstimate(path=path, method=method, hours=hours, usd=hours * price * n, peak_vram_gib=peak,
                        fits=peak + CONTEXT_GIB <= card.memory_gib, gpu=card.name, gpu_count=n,
                        price_per_hour=price, stages=stages, strategy=strategy,
                        offload_optimizer=any(s.offload_optimizer for s in stages), nodes=nodes,
                        processes_per_node=per_node,
                        scaling_efficiency=min((s.scaling_efficiency for s in stages), default=1.0))


def estimate_all(m: ModelShape, w: Workload, card: Card, n_gpus: int = 1, price: float | None = None) -> list[PlanEstimate]:
    """One estimate per candidate plan that the data allows: rag_only always; sft (lora, qlora, full) when
    there are pairs; cpt when there is a corpus; cpt_sft (each SFT method) when there are both."""
    price = card.price_per_hour if price is None else price
    out = []
    rag_tps = 0.3 * card.peak_bf16_tflops * 1e12 / (2 * RAG_EMBED_PARAMS)
    rag = StageEstimate(stage="rag_index", method=None, tokens=w.corpus_tokens, tokens_per_s=rag_tps,
                        hours=w.corpus_tokens / rag_tps / 3600, peak_vram_gib=1.0, micro_batch=64, seq=512)
    out.append(_plan("rag_only", None, [rag], card, 1, price))
    sft = {}
    if w.pairs > 0:
        sft_tokens = w.pairs * w.pair_tokens_mean * w.sft_epochs
        for kind in ("lora", "qlora", "full"):
            packed = w.sft_packed if w.sft_packed is not None else card.name.lower() != "cpu"
            sft[kind] = stage_estimate(m, "sft", kind, sft_tokens, w.pair_max_len, w.micro_batch, packed,
                                       w.pair_pad_efficiency, w.liger, card, n_gpus)
            out.append(_plan("sft", kind, [sft[kind]], card, n_gpus, price))
    if w.corpus_tokens > 0:
        cpt = stage_estimate(m, "cpt", "full", w.corpus_tokens * w.cpt_epochs, w.cpt_seq, w.micro_batch, True,
                             1.0, w.liger, card, n_gpus)
        for kind, st in sft.items():
            out.append(_plan("cpt_sft", kind, [cpt, st], card, n_gpus, price))
        out.append(_plan("cpt", None, [cpt], card, n_gpus, price))
    return out


def find_plan(estimates: list[PlanEstimate], path: str, method: str | None) -> PlanEstimate | None:
    return next((e for e in estimates if e.path == path and e.method == method), None)
