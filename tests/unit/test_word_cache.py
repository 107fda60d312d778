"""training/runtime/word_cache.py gives exactly the tokenizer's ids, for every layout it accepts, on text of
every script, and gets out of the way where it cannot (other layouts, added tokens, a disagreement)."""
from __future__ import annotations

import unicodedata

import pytest

from training.runtime.word_cache import GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN, WordCache, layout

# the split patterns of Llama-3 and Qwen2 tokenizer.json files (their Split pre-tokenizer)
LLAMA3 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
          r"\s+(?!\S)|\s+")
QWEN2 = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
         r"\s+(?!\S)|\s+")
MIXED = ("The court held that it's 2024 and THEY'LL pay $1,234.56 — naïve café Ölçü 東京都の裁判所 привет мир "
         "مرحبا 😀👍🏽 e\u0301 x\u0303 a\tb\r\nc  \n\n  d\u00a0e\u2028f 12345678 ''' ``` <div>x</div> ﬁ Å Å")


def make(kind: str, added=("<|endoftext|>", "<|im_start|>")):
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    tk = Tokenizer(models.BPE())
    if kind == "gpt2":
        tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tk.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3 if kind == "llama3" else QWEN2), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        if kind == "qwen2":
            tk.normalizer = normalizers.NFC()
    trainer = trainers.BpeTrainer(vocab_size=700, special_tokens=list(added), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tk.train_from_iterator([MIXED] * 40, trainer)
    if kind == "llama3":  # as Llama-3's tokenizer.json: a word in the vocabulary is one token, merges or not
        import json
        spec = json.loads(tk.to_str())
        spec["model"]["ignore_merges"] = True
        tk = Tokenizer.from_str(json.dumps(spec))
    return tk


def reference(tk, texts):
    return [e.ids for e in tk.encode_batch(texts, add_special_tokens=False)]


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2"])
def test_same_ids_as_the_tokenizer_on_mixed_scripts(kind):
    tk = make(kind)
    wc = WordCache.build(tk)
    assert wc is not None
    texts = [MIXED, MIXED[::-1], MIXED * 3, "", " ", "\n\n\n", "a" * 5000, "x" + "\u0301" * 40, "1" * 77]
    assert wc.encode(texts) == reference(tk, texts)
    assert wc.encode(texts) == reference(tk, texts)  # second time from the cache
    assert wc.status == "word cache" and wc.slow_docs == 0 and wc.fast_docs == 2 * len(texts)


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2"])
def test_every_assigned_code_point_splits_as_the_tokenizer_splits_it(kind):
    """The two regex engines must agree on every character's classes (letter, number, space): each assigned
    code point is tried between letters, digits, spaces and newlines."""
    tk = make(kind)
    wc = WordCache.build(tk)
    points = [c for c in range(0x110000) if unicodedata.category(chr(c)) not in ("Cn", "Co", "Cs")]
    wrong = []
    for k in range(0, len(points), 4000):
        chunk = points[k:k + 4000]
        texts = [f"a{chr(c)}1{chr(c)} {chr(c)}{chr(c)}\n{chr(c)}'S " for c in chunk]
        for c, got, want in zip(chunk, wc.encode(texts), reference(tk, texts)):
            if got != want:
                wrong.append(hex(c))
    assert len(points) > 140_000 and not wrong, wrong[:20]


def test_documents_with_an_added_token_go_through_the_tokenizer():
    tk = make("gpt2")
    wc = WordCache.build(tk)
    texts = ["plain text here", "one doc<|endoftext|>next doc", "<|im_start|>user"]
    assert wc.encode(texts) == reference(tk, texts)
    assert wc.slow_docs == 2 and wc.fast_docs == 1
    assert tk.token_to_id("<|endoftext|>") in wc.encode(texts)[1]


def test_a_disagreement_in_the_first_batch_switches_the_cache_off():
    tk = make("gpt2")
    wc = WordCache(tk, r"\S+|\s+", False, [])  # not the tokenizer's pattern: pieces differ from its own
    texts = ["the court's held, it is 2024", "and again"]
    assert wc.encode(texts) == reference(tk, texts)
    assert wc.status.startswith("tokenizer (word cache off: document 0 of the first batch differs at token")
    assert wc.encode(["later batches too"]) == reference(tk, ["later batches too"])


def test_a_full_cache_is_cleared_and_stays_exact(monkeypatch):
    import training.runtime.word_cache as m
    monkeypatch.setattr(m, "CAPACITY", 5)
    tk = make("llama3")
    wc = WordCache.build(tk)
    for texts in ([MIXED, "other words every time " * 3], [MIXED], ["the court held it"] * 3):
        full = len(wc.store.index) > 5
        assert wc.encode(texts) == reference(tk, texts)
        assert not full or len(wc.store.index) <= len(set(wc._pieces(MIXED))) + 3  # emptied before the batch


def test_layouts_it_does_not_cover_and_the_off_switch(monkeypatch):
    import json

    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
    spec = json.loads(make("gpt2").to_str())
    assert layout(spec) == (GPT2_PATTERN, False)
    assert layout(json.loads(make("llama3").to_str())) == (LLAMA3, False)
    assert layout(json.loads(make("qwen2").to_str())) == (QWEN2, True)
    sp = Tokenizer(models.BPE(byte_fallback=True))  # Llama-2 / Mistral: SentencePiece-style BPE
    sp.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    assert layout(json.loads(sp.to_str())) == "normalizer Sequence"
    meta = Tokenizer(models.BPE())
    meta.pre_tokenizer = pre_tokenizers.Metaspace()
    assert layout(json.loads(meta.to_str())) == "pre-tokenizer Metaspace" and WordCache.build(meta) is None
    prefix = Tokenizer(models.BPE())
    prefix.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    assert layout(json.loads(prefix.to_str())) == "pre-tokenizer ByteLevel"
    assert layout(dict(spec, model=dict(spec["model"], dropout=0.1))).startswith("model BPE")
    assert layout(dict(spec, model={"type": "WordPiece"})).startswith("model WordPiece")
    monkeypatch.setenv("TUNE_WIZARD_WORD_CACHE", "off")
    assert WordCache.build(make("gpt2")) is None


def test_the_families_users_bring_are_covered_and_exact(tmp_path):
    from families import FAMILIES, build_tokenizer
    for name, fam in FAMILIES.items():
        tk = build_tokenizer(fam, tmp_path / name).backend_tokenizer
        wc = WordCache.build(tk)
        assert wc is not None, name
        texts = [MIXED, f"a document {fam.end_of_text} then another", "the court held that"]
        assert wc.encode(texts) == reference(tk, texts), name


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2"])
def test_ascii_documents_split_by_the_stdlib_pattern_give_the_same_ids(kind):
    """ASCII documents take the stdlib `re` translation of the pattern; random ASCII (every code point 0-127,
    runs of spaces, newlines, digits, apostrophes, upper case) must give the tokenizer's ids."""
    import random
    tk = make(kind)
    wc = WordCache.build(tk)
    assert wc.ascii_split is not None
    rng = random.Random(7)
    alphabet = [chr(c) for c in range(128)] + ["'s", "'S", "'ll", "  ", "\r\n", "\n\n", "123", "abc", " The"] * 8
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200))) for _ in range(3000)]
    assert all(t.isascii() for t in texts)
    assert wc.encode(texts) == reference(tk, texts)


def test_ascii_pattern_translates_only_what_it_can_spell_out():
    from training.runtime.word_cache import ascii_pattern
    assert ascii_pattern(r"\p{L}+|[^\s\p{N}]") == r"[A-Za-z]+|[^\t\n\x0b\x0c\r\x20" + "0-9]"
    assert ascii_pattern(r"\S+|\P{L}") == r"[^\t\n\x0b\x0c\r\x20]+|[^A-Za-z]"
    for unsure in (r"\p{Lu}+", r"\d+", r"\w", r"[^\S]", r"[^\P{L}]", r"[[:alpha:]]", r"\p{L"):
        assert ascii_pattern(unsure) is None, unsure


def test_the_known_patterns_are_the_families_own():
    assert (LLAMA3_PATTERN, QWEN2_PATTERN) == (LLAMA3, QWEN2)


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2"])
def test_ascii_prose_split_at_its_spaces_gives_the_same_ids(kind):
    """Prose-like ASCII (single spaces between non-space runs) takes the chunk path: each space-led part looked
    up whole. Random words of letters, digits, punctuation, apostrophes and line breaks between them."""
    import random
    tk = make(kind)
    wc = WordCache.build(tk)
    rng = random.Random(3)
    bits = ["the", "The", "COURT", "it's", "THEY'LL", "'s", "'", "1", "12345", "3.5%", "(a)", "--", "...", "x\ny",
            "a\r\nb", "p.\n\nQ", "a\tb", "\x1c", "\x7f", "\x00", "[1]", "e.g.,", "A1b2", "''", '"q"', "#!"]
    texts = [" ".join("".join(rng.choice(bits) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 60)))
             for _ in range(3000)]
    texts = [t for t in texts if not t.startswith(" ")]
    assert wc.encode(texts) == reference(tk, texts)
    assert wc.chunked_docs == len(texts) and len(wc.store.index) > 1000  # all took the chunk path


@pytest.mark.parametrize("kind", ["gpt2", "llama3", "qwen2"])
def test_non_ascii_prose_takes_the_chunk_path_unless_a_space_touches_other_white_space(kind):
    """Chunks for any script, decided with Unicode white space: a space beside U+00A0, U+3000, U+2028 or a
    tab sends the document through the pieces instead; both ways give the tokenizer's ids (NFC first for
    Qwen2: a decomposed e + U+0301 composes before the cut)."""
    import random
    tk = make(kind)
    wc = WordCache.build(tk)
    rng = random.Random(5)
    bits = ["café", "naïve", "e\u0301t\u00e9", "東京都", "привет", "мир,", "😀", "—", "“q”", "’s", "x\u00a0y", "a\u3000b",
            "1,234", "Ölçü", "x\u2028y", "p.\n\nQ", "the", "'LL", "\u0301"]
    texts = [" ".join("".join(rng.choice(bits) for _ in range(rng.randint(1, 3))) for _ in range(rng.randint(1, 50)))
             for _ in range(2000)]
    glued = ["a \u00a0b", "a\u3000 b", "x \u2028y", "\t q r", "end ", " start", "東京 \u00a0都"]
    assert wc.encode(texts + glued) == reference(tk, texts + glued)
    assert len(texts) // 2 < wc.chunked_docs <= len(texts)  # the glued ones and a few of the texts did not
