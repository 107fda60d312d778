"""Corpus scan: how much clean domain text there is. Streams every file once, in two processes.

Reports total bytes, documents, the exact-duplicate rate over ALL documents (the same hash of normalised
text as training/data.py doc_hash, which the CPT stage dedups with), the near-duplicate rate from MinHash
(datasketch, 128 permutations, 5-word shingles, Jaccard >= 0.8) on a uniform sample of distinct documents
(the `sample_docs` documents with the smallest hashes: a bottom-k sample), clean MB (unique bytes less the
near-duplicate share), and estimated tokens: measured with the model's tokenizer on that sample when a
tokenizer.json is available, else marked as a bytes/4 guess. Binary or undecodable files are listed and skipped.

Memory: text streams in blocks of at most 64 MiB per process; the duplicate pass keeps 16 bytes per
document (hash and size); the sample keeps at most `sample_docs` x 20 KB.
A document is a .txt/.md file, a .jsonl line (its text field) or a .parquet row (its text column).
"""
from __future__ import annotations

import hashlib
import heapq
import json
import os
from array import array
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable

from training.data import normalize_text, sniff_text_file
from training.recipe import expand_data

UNIT_BYTES = 64 << 20      # one work unit: a run of small files, or a byte range of a .jsonl file
BLOCK = 16 << 20           # read size inside a big .txt/.md file
SAMPLE_CHARS = 20_000      # of each sampled document
BYTES_PER_TOKEN_GUESS = 4.0
# ASCII fast path of normalize_text: every byte str.split() treats as whitespace -> space, A-Z -> a-z
_TABLE = bytearray(range(256))
for _c in b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f":
    _TABLE[_c] = 32
for _c in range(65, 91):
    _TABLE[_c] = _c + 32
_TABLE = bytes(_TABLE)


def normalized_bytes(raw: bytes) -> bytes:
    """normalize_text(raw.decode()).encode(), fast for ASCII (translate + collapse runs of spaces)."""
    if raw.isascii():
        x = raw.translate(_TABLE)
        while b"  " in x:
            x = x.replace(b"  ", b" ")
        return x.strip(b" ")
    return normalize_text(raw.decode("utf-8")).encode("utf-8")


@dataclass
class CorpusFacts:
    files: int = 0
    total_bytes: int = 0
    documents: int = 0
    exact_duplicates: int = 0
    exact_dup_rate: float = 0.0
    unique_bytes: int = 0
    near_dup_rate: float = 0.0
    near_dup_sample: int = 0          # documents in the MinHash sample
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

class _Unit:
    """Results of one work unit, merged by the parent."""

    def __init__(self, sample_docs: int):
        self.hashes = array("Q")
        self.sizes = array("Q")
        self.sample: list[tuple[int, str]] = []  # max-heap (negated hash) holding the k smallest hashes
        self.sample_keys: set[int] = set()
        self.k = sample_docs
        self.bytes = 0
        self.skipped: list[str] = []
        self.bad_rows = 0
        self.bad_examples: list[str] = []

    def add(self, digest: bytes, size: int, text_head) -> None:
        h = int.from_bytes(digest[:8], "big")
        self.hashes.append(h)
        self.sizes.append(size)
        if self.k <= 0 or h in self.sample_keys or (len(self.sample) >= self.k and -self.sample[0][0] <= h):
            return
        if len(self.sample) >= self.k:
            self.sample_keys.discard(-heapq.heappop(self.sample)[0])
        heapq.heappush(self.sample, (-h, _head(text_head)))
        self.sample_keys.add(h)


def _head(t) -> str:
    t = t() if callable(t) else t
    return t[:SAMPLE_CHARS] if isinstance(t, str) else t[:SAMPLE_CHARS * 4].decode("utf-8", "replace")[:SAMPLE_CHARS]


def _digest(norm: bytes) -> bytes:
    return hashlib.blake2b(norm, digest_size=16).digest()


def _scan_text_file(path: Path, u: _Unit) -> None:
    h = hashlib.blake2b(digest_size=16)
    size, first, carry, head = 0, True, b"", b""
    with open(path, "rb") as f:
        while True:
            block = f.read(BLOCK)
            data = carry + block
            if block:
                cut = max(data.rfind(b" "), data.rfind(b"\n"))
                data, carry = (data[:cut], data[cut:]) if cut > 0 else (data, b"")
            if not head:
                head = data[:SAMPLE_CHARS * 4]
            norm = normalized_bytes(data)  # UnicodeDecodeError propagates: the file is skipped
            if norm:
                h.update(norm if first else b" " + norm)
                first = False
            size += len(data)
            if not block:
                break
    u.bytes += size
    if size and not first:
        u.add(h.digest(), size, head)


def _line_number(path: Path, pos: int) -> int:
    with open(path, "rb") as f:
        return f.read(pos).count(b"\n") + 1


def _scan_jsonl_range(path: Path, start: int, end: int, text_field: str, u: _Unit) -> None:
    """Lines that START in [start, end): the range is read in one block, its last line completed."""
    with open(path, "rb") as f:
        if start:
            f.seek(start - 1)
            if f.read(1) != b"\n":  # mid-line: that line belongs to the previous range
                f.readline()
        pos = f.tell()
        data = f.read(max(0, end - pos))
        if data and not data.endswith(b"\n"):
            data += f.readline()
    loads, digest, norm = json.loads, _digest, normalized_bytes
    for line in data.split(b"\n"):
        here, pos = pos, pos + len(line) + 1
        if not line.strip():
            continue
        try:
            text = loads(line)[text_field]
            if not isinstance(text, str):
                raise TypeError
        except (ValueError, KeyError, TypeError, IndexError):
            u.bad_rows += 1
            if len(u.bad_examples) < 5:
                u.bad_examples.append(f"{path}:{_line_number(path, here)}: not JSON with a string '{text_field}'")
            continue
        raw = text.encode("utf-8", "replace")
        u.bytes += len(raw)
        u.add(digest(norm(raw)), len(raw), text)


def _scan_parquet(path: Path, text_field: str, u: _Unit) -> None:
    import pyarrow.parquet as pq
    pf = pq.ParquetFile(path)
    if text_field not in pf.schema_arrow.names:
        raise ValueError(f"no column '{text_field}'")
    for batch in pf.iter_batches(columns=[text_field], batch_size=4096):
        for v in batch.column(0).to_pylist():
            if isinstance(v, str):
                raw = v.encode("utf-8", "replace")
                u.bytes += len(raw)
                u.add(_digest(normalized_bytes(raw)), len(raw), v)


def _run_unit(args) -> _Unit:
    items, text_field, sample_docs = args
    u = _Unit(sample_docs)
    for path, start, end in items:
        try:
            if path.suffix.lower() in (".txt", ".md"):
                _scan_text_file(path, u)
            elif path.suffix.lower() == ".jsonl":
                _scan_jsonl_range(path, start, end, text_field, u)
            else:
                _scan_parquet(path, text_field, u)
        except UnicodeDecodeError:
            u.skipped.append(f"{path}: not UTF-8 text; skipped")
        except (OSError, ValueError) as e:
            u.skipped.append(f"{path}: cannot be read ({str(e).splitlines()[0][:120]}); skipped")
    return u


# ---------------------------------------------------------------- parent side

def _plan_units(files: list[Path]) -> list[list[tuple[Path, int, int]]]:
    """Small files grouped up to UNIT_BYTES; big .jsonl files cut into UNIT_BYTES byte ranges."""
    units, cur, cur_bytes = [], [], 0
    for f in files:
        size = f.stat().st_size
        if f.suffix.lower() == ".jsonl" and size > UNIT_BYTES:
            units.extend([[(f, s, min(size, s + UNIT_BYTES))] for s in range(0, size, UNIT_BYTES)])
            continue
        cur.append((f, 0, size))
        cur_bytes += size
        if cur_bytes >= UNIT_BYTES:
            units.append(cur)
            cur, cur_bytes = [], 0
    if cur:
        units.append(cur)
    return units


def _near_dup_rate(texts: list[str]) -> float:
    """Share of sampled documents that repeat an earlier one at Jaccard >= 0.8 (5-word shingles)."""
    if len(texts) < 2:
        return 0.0
    from datasketch import MinHash, MinHashLSH
    lsh = MinHashLSH(threshold=0.8, num_perm=128)
    sigs = []
    for i, t in enumerate(texts):
        w = t.lower().split()
        shingles = {" ".join(w[j:j + 5]) for j in range(max(1, len(w) - 4))}
        m = MinHash(num_perm=128)
        m.update_batch([s.encode("utf-8") for s in shingles])
        lsh.insert(str(i), m)
        sigs.append(m)
    # a document is redundant when an earlier sampled document is its near twin (one of each group stays)
    near = sum(1 for i, m in enumerate(sigs) if any(int(k) < i for k in lsh.query(m)))
    return near / len(texts)


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
                sample_docs: int = 1000, processes: int | None = None) -> CorpusFacts:
    """Scan files, folders or globs. progress(done_bytes, total_bytes, what) is called as units finish."""
    import time
    import numpy as np
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
    units = _plan_units(files)
    jobs = [(u, text_field, sample_docs) for u in units]
    n_proc = min(processes or os.cpu_count() or 1, len(units), 2 if processes is None else processes)
    results: list[_Unit] = []
    done = 0

    def collect(r: _Unit, unit) -> None:
        nonlocal done
        results.append(r)
        done += sum(e - s for _, s, e in unit)
        if progress:
            progress(done, total, str(unit[-1][0]))

    if n_proc > 1:
        import multiprocessing as mp
        with mp.get_context("spawn").Pool(n_proc) as pool:
            for r, unit in zip(pool.imap(_run_unit, jobs), units):
                collect(r, unit)
    else:
        for job, unit in zip(jobs, units):
            collect(_run_unit(job), unit)

    hashes = np.concatenate([np.frombuffer(r.hashes, dtype=np.uint64) for r in results]) if results else np.zeros(0, np.uint64)
    sizes = np.concatenate([np.frombuffer(r.sizes, dtype=np.uint64) for r in results]) if results else np.zeros(0, np.uint64)
    order = np.argsort(hashes, kind="stable")
    dup = np.zeros(len(hashes), bool)
    dup[order[1:]] = hashes[order[1:]] == hashes[order[:-1]]
    sample = heapq.nsmallest(sample_docs, {-nh: t for r in results for nh, t in r.sample}.items())
    texts = [t for _, t in sample]
    for r in results:
        facts.skipped.extend(r.skipped)
        facts.bad_rows += r.bad_rows
        facts.bad_row_examples.extend(r.bad_examples[: 5 - len(facts.bad_row_examples)])
    facts.total_bytes = int(sum(r.bytes for r in results))
    facts.documents = int(len(hashes))
    facts.exact_duplicates = int(dup.sum())
    facts.exact_dup_rate = facts.exact_duplicates / facts.documents if facts.documents else 0.0
    facts.unique_bytes = int(sizes[~dup].sum())
    facts.near_dup_sample = len(texts)
    facts.near_dup_rate = _near_dup_rate(texts)
    facts.clean_bytes = int(facts.unique_bytes * (1 - facts.near_dup_rate))
    facts.clean_mb = facts.clean_bytes / 1e6
    measured = _bytes_per_token(texts, tokenizer_dir)
    if measured:
        facts.bytes_per_token, facts.tokens_method = measured
    facts.tokens = facts.clean_bytes / facts.bytes_per_token
    facts.seconds = time.perf_counter() - t0
    return facts
