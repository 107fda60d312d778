"""Data readers: pair formats, invalid rows with line numbers, corpus documents per format."""
from __future__ import annotations

import json

import pytest

from training.data import DataError, iter_documents, iter_units, sniff_text_file
from training.pairs import load_pairs_strict, read_pairs

from synth_data import random_corpus_text


def jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_three_pair_formats_normalise_to_prompt_completion(tmp_path):
    p = jsonl(tmp_path / "p.jsonl", [
        {"messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                      {"role": "assistant", "content": "hello"}]},
        {"prompt": "2+2?", "completion": "4"},
        {"instruction": "Translate", "input": "chat", "output": "cat"},
        {"instruction": "Say yes", "output": "yes"},
    ])
    res = read_pairs(p)
    assert res.formats == {"messages": 1, "prompt_completion": 1, "instruction": 2}
    assert res.rows[0]["prompt"][0] == {"role": "system", "content": "be brief"}
    assert res.rows[0]["completion"] == [{"role": "assistant", "content": "hello"}]
    assert res.rows[2]["prompt"][0]["content"] == "Translate\n\nchat"
    assert res.rows[3]["prompt"][0]["content"] == "Say yes"
    assert not res.invalid


def test_invalid_rows_carry_line_numbers_and_reasons(tmp_path):
    p = jsonl(tmp_path / "p.jsonl", [
        {"prompt": "ok", "completion": "fine"},
        "{broken",
        {"messages": [{"role": "robot", "content": "x"}, {"role": "assistant", "content": "y"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {"foo": 1},
        "[1, 2]",
        {"prompt": "", "completion": "x"},
    ])
    res = read_pairs(p)
    assert len(res.rows) == 1
    lines = dict(res.invalid)
    assert set(lines) == {2, 3, 4, 5, 6, 7}
    assert "JSON" in lines[2] and "robot" in lines[3] and "assistant" in lines[4]
    assert "known fields" in lines[5] and "object" in lines[6] and "empty" in lines[7]
    with pytest.raises(DataError, match=r"p\.jsonl:2: .*and 5 more"):
        load_pairs_strict(p)
    assert len(load_pairs_strict(p, skip_invalid=True).rows) == 1


def test_documents_from_each_corpus_format(tmp_path):
    (tmp_path / "a.txt").write_text("first document\nstill first\n\n \n\nsecond document\n")
    (tmp_path / "d.md").write_text("# one file\n\nis one document")
    jsonl(tmp_path / "b.jsonl", [{"text": "row one"}, {"text": "row two"}])
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"text": ["pq one", "pq two", None]}), tmp_path / "c.parquet")
    docs = list(iter_documents([tmp_path / "a.txt", tmp_path / "d.md", tmp_path / "b.jsonl", tmp_path / "c.parquet"]))
    assert [d[2].strip() for d in docs] == ["first document\nstill first", "second document", "# one file\n\nis one document",
                                            "row one", "row two", "pq one", "pq two"]
    assert [d[1] for d in docs[:2]] == [1, 6] and [d[1] for d in docs[3:5]] == [1, 2]


@pytest.mark.parametrize("sep,expect", [("line", ["a", "b", "c", "d"]), ("none", ["a\nb\n\nc\nd"]),
                                        ("---", ["a\nb\n\nc", "d"]), ("blank_line", ["a\nb", "c\nd"])])
def test_doc_separator_conventions(tmp_path, sep, expect):
    (tmp_path / "a.txt").write_text("a\nb\n\nc---d")
    (tmp_path / "a.txt").write_text("a\nb\n\nc---d" if sep == "---" else "a\nb\n\nc\nd")
    assert [t.strip() for _, _, t in iter_documents([tmp_path / "a.txt"], doc_separator=sep)] == expect


def test_documents_stream_across_block_edges_and_long_ones_come_in_pieces(tmp_path, monkeypatch):
    import training.data as d
    monkeypatch.setattr(d, "BLOCK_BYTES", 7)   # separators and characters cut at every block edge
    monkeypatch.setattr(d, "UNIT_CHARS", 40)
    long_doc = " ".join(f"w{i}" for i in range(60))
    (tmp_path / "a.txt").write_text("héllo wörld\n\n\n" + long_doc + "\n  \nlast one")
    units = list(iter_units([tmp_path / "a.txt"]))
    assert units[0][2:] == ("héllo wörld", True, True) and units[-1][2:] == ("last one", True, True)
    pieces = units[1:-1]
    assert len(pieces) > 2 and all(len(p[2]) <= 40 for p in pieces)
    assert [(p[3], p[4]) for p in pieces] == [(True, False)] + [(False, False)] * (len(pieces) - 2) + [(False, True)]
    assert "".join(p[2] for p in pieces) == long_doc and {p[1] for p in pieces} == {4}
    assert [t for _, _, t in iter_documents([tmp_path / "a.txt"])][1] == long_doc


def test_non_utf8_deep_in_a_file_names_the_line_and_byte(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes(b"fine text\n" * 2000 + "caf\xe9".encode("latin-1") + b"\n")
    with pytest.raises(DataError, match=r"a\.txt:2001: not UTF-8 text at byte 20,003 \(bytes e9 0a\); convert"):
        list(iter_units([p]))


def test_corpus_jsonl_without_text_field_names_the_line(tmp_path):
    p = jsonl(tmp_path / "b.jsonl", [{"text": "fine"}, {"body": "wrong field"}])
    with pytest.raises(DataError, match=r"b\.jsonl:2: no string field 'text'"):
        list(iter_documents([p]))


def test_sniff_finds_empty_binary_and_non_utf8(tmp_path):
    (tmp_path / "e.txt").write_text("")
    (tmp_path / "b.txt").write_bytes(b"\x00\x01\x02binary")
    (tmp_path / "l.txt").write_bytes("caf\xe9 au lait".encode("latin-1") + b" " * 20)
    (tmp_path / "ok.md").write_text("# fine\n")
    (tmp_path / "fake.parquet").write_text("not parquet")
    assert sniff_text_file(tmp_path / "e.txt") == "is empty"
    assert sniff_text_file(tmp_path / "b.txt") == "is binary, not text"
    assert sniff_text_file(tmp_path / "l.txt") == "is not UTF-8 text"
    assert sniff_text_file(tmp_path / "ok.md") is None
    assert "parquet" in sniff_text_file(tmp_path / "fake.parquet")


# ---------------------------------------------------------------- the document rule, against a whole-text reading

def rule_units(text, doc_separator, unit_chars):
    """[(line, piece, first, last)] of a .txt file's whole text by the rule in data.py's docstring, read in one
    piece: documents between separator matches (a match that ends the file is its final newline, not a
    separator; the final newlines are not part of the last document), each cut into pieces of at most
    unit_chars at the last whitespace of the piece (past its middle, else at unit_chars); blank pieces before a
    document's first non-blank one are dropped; every piece says the line where it starts."""
    from training.data import separator_regex
    sep = separator_regex(doc_separator)
    bounds, pos = [], 0
    for m in (sep.finditer(text) if sep is not None else ()):
        if m.end() == len(text):
            break
        bounds.append((pos, m.start()))
        pos = m.end()
    tail = text[pos:].rstrip("\r\n") if sep is not None else text[pos:]
    bounds.append((pos, pos + len(tail)))
    out = []
    for s, e in bounds:
        pieces = []
        while e - s > unit_chars:
            head = text[s:s + unit_chars]
            c = max(head.rfind(" "), head.rfind("\n"))
            c = c if c > unit_chars // 2 else unit_chars
            pieces.append((s, s + c))
            s += c
        pieces.append((s, e))
        while pieces and (pieces[0][0] == pieces[0][1] or text[pieces[0][0]:pieces[0][1]].isspace()):
            pieces.pop(0)
        out += [(1 + text.count("\n", 0, a), text[a:b], i == 0, i == len(pieces) - 1) for i, (a, b) in enumerate(pieces)]
    return out


def test_streamed_documents_equal_a_whole_text_reading(tmp_path, monkeypatch):
    """Read in blocks of 3-50 bytes (separators, CRLFs and multi-byte characters cut at every edge), every
    separator convention, pieces of 60 characters: the units are the rule's, line numbers included."""
    import random
    import training.data as d
    monkeypatch.setattr(d, "UNIT_CHARS", 60)
    p = tmp_path / "a.txt"
    for seed in range(600):
        rng = random.Random(seed)
        sep = rng.choice(["blank_line", "line", "none", "---", "<|endoftext|>", "\n---\n"])
        literal = sep if sep not in ("blank_line", "line", "none") else None
        text = random_corpus_text(rng, rng.randint(0, 80), literal, long_blanks=sep in ("line", "none"))
        monkeypatch.setattr(d, "BLOCK_BYTES", rng.randint(3, 50))
        p.write_bytes(text.encode())
        got = [u[1:] for u in iter_units([p], doc_separator=sep)]
        assert got == rule_units(text, sep, 60), (seed, sep, d.BLOCK_BYTES, text)
