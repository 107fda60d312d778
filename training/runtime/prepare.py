"""Data preparation of a cpt stage: documents -> dedup -> held-out split -> tokens -> packed seq_len blocks,
written to an Arrow cache in the run folder and reused on --resume.

Reads straight through:
  files     the stage's data, expanded; binary/empty files inside a folder are skipped and counted (a file
            the recipe names directly was already refused by the runner); nothing left -> DataError.
  dedup     near: a first pass computes every unit's MinHash band keys (training/dedup.py, in worker
            processes) and marks near-copies; exact: repeated units (normalised text) are dropped as they
            come; none: nothing is dropped. Units are data.py's documents, or 1 MiB pieces of longer ones.
  split     a unit is held out when the top 32 bits of its content key fall under eval_fraction (stable
            across runs, file orders and resumes). When that leaves the eval side without one full block,
            whole blocks from the end of the train side move to it (eval_fraction of them, at least one,
            while train keeps one): a corpus of one long document still gets an eval split. Symmetrically,
            a train side left empty takes blocks from the eval side.
  tokens    worker processes tokenize batches with the fast tokenizer (the Rust backend, loaded from its
            JSON; runtime/prepare_workers.py), through runtime/word_cache.py where the tokenizer is a
            byte-level BPE it reproduces exactly (the same ids, 4-5x faster; meta "encoder" says which ran);
            each document gets
            tokens.doc_affixes(tok) around it (prefix before its first piece,
            suffix after its last); the parent appends them to its split's stream in corpus order and writes
            full seq_len blocks to an Arrow stream file. Only each split's final partial block is dropped.
  progress  `prepare` events (fraction of the whole data step, bytes read of bytes_total in this pass).
Memory: a few batches in flight per worker, one block buffer per split (each split copies its share of a
batch's tokens, so no batch array outlives its turn), 128 bytes per unit for `near`, about 70 bytes per
unit for `exact` (a Python set of 64-bit keys).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable

from training.data import DataError, Meter, Segment, iter_units, sniff_text_file, text_segments
from training.dedup import release_free_memory
from training.recipe import CptStage
from training.recipe_load import expand_data
from training.runtime.prepare_workers import SlowAdapter, near_batch, ordered, pool_of, tokenize_batch, use

BATCH_CHARS = 1 << 20
WRITE_BLOCKS = 1024
TRIM_EVERY = 8             # batches between two dedup.release_free_memory() calls (memory flat, see there)
CACHE_VERSION = 1


def stage_files(st: CptStage) -> tuple[list[Path], list[str]]:
    """(readable files, "path: why" of the skipped ones). DataError when a spec finds nothing or nothing is left."""
    files, skipped = [], []
    for spec in st.data:
        found = expand_data(spec)
        if not found:
            raise DataError(f"stage {st.name}: data {spec}: no .txt, .md, .jsonl or .parquet file there; "
                            f"check the path")
        for f in found:
            why = sniff_text_file(f)
            (skipped.append(f"{f}: {why}") if why else files.append(f))
    if not files:
        raise DataError(f"stage {st.name}: no readable text file in its data ({len(skipped)} skipped, first: "
                        f"{skipped[0]}); add UTF-8 .txt/.md/.jsonl/.parquet files")
    return files, skipped


def held_out_key(key: int, fraction: float) -> bool:
    """A unit goes to the eval split by its content key (dedup.exact_key: data.doc_hash's first 8 bytes)."""
    return fraction > 0 and (key >> 32) < fraction * 2**32


def cache_key(files: list[Path], st: CptStage, tok) -> str:
    h = hashlib.sha256()
    for f in files:
        s = f.stat()
        h.update(f"{f.resolve()}|{s.st_size}|{s.st_mtime_ns}\n".encode())
    from training.tokens import doc_affixes
    h.update(json.dumps([CACHE_VERSION, st.text_field, st.doc_separator, st.dedup, st.eval_fraction, st.seq_len,
                         getattr(tok, "name_or_path", ""), len(tok), doc_affixes(tok)]).encode())
    return h.hexdigest()[:16]


# ---------------------------------------------------------------- the parent

class _Blocks:
    """One split's token stream: full seq_len blocks go to an Arrow stream file as they fill. Pending tokens
    wait in one preallocated buffer of WRITE_BLOCKS blocks: a list of each batch's share, kept until the next
    write, scattered small long-lived allocations between the batches' large short-lived ones (the eval
    side's share of a batch is a few hundred tokens and it writes rarely), and the parent's RSS grew with
    the corpus (+600 MB over 1 GB)."""

    def __init__(self, path: Path, seq: int):
        import numpy as np
        import pyarrow as pa
        self.pa, self.seq, self.path = pa, seq, path
        self.schema = pa.schema([("input_ids", pa.list_(pa.int32()))])
        self.sink = pa.OSFile(str(path), "wb")
        self.writer = pa.ipc.new_stream(self.sink, self.schema)
        self.pending = np.empty(seq * WRITE_BLOCKS, np.int32)
        self.n_buf = 0
        self.blocks = 0
        self.tokens = 0
        self.documents = 0

    def add(self, ids) -> None:
        self.tokens += len(ids)
        i, cap = 0, len(self.pending)
        while i < len(ids):
            take = min(len(ids) - i, cap - self.n_buf)
            self.pending[self.n_buf:self.n_buf + take] = ids[i:i + take]
            self.n_buf += take
            i += take
            if self.n_buf == cap:
                self._flush()

    def _flush(self) -> None:
        import numpy as np
        pa = self.pa
        n = self.n_buf // self.seq
        if n:
            offsets = np.arange(0, (n + 1) * self.seq, self.seq, dtype=np.int32)
            arr = pa.ListArray.from_arrays(pa.array(offsets), pa.array(self.pending[: n * self.seq]))
            self.writer.write_batch(pa.record_batch([arr], schema=self.schema))  # written before the buffer is reused
            self.blocks += n
        rest = self.n_buf - n * self.seq
        self.pending[:rest] = self.pending[n * self.seq:self.n_buf]
        self.n_buf = rest

    def close(self) -> int:
        """Write the last full blocks; returns the tokens of the final partial block (dropped)."""
        self._flush()
        self.writer.close()
        self.sink.close()
        return self.n_buf


def _batches(files, st: CptStage, meter: Meter):
    """Lists of about BATCH_CHARS of work for prepare_workers: data.Segments of .txt/.md files (the workers
    decode and cut them into documents: the parent only reads) and (text, first, last) units of rows."""
    batch, n = [], 0
    for f in files:
        suffix = f.suffix.lower()
        if suffix in (".txt", ".md"):
            items = text_segments(f, st.doc_separator if suffix == ".txt" else None, meter, block_bytes=BATCH_CHARS)
        else:
            items = ((text, first, last) for _, _, text, first, last in iter_units([f], st.text_field, meter=meter))
        for it in items:
            batch.append(it)
            n += len(it.data) if isinstance(it, Segment) else len(it[0])
            if n >= BATCH_CHARS:
                yield batch
                batch, n = [], 0
    if batch:
        yield batch


def prepare(st: CptStage, tok, cache_root: Path, emit: Callable[..., None] | None = None,
            processes: int | None = None, log: Callable[[str], None] = print) -> dict:
    """Build (or find) the stage's packed blocks under cache_root/<key>/. Returns the stage's data facts:
    {"train": path, "eval": path, "move_to_eval": k, "move_to_train": k, documents/tokens per side, ...}."""
    import numpy as np
    from training.tokens import doc_affixes

    files, skipped = stage_files(st)
    key = cache_key(files, st, tok)
    folder = cache_root / key
    meta_path = folder / "meta.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        meta["cached"] = True
        if emit:
            emit("prepare", stage=st.name, phase="cached", fraction=1.0, bytes_done=meta["bytes_total"],
                 bytes_total=meta["bytes_total"])
        return meta
    if cache_root.exists():  # an earlier configuration's cache (the recipe or the files changed)
        shutil.rmtree(cache_root, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    total = sum(f.stat().st_size for f in files)
    passes = 2 if st.dedup == "near" else 1
    n_proc = processes if processes is not None else max(1, min(8, os.cpu_count() or 1))
    backend = getattr(tok, "backend_tokenizer", None)
    prefix, suffix = doc_affixes(tok)
    prefix, suffix = [int(x) for x in prefix], [int(x) for x in suffix if x is not None]
    t0 = last_emit = time.time()

    def progress(done_passes: int, meter: Meter, phase: str, force: bool = False) -> None:
        nonlocal last_emit
        now = time.time()
        if emit and (force or now - last_emit >= 1.0):
            last_emit = now
            done = min(meter.done, total)
            emit("prepare", stage=st.name, phase=phase, fraction=(done_passes * total + done) / (passes * total),
                 bytes_done=done, bytes_total=total)

    drop = None
    if st.dedup == "near":  # pass 1: which units have a near twin earlier in the corpus
        from training.dedup import BANDS, Rows, redundant
        meter = Meter()
        progress(0, meter, "dedup", force=True)
        pool = pool_of(n_proc, None) if n_proc > 1 else None
        try:
            keys, bands = Rows(np.uint64), Rows(np.uint64, BANDS)
            for j, (_, (k, b)) in enumerate(ordered(pool, near_batch, _batches(files, st, meter), n_proc)):
                keys.add(k)
                bands.add(b)
                if j % TRIM_EVERY == TRIM_EVERY - 1:
                    release_free_memory()
                progress(0, meter, "dedup")
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        k = keys.array()
        drop = redundant(bands.parts())
        order = np.argsort(k, kind="stable")  # exact copies too (a band collision catches them; be sure)
        drop[order[1:]] |= k[order[1:]] == k[order[:-1]]

    # pass 2: tokenize, split, pack
    meter = Meter()
    progress(passes - 1, meter, "tokenize", force=True)
    sides = {"train": _Blocks(folder / "train.arrow", st.seq_len), "eval": _Blocks(folder / "eval.arrow", st.seq_len)}
    seen: set[int] = set()
    dropped = {"exact": 0, "near": 0}
    unit = via_tokenizer = 0
    encoders: dict[str, int] = {}  # how batches were encoded -> how many
    if backend is not None and n_proc > 1:
        pool = pool_of(n_proc, backend.to_str())
        fn = tokenize_batch
    else:  # a slow (Python) tokenizer, or one process: tokenize here
        pool, fn = None, tokenize_batch
        use(backend if backend is not None else SlowAdapter(tok))
    jobs = ((b, prefix, suffix) for b in _batches(files, st, meter))
    try:
        for b, (_, (keys, lens, flat, firsts, (how, slow))) in enumerate(ordered(pool, fn, jobs, n_proc)):
            encoders[how] = encoders.get(how, 0) + 1
            via_tokenizer += slow
            if b % TRIM_EVERY == TRIM_EVERY - 1:
                release_free_memory()
            where = np.zeros(len(keys), np.int8)  # per unit: 0 dropped, 1 train, 2 eval
            for j, (first, h) in enumerate(zip(firsts, keys.tolist())):
                i, unit = unit, unit + 1
                if drop is not None and drop[i]:
                    dropped["near"] += 1
                    continue
                if st.dedup == "exact":
                    if h in seen:
                        dropped["exact"] += 1
                        continue
                    seen.add(h)
                where[j] = 2 if held_out_key(h, st.eval_fraction) else 1
                sides["eval" if where[j] == 2 else "train"].documents += 1 if first else 0
            # each side takes a copy of its tokens (boolean indexing): a view would keep the whole batch's
            # array alive until that side's next flush, which for the small eval side is the end of the data
            per_token = np.repeat(where, lens)
            sides["train"].add(flat[per_token == 1])
            sides["eval"].add(flat[per_token == 2])
            progress(passes - 1, meter, "tokenize")
    finally:
        if pool is not None:
            pool.close()
            pool.join()
    tail = {name: s.close() for name, s in sides.items()}
    tr, ev = sides["train"], sides["eval"]
    if tr.blocks + ev.blocks == 0:
        shutil.rmtree(folder, ignore_errors=True)
        raise DataError(
            f"stage {st.name}: after dedup ({st.dedup}) and the held-out split the corpus gives "
            f"{tr.tokens + ev.tokens:,} tokens, less than one seq_len={st.seq_len} block; add text or lower seq_len")
    move_to_eval = move_to_train = 0
    if st.eval_fraction > 0 and ev.blocks == 0 and tr.blocks >= 2:
        move_to_eval = min(tr.blocks - 1, max(1, round(st.eval_fraction * tr.blocks)))
    if tr.blocks == 0:
        move_to_train = ev.blocks - 1 if ev.blocks >= 2 else ev.blocks
    meta = {"train": str(tr.path), "eval": str(ev.path), "key": key, "bytes_total": total, "files": len(files),
            "skipped_files": skipped, "move_to_eval": move_to_eval, "move_to_train": move_to_train,
            "units": unit, "duplicates_dropped": dropped["exact"] + dropped["near"],
            "exact_dropped": dropped["exact"], "near_dropped": dropped["near"],
            "train_documents": tr.documents, "eval_documents": ev.documents,
            "train_blocks": tr.blocks - move_to_eval + move_to_train,
            "eval_blocks": ev.blocks + move_to_eval - move_to_train,
            "dropped_tokens": tail["train"] + tail["eval"], "seconds": round(time.time() - t0, 2),
            "processes": n_proc if pool is not None else 1, "cached": False,
            "encoder": max(encoders, key=lambda k: (k != "word cache", encoders[k])) if encoders else "tokenizer",
            "units_via_tokenizer": via_tokenizer}
    meta["train_tokens"] = meta["train_blocks"] * st.seq_len
    meta["eval_tokens"] = meta["eval_blocks"] * st.seq_len
    meta_path.write_text(json.dumps(meta, indent=1))  # written last: its presence means the cache is complete
    done = Meter()
    done.done = total
    progress(passes - 1, done, "done", force=True)
    return meta


def load_splits(meta: dict):
    """(train Dataset, eval Dataset or None) from the cache, memory-mapped, with the block moves applied."""
    from datasets import Dataset, concatenate_datasets
    train = Dataset.from_file(meta["train"])
    ev = Dataset.from_file(meta["eval"])
    k = meta["move_to_eval"]
    if k:
        n = len(train)
        ev = concatenate_datasets([ev, train.select(range(n - k, n))]) if len(ev) else train.select(range(n - k, n))
        train = train.select(range(n - k))
    k = meta["move_to_train"]
    if k:
        train = ev.select(range(k)) if not len(train) else concatenate_datasets([train, ev.select(range(k))])
        ev = ev.select(range(k, len(ev)))
    return train, (ev if len(ev) else None)


def heldout_texts(st: CptStage, max_chars: int | None = None) -> list[str]:
    """Text of the units the content-hash split holds out (the before/after domain measurement scores them)."""
    from training.dedup import exact_key, normalized_bytes
    files, _ = stage_files(st)
    out, n = [], 0
    for _, _, text, _, _ in iter_units(files, st.text_field, st.doc_separator):
        if held_out_key(exact_key(normalized_bytes(text.encode("utf-8"))), st.eval_fraction):
            out.append(text)
            n += len(text)
            if max_chars is not None and n >= max_chars:
                break
    return out
