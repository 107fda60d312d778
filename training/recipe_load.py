"""Loading a recipe: YAML (recipe_io.py, with lines) -> the schema in recipe.py, with every problem reported in
one go with its key path and, where the key came from the file, its line; then the checks the schema cannot
make alone: paths and data files that must exist, models that must be causal LMs, the hardware section, the
experiment trackers' packages. A recipe is data: read with `yaml.safe_load` semantics only
(SafeLoader.compose). Nothing here imports torch.
"""
from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from training.data import DataError
from training.recipe import BUILTIN, CptStage, Hardware, Recipe, SftStage
from training.recipe_io import Problem, RecipeError, apply_override, parse_yaml


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


