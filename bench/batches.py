"""Documents, pairs and batches for bench/throughput.py: the guide-style shapes and the project's defaults.

Every builder returns a list of optimizer steps; a step is a list of micro-batches (dicts of tensors for the
model) plus the number of real (non-pad) tokens it carries.
"""
from __future__ import annotations

import math
import random

import torch

PAD_LABEL = -100


# ---------------------------------------------------------------- token sources

def demo_documents(tok) -> list[list[int]]:
    """The demo corpus (Python's standard-library docs), one token list per document, as the CPT stage reads it."""
    from training.data import iter_documents
    from training.demo import resolve_builtin
    from training.recipe_load import expand_data
    files = expand_data(resolve_builtin("builtin:demo-corpus"))
    docs = [t for _, _, t in iter_documents(files, "text", whole=True) if t.strip()]
    return tok(docs, add_special_tokens=False)["input_ids"]


def demo_pairs(tok, max_len: int) -> list[tuple[list[int], list[int]]]:
    """The demo pairs through the demo chat template: (input_ids, labels with the prompt masked), truncated."""
    from training.pairs import load_pairs_strict
    from training.demo import resolve_builtin
    from pathlib import Path
    rows = load_pairs_strict(Path(resolve_builtin("builtin:demo-pairs"))).rows
    out = []
    for r in rows:
        prompt = tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        p_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"][:max_len]
        out.append((ids, [PAD_LABEL] * min(len(p_ids), len(ids)) + ids[len(p_ids):]))
    return out


def lognormal_lengths(n: int, cap: int, median: int = 400, seed: int = 0) -> list[int]:
    """Log-normal lengths (median 400 tokens) like domain documents; the shape bench/anchor_gpu.py used."""
    g = torch.Generator().manual_seed(seed)
    return torch.exp(torch.randn(n, generator=g) + math.log(median)).long().clamp(16, cap).tolist()


def synthetic_documents(n: int, vocab: int, cap: int, seed: int = 0) -> list[list[int]]:
    g = torch.Generator().manual_seed(seed + 1)
    return [torch.randint(3, vocab, (L,), generator=g).tolist() for L in lognormal_lengths(n, cap, seed=seed)]


def synthetic_pairs(n: int, vocab: int, max_len: int, seed: int = 1) -> list[tuple[list[int], list[int]]]:
    """Random pairs with log-normal lengths; the first half of each is the prompt (no loss on it)."""
    out = []
    for ids in synthetic_documents(n, vocab, max_len, seed):
        half = len(ids) // 2
        out.append((ids, [PAD_LABEL] * half + ids[half:]))
    return out


# ---------------------------------------------------------------- guide-style: truncate, pad to the longest

def padded_steps(seqs: list[tuple[list[int], list[int]]], micro: int, accum: int, n_steps: int, pad_id: int,
                 seq_cap: int, seed: int = 0, grouped: bool = False) -> list[tuple[list[dict], int]]:
    """Shuffled, truncated to seq_cap, `micro` rows padded to the longest in the micro-batch, with a mask.
    grouped: sorted by length within mega-batches of 50 micro-batches, as transformers' length-grouped sampler."""
    order = list(range(len(seqs)))
    random.Random(seed).shuffle(order)
    if grouped:
        mega = 50 * micro
        order = [j for i in range(0, len(order), mega) for j in sorted(order[i:i + mega], key=lambda j: -len(seqs[j][0]))]
    steps, k = [], 0
    for _ in range(n_steps):
        mbs, real = [], 0
        for _ in range(accum):
            rows = [seqs[order[(k + j) % len(order)]] for j in range(micro)]
            k += micro
            L = max(min(len(ids), seq_cap) for ids, _ in rows)
            ids = torch.full((micro, L), pad_id, dtype=torch.long)
            labels = torch.full((micro, L), PAD_LABEL, dtype=torch.long)
            mask = torch.zeros((micro, L), dtype=torch.long)
            for j, (x, y) in enumerate(rows):
                n = min(len(x), seq_cap)
                ids[j, :n], labels[j, :n], mask[j, :n] = torch.tensor(x[:n]), torch.tensor(y[:n]), 1
                real += n
            mbs.append({"input_ids": ids, "attention_mask": mask, "labels": labels})
        steps.append((mbs, real))
    return steps


def as_pairs(docs: list[list[int]]) -> list[tuple[list[int], list[int]]]:
    return [(d, d) for d in docs]  # CPT: every token is a label


# ---------------------------------------------------------------- the project's defaults

def packed_cpt_steps(docs: list[list[int]], eos: int, seq: int, micro: int, accum: int, n_steps: int,
                     seed: int = 0) -> list[tuple[list[dict], int]]:
    """Documents joined with EOS and cut into seq-token blocks, as training/runtime/stages/cpt.py packs them."""
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    flat = [t for i in order for t in docs[i] + [eos]]
    need = n_steps * accum * micro * seq
    while len(flat) < need:  # a small corpus is reused (another epoch), as training would
        flat += flat
    blocks = torch.tensor(flat[:need]).view(n_steps, accum, micro, seq)
    return [([{"input_ids": b, "labels": b.clone()} for b in step], micro * accum * seq) for step in blocks]


def packed_sft_steps(pairs: list[tuple[list[int], list[int]]], max_len: int, micro: int, accum: int,
                     n_steps: int, pad_id: int, seed: int = 0) -> list[tuple[list[dict], int]]:
    """TRL's best-fit-decreasing bins and its padding-free collator: exactly what the SFT stage trains on."""
    from datasets import Dataset
    from trl.data_utils import pack_dataset
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    ds = Dataset.from_dict({"input_ids": [pairs[i][0] for i in order], "labels": [pairs[i][1] for i in order]})
    packed = pack_dataset(ds, max_len, "bfd").shuffle(seed=seed)
    collate = DataCollatorForLanguageModeling(pad_token_id=pad_id, padding_free=True)
    steps, k = [], 0
    for _ in range(n_steps):
        mbs, real = [], 0
        for _ in range(accum):
            rows = [packed[(k + j) % len(packed)] for j in range(micro)]
            k += micro
            batch = collate(rows)
            real += int(batch["input_ids"].numel())
            mbs.append(batch)
        steps.append((mbs, real))
    return steps
