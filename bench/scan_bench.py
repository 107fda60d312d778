"""Corpus scan throughput, the near-duplicate rate at two corpus sizes, and `tune-wizard plan --json` on a
real scanned corpus of several hundred MB.

    python bench/scan_bench.py [--mb 600] [--dir /tmp/tw-scan-bench] [--repeats 3] [--near-docs 1000 20000]

--near-docs: for each N, a corpus of N documents of which 30% are copies with 1% of the words changed,
shuffled across 8 .jsonl files; the scan must report 30% +-5 points at every N (the old 1,000-document
sample reported about 30% x 1,000/N).
Then generates (once) a corpus of unique documents in .jsonl files and, in the same run:
  baseline   plain read of the same files (bytes only), the I/O floor
  scan       scan_corpus (documents, exact keys and MinHash/LSH on every document), 1 and 2 processes
Prints medians of --repeats runs: wall MB/s, the ratio to the baseline, and MB per CPU-second (the shared
2-core machine's other load inflates wall time, not CPU time). Then runs `plan --json` on the corpus
with a knowledge gap for the guide's cases: pairs + budget $1000 -> cpt_sft, the same with $20 -> sft/qlora
with a warning, no pairs -> cpt.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: unlike wall time, not inflated by other load."""
    import resource
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds."""
    ts, cs = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), cpu_seconds()
        fn()
        ts.append(time.perf_counter() - t)
        cs.append(cpu_seconds() - c)
    return statistics.median(ts), statistics.median(cs)


def plain_read(files: list[Path]) -> int:
    n = 0
    for f in files:
        with open(f, "rb") as fh:
            while b := fh.read(16 << 20):
                n += len(b)
    return n


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=600)
    ap.add_argument("--dir", default="/tmp/tw-scan-bench")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--near-docs", type=int, nargs="*", default=[1000, 20000])
    a = ap.parse_args()
    from synth_data import write_corpus, write_near_dup_corpus, write_pairs
    from training.plan.scan import scan_corpus

    for n in a.near_docs:
        folder = Path(a.dir) / f"near-{n}"
        if not (folder / "DONE").exists():
            copies = write_near_dup_corpus(folder, n, 0.3, seed=n)
            (folder / "DONE").write_text(str(copies))
        copies = int((folder / "DONE").read_text())
        f = scan_corpus([str(folder)], processes=2)
        print(f"near duplicates, {n:,} documents ({f.total_bytes / 1e6:,.1f} MB): true {copies / n:.1%}, "
              f"scan reports {f.near_dup_rate:.1%} (error {100 * (f.near_dup_rate - copies / n):+.1f} points), "
              f"{f.total_bytes / 1e6 / f.seconds:.1f} MB/s", flush=True)

    corpus = Path(a.dir) / f"corpus-{a.mb:g}MB"
    if not (corpus / "DONE").exists():
        t = time.perf_counter()
        write_corpus(corpus, a.mb, seed=7, jsonl=True, files=16)
        (corpus / "DONE").write_text("ok")
        print(f"generated {a.mb:g} MB of unique documents in {time.perf_counter() - t:.0f} s")
    files = sorted(corpus.glob("*.jsonl"))
    size = sum(f.stat().st_size for f in files) / 1e6
    plain_read(files)  # warm the page cache
    print(f"corpus: {len(files)} .jsonl files, {size:,.0f} MB on disk; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}")
    base = timed(lambda: plain_read(files), a.repeats)
    rows = [("baseline: plain read", base)]
    for procs in (1, 2):
        rows.append((f"scan, exact + near on every doc, {procs} process{'es' if procs > 1 else ''}",
                     timed(lambda: scan_corpus([str(corpus)], sample_docs=0, processes=procs), a.repeats)))
    full = scan_corpus([str(corpus)], processes=2)
    print(f"{'what':<52} {'median s':>9} {'MB/s':>8} {'vs read':>8} {'CPU s':>7} {'MB/CPU-s':>9}")
    for name, (s, c) in rows:
        print(f"{name:<52} {s:>9.2f} {size / s:>8,.0f} {base[0] / s:>8.3f} {c:>7.2f} {size / c:>9,.0f}")
    print(f"scan: {full.documents:,} documents, exact dup {full.exact_dup_rate:.2%}, near dup {full.near_dup_rate:.2%}, "
          f"clean {full.clean_mb:,.0f} MB")

    pairs = write_pairs(Path(a.dir) / "pairs-3000.jsonl", 3000)
    cases = [("knowledge gap, 3,000 pairs, $1000", ["--pairs", str(pairs), "--budget", "1000"]),
             ("knowledge gap, 3,000 pairs, $20", ["--pairs", str(pairs), "--budget", "20"]),
             ("knowledge gap, no pairs, $1000", ["--budget", "1000"])]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    for name, extra in cases:
        cmd = [sys.executable, "-m", "tui.cli", "plan", "--model", "meta-llama/Llama-3.1-8B", "--corpus", str(corpus),
               "--gpu", "H100", "--gap", "knowledge", "--json", *extra]
        t = time.perf_counter()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if p.returncode != 0:
            print(f"{name}: plan failed: {p.stderr.strip()}")
            return 1
        d = json.loads(p.stdout)["decision"]
        est = d["estimate"] or {}
        print(f"plan ({name}): {d['path']}/{d['method']}  est {est.get('hours', 0):.1f} h ${est.get('usd', 0):.0f}  "
              f"warnings: {len(d['warnings'])}  [{time.perf_counter() - t:.1f} s]")
        for w in d["warnings"]:
            print(f"    ! {w}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
