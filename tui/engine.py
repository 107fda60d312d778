"""The one door from the screens to the engine: scans, gap probe, decision, estimates, recipe, run.

Screens call only these functions and read only the plain dicts they return, so the engine can change
behind them. Nothing here imports torch at import time; heavy work runs in a subprocess (demo assets,
gap probe) or in the engine's own pure-Python modules, called from the screens' thread workers.

The scans, the decision, the estimates and the recipe are the engine's (`training.plan`), the same calls
`tune-wizard plan` makes, so the two faces cannot disagree.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DEMO = {"model": "builtin:tiny-llama", "corpus": "builtin:demo-corpus", "pairs": "builtin:demo-pairs"}
DEMO_PROMPTS = ["What does json.dumps do?", "What is the signature of textwrap.wrap?",
                "What does shutil.copytree do?"]
MB = 1e6

GAP_RULES = {"knowledge": "knowledge gap -> CPT first", "behavior": "behaviour gap -> fine-tuning only",
             "none": "no gap -> RAG or nothing to train",
             None: "not judged yet: the probe's suggestion (if it ran) and the data volume decide"}


def volume_line(clean_mb: float) -> str:
    """The guide's volume band for the evidence line, at decide()'s own thresholds and comparisons."""
    from training.plan.decide import CPT_MIN_MB, CPT_REQUIRED_MB, RAG_MAX_MB
    gb = f"{CPT_REQUIRED_MB / 1000:,.0f} GB"
    band, then = ((f"< {RAG_MAX_MB:,} MB", "RAG only") if clean_mb < RAG_MAX_MB else
                  (f"{RAG_MAX_MB:,} - {CPT_MIN_MB:,} MB", "RAG + fine-tuning") if clean_mb < CPT_MIN_MB else
                  (f"{CPT_MIN_MB:,} MB - {gb}", "CPT then SFT") if clean_mb <= CPT_REQUIRED_MB else
                  (f"> {gb}", "CPT required, SFT shapes output"))
    return f"{clean_mb:,.1f} MB clean text: {band} -> {then}"


def pairs_line(valid: int) -> str:
    from training.plan.decide import PAIRS_FULL, PAIRS_MIN
    band, then = ((f"< {PAIRS_MIN:,}", "RAG or few-shot") if valid < PAIRS_MIN else
                  (f"{PAIRS_MIN:,} - {PAIRS_FULL:,}", "LoRA/QLoRA") if valid <= PAIRS_FULL else
                  (f"> {PAIRS_FULL:,}", "full fine-tune or longer QLoRA"))
    return f"{valid:,} valid pairs: {band} -> {then}"


# ---------------------------------------------------------------- paths and the demo

def _subprocess_env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def demo_dir() -> Path:
    """The built demo assets; built in a subprocess on first use (it needs torch), about 5 s."""
    out = subprocess.run([sys.executable, "-m", "training.demo"], capture_output=True, text=True,
                         env=_subprocess_env(), cwd=str(ROOT))
    if out.returncode != 0:
        raise RuntimeError(f"building the demo assets failed: {out.stderr.strip().splitlines()[-1:]}")
    return Path(out.stdout.strip().splitlines()[-1])


def real_path(spec: str) -> str:
    if spec.startswith("builtin:"):
        d = demo_dir()
        return str({"tiny-llama": d / "tiny-llama", "demo-corpus": d / "corpus",
                    "demo-pairs": d / "pairs.jsonl"}[spec.split(":", 1)[1]])
    if spec.startswith("hf:"):  # a dataset id: its .jsonl snapshot (HubDataError says what is wrong)
        from training.hub_data import local_file
        return str(local_file(spec))
    return os.path.expanduser(spec)


# ---------------------------------------------------------------- scans

def _tokenizer(model: str | None) -> str | None:
    from training.plan.cli import tokenizer_dir
    return tokenizer_dir(model)


def scan_corpus(specs: list[str], progress=lambda done, total: None, model: str | None = None) -> dict:
    """Bytes, documents, exact and near duplicates, clean MB, estimated tokens of the domain text
    (training.plan.scan, the same scan `tune-wizard plan` runs), in a child process: the scan's own
    process pool cannot start inside the running app (tui/scan_child.py says why)."""
    from training.plan.scan import CorpusFacts
    args = json.dumps({"paths": [real_path(s) for s in specs], "tokenizer_dir": _tokenizer(model)})
    proc = subprocess.Popen([sys.executable, "-m", "tui.scan_child", args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=_subprocess_env(), cwd=str(ROOT))
    result = None
    for line in proc.stdout:
        msg = json.loads(line)
        if "progress" in msg:
            progress(*msg["progress"])
        else:
            result = msg
    err = proc.stderr.read()
    proc.wait()
    if result is None:
        raise RuntimeError(f"the corpus scan stopped: {(err.strip().splitlines() or ['no output'])[-1]}")
    if "error" in result:
        raise ValueError(result["error"])
    f = CorpusFacts(**result["facts"])
    if not f.files:
        raise ValueError("; ".join(f.skipped) or f"no .txt/.md/.jsonl/.parquet files in {' '.join(specs)}")
    return {"files": f.files, "bytes": f.total_bytes, "documents": f.documents, "duplicates": f.exact_duplicates,
            "dup_rate": f.exact_dup_rate, "near_dup_rate": f.near_dup_rate, "clean_mb": f.clean_mb,
            "tokens": f.tokens, "tokens_source": f.tokens_method, "skipped": f.skipped, "obj": f}


def scan_pairs(spec: str, model: str | None = None) -> dict:
    from training.plan.pairs_scan import scan_pairs as engine_scan
    f = engine_scan(real_path(spec), _tokenizer(model))
    return {"valid": f.valid, "formats": dict(f.formats), "invalid": f.invalid,
            "invalid_shown": [(r["line"], r["reason"]) for r in f.invalid_rows], "duplicates": f.duplicates,
            "tokens_mean": f.mean_tokens, "tokens_p95": f.max_len, "obj": f}


# ---------------------------------------------------------------- gap probe

def gap_probe_available() -> bool:
    return True  # training.plan.probe runs the model in a subprocess


def run_gap_probe(model: str, prompts: list[str], corpus: list[str], timeout: float = 300,
                  pairs: str | None = None) -> dict:
    """The base model answers the prompts; training.plan.probe runs it in a subprocess (the UI never loads a model).
    Returns GapFacts as a dict: answers [{prompt, answer}], ppl_ratio, fertility_ratio, suggested_gap, summary,
    and with pairs (and a corpus) retrieval {answer_loss_base, answer_loss_with_retrieval, gap_closed, ...}."""
    import tempfile
    from training.plan.probe import run_probe
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write("\n".join(prompts) + "\n")
    try:
        return run_probe(model, f.name, [real_path(c) for c in corpus], timeout=timeout,
                         pairs_file=real_path(pairs) if pairs else None).to_dict()
    finally:
        os.unlink(f.name)


def probe_explained(res: dict) -> list[str]:
    """The probe's numbers, each with what it means and the rule it feeds (the same lines as `plan`)."""
    from training.plan.render import probe_lines
    return probe_lines(res)


# ---------------------------------------------------------------- hardware and prices

def hardware_choices() -> tuple[list[dict], list[str]]:
    """(cards from the dated price table, or [] before it exists; NVIDIA GPUs found here)."""
    from training.runtime.runner import nvidia_gpus
    cards = []
    table = ROOT / "recipes" / "gpu_prices.yaml"
    if table.is_file():
        for c in (yaml.safe_load(table.read_text()) or {}).get("cards", []):
            cards.append({"name": c["names"][0], "memory_gib": c.get("memory_gib"),
                          "price": c.get("price_per_hour"), "date": c.get("price_date")})
    return cards, nvidia_gpus()


from tui.engine_plan import (default_edits, estimate_plans, recipe_text, recommend,  # noqa: E402  (the plan half)
                             stage_values)

__all__ = ["DEMO", "DEMO_PROMPTS", "volume_line", "pairs_line", "GAP_RULES", "scan_corpus", "scan_pairs",
           "gap_probe_available", "run_gap_probe", "probe_explained", "hardware_choices", "recommend", "estimate_plans",
           "recipe_text", "default_edits", "stage_values", "write_recipe", "start_run", "real_path"]


def write_recipe(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def start_run(recipe_path: Path) -> Path:
    """Validate, resolve, make the run folder and launch the worker detached; returns the run folder."""
    from training.recipe_load import load_recipe
    from training.runtime.runner import create_run_dir, launch, resolve

    recipe = load_recipe(str(recipe_path), [])
    resolved = resolve(recipe, str(recipe_path))
    run = create_run_dir(resolved, str(recipe_path)).resolve()
    launch(run)
    return run


def check_model(model: str, timeout: float = 8.0) -> tuple[str | None, str | None]:
    """(problem that stops the step, note to show) for a model id or folder: the same resolution the run does
    before launch (training/family.py). No network or not cached is only a note: the recipe may be
    meant for another machine, and the run checks again before it starts."""
    if model.startswith("builtin:"):
        return None, None
    from training.family import ModelError, resolve_model
    try:
        resolve_model(model, timeout=timeout)
    except ModelError as e:
        return (None, str(e)) if e.kind in ("offline", "no_network") else (str(e), None)
    except (OSError, ValueError) as e:
        return f"model.id: its config.json cannot be read ({e})", None
    return None, None
