"""Exact and near-duplicate detection over every unit of a corpus (training/data.py's documents and pieces).

Exact: blake2b of the normalised text (lower case, whitespace collapsed), the same as data.doc_hash.

Near: MinHash signatures with LSH banding, computed for a whole batch of documents in a few numpy passes
(no Python work per shingle, which is what makes it fast enough to run on every document):
  - shingles are 5 consecutive words of the normalised text (a document of fewer words is one shingle);
  - a shingle's hash is a polynomial hash of its bytes (prefix sums mod 2^64, so every shingle of a batch
    costs the same few vector operations), finished with murmur3's fmix64;
  - one-permutation hashing: the top 7 bits of a shingle's hash pick one of 128 bins, the low 32 bits
    compete for that bin's minimum; empty bins are filled from the next non-empty bin (rotation
    densification), so short documents still have comparable signatures;
  - 16 bands of 8 bins: two units whose signatures agree on any whole band are candidates. At Jaccard 0.8
    of the shingle sets, 95% of pairs collide; at 0.5, 6%; unrelated text practically never. A 1% word
    change leaves about 90% of the 5-word shingles in common.
`redundant()` joins colliding units into groups (connected components) and marks every unit but the
earliest of its group. It holds 128 bytes of band keys per unit; everything else streams.
bench/prepare_bench.py compares this with datasketch and rensa on the same documents (bench/RESULTS.md).
"""
from __future__ import annotations

import hashlib

import numpy as np

NUM_BINS = 128
BANDS = 16
ROWS = NUM_BINS // BANDS
SHINGLE_WORDS = 5
_P = np.uint64(0x100000001B3)                 # odd: invertible mod 2^64
_P_INV = np.uint64(pow(0x100000001B3, -1, 1 << 64))
_EMPTY = np.uint32(0xFFFFFFFF)
_powers: dict[str, np.ndarray] = {}


# ASCII fast path of data.normalize_text: every byte str.split() treats as whitespace -> space, A-Z -> a-z
_TABLE = bytearray(range(256))
for _c in b" \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f":
    _TABLE[_c] = 32
for _c in range(65, 91):
    _TABLE[_c] = _c + 32
_TABLE = bytes(_TABLE)


def normalized_bytes(raw: bytes) -> bytes:
    """normalize_text(raw.decode()).encode() (lower case, whitespace runs -> one space), fast for ASCII."""
    if raw.isascii():
        return b" ".join(raw.translate(_TABLE).split())
    return " ".join(raw.decode("utf-8").split()).lower().encode("utf-8")


def scan_batch(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact keys, UTF-8 sizes, band keys) of a batch of documents. Runs in worker processes: this module
    imports nothing but numpy, so they start fast."""
    raws = [t.encode("utf-8") for t in texts]
    norms = [normalized_bytes(r) for r in raws]
    keys = np.fromiter((exact_key(x) for x in norms), np.uint64, len(norms))
    sizes = np.fromiter((len(r) for r in raws), np.uint64, len(raws))
    return keys, sizes, band_keys(signatures(norms))


def exact_key(norm: bytes) -> int:
    """64-bit key of a normalised text (the first 8 bytes of data.doc_hash's digest)."""
    return int.from_bytes(hashlib.blake2b(norm, digest_size=16).digest()[:8], "big")


def _pow_table(n: int) -> tuple[np.ndarray, np.ndarray]:
    if len(_powers.get("p", ())) < n:
        m = 1 << max(16, (n - 1).bit_length())  # powers of two: rebuilt a handful of times per process
        with np.errstate(over="ignore"):
            _powers["p"] = np.cumprod(np.concatenate([[np.uint64(1)], np.full(m - 1, _P, np.uint64)]))
            _powers["i"] = np.cumprod(np.concatenate([[np.uint64(1)], np.full(m - 1, _P_INV, np.uint64)]))
    return _powers["p"], _powers["i"]


def _fmix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


def signatures(norms: list[bytes]) -> np.ndarray:
    """(len(norms), 128) uint32 MinHash signatures of normalised texts (single spaces between words)."""
    n = len(norms)
    sig = np.full(n * NUM_BINS, _EMPTY, np.uint32)
    if n == 0:
        return sig.reshape(0, NUM_BINS)
    joined = b" ".join(norms) + b" "
    lens = np.fromiter((len(x) for x in norms), np.int64, n)
    doc_start = np.concatenate([[0], np.cumsum(lens + 1)[:-1]])
    a = np.frombuffer(joined, np.uint8)
    space = a == 32                                  # `joined` ends with a space, so every word has an end
    starts = np.flatnonzero(space[:-1] & ~space[1:]) + 1
    if not space[0]:
        starts = np.concatenate([[0], starts])
    ends = np.flatnonzero(~space[:-1] & space[1:]) + 1   # words: [start, end)
    if len(starts) == 0:
        return sig.reshape(n, NUM_BINS)
    doc_of = np.searchsorted(doc_start, starts, side="right") - 1
    pw, ipw = _pow_table(len(a) + 1)
    with np.errstate(over="ignore"):
        pref = np.concatenate([[np.uint64(0)], np.cumsum((a.astype(np.uint64) + np.uint64(1)) * pw[:len(a)])])
        k = SHINGLE_WORDS - 1
        s_first = np.arange(max(0, len(starts) - k))
        ok = doc_of[s_first] == doc_of[s_first + k]
        s_first = s_first[ok]
        s_lo, s_hi, s_doc = starts[s_first], ends[s_first + k], doc_of[s_first]
        # documents with fewer than 5 words: one shingle, the whole text
        words_per_doc = np.bincount(doc_of, minlength=n)
        short = np.flatnonzero((words_per_doc > 0) & (words_per_doc < SHINGLE_WORDS))
        if len(short):
            first_word = np.searchsorted(doc_of, short, side="left")
            last_word = first_word + words_per_doc[short] - 1
            s_lo = np.concatenate([s_lo, starts[first_word]])
            s_hi = np.concatenate([s_hi, ends[last_word]])
            s_doc = np.concatenate([s_doc, short])
        h = _fmix((pref[s_hi] - pref[s_lo]) * ipw[s_lo])
    # per (document, bin) the smallest value: sort (slot << 32 | value) and keep the first of each slot
    key = np.sort((s_doc.astype(np.uint64) * np.uint64(NUM_BINS) + (h >> np.uint64(57))) << np.uint64(32)
                  | (h & np.uint64(0xFFFFFFFF)))
    slot = key >> np.uint64(32)
    first = np.concatenate([[True], slot[1:] != slot[:-1]])
    sig[slot[first].astype(np.int64)] = (key[first] & np.uint64(0xFFFFFFFF)).astype(np.uint32)
    return _densify(sig.reshape(n, NUM_BINS))


def _densify(sig: np.ndarray) -> np.ndarray:
    """Empty bins take the value of the next non-empty bin to the right (circularly), shifted by the distance."""
    empty = sig == _EMPTY
    if not empty.any():
        return sig
    n = sig.shape[0]
    idx = np.where(~empty, np.arange(NUM_BINS), 1 << 20)
    idx2 = np.concatenate([idx, idx + NUM_BINS], axis=1)
    nxt = np.minimum.accumulate(idx2[:, ::-1], axis=1)[:, ::-1][:, :NUM_BINS]
    has = nxt < (1 << 19)
    src = np.where(has, nxt % NUM_BINS, 0)
    dist = np.where(has, nxt - np.arange(NUM_BINS), 0).astype(np.uint32)
    with np.errstate(over="ignore"):
        filled = np.take_along_axis(sig, src, axis=1) + dist * np.uint32(0x9E3779B1)
    out = np.where(empty & has, filled, sig)
    out[~has.any(axis=1)] = _EMPTY  # no shingle at all
    return out.reshape(n, NUM_BINS)


def band_keys(sig: np.ndarray) -> np.ndarray:
    """(n, 16) uint64: one key per band of 8 bins."""
    v = sig.astype(np.uint64).reshape(sig.shape[0], BANDS, ROWS)
    with np.errstate(over="ignore"):
        k = np.zeros(v.shape[:2], np.uint64)
        for r in range(ROWS):
            k = _fmix(k * np.uint64(0x9E3779B97F4A7C15) + v[:, :, r] + np.uint64(r + 1))
    return k


def redundant(keys: np.ndarray) -> np.ndarray:
    """bool per unit: True when an earlier unit is in its group (units joined by a shared band key)."""
    n = keys.shape[0]
    labels = np.arange(n)
    if n < 2:
        return np.zeros(n, bool)
    orders = [np.argsort(keys[:, b], kind="stable") for b in range(keys.shape[1])]
    bounds = []
    for b, order in enumerate(orders):
        ks = keys[order, b]
        new = np.concatenate([[True], ks[1:] != ks[:-1]])
        bounds.append(np.flatnonzero(new))
    changed = True
    while changed:  # label propagation: every unit takes the smallest label of any group it is in
        changed = False
        for order, starts in zip(orders, bounds):
            lab = labels[order]
            gmin = np.minimum.reduceat(lab, starts)
            counts = np.diff(np.concatenate([starts, [n]]))
            new = np.repeat(gmin, counts)
            if (new < lab).any():
                labels[order] = np.minimum(lab, new)
                changed = True
    return labels != np.arange(n)


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))
