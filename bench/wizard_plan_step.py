"""What one refresh of the wizard's plan step costs now that it calls the engine (issue 13): decide() (twice
when the user overrides), the estimates on every card of the price table, the fields' values from
recipe_from_decision. Baselines in the same run: one decide() as `tune-wizard plan` makes it, and the
refresh with the price table parsed on every call (before the wizard kept it). Medians of N repeats.

  python bench/wizard_plan_step.py [--repeats 50]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def median_ms(fn, n: int) -> float:
    fn()  # warm: imports, the price table
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=50)
    n = ap.parse_args().repeats
    from training.plan.decide import decide
    from training.plan.pairs_scan import PairsFacts
    from training.plan.scan import CorpusFacts
    from tui import engine
    from tui.engine_plan import facts_of, recipe_data

    corpus, pairs = CorpusFacts.from_declared(40e6), PairsFacts.from_declared(2500)
    facts = {"corpus": {"obj": corpus}, "pairs": {"obj": pairs}}
    a = {"model": "meta-llama/Llama-3.1-8B", "gap": None, "corpus": ["/data/corpus"], "pairs": "/data/pairs.jsonl",
         "budget": None, "gpu": "H100", "gpu_count": 8, "price": None, "output_dir": "runs"}
    pick = ("cpt_sft", "lora")
    from tui import engine_plan

    def uncached(fn):
        def go():
            engine_plan._CARDS.clear()  # as before the cache: the price table parsed on every call
            fn()
        return go

    def refresh():  # the plan step after a new pick: the table, then the fields
        engine.estimate_plans(a, facts, pick)
        engine.stage_values(a, facts, pick, {})

    base = median_ms(lambda: decide(facts_of(a, facts, pick)), n)
    before = median_ms(uncached(refresh), n)
    after = median_ms(refresh, n)
    recipe = median_ms(lambda: recipe_data(a, facts, pick, {}), n)
    print(f"8B, 40 MB corpus, 2,500 pairs, 8 x H100, override cpt_sft/lora; medians of {n}")
    print(f"  one decide() with the price table read, as `plan` makes it  {base:7.2f} ms")
    print(f"  plan-step refresh, price table parsed again on each refresh{before:7.2f} ms")
    print(f"  plan-step refresh, price table read once per wizard         {after:7.2f} ms  ({before / after:.1f}x faster)")
    print(f"  the recipe (recipe_from_decision + edits), cached table     {recipe:7.2f} ms")


if __name__ == "__main__":
    main()
