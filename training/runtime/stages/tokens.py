"""The tokenizer's own conventions in one place: what goes around each document when CPT joins documents into
packed blocks (and when perplexity is measured), so training, evaluation and the probe agree."""
from __future__ import annotations


def doc_affixes(tok) -> tuple[list[int], list[int]]:
    """(token ids put before each document, token ids put after its end). Today: nothing before, EOS after."""
    return [], [tok.eos_token_id]
