"""What an `hf:` dataset id costs before training: the .jsonl snapshot against plain reads of the same rows.

Builds a corpus of N MB of text as a local dataset folder in the Hub layout (data/train-*.parquet), then times,
in one process, each repeated `--repeats` times (median):
  baseline   pyarrow reads the parquet text column (the floor: what reading a local .parquet corpus costs)
  snapshot   training.hub_data.resolve("hf:FOLDER"): datasets streaming -> .jsonl snapshot (first use of an id)
  cached     resolve again in a fresh process state (folder hash + cached snapshot; every later use)
  read       iterating the snapshot's documents through training.data.iter_documents (what the stages do)

    python bench/hub_data_bench.py [--mb 40] [--repeats 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def build(folder: Path, mb: float) -> int:
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq
    rng = random.Random(0)
    words = [f"w{i}" for i in range(5000)]
    docs, size = [], 0
    while size < mb * 1e6:
        d = " ".join(rng.choice(words) for _ in range(rng.randint(100, 800)))
        docs.append(d)
        size += len(d)
    (folder / "data").mkdir(parents=True)
    pq.write_table(pa.table({"text": docs}), folder / "data" / "train-00000-of-00001.parquet")
    return len(docs)


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=40)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hub-bench-"))
    os.environ["TUNE_WIZARD_HOME"] = str(tmp / "home")
    os.environ["HF_DATASETS_CACHE"] = str(tmp / "hf-cache")
    os.environ["HF_HUB_OFFLINE"] = os.environ["HF_DATASETS_OFFLINE"] = "1"
    folder = tmp / "corpus"
    n_docs = build(folder, a.mb)
    parquet = folder / "data" / "train-00000-of-00001.parquet"
    nbytes = sum(len(t) for t in __import__("pyarrow.parquet", fromlist=["x"]).read_table(parquet)["text"].to_pylist())

    import shutil

    import pyarrow.parquet as pq
    from training import hub_data
    from training.data import iter_documents

    spec = f"hf:{folder}"
    res: dict[str, list[float]] = {"baseline": [], "snapshot": [], "cached": [], "read": []}
    for _ in range(a.repeats):
        res["baseline"].append(timed(lambda: sum(len(t) for t in pq.read_table(parquet, columns=["text"])["text"].to_pylist())))
        shutil.rmtree(tmp / "home", ignore_errors=True)
        hub_data._memo.clear()
        res["snapshot"].append(timed(lambda: hub_data.resolve(spec)))
        hub_data._memo.clear()
        res["cached"].append(timed(lambda: hub_data.resolve(spec)))
        snap = Path(hub_data.resolve(spec).file)
        res["read"].append(timed(lambda: sum(1 for _ in iter_documents([snap]))))
    med = {k: statistics.median(v) for k, v in res.items()}
    out = {"mb_text": round(nbytes / 1e6, 1), "documents": n_docs, "repeats": a.repeats,
           "median_s": {k: round(v, 3) for k, v in med.items()},
           "mb_per_s": {k: round(nbytes / 1e6 / v, 1) for k, v in med.items()},
           "snapshot_vs_baseline": round(med["snapshot"] / med["baseline"], 2),
           "cached_vs_baseline": round(med["cached"] / med["baseline"], 2),
           "read_vs_baseline": round(med["read"] / med["baseline"], 2)}
    shutil.rmtree(tmp, ignore_errors=True)
    if a.json:
        print(json.dumps(out))
    else:
        print(f"{out['mb_text']} MB of text, {n_docs:,} documents, median of {a.repeats}:")
        for k in res:
            print(f"  {k:9s} {med[k]:7.2f} s  {out['mb_per_s'][k]:7.1f} MB/s  x{med[k] / med['baseline']:.2f} of baseline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
