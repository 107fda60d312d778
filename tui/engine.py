"""The one door from the screens to the engine: scans, gap probe, decision, estimates, recipe, run.

Screens call only these functions and read only the plain dicts they return, so the engine can change
behind them. Nothing here imports torch at import time; heavy work runs in a subprocess (demo assets,
gap probe) or in the engine's own pure-Python modules, called from the screens' thread workers.

The decision and estimates come from `training.plan.decide` / `training.plan.estimate` (issue 3). Where a build
does not have them yet, `_fallback_*` apply the guide's tables as DESIGN.md states them, so the wizard
still walks to a recipe; their lines say so.
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

# the guide's tables (DESIGN.md), shown next to the evidence they apply to
VOLUME_RULES = [(10, "< 10 MB", "RAG only"), (500, "10 - 500 MB", "RAG + fine-tuning"),
                (10_000, "500 MB - 10 GB", "CPT then SFT"), (float("inf"), "> 10 GB", "CPT required, SFT shapes output")]
PAIRS_RULES = [(500, "< 500", "RAG or few-shot"), (5000, "500 - 5,000", "LoRA/QLoRA"),
               (float("inf"), "> 5,000", "full fine-tune or longer QLoRA")]
GAP_RULES = {"knowledge": "knowledge gap -> CPT first", "behavior": "behaviour gap -> fine-tuning only",
             "none": "no gap -> RAG or nothing to train"}


def volume_line(clean_mb: float) -> str:
    for hi, band, then in VOLUME_RULES:
        if clean_mb < hi:
            return f"{clean_mb:,.1f} MB clean text: {band} -> {then}"
    return ""


def pairs_line(valid: int) -> str:
    for hi, band, then in PAIRS_RULES:
        if valid < hi:
            return f"{valid:,} valid pairs: {band} -> {then}"
    return ""


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
    return os.path.expanduser(spec)


# ---------------------------------------------------------------- scans

def _tokenizer(model: str | None) -> str | None:
    if not _has("training.plan.cli"):
        return None
    from training.plan.cli import tokenizer_dir
    return tokenizer_dir(model)


def _has(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None


def scan_corpus(specs: list[str], progress=lambda done, total: None, model: str | None = None) -> dict:
    """Bytes, documents, exact and near duplicates, clean MB, estimated tokens of the domain text."""
    if _has("training.plan.scan"):
        from training.plan.scan import scan_corpus as engine_scan
        f = engine_scan([real_path(s) for s in specs], _tokenizer(model), lambda d, t, _what: progress(d, t))
        if not f.files:
            raise ValueError("; ".join(f.skipped) or f"no .txt/.md/.jsonl/.parquet files in {' '.join(specs)}")
        return {"files": f.files, "bytes": f.total_bytes, "documents": f.documents, "duplicates": f.exact_duplicates,
                "dup_rate": f.exact_dup_rate, "near_dup_rate": f.near_dup_rate, "clean_mb": f.clean_mb,
                "tokens": f.tokens, "tokens_source": f.tokens_method, "skipped": f.skipped, "obj": f}
    return _fallback_scan_corpus(specs, progress)


def _fallback_scan_corpus(specs: list[str], progress) -> dict:
    from training.data import DataError, doc_hash, iter_documents
    from training.recipe import expand_data

    files = [f for s in specs for f in expand_data(real_path(s))]
    if not files:
        raise ValueError(f"no .txt/.md/.jsonl/.parquet files found in {' '.join(specs)}")
    seen: set[bytes] = set()
    total = sum(f.stat().st_size for f in files)
    docs = dups = clean_bytes = done = 0
    skipped = []
    for f in files:
        try:
            for _, _, text in iter_documents([f]):
                docs += 1
                h = doc_hash(text)
                if h in seen:
                    dups += 1
                else:
                    seen.add(h)
                    clean_bytes += len(text.encode("utf-8"))
        except DataError as e:
            skipped.append(str(e))
        done += f.stat().st_size
        progress(done, total)
    return {"files": len(files), "bytes": total, "documents": docs, "duplicates": dups,
            "dup_rate": dups / docs if docs else 0.0, "clean_mb": clean_bytes / MB,
            "tokens": clean_bytes / 4, "tokens_source": "bytes/4 guess", "skipped": skipped, "near_dup_rate": None}


def scan_pairs(spec: str, model: str | None = None) -> dict:
    if _has("training.plan.pairs_scan"):
        from training.plan.pairs_scan import scan_pairs as engine_scan
        f = engine_scan(real_path(spec), _tokenizer(model))
        return {"valid": f.valid, "formats": dict(f.formats), "invalid": f.invalid,
                "invalid_shown": [(r["line"], r["reason"]) for r in f.invalid_rows], "duplicates": f.duplicates,
                "tokens_mean": f.mean_tokens, "tokens_p95": f.max_len, "obj": f}
    from training.data import read_pairs

    res = read_pairs(Path(real_path(spec)))
    keys = {json.dumps(r, sort_keys=True) for r in res.rows}
    lens = sorted(len(json.dumps(r, ensure_ascii=False)) / 4 for r in res.rows) or [0]  # ~4 bytes a token
    return {"valid": len(res.rows), "formats": dict(res.formats), "invalid": len(res.invalid),
            "invalid_shown": res.invalid[:20], "duplicates": len(res.rows) - len(keys),
            "tokens_mean": sum(lens) / len(lens), "tokens_p95": lens[int(0.95 * (len(lens) - 1))]}


# ---------------------------------------------------------------- gap probe

def gap_probe_available() -> bool:
    return _has("training.plan.probe")


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


from tui.engine_plan import estimate_plans, recommend, recipe_text, why  # noqa: E402  (the plan half of the door)

__all__ = ["DEMO", "DEMO_PROMPTS", "volume_line", "pairs_line", "GAP_RULES", "scan_corpus", "scan_pairs",
           "gap_probe_available", "run_gap_probe", "probe_explained", "hardware_choices", "recommend", "estimate_plans",
           "recipe_text", "why", "write_recipe", "start_run", "real_path"]


def write_recipe(path: Path, text: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def start_run(recipe_path: Path) -> Path:
    """Validate, resolve, make the run folder and launch the worker detached; returns the run folder."""
    from training.recipe import load_recipe
    from training.runtime.runner import create_run_dir, launch, resolve

    recipe = load_recipe(str(recipe_path), [])
    resolved = resolve(recipe, str(recipe_path))
    run = create_run_dir(resolved, str(recipe_path)).resolve()
    launch(run)
    return run
