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
    p.add_argument("--preflight", action="store_true", help="measure the chosen plan on this machine (a few real "
                   "training steps per stage, needs -o) and write the measured estimate into the recipe")
    p.add_argument("--preflight-steps", type=int, default=8, metavar="N", help="optimizer steps per stage [8]")
    return p


CPU_NOMINAL_TFLOPS = 0.1  # --gpu cpu: a few cores' fp32 throughput, the static guess until a preflight measures it


def cpu_card(price: float | None):
    """--gpu cpu: this machine's processor as the 'card' (host memory, nominal FLOPs), for CPU-sized plans."""
    from training.plan.estimate import Card
    try:
        import psutil
        mem = psutil.virtual_memory().total / 2**30
    except Exception:  # noqa: BLE001
        mem = 8.0
    return Card(name="cpu", names=("cpu",), memory_gib=mem, peak_bf16_tflops=CPU_NOMINAL_TFLOPS,
                price_per_hour=price or 0.0, price_source="--price" if price else "no price given",
                price_date="")


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
    from training.plan.decide import Facts, decide
    from training.plan.to_recipe import recipe_from_decision
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
    if a.gpu.strip().lower() == "cpu":
        cards.append(cpu_card(a.price))
    if a.preflight and not a.output:
        return _err("--preflight measures the recipe it writes: add -o recipe.yaml")
    if find_card(a.gpu, cards) is None:
        return _err(f"unknown GPU '{a.gpu}'; known: {', '.join(c.name for c in cards)} (recipes/gpu_prices.yaml)")
    if a.model and a.model.startswith((".", "/", "~")) and not Path(a.model).expanduser().is_dir():
        return _err(f"--model: the folder '{a.model}' does not exist; check the path (a Hugging Face id looks "
                    f"like org/name)")
    try:
        shape = resolve_shape(a.model, a.params)
    except (KeyError, ValueError, TypeError) as e:
        return _err(f"--model {a.model}: its config.json lacks the model's sizes ({e}); add --params (e.g. 8e9)")
    if shape is None:
        # not here, not cached, not in the table: ask the Hub (bounded), and say which case it is
        from training.family import ModelError, resolve_model
        try:
            cfg = resolve_model(a.model)
        except ModelError as e:
            return _err(f"{str(e).replace('model.id: ', '--model: ', 1)}; or add --params (e.g. --params 8e9)")
        from training.plan.shapes import from_config
        shape = from_config(cfg, a.model, "hub")
    from training.hub_data import is_hf, local_file  # hf:NAME[@REV][:SPLIT] dataset ids
    for spec in a.corpus:
        from training.recipe_load import expand_data
        try:
            if not expand_data(spec):
                return _err(f"--corpus {spec}: no .txt/.md/.jsonl/.parquet file there; check the path")
        except DataError as e:
            return _err(f"--corpus {e}")
    try:
        if a.pairs and not Path(local_file(a.pairs)).is_file():
            return _err(f"--pairs {a.pairs}: file not found")
    except DataError as e:
        return _err(f"--pairs {e}")
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
            recipe = recipe_from_decision(d, facts, [c if is_hf(c) else os.path.abspath(c) for c in a.corpus] or None,
                                          (a.pairs if is_hf(a.pairs) else os.path.abspath(a.pairs)) if a.pairs
                                          else None, name=a.name)
        except ValueError as e:
            return _err(f"no recipe written: {e}")
        except RecipeError as e:
            return _err("; ".join(e.lines()))
        Path(a.output).write_text(dump_recipe(recipe))
        written = a.output
    measured = None
    if a.preflight and written and d.path != "rag_only":
        measured, code = _preflight(written, a.preflight_steps)
        if measured is None:
            return code

    if a.json:
        out = {"facts": facts.to_dict(), "decision": d.to_dict(),
               "estimates": [e.to_dict() for e in d.estimates], "recipe": written, "preflight": measured}
        print(json.dumps(out, indent=1, default=str))
        return 0
    from training.plan.render import render
    print(render(facts, d, written))
    if measured is not None:
        from training.runtime.preflight import render as render_preflight
        print()
        print(render_preflight(measured))
        e = d.estimate
        if e is not None:
            print(f"estimated before measuring: {e.hours:.3f} h, ${e.usd:.2f}, peak {e.peak_vram_gib:.1f} GiB; "
                  f"measured: {measured['projected']['hours']:.3f} h, ${measured['projected']['usd']:.2f}, peak "
                  f"{measured['projected']['peak_mem_gib']:.2f} GiB (written to {written} as estimate.source: preflight)")
    return 0


def _preflight(recipe_path: str, steps: int) -> tuple[dict | None, int]:
    """Measure the written recipe (training/runtime/preflight.py) and record the measured estimate in it."""
    from training.recipe import RecipeError, dump_recipe
    from training.recipe_load import load_recipe
    from training.runtime.preflight import apply_to_recipe, auto_batch_stages, run_preflight
    from training.runtime.runner import resolve
    try:
        recipe = load_recipe(recipe_path)
        resolved = resolve(recipe, recipe_path)
    except RecipeError as e:
        return None, _err("; ".join(e.lines()))
    try:
        report = run_preflight(resolved, steps, auto_batch_stages(recipe))
    except RuntimeError as e:
        print(f"tune-wizard plan: preflight: {e}", file=sys.stderr)
        return None, 1
    apply_to_recipe(resolved, report)
    recipe.estimate = resolved.estimate
    Path(recipe_path).write_text(dump_recipe(recipe))
    return report, 0
