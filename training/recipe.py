"""Recipe schema (version 1), loading with every problem collected, and `--set` overrides.

A recipe is data: it is read with `yaml.safe_load` semantics only (SafeLoader.compose), validated by a
strict pydantic model (unknown keys are errors), and every problem is reported in one go with its key
path and, where the key came from the file, its line. Nothing here imports torch.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from training.data import DataError
from training.recipe_io import Problem, RecipeError, apply_override, parse_yaml  # noqa: F401 (re-exported)

RECIPE_VERSION = 1
BUILTIN = "builtin:"  # model/data paths that the project builds locally (the demo)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ModelSpec(Strict):
    id: str = Field(description="Hugging Face id, local directory, or builtin:tiny-llama")
    revision: str | None = None
    trust_remote_code: bool = False
    # removed: the weights' dtype is each stage's (precision, master_weights). `auto` is still read, so
    # recipes and run folders written before keep loading; any other value is an error naming the key.
    dtype: str | None = Field(None, exclude=True, description="removed; use the stages' precision and master_weights")

    @field_validator("dtype")
    @classmethod
    def _dtype_removed(cls, v: Any) -> Any:
        if v not in (None, "auto"):
            raise ValueError(f"model.dtype is no longer read : the weights load in each stage's "
                             f"precision, and full training's master_weights (fp32 or bf16_kahan) decide how "
                             f"they are updated; remove the key and set precision: {v} on the stages")
        return v


class Hardware(Strict):
    gpu: str = Field("auto", description="GPU name as in recipes/gpu_prices.yaml, 'auto' (detect) or 'cpu'")
    gpu_count: int = Field(1, ge=1)
    price_per_gpu_hour: float = Field(0.0, ge=0)
    price_source: str | None = None
    price_date: str | None = None
    budget_usd: float | None = Field(None, ge=0)
    # beyond one GPU: more than one process (or a sharded strategy) runs through `accelerate launch`
    num_processes: int = Field(1, ge=1, description="training processes per node, one per GPU")
    num_nodes: int = Field(1, ge=1, description="machines; each runs num_processes processes")
    strategy: Literal["ddp", "fsdp", "deepspeed-zero3"] = Field(
        "ddp", description="ddp: a full copy per GPU; fsdp / deepspeed-zero3: weights, gradients and optimizer "
                           "state sharded across GPUs (when the model with its training state outgrows one card)")
    offload_optimizer: bool = Field(False, description="deepspeed-zero3 only: optimizer state in CPU RAM (DeepSpeed CPU Adam)")
    main_address: str | None = Field(None, description="node 0's address for multi-node rendezvous (or --main-address)")
    main_port: int = Field(29500, ge=1, le=65535, description="rendezvous port on node 0 (multi-node)")

    @model_validator(mode="before")
    @classmethod
    def _gpu_count_follows_processes(cls, data: Any) -> Any:
        """Estimates and costs count gpu_count; unless it is set, it is every process of every node."""
        if isinstance(data, dict) and "gpu_count" not in data:
            n, m = data.get("num_processes", 1), data.get("num_nodes", 1)
            if isinstance(n, int) and isinstance(m, int) and n >= 1 and m >= 1:
                data = {**data, "gpu_count": n * m}
        return data

    @property
    def world_size(self) -> int:
        return self.num_processes * self.num_nodes

    @property
    def distributed(self) -> bool:
        """True when the run goes through `accelerate launch` rather than one plain process."""
        return self.world_size > 1 or self.strategy != "ddp"
    max_cost_usd: float | None = Field(None, gt=0, description=(
        "hard cap: checkpoint and stop when elapsed hours x price_per_gpu_hour x gpu_count reaches it"))


class LoraSpec(Strict):
    r: int = Field(16, ge=1)
    alpha: int = Field(32, ge=1)
    dropout: float = Field(0.05, ge=0, lt=1)
    target_modules: Union[Literal["all-linear"], list[str]] = "all-linear"


class StageBase(Strict):
    name: str | None = Field(None, description="defaults to the stage type (cpt, sft), made unique")
    learning_rate: float = Field(gt=0)
    lr_scheduler: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_ratio: float = Field(0.03, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: int | None = Field(None, ge=1, description="overrides epochs when set")
    micro_batch_size: int = Field(4, ge=1)
    grad_accum: int = Field(1, ge=1)
    precision: Literal["auto", "bf16", "fp16", "fp32"] = "auto"
    master_weights: Literal["auto", "fp32", "bf16_kahan"] = Field(
        "auto", description="full training: fp32 master weights, or bf16 weights with Kahan-compensated AdamW "
                            "(10 instead of 18 bytes per parameter); auto: fp32 where the step fits the card")
    gradient_checkpointing: bool = Field(False, description="unset: on only when the VRAM estimate needs it")
    attention: Literal["auto", "sdpa", "flash_attention_2", "eager"] = Field(
        "auto", description="auto: flash_attention_2 with CUDA and flash_attn installed, else sdpa")
    liger_kernel: bool | None = Field(None, description="unset: on when CUDA and liger-kernel are present")
    eval_fraction: float = Field(0.05, ge=0, lt=0.5)
    logging_steps: int = Field(10, ge=1)
    eval_steps: int | None = Field(None, ge=1, description="default: about 5 evaluations per stage")
    save_steps: int | None = Field(None, ge=1, description="default: about 5 checkpoints per stage")
    save_total_limit: int = Field(2, ge=1, description="checkpoints kept on disk (the oldest is deleted after a new one)")
    weight_decay: float = Field(0.0, ge=0)
    max_grad_norm: float = Field(1.0, gt=0)


class ReplaySpec(Strict):
    """General text mixed into continued pre-training against forgetting (training/runtime/replay.py)."""
    data: list[str] = Field(min_length=1, description="files, folders or globs of general text: .txt .md .jsonl .parquet")
    fraction: float = Field(0.05, gt=0, lt=0.5, description="share of the training tokens that is replayed general text")
    text_field: str = "text"

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v


class CptStage(StageBase):
    type: Literal["cpt"]
    data: list[str] = Field(min_length=1, description="files, folders or globs: .txt .md .jsonl .parquet")
    text_field: str = "text"
    doc_separator: str = Field("blank_line", min_length=1, description=(
        ".txt files: blank_line (documents separated by blank lines), line (one document per line), "
        "none (one document per file) or a literal separator string"))
    dedup: Literal["exact", "near", "none"] = Field("exact", description=(
        "exact: drop repeated documents (normalised text); near: also MinHash/LSH near-copies (one of each "
        "group stays); none: keep everything. `plan` writes near when its scan found near duplicates"))
    seq_len: int = Field(1024, ge=8)
    packing: bool = True
    replay: ReplaySpec | None = Field(None, description="general text mixed in at a share of the tokens, against forgetting")
    learning_rate: float = Field(1e-5, gt=0)
    epochs: float = Field(1.0, gt=0)

    @field_validator("data", mode="before")
    @classmethod
    def _one_or_many(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("dedup", mode="before")
    @classmethod
    def _dedup_bool(cls, v: Any) -> Any:
        """Recipes written before the three modes said true/false."""
        return {True: "exact", False: "none"}.get(v, v) if isinstance(v, bool) else v


class SftStage(StageBase):
    type: Literal["sft"]
    method: Literal["lora", "qlora", "full"] = "lora"
    data: str = Field(description="a .jsonl file of pairs: messages, prompt/completion or instruction/input/output")
    format: Literal["auto", "messages", "prompt_completion", "instruction"] = "auto"
    chat_template: str = Field("auto", description="'auto' (the tokenizer's, else a plain one), 'plain', or a .jinja file")
    completion_only_loss: bool = True
    lora: LoraSpec = Field(default_factory=LoraSpec)
    learning_rate: float = Field(2e-4, gt=0)
    epochs: float = Field(3.0, gt=0)
    max_seq_len: int = Field(1024, ge=8)
    packing: bool = Field(False, description="unset: on with flash-attention (best-fit-decreasing, padding-free)")
    group_by_length: bool | None = Field(None, description="unset: on when not packing (micro-batches of similar lengths)")
    skip_invalid_rows: bool = Field(False, description="train on the valid rows when some are broken (counted in events)")


Stage = Annotated[Union[CptStage, SftStage], Field(discriminator="type")]


class EvalSpec(Strict):
    """Before/after measurements around every stage (training/runtime/evaluate.py); the caps keep them cheap."""
    enabled: bool = True
    probe_prompts: list[str] = Field(default_factory=list, description="asked before and after each sft stage")
    max_new_tokens: int = Field(64, ge=1, le=4096)
    general_text: str | None = Field(None, description="a .txt/.md file of general English; default: recipes/general_reference.txt")
    max_domain_tokens: int = Field(32768, ge=64, description="cap on held-out domain tokens scored")
    max_general_tokens: int = Field(16384, ge=64, description="cap on general-text tokens scored")
    max_pairs: int = Field(64, ge=1, description="cap on held-out pairs scored")
    forgetting_threshold_pct: float = Field(10.0, ge=0, description="warn when general perplexity rises more during or after cpt")
    stop_on_forgetting: bool = Field(False, description="cpt: checkpoint and stop when general perplexity passes the threshold at an eval step")
    lm_eval_tasks: list[str] = Field(default_factory=list, description="lm-eval-harness tasks, run when lm-eval is installed")
    lm_eval_limit: int = Field(100, ge=1, description="examples per lm-eval task")


class Estimate(Strict):
    """What the run was expected to take, written before it starts; the report sets the spend against it."""
    hours: float = Field(ge=0)
    usd: float | None = Field(None, ge=0)
    peak_vram_gib: float | None = Field(None, ge=0)
    source: str | None = None
    preflight: dict[str, Any] | None = Field(None, description="measured by `tune-wizard preflight`: per-stage tokens/s, "
                                             "s/step, peak memory, projected seconds (source: preflight)")


class DecisionRecord(Strict):
    """Why this recipe: written by `tune-wizard plan` and the wizard, shown in the run's report."""
    path: Literal["rag_only", "sft", "cpt_sft", "cpt"]
    method: Literal["lora", "qlora", "full"] | None = None
    reasons: list[str] = Field(default_factory=list)
    warnings: list[str] = Field(default_factory=list)
    evidence: dict[str, Any] = Field(default_factory=dict, description="the measured facts, in brief")
    decided_by: str | None = None


class Recipe(Strict):
    version: Literal[1] = RECIPE_VERSION
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
    seed: int = 42
    output_dir: str = "runs"
    model: ModelSpec
    hardware: Hardware = Field(default_factory=Hardware)
    stages: list[Stage] = Field(min_length=1)
    eval: EvalSpec = Field(default_factory=EvalSpec)
    report_to: list[Literal["tensorboard", "wandb", "mlflow", "trackio"]] = Field(
        default_factory=list, description="experiment trackers the Trainer logs to, besides events.jsonl [none]")
    estimate: Estimate | None = None
    decision: DecisionRecord | None = None
    # filled in by the runner when it resolves a recipe into a run directory; not for users to write
    resolved: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _stage_names(self) -> "Recipe":
        seen: dict[str, int] = {}
        for st in self.stages:
            base = st.name or st.type
            n = seen.get(base, 0)
            seen[base] = n + 1
            if st.name is None:
                st.name = base if n == 0 else f"{base}-{n + 1}"
        names = [s.name for s in self.stages]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"stage names must be unique, repeated: {', '.join(sorted(dup))}")
        return self


# ---------------------------------------------------------------- loading

def _loc_line(loc: tuple, lines: dict[tuple, int]) -> int | None:
    loc = tuple(loc)
    while loc:
        if loc in lines:
            return lines[loc]
        loc = loc[:-1]
    return lines.get(()) if lines else None


def _clean_loc(loc: tuple) -> tuple:
    # pydantic puts the union tag into the location: ('stages', 0, 'cpt', 'seq_len')
    out = list(loc)
    if len(out) >= 3 and out[0] == "stages" and out[2] in ("cpt", "sft"):
        del out[2]
    return tuple(out)


def _schema_classes(tp) -> list[type]:
    """The recipe schema classes inside a field's annotation (through Optional, list, unions, Annotated)."""
    import typing
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [c for a in typing.get_args(tp) for c in _schema_classes(a)]


def _unknown_key(raw_loc: tuple) -> str:
    """The message for an unknown key at pydantic's location (with the stage's type tag): the closest key of
    the section it sits in (model.name -> 'id'), the stage type it belongs to, or the section's keys."""
    import difflib
    models: list[type] = [Recipe]
    tags = {"cpt": CptStage, "sft": SftStage}
    for part in raw_loc[:-1]:
        if part in tags and tags[part] in models:  # the union's tag: this stage's own type
            models = [tags[part]]
        elif not isinstance(part, int):  # a list index keeps the list's item classes
            models = [c for m in models if part in m.model_fields for c in _schema_classes(m.model_fields[part].annotation)]
    names = sorted({n for m in models for n, f in m.model_fields.items() if not f.exclude})
    key = str(raw_loc[-1]) if raw_loc else ""
    if models and models[0] in tags.values() and key in {n for c in tags.values() for n in c.model_fields}:
        mine = next(t for t, c in tags.items() if c is models[0])
        other = next(t for t in tags if t != mine)
        return f"unknown key for {'an' if mine == 'sft' else 'a'} {mine} stage; {key} belongs to {other} stages"
    hit = difflib.get_close_matches(key, names, n=1, cutoff=0.75) or \
        [n for n in names if n in SYNONYMS.get(key, ())]
    if hit:
        return f"unknown key; did you mean '{hit[0]}'?"
    if names and len(names) <= 20:
        where = ".".join(str(p) for p in _clean_loc(raw_loc)[:-1]) or "the recipe"
        return f"unknown key; {where} takes: {', '.join(names)}"
    return "unknown key; remove it or check the spelling (see README: recipe reference)"


SYNONYMS = {"name": ("id",), "path": ("id",), "model": ("id",), "model_name": ("id",), "lr": ("learning_rate",),
            "num_train_epochs": ("epochs",), "steps": ("max_steps",), "batch_size": ("micro_batch_size",),
            "per_device_train_batch_size": ("micro_batch_size",),
            "gradient_accumulation_steps": ("grad_accum",)}  # HF TrainingArguments names -> ours


def _pydantic_problems(err: ValidationError, lines: dict[tuple, int]) -> list[Problem]:
    probs = []
    for e in err.errors():
        loc = _clean_loc(tuple(e["loc"]))
        path = ".".join(str(p) for p in loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = _unknown_key(tuple(e["loc"]))
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif e["type"] == "union_tag_invalid" or e["type"] == "union_tag_not_found":
            msg = "stage 'type' must be 'cpt' or 'sft'"
        elif e["type"].startswith("literal_error"):
            msg = msg.replace("Input should be", "must be")
        else:
            inp = e.get("input")
            if not isinstance(inp, (dict, list)):
                msg = f"{msg} (got {inp!r})"
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        probs.append(Problem(path=path, line=_loc_line(loc, lines), message=msg))
    return probs


DATA_SUFFIXES = (".txt", ".md", ".jsonl", ".parquet")


# report_to: the package each experiment tracker needs (checked when the recipe is loaded)
TRACKER_PACKAGE = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}


def missing_packages(report_to: list[str]) -> list[str]:
    """One sentence per tracker whose package is not installed."""
    import importlib.util
    return [f"report_to: {t} needs the {TRACKER_PACKAGE[t]} package, which is not installed; "
            f"`pip install {TRACKER_PACKAGE[t]}` (or `pip install 'tune-wizard[trackers]'`) or remove it from report_to"
            for t in report_to if importlib.util.find_spec(TRACKER_PACKAGE[t]) is None]


def expand_data(spec: str) -> list[Path]:
    """Files named by a path, a folder (recursive) or a glob, restricted to the supported suffixes.
    An `hf:` dataset id is its .jsonl snapshot (training/hub_data.py; raises HubDataError when unusable)."""
    from training.hub_data import is_hf, resolve
    if is_hf(spec):
        return [Path(resolve(spec).file)]
    p = Path(os.path.expanduser(spec))
    if any(ch in spec for ch in "*?["):
        found = [Path(x) for x in sorted(glob.glob(os.path.expanduser(spec), recursive=True))]
    elif p.is_dir():
        found = sorted(x for x in p.rglob("*") if x.is_file())
    elif p.exists():
        return [p]
    else:
        return []
    return [x for x in found if x.is_file() and x.suffix.lower() in DATA_SUFFIXES]


def _auto_causal_lm(model_type) -> bool:
    """Whether AutoModelForCausalLM loads this model type (Gemma3ForConditionalGeneration: yes)."""
    try:
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES
    except ImportError:
        return False
    return isinstance(model_type, str) and model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES


def _not_causal_lm(config_file: Path) -> str | None:
    """Why a saved model is not a causal (decoder) language model, or None when it is or we cannot tell."""
    import json
    try:
        cfg = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "has a config.json that is not valid JSON; is the download complete?"
    if not isinstance(cfg, dict):
        return "has a config.json that is not a JSON object"
    archs = cfg.get("architectures") or []
    if archs and not any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in archs) \
            and not (any(str(a).endswith("ForConditionalGeneration") for a in archs)
                     and _auto_causal_lm(cfg.get("model_type"))):
        return (f"is a {', '.join(map(str, archs))}, not a causal language model; "
                f"CPT and SFT need a decoder model (Llama, Mistral, Qwen, ...)")
    return None


def _check_paths(recipe: Recipe, lines: dict[tuple, int]) -> list[Problem]:
    """What pydantic cannot see: data files that do not exist, model folders that are not models."""
    probs = []
    mid = recipe.model.id
    if not mid.startswith(BUILTIN) and (mid.startswith((".", "/", "~")) or os.path.isdir(mid)):
        d = Path(os.path.expanduser(mid))
        if not d.is_dir():
            probs.append(Problem(path="model.id", line=_loc_line(("model", "id"), lines),
                                 message=f"model folder '{mid}' does not exist; give a local folder or a Hugging Face id"))
        elif not (d / "config.json").is_file():
            probs.append(Problem(path="model.id", line=_loc_line(("model", "id"), lines),
                                 message=f"'{mid}' has no config.json, so it is not a saved model folder"))
        elif why := _not_causal_lm(d / "config.json"):
            probs.append(Problem(path="model.id", line=_loc_line(("model", "id"), lines), message=f"'{mid}' {why}"))
    elif mid.startswith(BUILTIN) and mid[len(BUILTIN):] not in ("tiny-llama",):
        probs.append(Problem(path="model.id", line=_loc_line(("model", "id"), lines),
                             message="the only built-in model is builtin:tiny-llama"))
    probs.extend(_check_hardware(recipe.hardware, lines))
    for i, st in enumerate(recipe.stages):
        specs = st.data if isinstance(st, CptStage) else [st.data]
        for j, spec in enumerate(specs):
            loc = ("stages", i, "data", j) if isinstance(st, CptStage) else ("stages", i, "data")
            path = ".".join(str(x) for x in loc)
            if spec.startswith(BUILTIN):
                if spec[len(BUILTIN):] not in ("demo-corpus", "demo-pairs"):
                    probs.append(Problem(path=path, line=_loc_line(loc, lines),
                                         message="built-in data is builtin:demo-corpus or builtin:demo-pairs"))
                continue
            try:
                files = expand_data(spec)
            except DataError as e:  # an hf: id that is unknown, gated, unreachable or empty
                probs.append(Problem(path=path, line=_loc_line(loc, lines), message=str(e)))
                continue
            if not files:
                what = "matches no .txt/.md/.jsonl/.parquet file" if (any(c in spec for c in "*?[") or Path(spec).is_dir()) \
                    else "does not exist"
                probs.append(Problem(path=path, line=_loc_line(loc, lines), message=f"'{spec}' {what}; check the path"))
            elif isinstance(st, SftStage) and files[0].suffix.lower() != ".jsonl":
                probs.append(Problem(path=path, line=_loc_line(loc, lines),
                                     message=f"pairs file '{spec}' must be .jsonl (one JSON object per line)"))
    probs += [Problem(path="report_to", line=_loc_line(("report_to",), lines), message=m)
              for m in missing_packages(recipe.report_to)]
    for i, st in enumerate(recipe.stages):
        for j, spec in enumerate(st.replay.data if isinstance(st, CptStage) and st.replay else []):
            if not expand_data(spec):
                loc = ("stages", i, "replay", "data", j)
                probs.append(Problem(path=".".join(map(str, loc)), line=_loc_line(loc, lines),
                                     message=f"replay text '{spec}' does not exist or holds no .txt/.md/.jsonl/.parquet "
                                             f"file; check the path (general text such as recipes/general_reference.txt)"))
    gt = recipe.eval.general_text
    if gt is not None and not Path(os.path.expanduser(gt)).is_file():
        probs.append(Problem(path="eval.general_text", line=_loc_line(("eval", "general_text"), lines),
                             message=f"'{gt}' does not exist; give a .txt/.md file or leave the key out for the shipped text"))
    return probs


def _check_hardware(hw: Hardware, lines: dict[tuple, int]) -> list[Problem]:
    """Hardware keys that only make sense together (what this machine has is checked by runner.resolve)."""
    if hw.offload_optimizer and hw.strategy != "deepspeed-zero3":
        return [Problem(path="hardware.offload_optimizer", line=_loc_line(("hardware", "offload_optimizer"), lines),
                        message="optimizer offload is a DeepSpeed feature here; set strategy: deepspeed-zero3 or remove it")]
    return []


def load_recipe(path: str | os.PathLike, overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    """Read, override, validate. Raises RecipeError listing every problem (file, line, key path, what to do)."""
    file = str(path)
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise RecipeError([Problem(path="", message="recipe file not found; check the path")], file)
    except IsADirectoryError:
        raise RecipeError([Problem(path="", message="is a folder, not a recipe file")], file)
    except PermissionError:
        raise RecipeError([Problem(path="", message="cannot be read (permission denied)")], file)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RecipeError([Problem(path="", message="is not UTF-8 text; is this really a YAML recipe?")], file)
    if "\x00" in text:
        raise RecipeError([Problem(path="", message="is a binary file, not a YAML recipe")], file)
    if not text.strip():
        raise RecipeError([Problem(path="", message="is empty; a recipe is a YAML mapping, see recipes/demo.yaml")], file)
    data, lines = parse_yaml(text, file)
    return validate_data(data, lines, file, overrides, check_paths)


def validate_data(data: Any, lines: dict[tuple, int] | None = None, file: str | None = None,
                  overrides: list[str] | None = None, check_paths: bool = True) -> Recipe:
    lines = lines or {}
    if not isinstance(data, dict):
        raise RecipeError([Problem(path="", line=1, message="a recipe is a YAML mapping (key: value lines); see recipes/demo.yaml")], file)
    problems: list[Problem] = []
    for expr in overrides or []:
        try:
            apply_override(data, expr)
        except RecipeError as e:
            problems.extend(e.problems)
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as e:
        problems.extend(_pydantic_problems(e, lines))
        raise RecipeError(problems, file)
    if check_paths:
        problems.extend(_check_paths(recipe, lines))
    if problems:
        raise RecipeError(problems, file)
    return recipe


def dump_recipe(recipe: Recipe) -> str:
    data = recipe.model_dump(mode="json", exclude_none=False)
    if data.get("resolved") is None:
        data.pop("resolved", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def json_schema() -> dict:
    return Recipe.model_json_schema()
