"""Corpus scan: how much clean domain text there is. Streams every file once.

Documents are training/data.py's (`iter_units`, the rule the CPT stage trains on: .txt documents separated
by blank lines or `doc_separator`, a .md file, a .jsonl line, a .parquet row; a document over 1 MiB counts
as its pieces). The parent process only reads: .txt/.md files go to worker processes as raw segments of
about one read block (data.text_segments), which the workers decode and cut into documents themselves
(.jsonl/.parquet rows are parsed by the parent). The workers compute for EVERY document the exact-duplicate key (blake2b of the normalised text, as data.doc_hash and the CPT stage's
dedup) and a MinHash signature's LSH band keys (training/dedup.py). The parent then finds exact duplicates
by sorting the keys and near-duplicate groups by the band keys; nothing is sampled, so the rates do not
depend on the corpus size. Reported: total bytes, documents, exact and near duplicate rates, unique bytes,
clean bytes (documents that are neither, plus one of each group), estimated tokens (measured with the
model's tokenizer on a bottom-k sample of `sample_docs` documents when a tokenizer.json is available, else a
bytes/4 guess). Binary or undecodable files are listed and skipped.

Memory: a few batches of text in flight (BATCH_CHARS each), 8 bytes (exact key) + 8 (size) + 128 (band
keys) per document, and the token sample (at most `sample_docs` x 20 KB).
"""
from __future__ import annotations

import heapq
import os
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from training.data import DataError, Meter, iter_units, sniff_text_file, text_segments
from training.dedup import normalized_bytes, release_free_memory, scan_batch  # noqa: F401 (normalized_bytes: re-exported)
from training.recipe_load import expand_data

BATCH_CHARS = 2 << 20      # text per batch sent to a worker
SAMPLE_CHARS = 20_000      # of each sampled document (token measurement)
BYTES_PER_TOKEN_GUESS = 4.0

@dataclass
class CorpusFacts:
    files: int = 0
    total_bytes: int = 0
    documents: int = 0
    exact_duplicates: int = 0
    exact_dup_rate: float = 0.0
    unique_bytes: int = 0
    near_duplicates: int = 0          # distinct documents with a near twin earlier in the corpus
    near_dup_rate: float = 0.0        # near_duplicates / distinct documents
    near_dup_sample: int = 0          # documents MinHashed: all of them (the name is kept for readers)
    clean_bytes: int = 0
    clean_mb: float = 0.0             # MB = 1e6 bytes
    tokens: float = 0.0
    tokens_method: str = "bytes/4 guess"  # or "tokenizer <dir> on N sampled documents" or "declared size"
    bytes_per_token: float = BYTES_PER_TOKEN_GUESS
    skipped: list[str] = field(default_factory=list)  # "path: reason"
    bad_rows: int = 0
    bad_row_examples: list[str] = field(default_factory=list)
    declared: bool = False
    seconds: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_declared(cls, size_bytes: float) -> "CorpusFacts":
        """A corpus that is not on this box yet (`--corpus-size 50GB`): taken as clean, tokens guessed."""
        b = int(size_bytes)
        return cls(total_bytes=b, unique_bytes=b, clean_bytes=b, clean_mb=b / 1e6, tokens=b / BYTES_PER_TOKEN_GUESS,
                   tokens_method="declared size, bytes/4 guess", declared=True)


def parse_size(text: str) -> float:
    """'50GB', '800 MB', '1.5e9' -> bytes (decimal units: 1 MB = 1e6 bytes)."""
    t = text.strip().upper().replace(" ", "")
    for unit, mult in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3), ("B", 1.0)):
        if t.endswith(unit):
            return float(t[: -len(unit)]) * mult
    return float(t)


# ---------------------------------------------------------------- worker side

def scan_job(job: tuple) -> tuple:
    """Runs in a worker process. job: (items, threshold, sample_docs). items: document texts (.jsonl/.parquet
    rows), or data.Segments of .txt/.md files, which the worker decodes and cuts into documents itself (the
    parent only reads: on two cores it was the bottleneck). Returns scan_batch's (exact keys, sizes, band
    keys) of every unit in order, each unit's file ("" for a row), the (unit, text) of at most sample_docs
    units whose key is under `threshold` (candidates for the token sample), and (file, error) of a file that
    turned out not to be UTF-8 (the worker skips the rest of that file's segments)."""
    import numpy as np
    items, threshold, sample_docs = job
    texts, file_of, errors, bad = [], [], [], set()
    for it in items:
        if isinstance(it, str):
            texts.append(it)
            file_of.append("")
            continue
        if it.path in bad:
            continue
        try:
            text, units = it.units(lines=False)
        except DataError as e:
            errors.append((it.path, str(e)))
            bad.add(it.path)
            continue
        texts.extend(text[s:e] for _, s, e, _, _ in units)
        file_of.extend([it.path] * len(units))
    keys, sizes, bands = scan_batch(texts)
    cand = np.arange(len(keys)) if threshold >> 64 else np.flatnonzero(keys < np.uint64(threshold))
    if len(cand) > sample_docs:
        cand = cand[np.argpartition(keys[cand], sample_docs - 1)[:sample_docs]]
    sample = [(int(j), texts[j][:SAMPLE_CHARS]) for j in cand.tolist()]
    return keys, sizes, bands, file_of, sample, errors


# ---------------------------------------------------------------- parent side

def _batches(files: list[Path], text_field: str, doc_separator: str, meter: Meter, facts: "CorpusFacts",
             bad_files: set):
    """Lists of about BATCH_CHARS of scan_job items. A file that turns out not to be UTF-8 is skipped (what
    was read before the bad byte stays counted) and named with the line: here when the parent sees it, or
    in bad_files when a worker reports it (the parent then stops reading that file)."""
    batch, n = [], 0
    bad: list[str] = []
    for f in files:
        suffix = f.suffix.lower()
        try:
            if suffix in (".txt", ".md"):
                items = text_segments(f, doc_separator if suffix == ".txt" else None, meter)
            else:
                items = (text for _, _, text, _, _ in iter_units([f], text_field, doc_separator, meter, bad))
            for it in items:
                if str(f) in bad_files:
                    break
                batch.append(it)
                n += len(it) if isinstance(it, str) else len(it.data)
                if n >= BATCH_CHARS:
                    yield batch
                    batch, n = [], 0
        except DataError as e:
            facts.skipped.append(f"{e}; skipped")
    if batch:
        yield batch
    facts.bad_rows = len(bad)
    facts.bad_row_examples = [f"{b.split(';')[0]}" for b in bad[:5]]


def _bytes_per_token(texts: list[str], tokenizer_dir: str | None) -> tuple[float, str] | None:
    if not tokenizer_dir or not texts:
        return None
    tj = Path(tokenizer_dir) / "tokenizer.json"
    if not tj.is_file():
        return None
    from tokenizers import Tokenizer
    tok = Tokenizer.from_file(str(tj))
    enc = tok.encode_batch(texts, add_special_tokens=False)
    n_tok = sum(len(e.ids) for e in enc)
    n_bytes = sum(len(t.encode("utf-8")) for t in texts)
    return (n_bytes / n_tok, f"tokenizer {tokenizer_dir} on {len(texts)} sampled documents") if n_tok else None


def scan_corpus(paths: list[str], tokenizer_dir: str | None = None,
                progress: Callable[[int, int, str], None] | None = None, text_field: str = "text",
                sample_docs: int = 1000, processes: int | None = None,
                doc_separator: str = "blank_line") -> CorpusFacts:
    """Scan files, folders or globs. progress(done_bytes, total_bytes, what) is called as batches finish.
    processes: worker processes for the hashing (default: the CPU count, at most 8; 1 = in this process)."""
    import time
    import numpy as np
    from training.dedup import BANDS, Rows, redundant
    t0 = time.perf_counter()
    facts = CorpusFacts()
    files: list[Path] = []
    for spec in paths:
        found = expand_data(spec)
        if not found:
            facts.skipped.append(f"{spec}: no .txt/.md/.jsonl/.parquet file there; skipped")
        for f in found:
            why = sniff_text_file(f)
            (facts.skipped.append(f"{f}: {why}; skipped") if why else files.append(f))
    facts.files = len(files)
    total = sum(f.stat().st_size for f in files)
    n_proc = processes if processes is not None else min(8, os.cpu_count() or 1)
    meter = Meter()
    keys, sizes, bands = Rows(np.uint64), Rows(np.uint64), Rows(np.uint64, BANDS)
    sample: list[tuple[int, str]] = []  # max-heap (negated key) of the sample_docs smallest exact keys
    in_sample: set[int] = set()

    bad_files: set[str] = set()

    def threshold() -> int:  # a unit whose key is under this can still enter the sample
        if sample_docs <= 0:
            return 0
        return 1 << 64 if len(sample) < sample_docs else -sample[0][0]

    def collect(res) -> None:
        k, sz, b, file_of, cands, errors = res
        if bad_files:  # units of a file a worker found not UTF-8, from segments read before it said so
            keep = np.fromiter((x not in bad_files for x in file_of), bool, len(file_of))
            if not keep.all():
                kept = np.flatnonzero(keep)
                at = {j: i for i, j in enumerate(kept.tolist())}
                k, sz, b = k[keep], sz[keep], b[keep]
                cands = [(at[j], t) for j, t in cands if j in at]
        for name, why in errors:
            if name not in bad_files:
                bad_files.add(name)
                facts.skipped.append(f"{why}; skipped")
        keys.add(k)
        sizes.add(sz)
        bands.add(b)
        for j, text in cands:
            h = int(k[j])
            if h in in_sample or (len(sample) >= sample_docs and -sample[0][0] <= h):
                continue
            if len(sample) >= sample_docs:
                in_sample.discard(-heapq.heappop(sample)[0])
            heapq.heappush(sample, (-h, text))
            in_sample.add(h)
        if keys.n // 50_000 != (keys.n - len(k)) // 50_000:  # now and then (it costs ~20 ms)
            release_free_memory()
        if progress:
            progress(min(meter.done, total), total, "hashing")

    batches = _batches(files, text_field, doc_separator, meter, facts, bad_files)
    if n_proc > 1:
        import multiprocessing as mp
        with mp.get_context("fork" if os.name == "posix" else "spawn").Pool(n_proc) as pool:
            pending: deque = deque()
            for items in batches:  # at most 2 batches per worker in flight: memory stays flat
                pending.append(pool.apply_async(scan_job, ((items, threshold(), sample_docs),)))
                while len(pending) >= 2 * n_proc:
                    collect(pending.popleft().get())
            while pending:
                collect(pending.popleft().get())
    else:
        for items in batches:
            collect(scan_job((items, threshold(), sample_docs)))
    if progress:
        progress(total, total, "grouping near duplicates")

    hashes, size = keys.array(), sizes.array()
    order = np.argsort(hashes, kind="stable")
    dup = np.zeros(len(hashes), bool)
    dup[order[1:]] = hashes[order[1:]] == hashes[order[:-1]]
    red = redundant(bands.parts()) | dup
    texts = [t for _, t in sorted(sample, reverse=True)]
    facts.total_bytes = int(size.sum())
    facts.documents = int(len(hashes))
    facts.exact_duplicates = int(dup.sum())
    facts.exact_dup_rate = facts.exact_duplicates / facts.documents if facts.documents else 0.0
    facts.unique_bytes = int(size[~dup].sum())
    distinct = facts.documents - facts.exact_duplicates
    facts.near_duplicates = int((red & ~dup).sum())
    facts.near_dup_rate = facts.near_duplicates / distinct if distinct else 0.0
    facts.near_dup_sample = facts.documents
    facts.clean_bytes = int(size[~red].sum())
    facts.clean_mb = facts.clean_bytes / 1e6
    measured = _bytes_per_token(texts, tokenizer_dir)
    if measured:
        facts.bytes_per_token, facts.tokens_method = measured
    facts.tokens = facts.clean_bytes / facts.bytes_per_token
    facts.seconds = time.perf_counter() - t0
    return facts
