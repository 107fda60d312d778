"""Generated test data: corpora of unique documents and pair files of a given size (no downloads).
Used by the plan tests and by bench/scan_bench.py; every document is distinct (random words)."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np


def _vocab(rng: np.random.Generator, n: int = 20000) -> np.ndarray:
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype="S1")
    lens = rng.integers(3, 10, n)
    return np.array([b"".join(rng.choice(letters, k)) for k in lens], dtype=object)


def write_corpus(folder: Path, mb: float, seed: int = 0, doc_words: tuple[int, int] = (150, 600),
                 files: int = 8, jsonl: bool = False) -> int:
    """About `mb` MB of unique documents: one .txt per document, or `files` .jsonl files. Returns bytes."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    target, written, i = int(mb * 1e6), 0, 0
    outs = [open(folder / f"part-{k:03d}.jsonl", "w") for k in range(files)] if jsonl else []
    try:
        while written < target:
            n = int(rng.integers(*doc_words))
            words = vocab[rng.integers(0, len(vocab), n)]
            paras = [b" ".join(words[j:j + 60]) for j in range(0, n, 60)]
            text = b"\n\n".join(paras) + f" doc{seed}-{i}".encode()
            if jsonl:
                outs[i % files].write(json.dumps({"text": text.decode()}) + "\n")
            else:
                (folder / f"doc-{i:07d}.txt").write_bytes(text)
            written += len(text)
            i += 1
    finally:
        for f in outs:
            f.close()
    return written


def write_pairs(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    words = ["clause", "tenant", "statute", "filing", "notice", "term", "party", "court", "breach", "fee"]
    with open(path, "w") as f:
        for i in range(n):
            q = " ".join(rng.choice(words) for _ in range(8))
            a = " ".join(rng.choice(words) for _ in range(20))
            f.write(json.dumps({"prompt": f"Q{i}: {q}?", "completion": a}) + "\n")
    return path


def write_near_dup_corpus(folder: Path, docs: int, near_share: float, seed: int = 0, files: int = 8,
                          doc_words: tuple[int, int] = (150, 600), fmt: str = "jsonl") -> int:
    """`docs` documents of which a share `near_share` are copies of other documents with 1% of their words
    changed (at least one word), shuffled across `files` files (.jsonl rows, or .txt with blank lines between
    documents). Returns the number of near copies: the near-duplicate rate the scan should report is
    copies / docs (no exact duplicates)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    vocab = _vocab(rng)
    n_copies = int(round(docs * near_share))
    originals = []
    for i in range(docs - n_copies):
        n = int(rng.integers(*doc_words))
        originals.append([w.decode() for w in vocab[rng.integers(0, len(vocab), n)]] + [f"doc{seed}-{i}"])
    all_docs = [" ".join(w) for w in originals]
    for c in range(n_copies):
        words = list(originals[int(rng.integers(0, len(originals)))])
        for j in rng.choice(len(words), max(1, len(words) // 100), replace=False):
            words[j] = f"changed{seed}x{c}x{j}"
        all_docs.append(" ".join(words))
    order = rng.permutation(len(all_docs))
    outs = [open(folder / f"part-{k:03d}.{fmt}", "w") for k in range(files)]
    try:
        for pos, i in enumerate(order):
            f = outs[pos % files]
            f.write(json.dumps({"text": all_docs[i]}) + "\n" if fmt == "jsonl" else all_docs[i] + "\n\n")
    finally:
        for f in outs:
            f.close()
    return n_copies


WHITESPACE = [" ", " ", " ", "\n", "\n\n", "\n \n", "\r\n\r\n", "\n\t\n ", "\u2028", "\xa0", "\t", "\n\n\n", " \n"]


def random_corpus_text(rng, tokens, literal=None, long_blanks=False):
    """Words, non-ASCII, words longer than a piece, Unicode whitespace, blank-line variants, the literal
    separator; whitespace runs stay shorter than the streaming reader's margin (UNIT_CHARS // 4)."""
    parts = []
    for _ in range(tokens):
        r = rng.random()
        if r < 0.05:
            parts.append("x" * rng.randint(30, 100))
        elif r < 0.1 and literal:
            parts.append(literal)
        elif r < 0.13 and long_blanks:
            parts.append(" " * rng.randint(20, 70))
        elif r < 0.17:
            parts.append(rng.choice(["é", "日本", "ß", "ǅ", "🙂"]))
        else:
            parts.append("".join(rng.choice("abcdefgh") for _ in range(rng.randint(1, 9))))
        parts.append(rng.choice(WHITESPACE))
    return "".join(parts)
