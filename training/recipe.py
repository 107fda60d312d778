"""Recipe schema (version 1): the strict pydantic model (unknown keys are errors), written back as YAML and
as a JSON Schema. Loading it, with every problem collected and `--set` overrides: training/recipe_load.py
(and recipe_io.py for the YAML with lines). Nothing here imports torch.
"""
from __future__ import annotations

from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

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


def dump_recipe(recipe: Recipe) -> str:
    data = recipe.model_dump(mode="json", exclude_none=False)
    if data.get("resolved") is None:
        data.pop("resolved", None)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def json_schema() -> dict:
    return Recipe.model_json_schema()
