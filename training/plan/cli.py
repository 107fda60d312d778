"""`tune-wizard plan`: scan the evidence, decide, estimate, write a recipe. No torch here (the probe runs
in a subprocess), no textual.

  tune-wizard plan --model M --corpus PATH [PATH...] --pairs FILE --budget USD --gpu NAME [--gpus N]
                   [--gap knowledge|behavior|none] [--probe [--prompts FILE]] [-o recipe.yaml] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

EXIT_BAD_INPUT = 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tune-wizard plan", description="Measure the evidence, apply the guide's "
                                "rules, estimate time/VRAM/cost of each candidate plan and write a recipe.")
    p.add_argument("--model", help="Hugging Face id, local model folder or builtin:tiny-llama")
    p.add_argument("--params", type=float, help="parameter count when the model is not known offline, e.g. 8e9")
    p.add_argument("--corpus", nargs="+", default=[], metavar="PATH", help="domain text: files, folders or globs")
    p.add_argument("--corpus-size", help="declare a corpus that is not here yet, e.g. 50GB (taken as clean)")
    p.add_argument("--pairs", metavar="FILE", help="labeled pairs (.jsonl)")
    p.add_argument("--pairs-count", type=int, help="declare a number of pairs that are not here yet")
    p.add_argument("--budget", type=float, metavar="USD")
    p.add_argument("--gpu", default="H100", help="a card in recipes/gpu_prices.yaml (default H100)")
    p.add_argument("--gpus", type=int, default=1, metavar="N")
    p.add_argument("--price", type=float, metavar="USD", help="your price per GPU-hour (overrides the table)")
    p.add_argument("--gap", choices=["knowledge", "behavior", "none"], help="your verdict on the base model's answers")
    p.add_argument("--probe", action="store_true", help="run the gap probe (loads the model in a subprocess)")
    p.add_argument("--prompts", metavar="FILE", help="domain prompts for the probe, one per line")
    p.add_argument("--path", choices=["rag_only", "sft", "cpt_sft", "cpt"], help="override the decided path")
    p.add_argument("--method", choices=["lora", "qlora", "full"], help="override the SFT method")
    p.add_argument("--liger", action="store_true", help="estimate with fused (Liger) kernels")
    p.add_argument("-o", "--output", metavar="recipe.yaml", help="write the recipe here")
    p.add_argument("--force", action="store_true", help="overwrite an existing -o file")
    p.add_argument("--name", default="plan", help="recipe name (default: plan)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the report")
    return p


def _err(msg: str) -> int:
    print(f"tune-wizard plan: error: {msg}", file=sys.stderr)
    return EXIT_BAD_INPUT


def tokenizer_dir(model: str | None) -> str | None:
    """A folder with tokenizer.json for the model, if there is one on this machine."""
    if not model:
        return None
    if model.startswith("builtin:"):
        from training.demo import asset_dir
        d = asset_dir() / "tiny-llama"
        return str(d) if (d / "tokenizer.json").is_file() else None
    d = Path(os.path.expanduser(model))
    if (d / "tokenizer.json").is_file():
        return str(d)
    from training.plan.shapes import _hf_cache_config
    c = _hf_cache_config(model)
    return str(c.parent) if c and (c.parent / "tokenizer.json").is_file() else None


def _progress(done: int, total: int, what: str) -> None:
    print(f"\rscanning corpus: {done / 1e6:,.0f} / {total / 1e6:,.0f} MB", end="", file=sys.stderr, flush=True)


def main(argv: list[str]) -> int:
    a = parser().parse_args(argv)
    from training.data import DataError
    from training.plan.decide import Facts, decide, recipe_from_decision
    from training.plan.estimate import find_card, load_cards
    from training.plan.pairs_scan import PairsFacts, scan_pairs
    from training.recipe import RecipeError, dump_recipe
    from training.plan.scan import CorpusFacts, parse_size, scan_corpus
    from training.plan.shapes import resolve_shape

    if not a.model and not a.params:
        return _err("give --model (Hugging Face id or folder) or --params 8e9")
    from training.recipe import BUILTIN
    if any(x and x.startswith(BUILTIN) for x in [a.model, a.pairs, *a.corpus]):
        from training.demo import resolve_builtin  # the demo's assets, built on first use
        try:
            a.model = resolve_builtin(a.model) if a.model and a.model.startswith(BUILTIN) else a.model
            a.pairs = resolve_builtin(a.pairs) if a.pairs and a.pairs.startswith(BUILTIN) else a.pairs
            a.corpus = [resolve_builtin(c) if c.startswith(BUILTIN) else c for c in a.corpus]
        except KeyError as e:
            return _err(f"unknown built-in {e}; use builtin:tiny-llama, builtin:demo-corpus, builtin:demo-pairs")
    if a.gpus < 1:
        return _err("--gpus must be 1 or more")
    cards = load_cards()
    if find_card(a.gpu, cards) is None:
        return _err(f"unknown GPU '{a.gpu}'; known: {', '.join(c.name for c in cards)} (recipes/gpu_prices.yaml)")
    shape = resolve_shape(a.model, a.params)
    if shape is None:
        return _err(f"'{a.model}' is not a local model folder, not in the offline cache and not in the table of "
                    f"known models; add --params (e.g. --params 8e9)")
    for spec in a.corpus:
        from training.recipe import expand_data
        if not expand_data(spec):
            return _err(f"--corpus {spec}: no .txt/.md/.jsonl/.parquet file there; check the path")
    if a.pairs and not Path(a.pairs).is_file():
        return _err(f"--pairs {a.pairs}: file not found")
    if a.output and Path(a.output).exists() and not a.force:
        return _err(f"{a.output} exists; choose another -o or add --force to overwrite it")

    tok = tokenizer_dir(a.model)
    corpus = None
    try:
        if a.corpus_size:
            corpus = CorpusFacts.from_declared(parse_size(a.corpus_size))
        elif a.corpus:
            corpus = scan_corpus(a.corpus, tok, None if a.json or not sys.stderr.isatty() else _progress)
            if not a.json and sys.stderr.isatty():
                print(file=sys.stderr)
    except ValueError:
        return _err(f"--corpus-size {a.corpus_size!r}: give a size like 800MB or 50GB")
    try:
        pairs = PairsFacts.from_declared(a.pairs_count) if a.pairs_count is not None else \
            (scan_pairs(a.pairs, tok) if a.pairs else None)
    except DataError as e:
        return _err(str(e))

    probe = None
    if a.probe:
        from training.plan.probe import run_probe
        try:
            tty = not a.json and sys.stderr.isatty()
            probe = run_probe(a.model, a.prompts, a.corpus, pairs_file=a.pairs,
                              progress=(lambda line: print(f"\r{line}", end="", file=sys.stderr, flush=True))
                              if tty else None).to_dict()
            if tty:
                print(file=sys.stderr)
        except (RuntimeError, ValueError) as e:
            return _err(f"gap probe: {e}")
    facts = Facts(model=a.model, shape=shape, corpus=corpus, pairs=pairs, gap=a.gap, probe=probe,
                  budget_usd=a.budget, gpu=a.gpu, gpu_count=a.gpus, price_per_hour=a.price, liger=a.liger,
                  override_path=a.path, override_method=a.method)
    d = decide(facts, cards)

    written = None
    if a.output:
        try:
            recipe = recipe_from_decision(d, facts, [os.path.abspath(c) for c in a.corpus] or None,
                                          os.path.abspath(a.pairs) if a.pairs else None, name=a.name)
        except ValueError as e:
            return _err(f"no recipe written: {e}")
        except RecipeError as e:
            return _err("; ".join(e.lines()))
        Path(a.output).write_text(dump_recipe(recipe))
        written = a.output

    if a.json:
        out = {"facts": facts.to_dict(), "decision": d.to_dict(),
               "estimates": [e.to_dict() for e in d.estimates], "recipe": written}
        print(json.dumps(out, indent=1, default=str))
        return 0
    from training.plan.render import render
    print(render(facts, d, written))
    return 0
