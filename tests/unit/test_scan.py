"""Corpus and pairs scans on small generated data."""
from __future__ import annotations

import json

import pytest

from synth_data import write_corpus, write_pairs
from training.plan import scan as scan_mod
from training.data import normalize_text
from training.plan.pairs_scan import pad_efficiency, scan_pairs
from training.plan.scan import CorpusFacts, normalized_bytes, parse_size, scan_corpus


@pytest.mark.parametrize("text", ["Hello  World\n\n\tFOO bar ", "a\x1cb\x1f  c", "  ", "Straße  ÉTÉ\u00a0x\u2003y",
                                  "line\r\nnext\x0bv\x0cw"])
def test_fast_normalisation_equals_doc_hash_normalisation(text):
    assert normalized_bytes(text.encode()) == normalize_text(text).encode()


def test_exact_duplicates_counted_over_all_documents_and_formats(tmp_path):
    write_corpus(tmp_path / "c", 0.2, seed=1)
    docs = sorted((tmp_path / "c").glob("*.txt"))
    first = docs[0].read_text()
    (tmp_path / "c" / "zz-copy.md").write_text("  " + first.upper().replace(" ", "\n") + "\n")  # same after normalising
    with open(tmp_path / "c" / "rows.jsonl", "w") as f:
        f.write(json.dumps({"text": docs[1].read_text()}) + "\n")
        f.write("not json\n")
    (tmp_path / "c" / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    f = scan_corpus([str(tmp_path / "c")])
    assert f.documents == len(docs) + 2
    assert f.exact_duplicates == 2
    assert f.bad_rows == 1 and f.bad_row_examples[0].endswith("rows.jsonl:2: not JSON with a string 'text'")
    assert any("blob.txt: is binary" in s for s in f.skipped)
    assert f.unique_bytes == sum(len(d.read_bytes()) for d in docs)
    assert f.tokens_method == "bytes/4 guess" and f.tokens == pytest.approx(f.clean_bytes / 4)


def test_near_duplicates_found_in_the_sample(tmp_path):
    write_corpus(tmp_path / "c", 0.1, seed=2)
    docs = sorted((tmp_path / "c").glob("*.txt"))[:10]
    for i, d in enumerate(docs):
        (tmp_path / "c" / f"near-{i}.txt").write_text(d.read_text() + " one two three")
    f = scan_corpus([str(tmp_path / "c")])
    assert f.near_dup_sample == f.documents
    assert f.near_dup_rate == pytest.approx(10 / f.documents, abs=2 / f.documents)
    assert f.clean_bytes < f.unique_bytes


def test_two_processes_and_byte_ranges_give_the_same_answer(tmp_path, monkeypatch):
    write_corpus(tmp_path / "c", 1.0, seed=3, jsonl=True, files=3)
    one = scan_corpus([str(tmp_path / "c")], processes=1)
    monkeypatch.setattr(scan_mod, "UNIT_BYTES", 50_000)  # many byte ranges per .jsonl file
    seen = []
    two = scan_corpus([str(tmp_path / "c")], processes=2, progress=lambda d, t, w: seen.append((d, t)))
    for k in ("documents", "exact_duplicates", "unique_bytes", "total_bytes", "near_dup_rate"):
        assert getattr(one, k) == getattr(two, k), k
    assert len(seen) > 10 and seen[-1][0] == seen[-1][1]


def test_tokens_measured_with_the_model_tokenizer(tmp_path, demo_home):
    from training.demo import ensure_assets
    tok_dir = ensure_assets() / "tiny-llama"
    write_corpus(tmp_path / "c", 0.05, seed=4)
    f = scan_corpus([str(tmp_path / "c")], tokenizer_dir=str(tok_dir))
    assert f.tokens_method.startswith("tokenizer ")
    assert f.tokens == pytest.approx(f.clean_bytes / f.bytes_per_token)


def test_declared_sizes():
    assert parse_size("50GB") == 50e9 and parse_size("800 MB") == 800e6 and parse_size("1.5e9") == 1.5e9
    c = CorpusFacts.from_declared(parse_size("2GB"))
    assert c.clean_mb == 2000 and c.declared


def test_pairs_scan_counts_formats_invalid_rows_and_duplicates(tmp_path):
    p = write_pairs(tmp_path / "p.jsonl", 30)
    with open(p, "a") as f:
        f.write(json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}) + "\n")
        f.write(json.dumps({"instruction": "do", "input": "", "output": "done"}) + "\n")
        f.write(json.dumps({"instruction": "do", "input": "", "output": "done"}) + "\n")
        f.write("{broken\n")
        f.write(json.dumps({"prompt": "", "completion": "x"}) + "\n")
    f = scan_pairs(str(p))
    assert f.valid == 33 and f.formats == {"prompt_completion": 30, "messages": 1, "instruction": 2}
    assert f.invalid == 2 and [r["line"] for r in f.invalid_rows] == [34, 35]
    assert f.duplicates == 1
    assert f.prompt_tokens["p50"] > 0 and f.response_tokens["max"] >= f.response_tokens["p50"]
    assert 0 < f.pad_efficiency <= 1 and f.max_len % 64 == 0


def test_pad_efficiency():
    assert pad_efficiency([10, 10, 10, 10]) == 1.0
    assert pad_efficiency([10, 30, 10, 30], batch=4) == pytest.approx(80 / 120)
