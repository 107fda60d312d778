"""The disk check before every launch: can output_dir hold what the run will write? Pure Python, no torch.

Per stage, the most the run folder holds at once:
    checkpoints   kept x checkpoint size. The Trainer writes a new checkpoint before it deletes the oldest
                  (save_total_limit rotation), so up to save_total_limit + 1 exist for a moment, and never
                  more than the number of saves the stage makes (total steps / save_steps).
    checkpoint    full weights: weights + AdamW m and v (each in the parameters' dtype: 4 bytes on the CPU,
                  2 with bf16/fp16 on a GPU), so 3 x the weights; LoRA/QLoRA: the adapter in fp32 with its
                  m and v, 12 bytes per adapter weight
    outputs       the stage's result: the full model (cpt, sft full) or the adapter
    data cache    CPT only: the tokenized corpus in Arrow files (run_dir/cache), CACHE_PER_CORPUS_BYTE x
                  the corpus bytes (text rows, token ids as int64, packed blocks), removed after the stage
Outputs of earlier stages stay; a stage's checkpoints stay too (resume needs them), so the need adds up.
A measured preflight (training/runtime/preflight.py) replaces the checkpoint size and the cache ratio by
what it saw on disk.
"""
from __future__ import annotations

import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

CACHE_PER_CORPUS_BYTE = 6.0   # Arrow text rows (~1x) + int64 ids and lengths (~2x: 8 bytes per ~4-byte token) + packed blocks (~2x) + slack
MARGIN = 1.10                 # 10% on top: logs, plots, tokenizer files, filesystem slack
FIXED_BYTES = 20 * 2**20      # events, train.log, report, plots


@dataclass
class StageNeed:
    stage: str
    checkpoint_bytes: float
    kept: int
    output_bytes: float
    cache_bytes: float
    saves: int

    @property
    def total(self) -> float:
        return self.checkpoint_bytes * self.kept + self.output_bytes + self.cache_bytes


@dataclass
class DiskNeed:
    stages: list[StageNeed] = field(default_factory=list)
    source: str = "estimate"   # estimate | preflight

    @property
    def peak_bytes(self) -> float:
        """The most held at once: earlier stages' checkpoints and outputs, plus this stage's all."""
        done, peak = 0.0, 0.0
        for s in self.stages:
            peak = max(peak, done + s.total)
            done += s.checkpoint_bytes * s.kept + s.output_bytes  # the cache goes when the stage ends
        return peak * MARGIN + FIXED_BYTES


def free_bytes(path: str | Path) -> tuple[float, Path]:
    """Free bytes for an unprivileged writer on the filesystem of `path` (or its nearest existing parent)."""
    p = Path(os.path.expanduser(str(path))).absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    return float(shutil.disk_usage(p).free), p


def _steps(st, n_rows: float | None) -> int | None:
    if st.max_steps:
        return st.max_steps
    if not n_rows:
        return None
    per = st.micro_batch_size * st.grad_accum
    return max(1, math.ceil(st.epochs * math.ceil(n_rows / per)))


def weight_bytes_per_param(on_gpu: bool, dtype: str = "auto", precision: str = "auto") -> int:
    want = precision if precision != "auto" else dtype
    if not on_gpu:
        return 4  # the CPU trains in fp32 (training/runtime/stages/common.py resolve_precision)
    return 4 if want == "fp32" else 2


def estimate_need(recipe, shape, on_gpu: bool, corpus_bytes: dict[str, float] | None = None,
                  measured: dict[str, dict] | None = None) -> DiskNeed | None:
    """Disk the run needs, per stage. `measured` (from a preflight): {stage: {"checkpoint_bytes",
    "output_bytes", "cache_bytes_per_corpus_byte"}}. None when the model's shape is unknown and nothing
    was measured."""
    measured = measured or {}
    if shape is None and not measured:
        return None
    need = DiskNeed(source="preflight" if measured else "estimate")
    for st in recipe.stages:
        m = measured.get(st.name, {})
        wb = weight_bytes_per_param(on_gpu, recipe.model.dtype, st.precision)
        method = "full" if st.type == "cpt" else st.method
        if shape is not None:
            if method == "full":
                ckpt, out = 3 * wb * shape.total_params, wb * shape.total_params
            else:
                targets = st.lora.target_modules if isinstance(st.lora.target_modules, str) else list(st.lora.target_modules)
                lp = shape.lora_params(st.lora.r, targets)
                ckpt, out = 12 * lp, 4 * lp
        else:
            ckpt = out = 0.0
        ckpt = float(m.get("checkpoint_bytes", ckpt))
        out = float(m.get("output_bytes", out))
        cbytes = float((corpus_bytes or {}).get(st.name, 0.0)) if st.type == "cpt" else 0.0
        cache = cbytes * float(m.get("cache_bytes_per_corpus_byte", CACHE_PER_CORPUS_BYTE))
        # rows: CPT blocks ~ corpus bytes / 4 bytes per token / seq_len; SFT: unknown here -> the limit decides
        rows = cbytes / 4 / st.seq_len if st.type == "cpt" and cbytes else None
        total = _steps(st, rows)
        limit = st.save_total_limit
        saves = (total // (st.save_steps or max(1, total // 5))) if total else limit + 1
        kept = max(1, min(limit + 1, saves))
        need.stages.append(StageNeed(stage=st.name, checkpoint_bytes=ckpt, kept=kept, output_bytes=out,
                                     cache_bytes=cache, saves=saves))
    return need


def gib(b: float) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 / 10 else f"{b / 2**20:.1f} MiB"


def refusal(need: DiskNeed, free: float, where: Path, output_dir: str) -> str | None:
    """One line saying why the run cannot start, or None when it fits."""
    want = need.peak_bytes
    if want <= free:
        return None
    worst = max(need.stages, key=lambda s: s.checkpoint_bytes * s.kept)
    parts = "; ".join(f"{s.stage}: {s.kept} x {gib(s.checkpoint_bytes)} checkpoints + {gib(s.output_bytes)} output"
                      + (f" + {gib(s.cache_bytes)} data cache" if s.cache_bytes else "") for s in need.stages)
    return (f"output_dir '{output_dir}' ({where}) has {gib(free)} free but the run needs about {gib(want)} "
            f"({parts}; {need.source}); free space there, choose another output_dir, or keep fewer checkpoints: "
            f"stages.{worst.stage}.save_total_limit: 1 or a larger stages.{worst.stage}.save_steps")


def check_disk(recipe, source: str | None = None, measured: dict[str, dict] | None = None,
               free_fn: Callable[[str], tuple[float, Path]] = free_bytes) -> DiskNeed | None:
    """Raise RecipeError (exit 2 in the face) when output_dir cannot hold the run. `recipe` is resolved
    (absolute data paths). Returns the need (None when it cannot be estimated)."""
    from training.recipe import CptStage, Problem, RecipeError
    from training.recipe_load import expand_data
    from training.plan.shapes import model_shape
    from training.runtime.defaults import detect

    corpus = {st.name: float(sum(f.stat().st_size for spec in st.data for f in expand_data(spec)))
              for st in recipe.stages if isinstance(st, CptStage)}
    need = estimate_need(recipe, model_shape(recipe.model.id), detect().cuda, corpus, measured)
    if need is None:
        return None
    free, where = free_fn(recipe.output_dir)
    if why := refusal(need, free, where, recipe.output_dir):
        raise RecipeError([Problem(path="output_dir", message=why)], source)
    return need
