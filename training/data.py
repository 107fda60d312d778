"""Reading domain text: the one place that knows the corpus file formats (pairs: training/pairs.py).

The document rule (the corpus scan and the CPT stage both read through `iter_units`, so they see the same
documents):
  .txt      documents separated by blank lines (a line holding only whitespace counts as blank). Other
            conventions through the cpt stage's `doc_separator`: "line" (one document per line, as the guide's
            `load_dataset("text")` reads it), "none" (the whole file is one document), or any literal string
            (say "<|endoftext|>" or "\n---\n").
  .md       one document per file.
  .jsonl    one document per line: its `text_field` (a string).
  .parquet  one document per row: its `text_field` column, read batch by batch.
Documents that hold only whitespace are skipped. Files are read in blocks of BLOCK_BYTES: no file, however
large, is ever held whole. A document longer than UNIT_CHARS characters is handed out in pieces of at most
UNIT_CHARS, cut at the piece's last whitespace (past its middle; else at UNIT_CHARS); each piece is then its
own unit for deduplication and the held-out split (so a single 40 MB document still has something to hold
out), and `first`/`last` say where the document's own start and end are (where the tokenizer's document
affixes go). Blank pieces before a document's first non-blank one are dropped; each unit's line is the line
where it starts. These units do not depend on where the read blocks fall (tests/unit/test_data.py checks
the streaming reader against a reading of the whole text).

"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path
from typing import Iterator, NamedTuple

BLOCK_BYTES = 4 << 20      # read size of .txt/.md files
UNIT_CHARS = 1 << 20       # longest piece of a document handed out at once
CHUNK_BYTES = UNIT_CHARS   # the old name, kept for callers
DOC_SEPARATORS = {"blank_line": r"\n[^\S\n]*\n\s*", "line": r"\n"}


class DataError(Exception):
    """Bad input data: one line naming the file (and line) and what to do. Exit status 2."""


class Meter:
    """Bytes of the corpus files consumed so far (for progress): the readers add to `done` as they read."""

    def __init__(self) -> None:
        self.done = 0


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


def separator_regex(doc_separator: str) -> re.Pattern | None:
    """The pattern between two documents of a .txt file; None: the file is one document."""
    if doc_separator == "none":
        return None
    return re.compile(DOC_SEPARATORS.get(doc_separator) or re.escape(doc_separator))


def _not_utf8(path: Path, data: bytes, e: UnicodeDecodeError, offset: int, line: int) -> DataError:
    line += data.count(b"\n", 0, e.start)
    bad = data[e.start:e.start + 4].hex(" ")
    return DataError(f"{path}:{line}: not UTF-8 text at byte {offset + e.start:,} (bytes {bad}); convert the file "
                     f"(e.g. iconv -f latin1 -t utf-8) or remove it from the corpus")


def _decoded(data: bytes, path: Path, offset: int, line: int, partial: bool) -> tuple[str, bytes]:
    """(text, rest): data as text; with partial=True a multi-byte character cut at the end is left in `rest`."""
    try:
        return data.decode("utf-8"), b""
    except UnicodeDecodeError as e:
        if partial and e.start >= len(data) - 3 and e.reason == "unexpected end of data":
            return data[:e.start].decode("utf-8"), data[e.start:]
        raise _not_utf8(path, data, e, offset, line) from None


def _cut(text: str, limit: int, start: int = 0) -> int:
    """Where to cut a too-long document text[start:]: the last whitespace before `limit` chars (else `limit`)."""
    cut = max(text.rfind(" ", start, start + limit), text.rfind("\n", start, start + limit)) - start
    return cut if cut > limit // 2 else limit


def _pieces(text: str) -> Iterator[tuple[str, bool, bool]]:
    """(piece, first, last) of one document held in memory (a .jsonl/.parquet row): _doc_units' pieces."""
    out: list = []
    _doc_units(text, 0, len(text), False, 0, out, lines=False)
    for _, s, e, first, last in out:
        yield text[s:e], first, last


def _window_ok(doc_separator: str) -> bool:
    """Whether a separator match found in the tail of a text is one that a scan from the start finds too: true
    for blank lines (a match ends where its run of whitespace ends), single newlines, and literals that
    cannot overlap themselves ("<|endoftext|>"; not "---", whose matches depend on where the scan began)."""
    if doc_separator in DOC_SEPARATORS:
        return True
    return not any(doc_separator[:k] == doc_separator[-k:] for k in range(1, len(doc_separator)))


def _last_boundary(buf: bytes, sep: re.Pattern, window_ok: bool, where: tuple) -> int:
    """The byte where the next document starts after the last separator match that ends before the end of
    buf (a match at the very end may go on in the next block); 0 when there is none. Decodes only the tail
    (16 KiB, 8x more each time it holds no separator) unless the separator needs the whole buffer."""
    w = 1 << 14 if window_ok else len(buf)
    while True:
        lo = max(0, len(buf) - w)
        while lo < len(buf) and 0x80 <= buf[lo] < 0xC0:  # start on a character
            lo += 1
        try:
            text, _ = _decoded(buf[lo:], *where, partial=True)
        except DataError:
            _decoded(buf, *where, partial=True)  # the same error, named from the start of the buffer
            raise
        last = 0
        for m in sep.finditer(text):
            if m.end() < len(text):
                last = m.end()
        if last:
            return lo + len(text[:last].encode("utf-8"))
        if lo == 0:
            return 0
        w *= 8


class Segment(NamedTuple):
    """A piece of a .txt/.md file that the document rule can split on its own (text_segments): it ends after
    a separator (end "sep": whole documents, the first perhaps the rest of one begun earlier, `started`),
    inside a document longer than UNIT_CHARS ("piece"), or at the end of the file ("file"). data: the bytes
    as read (str for a piece); line/offset: where it starts in the file. Small to send to a worker process."""
    path: str
    line: int
    offset: int
    data: bytes | str
    doc_separator: str | None
    started: bool
    end: str

    def text(self) -> str:
        """data as text (DataError naming the line and byte when it is not UTF-8)."""
        if isinstance(self.data, str):
            return self.data
        return _decoded(self.data, Path(self.path), self.offset, self.line, partial=False)[0]

    def units(self, lines: bool = True) -> tuple[str, list]:
        """(text, [(line, start, stop, first, last)]): its units as offsets into its text."""
        text = self.text()
        return text, segment_units(text, self.doc_separator, self.started, self.end, self.line, lines)


def text_segments(path: Path, doc_separator: str | None, meter: Meter | None = None,
                  block_bytes: int | None = None) -> Iterator[Segment]:
    """A .txt/.md file as consecutive Segments of about one read block (block_bytes, default BLOCK_BYTES),
    streaming. Only the tail of each block is decoded here: the corpus scan and the CPT data step decode and
    split segments in their worker processes (on two cores the parent was the scan's bottleneck);
    iter_units does it in this process."""
    sep = separator_regex(doc_separator) if doc_separator is not None else None
    window_ok = sep is not None and _window_ok(doc_separator)
    margin = UNIT_CHARS + min(4096, UNIT_CHARS // 4)
    carry, line, offset, started = b"", 1, 0, False
    name = str(path)
    with open(path, "rb") as f:
        while raw := f.read(block_bytes or BLOCK_BYTES):
            if meter is not None:
                meter.done += len(raw)
            buf = carry + raw
            cut = _last_boundary(buf, sep, window_ok, (path, offset, line)) if sep is not None else 0
            if cut:
                seg = buf[:cut]
                yield Segment(name, line, offset, seg, doc_separator, started, "sep")
                line, offset, started = line + seg.count(b"\n"), offset + cut, False
                buf = buf[cut:]
            carry = buf
            if len(carry) <= margin:
                continue
            # perhaps a document with no end in sight: pieces, keeping a margin for a separator across the edge
            text, rest = _decoded(carry, path, offset, line, partial=True)
            if len(text) <= margin:
                continue
            while len(text) > margin:
                c = _cut(text, UNIT_CHARS)
                piece, text = text[:c], text[c:]
                yield Segment(name, line, offset, piece, doc_separator, started, "piece")
                started = started or not piece.isspace()
                line, offset = line + piece.count("\n"), offset + len(piece.encode("utf-8"))
            carry = text.encode("utf-8") + rest
    if carry or started:
        yield Segment(name, line, offset, carry, doc_separator, started, "file")


def _doc_units(text: str, s: int, e: int, started: bool, line: int, out: list, lines: bool = True) -> None:
    """The units of the document (or its rest, when `started`) text[s:e]: pieces of at most UNIT_CHARS cut at
    whitespace; blank pieces before its first non-blank one are dropped (a blank document gives none)."""
    while True:
        c = e if e - s <= UNIT_CHARS else s + _cut(text, UNIT_CHARS, s)
        if started or (c > s and (not text[s].isspace() or not text[s:c].isspace())):
            out.append((line, s, c, not started, c == e))
            started = True
        if c == e:
            return
        line += text.count("\n", s, c) if lines else 0
        s = c


def segment_units(text: str, doc_separator: str | None, started: bool, end: str, line: int = 1,
                  lines: bool = True) -> list:
    """[(line, start, stop, first, last)]: the units of a Segment's text, as offsets into it.
    lines=False: every unit says `line` (counting lines costs more than the cutting; the scan needs none)."""
    out: list = []
    if end == "piece":
        if started or not text.isspace():
            out.append((line, 0, len(text), not started, False))
        return out
    sep = separator_regex(doc_separator) if doc_separator is not None else None
    if end == "sep":
        pos = 0
        for m in sep.finditer(text):
            _doc_units(text, pos, m.start(), started, line, out, lines)
            line += text.count("\n", pos, m.end()) if lines else 0
            pos, started = m.end(), False
        return out
    stop = len(text.rstrip("\r\n")) if sep is not None else len(text)  # the file's final newline ends it
    _doc_units(text, 0, stop, started, line, out, lines)
    return out


def _iter_text_units(path: Path, doc_separator: str | None, meter: Meter | None):
    """(line, piece, first, last) of a .txt/.md file, streaming."""
    for seg in text_segments(path, doc_separator, meter):
        text, units = seg.units()
        for ln, s, e, first, last in units:
            yield ln, text[s:e], first, last


def iter_units(files: list[Path], text_field: str = "text", doc_separator: str = "blank_line",
               meter: Meter | None = None, bad_rows: list | None = None) -> Iterator[tuple[Path, int, str, bool, bool]]:
    """(file, line or row where the document starts, text, first, last): documents by the rule above, in
    pieces of at most UNIT_CHARS. A bad .jsonl row raises DataError, or, when `bad_rows` is a list, is
    appended to it ("file:line: why") and skipped. Whitespace-only documents are skipped."""
    for path in files:  # hf: dataset ids arrive as their .jsonl snapshots (expand_data, training/hub_data.py)
        suffix = path.suffix.lower()
        if suffix in (".txt", ".md"):
            for ln, text, first, last in _iter_text_units(path, doc_separator if suffix == ".txt" else None, meter):
                yield path, ln, text, first, last
        elif suffix == ".jsonl":
            with open(path, "rb") as f:
                for ln, raw in enumerate(f, 1):
                    if meter is not None:
                        meter.done += len(raw)
                    if not raw.strip():
                        continue
                    why = None
                    try:
                        row = json.loads(raw)
                    except UnicodeDecodeError as e:
                        raise _not_utf8(path, raw, e, f.tell() - len(raw), ln) from None
                    except json.JSONDecodeError as e:
                        row, why = None, f"not valid JSON ({e.msg}); fix or delete that line"
                    if why is None and (not isinstance(row, dict) or not isinstance(row.get(text_field), str)):
                        why = f"no string field '{text_field}'; set text_field in the cpt stage to the field that holds the text"
                    if why is not None:
                        if bad_rows is None:
                            raise DataError(f"{path}:{ln}: {why}")
                        bad_rows.append(f"{path}:{ln}: {why}")
                        continue
                    if row[text_field].strip():
                        for piece, first, last in _pieces(row[text_field]):
                            yield path, ln, piece, first, last
        elif suffix == ".parquet":
            import pyarrow.parquet as pq
            try:
                pf = pq.ParquetFile(path)
            except Exception as e:  # pyarrow raises several types for a damaged file
                raise DataError(f"{path}: cannot be read as parquet ({str(e).splitlines()[0]})")
            if text_field not in pf.schema_arrow.names:
                raise DataError(f"{path}: no column '{text_field}' (columns: {', '.join(pf.schema_arrow.names)}); "
                                f"set text_field in the cpt stage")
            row, per_row = 0, path.stat().st_size / max(1, pf.metadata.num_rows)
            for batch in pf.iter_batches(columns=[text_field], batch_size=4096):
                if meter is not None:
                    meter.done += int(per_row * batch.num_rows)
                for v in batch.column(0).to_pylist():
                    row += 1
                    if isinstance(v, str) and v.strip():
                        for piece, first, last in _pieces(v):
                            yield path, row, piece, first, last
        else:
            raise DataError(f"{path}: unsupported file type '{suffix}'; use .txt, .md, .jsonl or .parquet")


def iter_documents(files: list[Path], text_field: str = "text", whole: bool = True,
                   doc_separator: str = "blank_line") -> Iterator[tuple[Path, int, str]]:
    """Yield (file, line-or-row number, text) per document (the rule above). With whole=False, documents
    longer than UNIT_CHARS come in pieces; with whole=True a long document is joined (held in memory)."""
    parts: list[str] = []
    start = 0
    for path, ln, text, first, last in iter_units(files, text_field, doc_separator):
        if not whole or (first and last):
            yield path, ln, text
            continue
        if first:
            start = ln
        parts.append(text)
        if last:
            yield path, start, "".join(parts)
            parts = []
