"""Exact and near-duplicate detection over every unit of a corpus (training/data.py's documents and pieces).

Exact: blake2b of the normalised text (lower case, whitespace collapsed), the same as data.doc_hash.

Near: MinHash signatures with LSH banding, computed for a whole batch of documents in a few numpy passes
(no Python work per word or shingle, which is what makes it fast enough to run on every document):
  - a word's hash mixes its first 24 bytes (read as three little-endian 64-bit chunks straight from the
    batch's bytes), its last 8 and its length, finished with murmur3's fmix64;
  - shingles are 5 consecutive words of the normalised text (a document of fewer words is one shingle): a
    polynomial of the 5 word hashes, finished with fmix64;
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
import re

import numpy as np

NUM_BINS = 128
BANDS = 16
ROWS = NUM_BINS // BANDS
SHINGLE_WORDS = 5
_P = np.uint64(0x100000001B3)                 # shingle polynomial: odd
_K0 = np.uint64(0x9E3779B97F4A7C15)           # word chunk multipliers: odd
_K1 = np.uint64(0xC2B2AE3D27D4EB4F)
_MASKS = np.array([(1 << (8 * i)) - 1 for i in range(8)] + [(1 << 64) - 1], np.uint64)  # keep i low bytes
_EMPTY = np.uint32(0xFFFFFFFF)
_S33 = np.uint64(33)
_SPACES = re.compile(rb"  +")


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
        t = raw.translate(_TABLE)
        if b"  " in t:
            t = _SPACES.sub(b" ", t)
        return t.strip(b" ")
    return " ".join(raw.decode("utf-8").split()).lower().encode("utf-8")


_LIBC: list = []


def release_free_memory() -> None:
    """Hand the allocator's free pages back to the kernel (glibc malloc_trim; elsewhere nothing). A long data
    pass allocates blocks of text and token arrays of varying sizes between a few long-lived ones; glibc's
    heap then keeps growing holes it cannot reuse, and the parent's RSS rose with the corpus (+210 MB over
    100 MB of prepare, 150 MB of it free heap). Trimming every few batches kept it flat (bench/RESULTS.md)."""
    if not _LIBC:
        try:
            import ctypes
            _LIBC.append(ctypes.CDLL("libc.so.6").malloc_trim)
        except (OSError, AttributeError):
            _LIBC.append(None)
    if _LIBC[0] is not None:
        _LIBC[0](0)


class Rows:
    """Per-unit results kept for a whole pass (keys, band keys), appended batch by batch into a few large
    chunks. Keeping each batch's own small array instead pinned the allocator's memory between the pass's
    short-lived buffers: the scan's RSS grew by ~0.5 KB per document (511 MB at 1 GB) for 144 bytes of data."""

    def __init__(self, dtype, width: int = 0, chunk_rows: int = 1 << 16):
        self.dtype, self.width, self.chunk_rows = dtype, width, chunk_rows
        self.chunks: list[np.ndarray] = []
        self.n = 0

    def add(self, a: np.ndarray) -> None:
        i = 0
        while i < len(a):
            used = self.n - (len(self.chunks) - 1) * self.chunk_rows if self.chunks else self.chunk_rows
            if used == self.chunk_rows:
                shape = (self.chunk_rows, self.width) if self.width else (self.chunk_rows,)
                self.chunks.append(np.empty(shape, self.dtype))
                used = 0
            take = min(len(a) - i, self.chunk_rows - used)
            self.chunks[-1][used:used + take] = a[i:i + take]
            i += take
            self.n += take

    def parts(self) -> list[np.ndarray]:
        """The filled rows, chunk by chunk (views)."""
        last = self.n - (len(self.chunks) - 1) * self.chunk_rows if self.chunks else 0
        return self.chunks[:-1] + ([self.chunks[-1][:last]] if self.chunks else [])

    def array(self) -> np.ndarray:
        parts = self.parts()
        if not parts:
            return np.zeros((0, self.width) if self.width else 0, self.dtype)
        return np.concatenate(parts) if len(parts) > 1 else parts[0]


def normalized_batch(texts: list[str]) -> tuple[list, np.ndarray]:
    """(normalized_bytes of each text, their UTF-8 sizes, as one batch): the ASCII texts are normalised together
    (one translate of the whole batch; numpy finds the few with leading, trailing or repeated whitespace,
    which are then normalised one by one). The norms of clean texts are memoryviews into one buffer."""
    raws = [t.encode("utf-8") for t in texts]
    n = len(raws)
    sizes = np.fromiter(map(len, raws), np.int64, n)
    t = b" ".join(raws).translate(_TABLE)
    a = np.frombuffer(t, np.uint8)
    starts = np.cumsum(sizes + 1) - sizes - 1
    sp = a == 32
    dirty = np.fromiter((not x.isascii() for x in texts), bool, n) | (sizes == 0)
    full = np.flatnonzero(sizes > 0)
    dirty[full] |= sp[starts[full]] | sp[starts[full] + sizes[full] - 1]
    twice = np.flatnonzero(sp[1:] & sp[:-1])
    if len(twice):
        dirty[np.searchsorted(starts, twice, "right") - 1] = True
    mv = memoryview(t)
    norms = [normalized_bytes(raws[i]) if d else mv[s:s + z]
             for i, (d, s, z) in enumerate(zip(dirty.tolist(), starts.tolist(), sizes.tolist()))]
    return norms, sizes.astype(np.uint64)


def exact_keys(texts: list[str]) -> np.ndarray:
    """exact_key(normalized_bytes(text)) of each text (uint64)."""
    norms, _ = normalized_batch(texts)
    return np.fromiter(map(exact_key, norms), np.uint64, len(norms))


SUB_BATCH_CHARS = 1 << 20  # scan_batch works on about this much text at a time


def scan_batch(texts: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(exact keys, UTF-8 sizes, band keys) of a batch of documents. Runs in worker processes: this module
    imports nothing but numpy, so they start fast. Works through the batch about SUB_BATCH_CHARS at a time:
    on a 4 MB segment at once it took 22 ms per MB, in 1 MB parts 15 (numpy's temporaries of a few MB each
    are fresh pages every time; at 1 MB they are reused and stay in cache)."""
    parts, i = [], 0
    while i < len(texts) or not parts:
        j, n = i, 0
        while j < len(texts) and (j == i or n + len(texts[j]) <= SUB_BATCH_CHARS):
            n += len(texts[j])
            j += 1
        norms, sizes = normalized_batch(texts[i:j])
        keys = np.fromiter(map(exact_key, norms), np.uint64, len(norms))
        parts.append((keys, sizes, band_keys(signatures(norms))))
        i = j
    if len(parts) == 1:
        return parts[0]
    return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))


def exact_key(norm) -> int:
    """64-bit key of a normalised text (bytes or a memoryview; the first 8 bytes of data.doc_hash's digest)."""
    return int.from_bytes(hashlib.blake2b(norm, digest_size=16).digest()[:8], "big")


def _fmix(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place on x (callers pass arrays of their own): fewer fresh pages."""
    t = x >> _S33
    x ^= t
    x *= np.uint64(0xFF51AFD7ED558CCD)
    np.right_shift(x, _S33, out=t)
    x ^= t
    x *= np.uint64(0xC4CEB9FE1A85EC53)
    np.right_shift(x, _S33, out=t)
    x ^= t
    return x


def _chunk(v: np.ndarray, starts: np.ndarray, lens: np.ndarray, off: int) -> np.ndarray:
    """Bytes off..off+7 of each word as a little-endian uint64, the bytes past the word's end zeroed."""
    return v[starts + off] & _MASKS[np.clip(lens - off, 0, 8)]


def word_hashes(joined: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """64-bit hash of each word joined[start:end]: its first 24 bytes, its last 8 and its length."""
    n = len(joined)
    v = np.ndarray((n + 16,), "<u8", buffer=joined + bytes(24), strides=(1,))  # 8 bytes from every offset
    lens = ends - starts
    with np.errstate(over="ignore"):
        h = _chunk(v, starts, lens, 0)
        h *= _K0
        h ^= lens.astype(np.uint64)
        long = np.flatnonzero(lens > 8)
        if len(long):
            s, ln = starts[long], lens[long]
            g = h[long] * _K1 + _chunk(v, s, ln, 8)
            g = g * _K1 + _chunk(v, s, ln, 16)
            h[long] = g * _K1 + np.where(ln > 24, v[np.maximum(ends[long] - 8, 0)], np.uint64(0))
    return _fmix(h)


def signatures(norms: list[bytes]) -> np.ndarray:
    """(len(norms), 128) uint32 MinHash signatures of normalised texts (single spaces between words)."""
    n = len(norms)
    sig = np.full(n * NUM_BINS, _EMPTY, np.uint32)
    lens = np.fromiter((len(x) for x in norms), np.int64, n)
    if not lens.any():
        return sig.reshape(n, NUM_BINS)
    joined = b" ".join([x for x in norms if x]) + b" "
    ends = np.flatnonzero(np.frombuffer(joined, np.uint8) == 32)  # one space after every word
    doc_end = np.cumsum(np.where(lens > 0, lens + 1, 0)) - 1     # the space after each document's last word
    words = np.diff(np.searchsorted(ends, doc_end, side="right"), prepend=0)
    starts = np.empty_like(ends)
    starts[0], starts[1:] = 0, ends[:-1] + 1
    w = word_hashes(joined, starts, ends)
    doc_of = np.repeat(np.arange(n), words)
    k = SHINGLE_WORDS - 1
    with np.errstate(over="ignore"):
        m = len(w) - k  # shingle i: words i..i+4, kept when they are all of one document
        h = w[:m].copy() if m > 0 else np.zeros(0, np.uint64)
        for j in range(1, k + 1):
            h *= _P
            h += w[j:j + m]
        ok = doc_of[:m] == doc_of[k:k + m] if m > 0 else np.zeros(0, bool)
        h, s_doc = h[ok], doc_of[:max(m, 0)][ok]
        short = np.flatnonzero((words > 0) & (words < SHINGLE_WORDS))
        if len(short):  # documents of fewer than 5 words: one shingle of all their words
            first, cnt = (np.cumsum(words) - words)[short], words[short]
            g = w[first]
            for j in range(1, k):
                g = np.where(j < cnt, g * _P + w[np.minimum(first + j, len(w) - 1)], g)
            h, s_doc = np.concatenate([h, g]), np.concatenate([s_doc, short])
        h = _fmix(h)
    # per (document, bin) the smallest value (numpy's ufunc.at has a fast path: no sort needed)
    slot = s_doc * NUM_BINS + (h >> np.uint64(57)).astype(np.int64)
    np.minimum.at(sig, slot, (h & np.uint64(0xFFFFFFFF)).astype(np.uint32))
    return _densify(sig.reshape(n, NUM_BINS))


def _densify(sig: np.ndarray) -> np.ndarray:
    """Empty bins take the value of the next non-empty bin to the right (circularly), shifted by the distance.
    Works on the empty cells alone (a few percent of them): each finds its donor by a binary search among
    the non-empty cells of the whole batch."""
    flat = sig.reshape(-1)
    empty = flat == _EMPTY
    holes = np.flatnonzero(empty)
    if not len(holes):
        return sig
    full = np.flatnonzero(~empty)
    row = holes // NUM_BINS
    j = np.searchsorted(full, holes)                       # the next non-empty cell, perhaps in a later row
    donor = full[np.minimum(j, len(full) - 1)] if len(full) else holes
    wrap = (j >= len(full)) | (donor // NUM_BINS != row)  # none to the right in this row: the row's first
    if wrap.any():
        k = np.searchsorted(full, row[wrap] * NUM_BINS)
        first = full[np.minimum(k, len(full) - 1)] if len(full) else holes[wrap]
        donor[wrap] = first
    alive = donor // NUM_BINS == row                        # a row without any shingle stays empty
    dist = ((donor - holes) % NUM_BINS).astype(np.uint32)
    out = flat.copy()
    with np.errstate(over="ignore"):
        out[holes[alive]] = flat[donor[alive]] + dist[alive] * np.uint32(0x9E3779B1)
    return out.reshape(sig.shape)


def band_keys(sig: np.ndarray) -> np.ndarray:
    """(n, 16) uint64: one key per band of 8 bins."""
    v = sig.astype(np.uint64).reshape(sig.shape[0], BANDS, ROWS)
    with np.errstate(over="ignore"):
        k = np.zeros(v.shape[:2], np.uint64)
        for r in range(ROWS):
            k = _fmix(k * np.uint64(0x9E3779B97F4A7C15) + v[:, :, r] + np.uint64(r + 1))
    return k


def redundant(keys) -> np.ndarray:
    """bool per unit: True when an earlier unit is in its group (units joined by a shared band key).
    keys: the (n, 16) band keys, or a list of such arrays (batches, in corpus order: never joined whole).
    One band at a time: sort its column, link each unit to the next one with the same key, then find the
    connected components of those links (union by smallest label with pointer jumping). Memory beyond the
    keys: about 32 bytes per unit while a band is sorted, plus the links (as many as there are duplicates)."""
    parts = [keys] if isinstance(keys, np.ndarray) else list(keys)
    n = sum(len(p) for p in parts)
    if n < 2:
        return np.zeros(n, bool)
    us, vs = [], []
    for b in range(parts[0].shape[1]):
        col = np.concatenate([p[:, b] for p in parts]) if len(parts) > 1 else parts[0][:, b]
        order = np.argsort(col)
        same = np.flatnonzero(col[order[1:]] == col[order[:-1]])
        del col
        if len(same):
            us.append(order[same])
            vs.append(order[same + 1])
        del order
    labels = np.arange(n)
    if us:
        u, v = np.concatenate(us), np.concatenate(vs)
        while True:
            lu, lv = labels[u], labels[v]
            apart = np.flatnonzero(lu != lv)
            if not len(apart):
                break
            m = np.minimum(lu[apart], lv[apart])
            np.minimum.at(labels, u[apart], m)
            np.minimum.at(labels, v[apart], m)
            while True:  # pointer jumping: every unit takes its label's label
                nxt = labels[labels]
                if (nxt == labels).all():
                    break
                labels = nxt
    return labels != np.arange(n)


def jaccard_estimate(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(a == b))
