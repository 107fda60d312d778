"""Reading domain text and instruction pairs: the one place that knows the file formats.

Corpus documents: a .txt or .md file is one document (read in paragraph-aligned chunks so that a
10 GB file never sits in memory); a .jsonl line is one document (its `text_field`); a .parquet row is
one document (its `text_field` column, read batch by batch).

Pairs: one JSON object per line in one of three formats, detected per row:
  messages            {"messages": [{"role": "system|user|assistant", "content": "..."}, ...]}
  prompt_completion   {"prompt": "...", "completion": "..."}
  instruction         {"instruction": "...", "input": "...", "output": "..."}   (input optional)
Every valid row is normalised to the conversational prompt/completion form TRL trains on:
  {"prompt": [messages before the last assistant turn], "completion": [the last assistant turn]}
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

CHUNK_BYTES = 1 << 20
ROLES = {"system", "user", "assistant"}
PAIR_FORMATS = ("messages", "prompt_completion", "instruction")


class DataError(Exception):
    """Bad input data: one line naming the file (and line) and what to do. Exit status 2."""


def normalize_text(text: str) -> str:
    return " ".join(text.split()).lower()


def doc_hash(text: str) -> bytes:
    return hashlib.blake2b(normalize_text(text).encode("utf-8", "replace"), digest_size=16).digest()


def sha256_file(path: str | os.PathLike, bufsize: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(bufsize)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def sniff_text_file(path: Path) -> str | None:
    """None when the file looks like UTF-8 text, else the reason it does not."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8192)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if size == 0:
        return "is empty"
    if path.suffix.lower() == ".parquet":
        return None if head[:4] == b"PAR1" else "is not a parquet file (no PAR1 magic)"
    if b"\x00" in head:
        return "is binary, not text"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.start < len(head) - 4:  # a multi-byte character cut at the 8 KiB edge is fine
            return "is not UTF-8 text"
    return None


def _iter_text_file(path: Path) -> Iterator[tuple[str, bool]]:
    """(chunk, is_last_chunk_of_document) for a plain text file, split at paragraph breaks near 1 MiB."""
    with open(path, encoding="utf-8", errors="strict") as f:
        carry = ""
        while True:
            block = f.read(CHUNK_BYTES)
            if not block:
                if carry:
                    yield carry, True
                return
            carry += block
            cut = carry.rfind("\n\n")
            if cut > 0 and len(carry) >= CHUNK_BYTES:
                yield carry[:cut + 2], False
                carry = carry[cut + 2:]


def iter_documents(files: list[Path], text_field: str = "text", whole: bool = True) -> Iterator[tuple[Path, int, str]]:
    """Yield (file, line-or-row number, text). With whole=False, .txt/.md files come in chunks (number 0..)."""
    from training.hub_data import local_file  # an hf: dataset id reads as its .jsonl snapshot
    for path in map(local_file, files):
        suffix = path.suffix.lower()
        if suffix in (".txt", ".md"):
            try:
                if whole:
                    yield path, 1, path.read_text(encoding="utf-8")
                else:
                    for i, (chunk, _) in enumerate(_iter_text_file(path)):
                        yield path, i, chunk
            except UnicodeDecodeError:
                raise DataError(f"{path}: is not UTF-8 text; convert it or remove it from the corpus")
        elif suffix == ".jsonl":
            with open(path, encoding="utf-8", errors="replace") as f:
                for ln, line in enumerate(f, 1):
                    if not line.strip():
                        continue
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError as e:
                        raise DataError(f"{path}:{ln}: not valid JSON ({e.msg}); fix or delete that line")
                    if not isinstance(row, dict) or not isinstance(row.get(text_field), str):
                        raise DataError(f"{path}:{ln}: no string field '{text_field}'; set text_field in the cpt stage "
                                        f"to the field that holds the text")
                    yield path, ln, row[text_field]
        elif suffix == ".parquet":
            import pyarrow.parquet as pq
            try:
                pf = pq.ParquetFile(path)
            except Exception as e:  # pyarrow raises several types for a damaged file
                raise DataError(f"{path}: cannot be read as parquet ({str(e).splitlines()[0]})")
            if text_field not in pf.schema_arrow.names:
                raise DataError(f"{path}: no column '{text_field}' (columns: {', '.join(pf.schema_arrow.names)}); "
                                f"set text_field in the cpt stage")
            row = 0
            for batch in pf.iter_batches(columns=[text_field], batch_size=4096):
                for v in batch.column(0).to_pylist():
                    row += 1
                    if isinstance(v, str):
                        yield path, row, v
        else:
            raise DataError(f"{path}: unsupported file type '{suffix}'; use .txt, .md, .jsonl or .parquet")


# ---------------------------------------------------------------- pairs

def detect_pair_format(row: dict) -> str | None:
    if "messages" in row:
        return "messages"
    if "prompt" in row and "completion" in row:
        return "prompt_completion"
    if "instruction" in row and "output" in row:
        return "instruction"
    return None


def normalize_pair(row: dict, fmt: str) -> tuple[dict | None, str | None]:
    """(normalised row, None) or (None, reason)."""
    if fmt == "messages":
        msgs = row.get("messages")
        if not isinstance(msgs, list) or not msgs:
            return None, "'messages' must be a non-empty list"
        clean = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("content"), str):
                return None, f"messages[{i}] needs a string 'content'"
            if m.get("role") not in ROLES:
                return None, f"messages[{i}] has role {m.get('role')!r}; use system, user or assistant"
            clean.append({"role": m["role"], "content": m["content"]})
        last_a = max((i for i, m in enumerate(clean) if m["role"] == "assistant"), default=None)
        if last_a is None:
            return None, "no assistant message to learn from"
        if not any(m["role"] == "user" for m in clean[:last_a]):
            return None, "no user message before the last assistant message"
        if not clean[last_a]["content"].strip():
            return None, "the last assistant message is empty"
        return {"prompt": clean[:last_a], "completion": [clean[last_a]]}, None
    if fmt == "prompt_completion":
        p, c = row.get("prompt"), row.get("completion")
        if not isinstance(p, str) or not isinstance(c, str):
            return None, "'prompt' and 'completion' must be strings"
        if not p.strip() or not c.strip():
            return None, "empty prompt or completion"
        return {"prompt": [{"role": "user", "content": p}], "completion": [{"role": "assistant", "content": c}]}, None
    if fmt == "instruction":
        ins, inp, out = row.get("instruction"), row.get("input", ""), row.get("output")
        if not isinstance(ins, str) or not isinstance(out, str) or not isinstance(inp, (str, type(None))):
            return None, "'instruction', 'input' and 'output' must be strings"
        if not ins.strip() or not out.strip():
            return None, "empty instruction or output"
        user = ins if not inp else f"{ins}\n\n{inp}"
        return {"prompt": [{"role": "user", "content": user}], "completion": [{"role": "assistant", "content": out}]}, None
    return None, f"unknown format {fmt}"


@dataclass
class PairsResult:
    rows: list[dict] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)
    invalid: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), all of them
    blank_lines: int = 0


def read_pairs(path: Path, fmt: str = "auto") -> PairsResult:
    from training.hub_data import local_file  # an hf: dataset id reads as its .jsonl snapshot
    path = local_file(path)
    res = PairsResult()
    try:
        f = open(path, encoding="utf-8")
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror})")
    with f:
        try:
            for ln, line in enumerate(f, 1):
                if not line.strip():
                    res.blank_lines += 1
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    res.invalid.append((ln, f"not valid JSON ({e.msg})"))
                    continue
                if not isinstance(row, dict):
                    res.invalid.append((ln, "not a JSON object"))
                    continue
                rf = detect_pair_format(row) if fmt == "auto" else fmt
                if rf is None:
                    res.invalid.append((ln, "no known fields (messages | prompt+completion | instruction+output)"))
                    continue
                norm, why = normalize_pair(row, rf)
                if norm is None:
                    res.invalid.append((ln, why))
                    continue
                res.formats[rf] = res.formats.get(rf, 0) + 1
                res.rows.append(norm)
        except UnicodeDecodeError:
            raise DataError(f"{path}: is not UTF-8 text; is this the pairs file?")
    return res


def load_pairs_strict(path: Path, fmt: str = "auto", skip_invalid: bool = False) -> PairsResult:
    res = read_pairs(path, fmt)
    if res.invalid and not skip_invalid:
        ln, why = res.invalid[0]
        more = f" (and {len(res.invalid) - 1} more bad rows)" if len(res.invalid) > 1 else ""
        raise DataError(f"{path}:{ln}: {why}{more}; fix the rows or set skip_invalid_rows: true in the sft stage")
    if not res.rows:
        raise DataError(f"{path}: no valid pairs; expected messages, prompt/completion or instruction/output rows")
    return res
