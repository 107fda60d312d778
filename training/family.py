"""What differs between the model families users bring, asked of the model itself before anything runs.

resolve_model()    the model's config.json from its folder, the offline cache or the Hub (bounded time), or a
                   ModelError naming the case (unknown id, gated without HF_TOKEN, no network, a missing local
                   folder) and what to do. No torch.
text_config()      the language model's sizes, also when they sit under `text_config` (Gemma3 4B+).
attention()        the attention kernel the model class supports (Gemma2 refuses sdpa: eager).
model_problems()   what the recipe asks that this model cannot do: a seq_len beyond its positions, LoRA target
                   modules that match none of its layers (Phi3 fuses q/k/v into qkv_proj).
"""
from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

RESOLVE_TIMEOUT_S = 20.0
# the linear layers of each family's decoder blocks, as PEFT's target_modules name them
_LLAMA_LIKE = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
LINEAR_NAMES = {
    "llama": _LLAMA_LIKE, "mistral": _LLAMA_LIKE, "qwen2": _LLAMA_LIKE, "qwen3": _LLAMA_LIKE,
    "gemma": _LLAMA_LIKE, "gemma2": _LLAMA_LIKE, "gemma3": _LLAMA_LIKE, "gemma3_text": _LLAMA_LIKE,
    "phi3": ("qkv_proj", "o_proj", "gate_up_proj", "down_proj"),
}
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


class ModelError(Exception):
    """The model cannot be resolved: `kind` (not_found | gated | offline | no_network | missing_folder |
    not_a_model | bad_id) and one line saying what to do."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def text_config(cfg: dict) -> dict:
    """The config with the language model's keys on top: Gemma3ForConditionalGeneration (and other
    vision-language configs) keep layers, sizes and vocabulary under `text_config`."""
    sub = cfg.get("text_config")
    if isinstance(sub, dict) and "num_hidden_layers" not in cfg:
        return {**cfg, **sub, "model_type": cfg.get("model_type"), "text_model_type": sub.get("model_type")}
    return cfg


def _hub_config(model_id: str, revision: str | None, timeout: float) -> dict:
    """config.json through huggingface_hub (its cache first, the network unless HF_HUB_OFFLINE=1), in a thread
    given `timeout` seconds."""
    box: dict = {}

    def fetch():
        try:
            import logging
            from huggingface_hub import hf_hub_download
            logging.getLogger("huggingface_hub").setLevel(logging.ERROR)  # its retries: our one line says it
            box["path"] = hf_hub_download(model_id, "config.json", revision=revision, etag_timeout=min(10, timeout),
                                          local_files_only=_offline(), cache_dir=os.environ.get("HF_HUB_CACHE"))
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=fetch, daemon=True)
    t.start()
    t.join(timeout)
    if t.is_alive():
        raise ModelError("no_network", f"model.id: no answer from the Hugging Face Hub for '{model_id}' within "
                         f"{timeout:.0f} s; check the network (or a proxy), or download the model and give its folder")
    if "error" in box:
        raise _explain_hub_error(model_id, box["error"])
    return json.loads(Path(box["path"]).read_text(encoding="utf-8"))


def _offline() -> bool:
    """HF_HUB_OFFLINE as set now (huggingface_hub reads it once, at import)."""
    return os.environ.get("HF_HUB_OFFLINE", "").upper() in ("1", "TRUE", "ON", "YES")


def _explain_hub_error(model_id: str, e: BaseException) -> ModelError:
    from huggingface_hub import errors as hfe
    name = type(e).__name__
    first = model_id.split("/", 1)[0]
    if isinstance(e, hfe.GatedRepoError) or "gated" in str(e).lower():
        token = "HF_TOKEN is set but its account has no access" if os.environ.get("HF_TOKEN") else "HF_TOKEN is not set"
        return ModelError("gated", f"model.id: '{model_id}' is a gated model and {token}; accept its licence on "
                          f"huggingface.co/{model_id}, then export HF_TOKEN=hf_... (a token with read access)")
    if isinstance(e, hfe.RevisionNotFoundError):
        return ModelError("not_found", f"model.revision: '{model_id}' has no such revision; check model.revision")
    if isinstance(e, hfe.RepositoryNotFoundError):
        if Path(first).is_dir():
            return ModelError("missing_folder", f"model.id: there is no folder '{model_id}' here (the folder "
                              f"'{first}' exists) and no Hugging Face model by that id; check the local path")
        return ModelError("not_found", f"model.id: no Hugging Face model '{model_id}' (a typo, or a private model "
                          f"your HF_TOKEN cannot see); check the id on huggingface.co")
    if isinstance(e, hfe.LocalEntryNotFoundError) or _offline():
        if Path(first).is_dir():
            return ModelError("missing_folder", f"model.id: there is no folder '{model_id}' here (the folder "
                              f"'{first}' exists), and it is not in the offline cache; check the local path")
        return ModelError("offline", f"model.id: '{model_id}' is not in the local Hugging Face cache and the Hub "
                          f"cannot be reached (offline or no network); download it first "
                          f"(huggingface-cli download {model_id}) or give a local folder")
    if isinstance(e, hfe.EntryNotFoundError):
        return ModelError("not_a_model", f"model.id: '{model_id}' has no config.json, so it is not a transformers "
                          f"model; give a causal language model")
    return ModelError("no_network", f"model.id: could not reach the Hugging Face Hub for '{model_id}' "
                      f"({name}); check the network, or download the model and give its folder")


def resolve_model(model_id: str, revision: str | None = None, timeout: float = RESOLVE_TIMEOUT_S) -> dict:
    """The model's config.json as a dict, or ModelError with one line saying which case it is."""
    p = Path(os.path.expanduser(model_id))
    if model_id.startswith((".", "/", "~")) or p.is_dir():
        if not p.is_dir():
            raise ModelError("missing_folder", f"model.id: the folder '{model_id}' does not exist; check the path "
                             f"(a Hugging Face id looks like org/name)")
        if not (p / "config.json").is_file():
            raise ModelError("not_a_model", f"model.id: '{model_id}' has no config.json, so it is not a saved "
                             f"model folder")
        return json.loads((p / "config.json").read_text(encoding="utf-8"))
    if not _REPO_ID.match(model_id) or model_id.count("/") > 1:
        parts = model_id.split("/")
        if len(parts) > 2 or Path(parts[0]).is_dir():
            raise ModelError("missing_folder", f"model.id: the folder '{model_id}' does not exist and it is not a "
                             f"Hugging Face id (org/name); check the path")
        raise ModelError("bad_id", f"model.id: '{model_id}' is not a Hugging Face id (org/name) nor a folder")
    return _hub_config(model_id, revision, timeout)


def attention(config, requested: str, cuda: bool, flash_installed: bool) -> tuple[str, str | None]:
    """(attention implementation, why it differs from what was asked, or None), asked of the model class:
    `auto` is flash_attention_2 where CUDA and flash_attn are there and the class supports it, else sdpa where
    the class supports it (Gemma2 does not), else eager."""
    cls = _model_class(config)
    sdpa_ok = bool(getattr(cls, "_supports_sdpa", True)) if cls is not None else True
    flash_ok = bool(getattr(cls, "_supports_flash_attn", getattr(cls, "_supports_flash_attn_2", True))) \
        if cls is not None else True
    name = cls.__name__ if cls is not None else "this model"
    if requested == "eager":
        return "eager", None
    if requested in ("auto", "flash_attention_2") and cuda and flash_installed and flash_ok:
        return "flash_attention_2", None
    why = None
    if requested == "flash_attention_2":
        why = "flash_attention_2 needs CUDA and flash_attn" if not (cuda and flash_installed) else \
            f"{name} does not support flash_attention_2"
    if sdpa_ok:
        return "sdpa", why
    return "eager", f"{name} does not support sdpa"


def _model_class(config):
    try:
        from transformers import AutoModelForCausalLM
        return AutoModelForCausalLM._model_mapping[type(config)]
    except Exception:  # noqa: BLE001 - unknown to this transformers: let from_pretrained decide
        return None


def model_problems(recipe, cfg: dict) -> list[tuple[str, str]]:
    """(key path, message) for each thing the recipe asks that this model cannot do."""
    from training.recipe import CptStage, SftStage
    t = text_config(cfg)
    out = []
    max_pos = t.get("max_position_embeddings")
    family = t.get("model_type")
    linear = LINEAR_NAMES.get(family) or LINEAR_NAMES.get(t.get("text_model_type"))
    for i, st in enumerate(recipe.stages):
        seq = st.seq_len if isinstance(st, CptStage) else getattr(st, "max_seq_len", None)
        key = "seq_len" if isinstance(st, CptStage) else "max_seq_len"
        if max_pos and seq and seq > int(max_pos):
            out.append((f"stages.{i}.{key}", f"{seq} is beyond the model's max_position_embeddings ({max_pos}); "
                                              f"use at most {max_pos}"))
        if isinstance(st, SftStage) and st.method != "full" and linear and st.lora.target_modules != "all-linear":
            targets = list(st.lora.target_modules)
            # PEFT matches a name against whole module-name parts: v_proj is not in qkv_proj
            if not any(any(tgt == n or tgt.endswith("." + n) for n in linear) for tgt in targets):
                out.append((f"stages.{i}.lora.target_modules",
                            f"{', '.join(targets)} match no layer of this {family} model (its linear layers: "
                            f"{', '.join(linear)}); use all-linear or some of those names"))
    return out
