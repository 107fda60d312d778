"""Replay against forgetting: general text mixed into continued pre-training (`stages.<cpt>.replay`).

The share is of tokens: CPT packs everything into seq_len blocks, so `fraction` of the training blocks are
general text (replay / (domain + replay) = fraction). The general text is tokenized as it streams in and
reading stops once there is enough; when it is shorter than the share needs, its blocks repeat
(stats["replay_repeats"] says how often; a small general text repeated many times is memorised, not replayed:
bring more text). The Trainer samples the training set in random order, so replay blocks are spread over
the whole stage.

Kept apart from stages/cpt.py's corpus preparation: the hook there is one call, mix_replay().
"""
from __future__ import annotations

import math

from training.data import DataError, iter_documents
from training.recipe import CptStage
from training.recipe_load import expand_data


def replay_blocks(st: CptStage, tok, need: int) -> list[list[int]]:
    """Up to `need` seq_len blocks of the replay text, documents joined with EOS, read only as far as needed."""
    seq = st.seq_len
    files = [f for spec in st.replay.data for f in expand_data(spec)]
    eos = [tok.eos_token_id] if tok.eos_token_id is not None else []
    buf: list[int] = []
    blocks: list[list[int]] = []
    for _, _, text in iter_documents(files, st.replay.text_field, whole=True):
        if not text.strip():
            continue
        buf.extend(tok(text, add_special_tokens=False)["input_ids"] + eos)
        while len(buf) >= seq and len(blocks) < need:
            blocks.append(buf[:seq])
            buf = buf[seq:]
        if len(blocks) >= need:
            break
    return blocks


def mix_replay(train_ds, st: CptStage, tok, stats: dict):
    """The training blocks plus replay blocks that make `st.replay.fraction` of all of them."""
    from datasets import Dataset, concatenate_datasets

    f = st.replay.fraction
    need = max(1, round(len(train_ds) * f / (1 - f)))
    blocks = replay_blocks(st, tok, need)
    if not blocks:
        raise DataError(f"stage {st.name}: replay.data gives fewer than seq_len={st.seq_len} tokens of general "
                        f"text; add text or lower seq_len")
    rows = [blocks[i % len(blocks)] for i in range(need)]
    stats.update(replay_blocks=need, replay_tokens=need * st.seq_len, replay_unique_blocks=len(blocks),
                 replay_repeats=math.ceil(need / len(blocks)),
                 replay_fraction=need / (need + len(train_ds)))
    return concatenate_datasets([train_ds, Dataset.from_dict({"input_ids": rows}).cast(train_ds.features)])


def overlap_warning(st: CptStage, general_text: str | None) -> str | None:
    """The forgetting watch scores eval.general_text; replaying that same text trains on the test."""
    if not general_text:
        return None
    from pathlib import Path
    g = Path(general_text).resolve()
    if any(f.resolve() == g for spec in st.replay.data for f in expand_data(spec)):
        return (f"stage {st.name}: replay.data includes eval.general_text ({g.name}), the text the forgetting watch "
                f"scores: its perplexity will understate forgetting; replay other general text or set "
                f"eval.general_text to a text not replayed")
    return None
