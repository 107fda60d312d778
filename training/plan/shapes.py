"""Model shapes for the estimates: from a local config.json, the offline Hugging Face cache, a small
table of common models, or a bare parameter count (`--params 8e9`). No torch, no network.

Parameter counts follow the Llama layout (GQA attention, SwiGLU feed-forward); norms are ignored
(well under 0.1% of the weights).
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path


@dataclass(frozen=True)
class ModelShape:
    name: str
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool
    source: str = "table"  # config.json | hf-cache | table | params (shape borrowed from the nearest table entry)
    params_override: float | None = None  # set by --params: the count the user gave wins
    max_positions: int | None = None      # longest sequence the model takes (config.json)

    @property
    def kv_dim(self) -> int:
        return self.hidden * self.kv_heads // self.heads

    @property
    def layer_linear_params(self) -> int:
        attn = 2 * self.hidden * self.hidden + 2 * self.hidden * self.kv_dim  # q, o + k, v
        mlp = 3 * self.hidden * self.intermediate  # gate, up, down
        return attn + mlp

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def total_params(self) -> float:
        """Every weight held in memory: the layers plus the input embedding and the LM head."""
        n = self.layers * self.layer_linear_params + self.embed_params
        if self.params_override:
            return float(self.params_override)
        return float(n)

    @property
    def flops_params(self) -> float:
        """N in the 6N/4N FLOPs rule: every weight a token multiplies (the input embedding is a lookup)."""
        n = self.layers * self.layer_linear_params + self.vocab * self.hidden
        if self.params_override:
            return float(self.params_override) * n / (self.layers * self.layer_linear_params + self.embed_params)
        return float(n)

    def lora_params(self, r: int = 16, targets: str | list[str] = "all-linear") -> float:
        """Adapter weights: r x (in + out) per adapted matrix, every layer."""
        h, kv, i = self.hidden, self.kv_dim, self.intermediate
        per = {"q_proj": h + h, "k_proj": h + kv, "v_proj": h + kv, "o_proj": h + h,
               "gate_proj": h + i, "up_proj": h + i, "down_proj": i + h}
        names = list(per) if targets == "all-linear" else [t for t in targets if t in per]
        return float(self.layers * r * sum(per[n] for n in names))

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(total_params=self.total_params, flops_params=self.flops_params)
        return d


def _s(name, layers, hidden, inter, heads, kv, vocab, tied):
    return ModelShape(name, layers, hidden, inter, heads, kv, vocab, tied)


# public configs of common base models (config.json of each release)
KNOWN = {
    "llama-3.2-1b": _s("Llama-3.2-1B", 16, 2048, 8192, 32, 8, 128256, True),
    "llama-3.2-3b": _s("Llama-3.2-3B", 28, 3072, 8192, 24, 8, 128256, True),
    "llama-3.1-8b": _s("Llama-3.1-8B", 32, 4096, 14336, 32, 8, 128256, False),
    "llama-3.1-70b": _s("Llama-3.1-70B", 80, 8192, 28672, 64, 8, 128256, False),
    "qwen2.5-0.5b": _s("Qwen2.5-0.5B", 24, 896, 4864, 14, 2, 151936, True),
    "qwen2.5-1.5b": _s("Qwen2.5-1.5B", 28, 1536, 8960, 12, 2, 151936, True),
    "qwen2.5-3b": _s("Qwen2.5-3B", 36, 2048, 11008, 16, 2, 151936, True),
    "qwen2.5-7b": _s("Qwen2.5-7B", 28, 3584, 18944, 28, 4, 152064, False),
    "qwen2.5-14b": _s("Qwen2.5-14B", 48, 5120, 13824, 40, 8, 152064, False),
    "qwen2.5-32b": _s("Qwen2.5-32B", 64, 5120, 27648, 40, 8, 152064, False),
    "qwen2.5-72b": _s("Qwen2.5-72B", 80, 8192, 29568, 64, 8, 152064, False),
    "mistral-7b": _s("Mistral-7B", 32, 4096, 14336, 32, 8, 32768, False),
}
ALIASES = {"llama-3-8b": "llama-3.1-8b", "llama-3.3-70b": "llama-3.1-70b", "llama-3-70b": "llama-3.1-70b",
           "llama-3.1-8b": "llama-3.1-8b", "qwen3-8b": "qwen2.5-7b"}


def from_config(cfg: dict, name: str, source: str) -> ModelShape:
    """The shape from a config.json; a vision-language config (Gemma3 4B+) keeps its sizes under text_config."""
    from training.family import text_config
    cfg = text_config(cfg)
    heads = int(cfg.get("num_attention_heads") or 1)
    return ModelShape(name=name, layers=int(cfg["num_hidden_layers"]), hidden=int(cfg["hidden_size"]),
                      intermediate=int(cfg.get("intermediate_size") or 4 * cfg["hidden_size"]), heads=heads,
                      kv_heads=int(cfg.get("num_key_value_heads") or heads), vocab=int(cfg["vocab_size"]),
                      tied=bool(cfg.get("tie_word_embeddings", False)), source=source,
                      max_positions=cfg.get("max_position_embeddings"))


def _hf_cache_config(model_id: str) -> Path | None:
    hub = Path(os.environ.get("HF_HUB_CACHE") or Path(os.environ.get("HF_HOME", Path.home() / ".cache" / "huggingface")) / "hub")
    snaps = hub / ("models--" + model_id.replace("/", "--")) / "snapshots"
    found = sorted(snaps.glob("*/config.json")) if snaps.is_dir() else []
    return found[-1] if found else None


def _table_key(model_id: str) -> str | None:
    base = model_id.rsplit("/", 1)[-1].lower().replace("meta-llama-", "llama-")
    base = re.sub(r"-(instruct|chat|hf|base)$", "", re.sub(r"-v0\.\d$", "", base))
    for key in (base, ALIASES.get(base)):
        if key in KNOWN:
            return key
    return next((k for k in KNOWN if base.startswith(k)), None)


def nearest_known(params: float) -> ModelShape:
    import math
    return min(KNOWN.values(), key=lambda s: abs(math.log(s.total_params / params)))


def resolve_shape(model: str | None, params: float | None = None) -> ModelShape | None:
    """Shape of `model` (local folder, builtin:tiny-llama, HF id in the offline cache or the table).
    `params` overrides the count; with no shape known it borrows the nearest table entry's layout."""
    shape = None
    if model:
        p = Path(os.path.expanduser(model))
        if model.startswith("builtin:"):
            from training import demo
            cfg_file = demo.asset_dir() / "tiny-llama" / "config.json"
            cfg = json.loads(cfg_file.read_text()) if cfg_file.is_file() else dict(demo.MODEL_SHAPE, vocab_size=demo.VOCAB)
            shape = from_config(cfg, model, "config.json")
        elif (p / "config.json").is_file():
            shape = from_config(json.loads((p / "config.json").read_text()), model, "config.json")
        elif (c := _hf_cache_config(model)) is not None:
            shape = from_config(json.loads(c.read_text()), model, "hf-cache")
        elif (k := _table_key(model)) is not None:
            shape = replace(KNOWN[k], name=model)
    if params:
        base = shape or replace(nearest_known(params), source="params")
        return replace(base, name=model or f"{params / 1e9:g}B", params_override=float(params))
    return shape

def model_shape(model_id: str):
    """The model's shape (config.json, the offline Hugging Face cache or the table); None when unknown."""
    try:
        return resolve_shape(model_id)
    except (KeyError, ValueError, TypeError, OSError):
        return None
