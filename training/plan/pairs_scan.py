"""Pairs scan: how many usable instruction pairs there are, in which format, and how long they are.

Reuses training/pairs.read_pairs (the same format detection and row checks the SFT stage applies), then
counts duplicate pairs (same normalised prompt and answer), and measures token lengths of prompts and
responses: with the model's tokenizer.json when available, else bytes/4 (marked as a guess).
"""
from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from training.data import doc_hash
from training.pairs import read_pairs

SHOW_INVALID = 20


@dataclass
class PairsFacts:
    path: str = ""
    valid: int = 0
    formats: dict = field(default_factory=dict)        # format -> valid rows
    invalid: int = 0
    invalid_rows: list = field(default_factory=list)   # first 20 as {"line", "reason"}
    duplicates: int = 0
    prompt_tokens: dict = field(default_factory=dict)  # p50, p90, p95, max
    response_tokens: dict = field(default_factory=dict)
    mean_tokens: float = 0.0                           # prompt + response, per pair
    max_len: int = 0                                   # padded row length for training: p95 rounded up to 64
    pad_efficiency: float = 1.0                        # real / padded tokens, batches of 4 in file order
    tokens_method: str = "bytes/4 guess"
    declared: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_declared(cls, n: int, mean_tokens: float = 400.0) -> "PairsFacts":
        return cls(valid=n, mean_tokens=mean_tokens, max_len=1024, pad_efficiency=0.6,
                   tokens_method="declared count, 400 tokens per pair assumed", declared=True)


def _percentiles(xs: list[int]) -> dict:
    if not xs:
        return {}
    s = sorted(xs)
    pick = lambda q: s[min(len(s) - 1, int(q * len(s)))]  # noqa: E731
    return {"p50": pick(0.5), "p90": pick(0.9), "p95": pick(0.95), "max": s[-1]}


def _counter(tokenizer_dir: str | None):
    tj = Path(tokenizer_dir) / "tokenizer.json" if tokenizer_dir else None
    if tj and tj.is_file():
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(str(tj))
        return (lambda texts: [len(e.ids) for e in tok.encode_batch(texts, add_special_tokens=False)]), \
            f"tokenizer {tokenizer_dir}"
    return (lambda texts: [max(1, round(len(t.encode("utf-8")) / 4)) for t in texts]), "bytes/4 guess"


def pad_efficiency(lengths: list[int], batch: int = 4, cap: int | None = None) -> float:
    """Real / processed tokens when rows are padded to the longest of each batch of `batch` (shuffled)."""
    if not lengths:
        return 1.0
    ls = [min(x, cap) if cap else x for x in lengths]
    random.Random(0).shuffle(ls)
    real = sum(ls)
    proc = sum(max(ls[i:i + batch]) * len(ls[i:i + batch]) for i in range(0, len(ls), batch))
    return real / proc if proc else 1.0


def scan_pairs(path: str, tokenizer_dir: str | None = None) -> PairsFacts:
    """Raises training.data.DataError when the file cannot be read or is not UTF-8."""
    from training.hub_data import local_file  # an hf: dataset id reads as its .jsonl snapshot
    res = read_pairs(Path(local_file(path)))
    facts = PairsFacts(path=str(path), valid=len(res.rows), formats=dict(res.formats), invalid=len(res.invalid),
                       invalid_rows=[{"line": ln, "reason": why} for ln, why in res.invalid[:SHOW_INVALID]])
    seen = set()
    prompts, responses = [], []
    for r in res.rows:
        p = "\n".join(m["content"] for m in r["prompt"])
        c = r["completion"][0]["content"]
        h = doc_hash(p + "\x00" + c)
        facts.duplicates += h in seen
        seen.add(h)
        prompts.append(p)
        responses.append(c)
    count, facts.tokens_method = _counter(tokenizer_dir)
    pl, rl = count(prompts), count(responses)
    facts.prompt_tokens, facts.response_tokens = _percentiles(pl), _percentiles(rl)
    total = [a + b for a, b in zip(pl, rl)]
    if total:
        facts.mean_tokens = sum(total) / len(total)
        p95 = _percentiles(total)["p95"]
        facts.max_len = max(64, -(-p95 // 64) * 64)
        facts.pad_efficiency = pad_efficiency(total, 4, facts.max_len)
    return facts
