"""The one memory model: bytes of a training step on one GPU, by part, for every training mode and
sharding strategy. The VRAM estimate (training/plan/estimate.py), the sharding chooser
(training/plan/sharding.py), the runtime defaults (training/runtime/defaults.py) and the out-of-memory
explanation (training/runtime/failures.py) all count with these functions. Pure arithmetic, no torch.

Bytes per parameter of the model's own state (weights, gradients, optimizer, master/compensation):
    full, master fp32 (16-bit autocast)   4 fp32 weights + 4 fp32 grads + 8 AdamW m,v (fp32)
                                          + 2 the bf16/fp16 copy autocast holds from forward to backward = 18
    full, master fp32, compute fp32       4 + 4 + 8 = 16 (no autocast: the CPU's default)
    full, bf16 + Kahan summation          2 bf16 weights + 2 bf16 grads + 4 AdamW m,v (bf16, torch-optimi)
                                          + 2 bf16 compensation (the low bits each update loses) = 10
    full, bf16 plain                      2 + 2 + 4 = 8: what bench/2026-11-28-h200-anchor.jsonl measured;
                                          at CPT learning rates most updates round away, so the engine never
                                          chooses it (kept so the anchor rows are computed as they ran)
    lora                                  2 per frozen base weight (4 in fp32) + 16 per adapter weight
                                          (fp32 adapter, grad, m, v)
    qlora                                 NF4_BYTES per linear weight + 4 per embedding/LM-head weight
                                          (prepare_model_for_kbit_training upcasts them) + 16 per adapter weight
Sharded over N GPUs (strategy fsdp / zero3: the state divided by N, plus the layers held whole for a
moment: the one computing and the one prefetched, bf16, and for full training one layer's gradients
before the reduce-scatter):
    full, fsdp    16 / N: accelerate upcasts trainable parameters to fp32 under FSDP mixed precision
                  (fp32 sharded params and grads + fp32 m, v); compute runs in bf16 on the gathered layers
    full, zero3   16 / N: bf16 params and grads (2 + 2) + fp32 master (4) + fp32 m, v (8)
    full, zero3_offload   4 / N on the GPU: master weights and m, v live in CPU RAM (DeepSpeed CPU Adam)
    lora          frozen base 2 / N, adapters 16 / N (only trainable parameters are upcast)
Activations, per token per layer (16-bit tensors saved for backward):
    plain  2 * (6h + 2kv + 4i) bytes;  Liger  2 * (5h + 2kv + 3i);  LoRA dropout > 0: 2 * (6h + i) more
    fp32 master with autocast (one GPU or DDP): the residual stream stays fp32 (the norms' inputs and
    outputs): 8h more; FSDP / ZeRO-3 gather bf16 parameters, so their forward is bf16 throughout
    compute fp32 (no autocast): every tensor twice as wide
    checkpointing: each layer's input (2 bytes/element; 4 for QLoRA's and fp32 master's fp32 residual),
    plus one layer's activations while it is recomputed
Logits: T * V * 14 bytes (bf16 logits, fp32 copy, fp32 log-softmax, fp32 gradient), 12 when the LM head
is fp32 (QLoRA, compute fp32); ~0 with Liger's fused linear cross-entropy.
"""
from __future__ import annotations

from dataclasses import dataclass

GIB = 2**30
NF4_BYTES = 4.127 / 8       # 4-bit NF4 plus double-quantised block scales
MASTERS = ("fp32", "bf16_kahan", "bf16")
STRATEGIES = ("ddp", "fsdp", "zero3", "zero3_offload")


@dataclass(frozen=True)
class StepConfig:
    kind: str                   # full | lora | qlora
    seq: int                    # tokens per row (the padded length for padded batches)
    micro_batch: int
    packed: bool = True
    liger: bool = False
    checkpointing: bool = False
    pad_efficiency: float = 1.0  # real / processed tokens (1.0 when packed)
    lora_r: int = 16
    lora_targets: str | tuple = "all-linear"
    lora_dropout: float = 0.05
    master: str = "fp32"        # full training's weights: fp32 master | bf16_kahan | bf16 (no compensation)
    compute: str = "bf16"       # bf16 | fp16 (autocast) | fp32 (no autocast, the CPU's default)


def state_bytes_per_param(kind: str, master: str = "fp32", compute: str = "bf16") -> dict[str, float]:
    """Bytes per trained parameter of full training, or per frozen base weight of LoRA (adapters: 16)."""
    if kind == "full":
        if master == "bf16_kahan":
            return {"weights": 2, "grads": 2, "optimizer": 4, "master": 2}
        if master == "bf16":
            return {"weights": 2, "grads": 2, "optimizer": 4, "master": 0}
        if master != "fp32":
            raise ValueError(f"unknown master weights mode {master!r}; one of {', '.join(MASTERS)}")
        return {"weights": 4, "grads": 4, "optimizer": 8, "master": 0 if compute == "fp32" else 2}
    return {"weights": 4 if compute == "fp32" else 2, "grads": 0, "optimizer": 0, "master": 0}


def bytes_per_param(kind: str, master: str = "fp32", compute: str = "bf16") -> float:
    return float(sum(state_bytes_per_param(kind, master, compute).values()))


def _targets(cfg: StepConfig):
    return cfg.lora_targets if isinstance(cfg.lora_targets, str) else list(cfg.lora_targets)


def state_bytes(m, cfg: StepConfig, shards: int = 1, strategy: str = "ddp") -> dict[str, float]:
    """Weights, grads, optimizer and master/compensation bytes on one GPU (before activations)."""
    p = m.total_params
    n = max(1, shards) if strategy != "ddp" else 1
    if cfg.kind == "full":
        if strategy == "ddp":
            b = state_bytes_per_param("full", cfg.master, cfg.compute)
        elif strategy == "fsdp":
            b = {"weights": 4, "grads": 4, "optimizer": 8, "master": 0}
        elif strategy == "zero3":
            b = {"weights": 2, "grads": 2, "optimizer": 8, "master": 4}
        elif strategy == "zero3_offload":
            b = {"weights": 2, "grads": 2, "optimizer": 0, "master": 0}
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        return {k: p * v / n for k, v in b.items()}
    adapters = m.lora_params(cfg.lora_r, _targets(cfg))
    if cfg.kind == "lora":
        base = p * state_bytes_per_param("lora", compute=cfg.compute)["weights"]
    else:
        linear = max(0.0, p - m.embed_params)
        base = linear * NF4_BYTES + m.embed_params * 4
    return {"weights": (base + adapters * 4) / n, "grads": adapters * 4 / n, "optimizer": adapters * 8 / n,
            "master": 0.0}


def layer_activation_bytes(m, cfg: StepConfig) -> float:
    """Bytes per token of one layer's tensors saved for backward."""
    h, kv, i = m.hidden, m.kv_dim, m.intermediate
    b = 2 * (5 * h + 2 * kv + 3 * i) if cfg.liger else 2 * (6 * h + 2 * kv + 4 * i)
    if cfg.kind != "full" and cfg.lora_dropout > 0:
        b += 2 * (6 * h + i)
    if cfg.compute == "fp32":
        return 2 * b
    if cfg.kind == "full" and cfg.master == "fp32":
        b += 8 * h
    return b


def activation_bytes(m, cfg: StepConfig) -> float:
    t = cfg.micro_batch * cfg.seq
    layer = layer_activation_bytes(m, cfg) * t
    if not cfg.checkpointing:
        return m.layers * layer
    fp32_resid = cfg.kind == "qlora" or cfg.compute == "fp32" or (cfg.kind == "full" and cfg.master == "fp32")
    return m.layers * t * m.hidden * (4 if fp32_resid else 2) + layer


def logits_bytes(m, cfg: StepConfig) -> float:
    if cfg.liger:
        return 0.0
    return cfg.micro_batch * cfg.seq * m.vocab * (12 if cfg.kind == "qlora" or cfg.compute == "fp32" else 14)


def gathered_bytes(m, cfg: StepConfig) -> float:
    """Sharded strategies: the layers held whole for a moment (computing, prefetched; full: one layer's grads)."""
    layer_params = max(0.0, m.total_params - m.embed_params) / max(1, m.layers)
    return (3 if cfg.kind == "full" else 2) * layer_params * 2


def step_bytes(m, cfg: StepConfig, shards: int = 1, strategy: str = "ddp") -> dict[str, float]:
    """Peak bytes of one training step on one GPU, by part, and `total` (no CUDA context)."""
    parts = state_bytes(m, cfg, shards, strategy)
    if strategy != "ddp" and cfg.kind == "full" and cfg.compute != "fp32":
        # sharded mixed precision gathers bf16 parameters: the forward runs in bf16, residual stream included
        cfg = StepConfig(**{**cfg.__dict__, "master": "bf16"})
    parts["activations"] = activation_bytes(m, cfg)
    parts["logits"] = logits_bytes(m, cfg)
    parts["gathered"] = gathered_bytes(m, cfg) if strategy != "ddp" and shards > 1 else 0.0
    parts["total"] = sum(parts.values())
    return parts


def step_gib(m, cfg: StepConfig, shards: int = 1, strategy: str = "ddp") -> float:
    return step_bytes(m, cfg, shards, strategy)["total"] / GIB


def per_gpu_gib(m, cfg: StepConfig, n_gpus: int) -> dict[str, float]:
    """Peak GiB per GPU under each strategy for this step on N GPUs (one GPU: every strategy is ddp)."""
    if n_gpus <= 1:
        one = step_gib(m, cfg)
        return {s: one for s in STRATEGIES}
    return {s: step_gib(m, cfg, n_gpus, s) for s in STRATEGIES}


def choose_master(m, cfg: StepConfig, budget_gib: float) -> tuple[str, str]:
    """Full training on one card (or a DDP copy per card): fp32 master weights when the step fits with
    them (this micro-batch, checkpointing allowed), else bf16 weights with Kahan summation.
    Returns (master, reason)."""
    small = StepConfig(**{**cfg.__dict__, "checkpointing": True, "master": "fp32"})
    need = step_gib(m, small)
    if need <= budget_gib:
        return "fp32", (f"fp32 master weights fit ({need:,.1f} GiB at micro-batch {cfg.micro_batch} of {budget_gib:,.0f} GiB usable, "
                        f"{bytes_per_param('full', 'fp32', cfg.compute):.0f} bytes per parameter): every update is kept")
    kahan = step_gib(m, StepConfig(**{**small.__dict__, "master": "bf16_kahan"}))
    return "bf16_kahan", (f"fp32 master weights need {need:,.1f} GiB > {budget_gib:,.0f} GiB usable: bf16 weights with "
                          f"Kahan-compensated AdamW (10 bytes per parameter, {kahan:,.1f} GiB), which keeps the updates "
                          f"that plain bf16 rounds away")
