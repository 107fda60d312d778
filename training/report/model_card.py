"""The model card (the README.md a Hub repository shows), generated from the run's report.md.

It carries what a reader of the Hub page needs and report.md already says: what was decided and why, the
before/after table, time and cost, the data hashes (and dataset ids with their revisions), plus how to load
and serve the result. Plots are left out (their PNGs stay in the run folder). Reads only the run folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import yaml

SECTIONS = ("What was decided and why", "Did it work?", "Time and cost", "Data")


def report_sections(text: str) -> dict[str, list[str]]:
    """{heading: lines} of the `## ` sections of report.md, image lines dropped."""
    out: dict[str, list[str]] = {}
    cur = None
    for line in text.splitlines():
        if line.startswith("## "):
            cur = line[3:].strip()
            out[cur] = []
        elif cur is not None and not line.lstrip().startswith("!["):
            out[cur].append(line)
    return {k: _trim(v) for k, v in out.items()}


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[0].strip():
        lines = lines[1:]
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _is_hub_id(s: str | None) -> bool:
    return bool(s) and not s.startswith(("/", ".", "~")) and s.count("/") == 1


def front_matter(recipe: dict, kind: str, base: str | None) -> str:
    meta: dict = {"library_name": "peft" if kind == "adapter" else "transformers",
                  "pipeline_tag": "text-generation",
                  "tags": ["tune-wizard"] + sorted({s.get("type", "") for s in recipe.get("stages", [])} |
                                                   {s.get("method") for s in recipe.get("stages", []) if s.get("method")})}
    origin = recipe.get("model", {}).get("id")
    if _is_hub_id(base):
        meta["base_model"] = base
    elif _is_hub_id(origin):
        meta["base_model"] = origin
    ids = [v.get("name") for v in ((recipe.get("resolved") or {}).get("datasets") or {}).values()]
    if hub := sorted({n for n in ids if _is_hub_id(n)}):
        meta["datasets"] = hub
    return "---\n" + yaml.safe_dump(meta, sort_keys=False) + "---\n"


def model_card(run: Path, kind: str, base: str | None, repo_id: str, serve: dict[str, str]) -> str:
    """kind: merged | adapter | model. `serve`: {name: shell command} as printed by `export`."""
    report = run / "report.md"  # the caller writes it first when it is missing (tune-wizard export does)
    sections = report_sections(report.read_text(encoding="utf-8"))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text(encoding="utf-8")) or {}
    what = {"merged": "a LoRA adapter merged into its base: a standalone model",
            "adapter": f"a LoRA adapter on `{base}`", "model": "a full model (every weight trained)"}[kind]
    out = [front_matter(recipe, "adapter" if kind == "adapter" else "model", base), f"# {repo_id}", "",
           f"Trained with tune-wizard (run `{run.name}`); this repository holds {what}, "
           "with the tokenizer and the chat template it was trained with.", ""]
    if kind == "adapter" and base and not _is_hub_id(base):
        out += [f"Note: the adapter's base (`{base}`) is a folder on the machine that trained it (e.g. the result of "
                "a CPT stage), not a Hub model; push with `tune-wizard export --merge --push-to-hub` for a model "
                "that loads anywhere.", ""]
    for name in SECTIONS:
        if sections.get(name):
            out += [f"## {name}", ""] + sections[name] + [""]
    out += ["## Use it", ""]
    for name, cmd in serve.items():
        out += [f"{name}:", "", "```bash", cmd, "```", ""]
    out += ["The run's full report (loss curves, probe answers, the recipe that replays it) stays in the run folder "
            "it was trained in.", ""]
    return "\n".join(out)


def lora_rank(adapter: Path) -> int | None:
    try:
        return int(json.loads((adapter / "adapter_config.json").read_text())["r"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
