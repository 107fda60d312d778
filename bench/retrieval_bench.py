"""Which BM25 library for the retrieval probe (training/plan/retrieval.py)? bm25s against rank-bm25, the two
well-kept pure-Python-install choices on PyPI, on the demo's corpus passages: time to index, time per query,
and whether they agree on the top passage. The baseline (rank-bm25) is measured in the same run.

  python bench/retrieval_bench.py [--copies 8] [--queries 200] [--repeats 3]

--copies repeats the corpus (each copy's passages made distinct by a suffix word) to see how indexing scales.
Medians over --repeats; both libraries get the same passages and the same word tokenization.
"""
from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def words(text: str) -> list[str]:
    return re.findall(r"\b\w\w+\b", text.lower())


def main() -> int:
    a = argparse.ArgumentParser()
    a.add_argument("--copies", type=int, default=8)
    a.add_argument("--queries", type=int, default=200)
    a.add_argument("--repeats", type=int, default=3)
    args = a.parse_args()
    import bm25s
    import rank_bm25
    from training.data import iter_documents
    from training.demo import ensure_assets
    from training.plan.retrieval import split_passages
    from training.recipe_load import expand_data

    files = expand_data(str(ensure_assets() / "corpus"))
    base = [p for _, _, t in iter_documents(files, whole=False) for p in split_passages(t)]
    passages = [p if c == 0 else f"{p} copy{c}" for c in range(args.copies) for p in base]
    toks = [words(p) for p in passages]
    rnd = random.Random(0)
    queries = [" ".join(rnd.sample(t, min(6, len(t)))) for t in rnd.sample(toks[: len(base)], args.queries)]
    qtoks = [words(q) for q in queries]
    print(f"{len(passages):,} passages ({sum(map(len, passages)) / 1e6:.1f} MB), {len(queries)} queries, "
          f"bm25s {bm25s.__version__}, rank-bm25 (no __version__; pip: 0.2.2)")

    res = {}
    for name in ("rank-bm25", "bm25s"):
        t_index, t_query, tops = [], [], None
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            if name == "bm25s":
                idx = bm25s.BM25()
                idx.index(toks, show_progress=False)
            else:
                idx = rank_bm25.BM25Okapi(toks)
            t1 = time.perf_counter()
            if name == "bm25s":
                docs, _ = idx.retrieve(qtoks, k=1, show_progress=False, n_threads=1)
                tops = [int(d[0]) for d in docs]
            else:
                tops = [int(idx.get_scores(q).argmax()) for q in qtoks]
            t2 = time.perf_counter()
            t_index.append(t1 - t0)
            t_query.append((t2 - t1) / len(qtoks))
        res[name] = (statistics.median(t_index), statistics.median(t_query), tops)
    print(f"{'library':<10} {'index s':>9} {'ms/query':>9}")
    for name, (ti, tq, _) in res.items():
        print(f"{name:<10} {ti:>9.3f} {tq * 1e3:>9.3f}")
    (bi, bq, btop), (ri, rq, rtop) = res["bm25s"], res["rank-bm25"]
    agree = sum(x == y for x, y in zip(btop, rtop)) / len(btop)
    print(f"bm25s / rank-bm25: index {bi / ri:.2f}x the time, query {bq / rq:.3f}x the time; "
          f"same top passage for {agree:.0%} of queries")
    return 0


if __name__ == "__main__":
    sys.exit(main())
