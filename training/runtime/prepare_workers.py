"""The worker-process side of the CPT data step (runtime/prepare.py): each worker holds the tokenizer (and its
word cache, runtime/word_cache.py, where the layout allows) and turns batches of documents into exact keys and
packed-ready token arrays, or into MinHash band keys for `dedup: near`. The parent feeds them in order."""
from __future__ import annotations

import os
from collections import deque

_TK = None
_WC = None  # word_cache.WordCache of _TK where its layout allows (byte-level BPE), else None


def use(tk) -> None:
    """Tokenize with `tk` in this process (a worker's initializer, or the parent when it works alone)."""
    global _TK, _WC
    from training.runtime.word_cache import WordCache
    _TK, _WC = tk, (WordCache.build(tk) if hasattr(tk, "to_str") else None)


def _init_worker(tokenizer_json: str | None) -> None:
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    if tokenizer_json is not None:
        from tokenizers import Tokenizer
        use(Tokenizer.from_str(tokenizer_json))


def units_of(items) -> list:
    """(text, first, last) of every unit of a batch of data.Segments (decoded and cut into documents here, in
    the worker) and (text, first, last) rows; DataError for a segment that is not UTF-8."""
    from training.data import Segment
    out = []
    for it in items:
        if isinstance(it, Segment):
            text, units = it.units(lines=False)
            out.extend((text[s:e], first, last) for _, s, e, first, last in units)
        else:
            out.append(it)
    return out


def tokenize_batch(job):
    """(exact keys, token counts, flat int32 tokens, first flags, (encoder, documents it sent to the
    tokenizer)) of a batch's units, affixes included."""
    import numpy as np
    from training.dedup import exact_keys
    items, prefix, suffix = job
    units = units_of(items)
    texts = [u[0] for u in units]
    firsts = [u[1] for u in units]
    keys = exact_keys(texts)
    if _WC is not None:
        slow_before = _WC.slow_docs
        got = _WC.encode_flat(texts, prefix, suffix, firsts, [u[2] for u in units])
        if got is not None:
            return keys, got[0], got[1], firsts, (_WC.status, _WC.slow_docs - slow_before)
    # the tokenizer itself: encode_batch_fast (tokenizers >= 0.21) skips the offsets nobody here reads
    enc = getattr(_TK, "encode_batch_fast", None) or _TK.encode_batch
    flat: list[int] = []
    lens = np.zeros(len(units), np.int64)
    for i, (e, (_, first, last)) in enumerate(zip(enc(texts, add_special_tokens=False), units)):
        n = len(flat)
        if first:
            flat.extend(prefix)
        flat.extend(e.ids)
        if last:
            flat.extend(suffix)
        lens[i] = len(flat) - n
    return keys, lens, np.array(flat, np.int32), firsts, (_WC.status if _WC is not None else "tokenizer", len(texts))


def near_batch(items):
    from training.dedup import scan_batch
    keys, _, bands = scan_batch([u[0] for u in units_of(items)])
    return keys, bands


def pool_of(n_proc: int, init_arg):
    import multiprocessing as mp
    # fork: the workers inherit the imported modules (spawn would re-import torch in each one, seconds on a
    # busy machine); they only run numpy, hashlib and the tokenizers library, never torch
    ctx = mp.get_context("fork" if os.name == "posix" else "spawn")
    return ctx.Pool(n_proc, initializer=_init_worker, initargs=(init_arg,))


def ordered(pool, fn, jobs, n_proc: int):
    """(job, result) in submission order with at most 2 jobs per worker in flight (memory stays flat)."""
    if pool is None:
        for job in jobs:
            yield job, fn(job)
        return
    pending: deque = deque()
    for job in jobs:
        pending.append((job, pool.apply_async(fn, (job,))))
        while len(pending) >= 2 * n_proc:
            j, r = pending.popleft()
            yield j, r.get()
    while pending:
        j, r = pending.popleft()
        yield j, r.get()


class SlowAdapter:
    """encode_batch for a tokenizer without a Rust backend."""

    def __init__(self, tok):
        self.tok = tok

    def encode_batch(self, texts, add_special_tokens=False):
        class E:
            def __init__(self, ids):
                self.ids = ids
        return [E(x) for x in self.tok(texts, add_special_tokens=add_special_tokens)["input_ids"]]
