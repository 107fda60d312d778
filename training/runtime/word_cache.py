"""Faster, exact tokenization of plain documents for byte-level BPE tokenizers (GPT-2, Llama-3, Qwen2 style).

A byte-level BPE tokenizer runs: added tokens split out -> normalizer -> pre-tokenizer (a regex cuts the text
into pieces, each piece's UTF-8 bytes mapped to the byte-level alphabet) -> the BPE model on each piece on its
own. The model's ids for a piece depend on the piece alone, so a table piece -> ids is exact; what costs is
the pre-tokenizer (Hugging Face tokenizers' regex with offsets runs at 1.2-1.5 MB/s per core here, as slow as
the whole encode). Here:
  pieces    the tokenizer's own pattern cuts the text: the `regex` module, or for ASCII text the stdlib `re`
            with \\p{L}, \\p{N}, \\s spelled out in ASCII (twice as fast);
  chunks    under the Llama-3, Qwen2 and GPT-2 patterns a space between two non-space characters always
            starts a piece, so a document whose spaces all sit between non-space characters is cut with
            str.split(" ") and each " " + part looked up whole (most prose: one lookup per word, no regex);
  table     keys (parts, pieces, the document affixes) -> rows of flat numpy arrays; a batch's keys become
            its int32 token array by one dictionary pass and a gather; a miss runs the tokenizer's own model
            (`model.tokenize`) on the key's pieces. Emptied between batches past CAPACITY keys.
Measured speed-up in bench/RESULTS.md.

Exact where it runs, and it runs only where that can be argued:
  layouts   BPE model without dropout; normalizer none or NFC (applied with the tokenizer's own normalizer);
            pre-tokenizer ByteLevel(use_regex) with the GPT-2 pattern, or Split(pattern, isolated) followed by
            ByteLevel(use_regex=false). Anything else: `build` returns None and the caller uses the tokenizer.
  documents a document holding an added token's text (HF cuts those out first) goes through the tokenizer.
  engines   the two regex engines (Oniguruma in tokenizers, `regex` here) must put every character in the
            same classes (\\p{L}, \\p{N}, \\s). A sweep of all 1,112,064 code points, each in letter, digit,
            space and newline contexts, found no difference for any of the three layouts (tokenizers 0.23,
            regex 2026.11.19); tests/unit/test_word_cache.py repeats it over every assigned code point, and
            fuzzes the ASCII and chunk paths against the tokenizer.
  check     each process encodes its first batch both ways and compares; any difference switches the cache
            off for the run (`status` says why), so a later library version that disagrees costs speed only.
TUNE_WIZARD_WORD_CACHE=off turns it off.
"""
from __future__ import annotations

import json
import os
from itertools import islice, repeat

GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# the Split patterns of Llama-3's and Qwen2's tokenizer.json
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|"
                  r"\s*[\r\n]+|\s+(?!\S)|\s+")
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")
# Under these patterns a space between two non-space characters always starts a piece: no piece holds a space
# after its first character unless the piece is all white space, and the only look-ahead, (?!\S), follows white
# space. So an ASCII document without other spaces splits at its spaces into chunks tokenized on their own.
SPACE_STARTS_A_PIECE = {GPT2_PATTERN, LLAMA3_PATTERN, QWEN2_PATTERN}
_NEAR_SPACE = tuple(" " + w for w in " \t\n\x0b\x0c\r") + tuple(w + " " for w in "\t\n\x0b\x0c\r")
CAPACITY = 1 << 18          # keys held per process (about 60 MB at the cap); emptied between batches past it


def _byte_alphabet() -> dict:
    """str.translate table: the Latin-1 character of each byte -> its character in the byte-level alphabet."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    out, extra = {b: b for b in keep}, 0
    for b in range(256):
        if b not in out:
            out[b] = 256 + extra
            extra += 1
    return {b: chr(c) for b, c in out.items()}


_ALPHABET = _byte_alphabet()


_ASCII = {"L": "A-Za-z", "N": "0-9", "s": r"\t\n\x0b\x0c\r\x20"}


def ascii_pattern(pattern: str) -> str | None:
    """The pattern for ASCII-only text in the stdlib `re` (about twice the `regex` module's speed): \\p{L},
    \\p{N} and \\s become their ASCII members (for \\s: Unicode White_Space, not `re`'s, which adds
    \\x1c-\\x1f). None where the pattern uses anything else whose ASCII meaning is not spelled out here."""
    out, i, in_class = [], 0, False
    while i < len(pattern):
        c = pattern[i]
        if c == "\\" and i + 1 < len(pattern):
            e = pattern[i + 1]
            if e in "pP":
                end = pattern.find("}", i)
                name = pattern[i + 3:end] if pattern[i + 2:i + 3] == "{" and end > 0 else None
                if name not in ("L", "N") or (e == "P" and in_class):
                    return None
                members = _ASCII[name]
                out.append(members if in_class else f"[{'^' if e == 'P' else ''}{members}]")
                i = end + 1
                continue
            if e in "sS":
                if e == "S" and in_class:
                    return None
                members = _ASCII["s"]
                out.append(members if in_class else f"[{'^' if e == 'S' else ''}{members}]")
            elif e.isalpha() and e not in "rntfvx":
                return None  # \\d \\w \\b ...: not in the patterns this module accepts; leave them to `regex`
            else:
                out.append(pattern[i:i + 2])
            i += 2
            continue
        if c == "[":
            if in_class:
                return None  # nested sets / POSIX classes
            in_class = True
        elif c == "]" and in_class:
            in_class = False
        out.append(c)
        i += 1
    try:
        import re
        re.compile("".join(out))
    except re.error:
        return None
    return "".join(out)


def layout(spec: dict) -> tuple[str, bool] | str:
    """(split pattern, NFC first?) when this module reproduces the tokenizer's pipeline, else why not."""
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout"):
        return f"model {model.get('type')} (dropout {model.get('dropout')})"
    norm = spec.get("normalizer")
    if norm is not None and norm.get("type") != "NFC":
        return f"normalizer {norm.get('type')}"
    pre = spec.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True) and not pre.get("add_prefix_space"):
        return GPT2_PATTERN, norm is not None
    parts = pre.get("pretokenizers") or []
    if pre.get("type") == "Sequence" and len(parts) == 2:
        split, byte = parts
        if (split.get("type") == "Split" and "Regex" in (split.get("pattern") or {})
                and split.get("behavior") == "Isolated" and not split.get("invert")
                and byte.get("type") == "ByteLevel" and not byte.get("use_regex", True)
                and not byte.get("add_prefix_space")):
            return split["pattern"]["Regex"], norm is not None
    return f"pre-tokenizer {pre.get('type')}"


class _Store:
    """Keys -> token ids in flat numpy arrays (ids, start and length per row), so that a batch's keys become
    its token array in a few vectorized steps instead of a Python list per document."""

    def __init__(self):
        import numpy as np
        self.np, self.index = np, {}
        self.ids, self.start, self.length = np.empty(1 << 16, np.int32), np.empty(1 << 14, np.int64), \
            np.empty(1 << 14, np.int64)
        self.used = 0

    def add(self, key, ids: list[int]) -> int:
        np, row, n = self.np, len(self.index), len(ids)
        if row == len(self.start):
            self.start, self.length = np.resize(self.start, 2 * row), np.resize(self.length, 2 * row)
        if self.used + n > len(self.ids):
            self.ids = np.resize(self.ids, 2 * (self.used + n))
        self.ids[self.used:self.used + n] = ids
        self.start[row], self.length[row] = self.used, n
        self.used += n
        self.index[key] = row
        return row

    def gather(self, rows) -> tuple:
        """(ids of the rows one after the other, each row's length)."""
        np = self.np
        lengths = self.length[rows]
        ends = np.cumsum(lengths)
        offset = np.repeat(self.start[rows] - (ends - lengths), lengths)
        return self.ids[offset + np.arange(int(ends[-1]) if len(ends) else 0)], lengths


class WordCache:
    def __init__(self, tk, pattern: str, nfc: bool, added: list[str]):
        import re

        import regex
        self.tk, self.model = tk, tk.model
        self.normalizer = tk.normalizer if nfc else None
        self.split = regex.compile(pattern)
        fast = ascii_pattern(pattern)
        self.ascii_split = re.compile(fast) if fast is not None else None
        self.whole = self.split.groups == 0  # findall returns whole matches only without capture groups
        added = sorted({a for a in added if a}, key=len, reverse=True)
        self.fallback = regex.compile("|".join(regex.escape(a) for a in added)) if added else None
        self.chunks = pattern in SPACE_STARTS_A_PIECE
        self.glued = regex.compile(r"^ | $|\s | \s")  # a space at an end or beside other white space: no chunks
        self.store = _Store()
        self.checked, self.status = False, "word cache"
        self.fast_docs = self.slow_docs = self.chunked_docs = 0

    @classmethod
    def build(cls, tk) -> "WordCache | None":
        """A cache for backend tokenizer `tk` (tokenizers.Tokenizer), or None where its layout is not covered."""
        if os.environ.get("TUNE_WIZARD_WORD_CACHE", "").lower() in ("off", "0", "false"):
            return None
        try:
            spec = json.loads(tk.to_str())
        except Exception:  # noqa: BLE001 - a tokenizer that cannot serialise itself: use it as it is
            return None
        how = layout(spec)
        if isinstance(how, str):
            return None
        try:
            return cls(tk, *how, [a.get("content", "") for a in spec.get("added_tokens") or []])
        except Exception:  # noqa: BLE001 - a pattern the regex module cannot compile: use the tokenizer
            return None

    def _pieces(self, text: str) -> list[str]:
        split = self.ascii_split if self.ascii_split is not None and text.isascii() else self.split
        words = split.findall(text) if self.whole else [m.group() for m in split.finditer(text)]
        if sum(map(len, words)) != len(text):  # the pattern leaves gaps: Split(isolated) keeps them as pieces
            words, at = [], 0
            for m in split.finditer(text):
                if m.start() > at:
                    words.append(text[at:m.start()])
                words.append(m.group())
                at = m.end()
            if at < len(text):
                words.append(text[at:])
        return words  # an empty match (a pattern that allows one) maps to no ids, as in the tokenizer

    def _bpe(self, piece: str) -> list[int]:
        """The tokenizer's own model on one piece, mapped to the byte-level alphabet as its pre-tokenizer does."""
        return [t.id for t in self.model.tokenize(piece.encode("utf-8").decode("latin-1").translate(_ALPHABET))]

    def _fill(self, key) -> list[int]:
        """Ids of a key: str part -> " " + part; ("h", text) -> text; ("p", piece) -> piece; ("a", ids) -> ids."""
        if isinstance(key, str):
            return [i for w in self._pieces(" " + key) for i in self._bpe(w)]
        kind, what = key
        if kind == "a":
            return list(what)
        if kind == "p":
            return self._bpe(what)
        return [i for w in self._pieces(what) for i in self._bpe(w)]

    def _keys(self, text: str, keys: list) -> None:
        """Append the keys whose ids, one after the other, are text's ids."""
        ascii_ = text.isascii()
        if not ascii_ and self.normalizer is not None:
            text = self.normalizer.normalize_str(text)
        if not self.chunks:
            glued = True
        elif ascii_:
            glued = (text.startswith(" ") or text.endswith(" ") or "  " in text or " \n" in text or "\n " in text
                     or (("\t" in text or "\r" in text or "\x0b" in text or "\x0c" in text)
                         and any(pair in text for pair in _NEAR_SPACE)))
        else:
            glued = self.glued.search(text) is not None
        if glued:
            keys.extend(zip(repeat("p"), self._pieces(text)))
        else:  # chunks: the first part, then " " + each later part (SPACE_STARTS_A_PIECE)
            self.chunked_docs += 1
            parts = text.split(" ")
            keys.append(("h", parts[0]))
            keys.extend(islice(parts, 1, None))

    def _reference(self, texts: list[str]) -> list[list[int]]:
        enc = getattr(self.tk, "encode_batch_fast", None) or self.tk.encode_batch
        return [e.ids for e in enc(texts, add_special_tokens=False)] if texts else []

    def encode_flat(self, texts: list[str], prefix: list[int] | None = None, suffix: list[int] | None = None,
                    firsts=None, lasts=None):
        """(token count per text, all ids as one int32 array): each text's ids, the same as the tokenizer's
        (no special tokens added), with `prefix` before the texts whose firsts[i] is true and `suffix` after
        those whose lasts[i] is (default: all). None once the cache is off: the caller uses the tokenizer."""
        import numpy as np
        if self.status != "word cache":
            return None
        store = self.store
        if len(store.index) > CAPACITY or store.used > 16 * CAPACITY:  # between batches only: rows stay valid
            self.store = store = _Store()
        n = len(texts)
        firsts = firsts if firsts is not None else [True] * n
        lasts = lasts if lasts is not None else [True] * n
        pre, suf = ("a", tuple(prefix or ())), ("a", tuple(suffix or ()))
        slow = [i for i, t in enumerate(texts) if self.fallback.search(t)] if self.fallback is not None else []
        literal = dict(zip(slow, self._reference([texts[i] for i in slow])))  # added-token text: the tokenizer's
        keys: list = []
        bounds = np.zeros(n + 1, np.int64)
        for i, t in enumerate(texts):
            if firsts[i]:
                keys.append(pre)
            if i in literal:  # a one-off key: its ids go into the store once, then the key is forgotten
                keys.append(("a", tuple(literal[i])))
            else:
                self._keys(t, keys)
            if lasts[i]:
                keys.append(suf)
            bounds[i + 1] = len(keys)
        rows = np.fromiter(map(store.index.get, keys, repeat(-1)), np.int64, len(keys))
        index = store.index
        for k in np.flatnonzero(rows < 0).tolist():
            r = index.get(keys[k])
            rows[k] = r if r is not None else store.add(keys[k], self._fill(keys[k]))
        for i in literal:
            key = ("a", tuple(literal[i]))
            if key not in (pre, suf):
                index.pop(key, None)
        flat, lengths = store.gather(rows)
        ends = np.concatenate([[0], np.cumsum(lengths)])
        counts = ends[bounds[1:]] - ends[bounds[:-1]]
        self.fast_docs += n - len(slow)
        self.slow_docs += len(slow)
        if not self.checked:  # the first batch both ways, once
            self.checked = True
            got = np.split(flat, np.cumsum(counts)[:-1]) if n else []
            for i, (g, w) in enumerate(zip(got, self._reference(texts))):
                w = (list(prefix or ()) if firsts[i] else []) + w + (list(suffix or ()) if lasts[i] else [])
                if (g := g.tolist()) != w:
                    at = next((k for k, (x, y) in enumerate(zip(g, w)) if x != y), min(len(g), len(w)))
                    self.status = f"tokenizer (word cache off: document {i} of the first batch differs at token {at})"
                    return None
        return counts, flat

    def encode(self, texts: list[str]) -> list[list[int]]:
        """Token ids of each text (no special tokens added), the same as the tokenizer's."""
        import numpy as np
        got = self.encode_flat(texts, firsts=[False] * len(texts), lasts=[False] * len(texts))
        if got is None:
            return self._reference(texts)
        return [a.tolist() for a in np.split(got[1], np.cumsum(got[0])[:-1])] if texts else []
