"""Data preparation at scale: scan (size, exact and near dedup on every document) and tokenize+pack, beside a
plain read of the same bytes, on one generated .txt corpus per size (the guide's one-big-file shape).

    python bench/prepare_bench.py [--mb 100 1000] [--dir /tmp/tw-prep-bench] [--processes 2] [--keep]
                                  [--minhash-docs 2000] [--cpt-mb 40]
                                  [--steps read scan tokenize wordcache prepare-hf prepare]

Per size, in the same run:
  read      plain read of the file in 16 MiB blocks (the I/O floor)
  scan      training.plan.scan.scan_corpus: documents, exact keys and MinHash/LSH on every document
  tokenize  the demo's fast tokenizer alone (encode_batch), one process, TOKENIZERS_PARALLELISM=false
  wordcache training/runtime/word_cache.py alone over the same tokenizer, one process (the same ids)
  prepare-hf training.runtime.prepare.prepare with TUNE_WIZARD_WORD_CACHE=off: split, exact dedup, tokenize
            with the demo's fast tokenizer, pack into 1,024-token blocks in the Arrow cache (the baseline)
  prepare   the same with the word cache on (the default)
Each step runs in its own Python process, which reports its wall time and its peak RSS (ru_maxrss of itself
and, separately, of its largest worker), and, for scan and the prepares, its RSS at 0/25/50/75/100% of the step's
time (sampled every 0.5 s: growth, not only the peak). The corpus: documents of 150-600 words drawn (Zipf weights) from
the words of the demo corpus, one paragraph each, separated by blank lines; generated, measured, then
deleted unless --keep.
--minhash-docs: MinHash speed on the same documents, one process: training/dedup.py (numpy, one
permutation, batch) vs datasketch (MinHash.update_batch per document) vs rensa (RMinHash, Rust), 128 bins
or permutations and 5-word shingles each, plus how well each estimates the Jaccard similarity of
1%-changed copies (the case the scan must catch).
--cpt-mb: also run a CPT recipe (the demo's tiny model, 6 steps, seq_len 256) on a generated .txt of that
size through `tune-wizard --recipe`, and report whether it finished with eval events.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

STEP = r"""
import json, resource, sys, time
sys.path[:0] = [{root!r}]
what, path, procs, tokdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
import threading, psutil
_me, _curve = psutil.Process(), []
def _sample():  # this process's RSS every 0.5 s: how it grows over the step, not only its peak
    while True:
        _curve.append(_me.memory_info().rss / 2**20)
        time.sleep(0.5)
threading.Thread(target=_sample, daemon=True).start()
t = time.perf_counter()
if what == "read":
    n = 0
    with open(path, "rb") as f:
        while b := f.read(16 << 20):
            n += len(b)
    out = {{"bytes": n}}
elif what == "scan":
    from training.plan.scan import scan_corpus
    f = scan_corpus([path], processes=procs)
    out = {{"documents": f.documents, "near_dup_rate": f.near_dup_rate, "exact_dup_rate": f.exact_dup_rate}}
elif what == "tokenize":  # the tokenizer alone, one process: what tokenize+pack is built around
    from pathlib import Path
    from tokenizers import Tokenizer
    from training.data import iter_units
    tk = Tokenizer.from_file(tokdir + "/tokenizer.json")
    n, batch = 0, []
    for _, _, text, _, _ in iter_units([Path(path)]):
        batch.append(text)
        if len(batch) == 512:
            n += sum(len(e.ids) for e in tk.encode_batch(batch, add_special_tokens=False))
            batch = []
    n += sum(len(e.ids) for e in tk.encode_batch(batch, add_special_tokens=False))
    out = {{"tokens": n}}
elif what == "wordcache":  # runtime/word_cache.py alone, one process, over the same tokenizer
    from pathlib import Path
    from tokenizers import Tokenizer
    from training.data import iter_units
    from training.runtime.word_cache import WordCache
    wc = WordCache.build(Tokenizer.from_file(tokdir + "/tokenizer.json"))
    n, batch = 0, []
    for _, _, text, _, _ in iter_units([Path(path)]):
        batch.append(text)
        if len(batch) == 512:
            n += len(wc.encode_flat(batch, firsts=[False] * len(batch), lasts=[False] * len(batch))[1])
            batch = []
    n += len(wc.encode_flat(batch, firsts=[False] * len(batch), lasts=[False] * len(batch))[1])
    out = {{"tokens": n, "status": wc.status}}
else:  # prepare (the word cache where the tokenizer allows it) or prepare-hf (the tokenizer alone)
    import os
    if what == "prepare-hf":
        os.environ["TUNE_WIZARD_WORD_CACHE"] = "off"
    from pathlib import Path
    from transformers import AutoTokenizer
    from training.recipe import CptStage
    from training.runtime.prepare import prepare
    tok = AutoTokenizer.from_pretrained(tokdir)
    st = CptStage(type="cpt", name="cpt", learning_rate=1e-5, data=[path], seq_len=1024)
    cache = Path(path).parent / "cache"
    import psutil
    rss_before = psutil.Process().memory_info().rss / 2**20  # after the imports: what the data step adds to it
    t = time.perf_counter()
    m = prepare(st, tok, cache, None, processes=procs)
    out = {{k: m[k] for k in ("train_documents", "eval_documents", "train_tokens", "eval_tokens", "encoder")}}
    out["rss_before_mb"] = rss_before
    import shutil; shutil.rmtree(cache)
out["seconds"] = time.perf_counter() - t
out["rss_curve"] = [round(_curve[min(len(_curve) - 1, len(_curve) * q // 4)]) for q in range(5)] if _curve else []
out["rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
out["worker_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps(out))
"""


def vocabulary() -> tuple[list[str], "np.ndarray"]:
    import numpy as np
    from training.data import iter_documents
    from training.demo import ensure_assets
    words: dict[str, int] = {}
    for _, _, t in iter_documents(sorted((ensure_assets() / "corpus").iterdir())):
        for w in t.split():
            words[w] = words.get(w, 0) + 1
    vocab = sorted(words, key=words.get, reverse=True)
    p = 1 / np.arange(1, len(vocab) + 1)
    return vocab, p / p.sum()


def write_txt(path: Path, mb: float, seed: int = 0) -> int:
    import numpy as np
    vocab, p = vocabulary()
    v = np.array(vocab, dtype=object)
    rng = np.random.default_rng(seed)
    target, n = int(mb * 1e6), 0
    with open(path, "w", encoding="utf-8") as f:
        i = 0
        while n < target:
            lens = rng.integers(150, 600, 256)
            idx = rng.choice(len(v), int(lens.sum()), p=p)
            parts, o = [], 0
            for k in lens:
                parts.append(" ".join(v[idx[o:o + k]]) + f" d{i}")
                o += k
                i += 1
            block = "\n\n".join(parts) + "\n\n"
            f.write(block)
            n += len(block.encode("utf-8"))
    return n


def step(what: str, path: Path, procs: int, tokdir: str) -> dict:
    code = STEP.format(root=str(ROOT))
    p = subprocess.run([sys.executable, "-c", code, what, str(path), str(procs), tokdir], capture_output=True,
                       text=True, env=dict(os.environ, TOKENIZERS_PARALLELISM="false"))
    if p.returncode != 0:
        raise SystemExit(f"{what} failed: {p.stderr[-2000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def minhash_compare(n_docs: int) -> None:
    """Docs/s of three MinHash implementations on the same documents, one process."""
    import numpy as np
    from training import dedup
    vocab, p = vocabulary()
    rng = np.random.default_rng(1)
    v = np.array(vocab, dtype=object)
    docs = [" ".join(v[rng.choice(len(v), int(rng.integers(150, 600)), p=p)]) for _ in range(n_docs)]
    copies = []
    for d in docs[:200]:
        w = d.split()
        for j in rng.choice(len(w), max(1, len(w) // 100), replace=False):
            w[j] = f"changed{j}"
        copies.append(" ".join(w))
    norms = [dedup.normalized_bytes(d.encode()) for d in docs + copies]
    mb = sum(len(x) for x in norms) / 1e6

    def shingles(x: bytes) -> list[bytes]:
        w = x.split()
        return [b" ".join(w[j:j + 5]) for j in range(max(1, len(w) - 4))]

    def true_j(a: bytes, b: bytes) -> float:
        sa, sb = set(shingles(a)), set(shingles(b))
        return len(sa & sb) / len(sa | sb)

    truth = [true_j(norms[i], norms[n_docs + i]) for i in range(200)]
    rows = []
    t = time.perf_counter()
    sig = np.concatenate([dedup.signatures(norms[i:i + 2000]) for i in range(0, len(norms), 2000)])
    dt = time.perf_counter() - t
    est = [float(np.mean(sig[i] == sig[n_docs + i])) for i in range(200)]
    rows.append(("training/dedup.py (numpy, batched)", dt, est))
    try:
        from datasketch import MinHash
        t = time.perf_counter()
        ms = []
        for x in norms:
            m = MinHash(num_perm=128)
            m.update_batch(shingles(x))
            ms.append(m)
        dt = time.perf_counter() - t
        rows.append(("datasketch MinHash.update_batch", dt, [ms[i].jaccard(ms[n_docs + i]) for i in range(200)]))
    except ImportError:
        print("datasketch not installed: pip install datasketch to compare it")
    try:
        from rensa import RMinHash
        t = time.perf_counter()
        rs = []
        for x in norms:
            m = RMinHash(num_perm=128, seed=1)
            m.update([s.decode() for s in shingles(x)])
            rs.append(m)
        dt = time.perf_counter() - t
        rows.append(("rensa RMinHash", dt, [rs[i].jaccard(rs[n_docs + i]) for i in range(200)]))
    except ImportError:
        print("rensa not installed: pip install rensa to compare it")
    print(f"\nMinHash on {len(norms):,} documents ({mb:.1f} MB normalised), one process; true Jaccard of the "
          f"1%-changed copies: median {statistics.median(truth):.3f}")
    print(f"{'implementation':<40} {'s':>7} {'docs/s':>9} {'MB/s':>7} {'|est-true| median':>18}")
    for name, dt, est in rows:
        err = statistics.median(abs(a - b) for a, b in zip(est, truth))
        print(f"{name:<40} {dt:>7.2f} {len(norms) / dt:>9,.0f} {mb / dt:>7.2f} {err:>18.3f}")


def cpt_run(folder: Path, mb: float) -> None:
    import yaml
    corpus = folder / f"cpt-{mb:g}MB.txt"
    write_txt(corpus, mb, seed=3)
    data = yaml.safe_load((ROOT / "recipes" / "demo.yaml").read_text())
    data["output_dir"] = str(folder / "runs")
    data["stages"] = [data["stages"][0]]
    data["stages"][0].update(data=[str(corpus)], max_steps=6, eval_steps=3, save_steps=3, logging_steps=1,
                             eval_fraction=0.002)
    data["eval"] = {"enabled": False}
    rp = folder / "cpt.yaml"
    rp.write_text(yaml.safe_dump(data))
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "tui.cli", "--recipe", str(rp)], capture_output=True, text=True,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=ROOT)
    run = next((folder / "runs").iterdir())
    ev = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines() if x.strip()]
    start = next((e for e in ev if e["event"] == "stage_start"), {})
    prep = [e for e in ev if e["event"] == "prepare"]
    evals = [e for e in ev if e["event"] == "eval"]
    t_prep = (prep[-1]["t"] - prep[0]["t"]) if prep else float("nan")
    print(f"\nCPT on one {mb:g} MB .txt: exit {p.returncode}, {len(evals)} eval events, status "
          f"{ev[-1].get('status')}, data step {t_prep:.0f} s ({len(prep)} prepare events), wall "
          f"{time.perf_counter() - t:.0f} s; data: {json.dumps(start.get('data'))}")
    corpus.unlink()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, nargs="*", default=[100, 1000])
    ap.add_argument("--dir", default="/tmp/tw-prep-bench")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--minhash-docs", type=int, default=2000)
    ap.add_argument("--cpt-mb", type=float, default=0)
    ap.add_argument("--skip-prepare-above", type=float, default=1e9, help="MB: larger sizes run read + scan only")
    ap.add_argument("--steps", nargs="*", default=["read", "scan", "tokenize", "wordcache", "prepare-hf", "prepare"])
    a = ap.parse_args()
    from training.demo import ensure_assets
    tokdir = str(ensure_assets() / "tiny-llama")
    folder = Path(a.dir)
    folder.mkdir(parents=True, exist_ok=True)
    import platform
    import numpy
    import tokenizers
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; Python {platform.python_version()}, "
          f"numpy {numpy.__version__}, tokenizers {tokenizers.__version__}; {a.processes} worker processes")
    if a.minhash_docs:
        minhash_compare(a.minhash_docs)
    if a.cpt_mb:
        cpt_run(folder, a.cpt_mb)
    print(f"\n{'size':>8} {'step':<10} {'s':>8} {'MB/s':>7} {'vs read':>8} {'peak RSS MB':>12} {'worker RSS MB':>14}  notes")
    for mb in a.mb:
        path = folder / f"corpus-{mb:g}MB.txt"
        t = time.perf_counter()
        if not path.exists():
            write_txt(path, mb)
        size = path.stat().st_size / 1e6
        print(f"# generated {size:,.0f} MB in {time.perf_counter() - t:.0f} s, load average {os.getloadavg()[0]:.1f}")
        steps = [x for x in a.steps if mb <= a.skip_prepare_above or x in ("read", "scan")]
        base = None
        for what in steps:
            r = step(what, path, a.processes, tokdir)
            base = base or r["seconds"]
            notes = {"read": "", "scan": f"{r.get('documents', 0):,} docs, near dup {r.get('near_dup_rate', 0):.2%}",
                     "tokenize": f"{r.get('tokens', 0):,} tokens",
                     "wordcache": f"{r.get('tokens', 0):,} tokens; {r.get('status')}"}
            note = notes.get(what, f"{r.get('train_tokens', 0) + r.get('eval_tokens', 0):,} tokens in blocks, "
                                   f"{r.get('encoder')}; RSS {r.get('rss_before_mb', 0):,.0f} MB after imports")
            if what in ("scan", "prepare", "prepare-hf"):
                note += "; parent RSS at 0/25/50/75/100% of the step: " + "/".join(map(str, r["rss_curve"])) + " MB"
            print(f"{size:>7,.0f}M {what:<10} {r['seconds']:>8.1f} {size / r['seconds']:>7.1f} "
                  f"{base / r['seconds']:>8.3f} {r['rss_mb']:>12,.0f} {r['worker_rss_mb']:>14,.0f}  {note}", flush=True)
        if not a.keep:
            path.unlink()
    if not a.keep:
        shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
