"""Corpus and pairs scans on small generated data."""
from __future__ import annotations

import json

import pytest

from synth_data import write_corpus, write_near_dup_corpus, write_pairs
from training.plan import scan as scan_mod
from training.data import normalize_text
from training.plan.pairs_scan import pad_efficiency, scan_pairs
from training.plan.scan import CorpusFacts, normalized_bytes, parse_size, scan_corpus


@pytest.mark.parametrize("text", ["Hello  World\n\n\tFOO bar ", "a\x1cb\x1f  c", "  ", "Straße  ÉTÉ\u00a0x\u2003y",
                                  "line\r\nnext\x0bv\x0cw"])
def test_fast_normalisation_equals_doc_hash_normalisation(text):
    assert normalized_bytes(text.encode()) == normalize_text(text).encode()


def test_minhash_signature_of_a_document_does_not_depend_on_its_batch():
    """A document's signature is a function of its own words: the same alone or among others, whatever
    their lengths (empty documents, fewer than 5 words, words longer than the 24 bytes read whole)."""
    import numpy as np
    from training.dedup import jaccard_estimate, signatures
    docs = [b"the cat sat on the mat today", b"", b"a b", b"x", b"one two three four five six seven eight",
            b"supercalifragilisticexpialidocious and anotherverylongwordthatgoesonpast24bytes end",
            b"supercalifragilisticexpialidocious and anotherverylongwordthatgoesonpastXXbytes end"]
    together = signatures(docs)
    for i, d in enumerate(docs):
        assert (signatures([d])[0] == together[i]).all(), d
    assert (together[1] == 0xFFFFFFFF).all() and (together[2] != 0xFFFFFFFF).all()
    assert jaccard_estimate(together[5], together[6]) < 1.0  # a change in a long word's middle is seen
    assert jaccard_estimate(together[0], signatures([docs[0]])[0]) == 1.0
    assert not (together[2] == together[3]).all() and np.unique(together[:, 0]).size >= 5


def test_batch_normalisation_and_keys_equal_one_by_one():
    """normalized_batch normalises a batch's ASCII documents together (one translate, numpy for the few with
    stray whitespace); every norm and key must equal normalize_text's, one document at a time."""
    import random
    from training.dedup import exact_key, exact_keys, normalized_batch
    from synth_data import random_corpus_text
    rng = random.Random(5)
    for _ in range(200):
        texts = [random_corpus_text(rng, rng.randint(0, 25)) for _ in range(rng.randint(1, 12))]
        if rng.random() < 0.4:  # all ASCII: the batch path for every document
            texts = [t.encode("ascii", "ignore").decode() for t in texts]
        texts += rng.sample(["", "  ", "a\x1cb\x1f  c", " lead", "trail ", "x\x0by"], 2)
        norms, sizes = normalized_batch(texts)
        assert [bytes(n) for n in norms] == [normalize_text(t).encode() for t in texts]
        assert sizes.tolist() == [len(t.encode()) for t in texts]
        assert exact_keys(texts).tolist() == [exact_key(normalize_text(t).encode()) for t in texts]


def test_scan_batch_in_parts_equals_at_once(monkeypatch):
    """scan_batch works through a batch ~1 MB at a time (faster); the parts must not change any key."""
    import random
    import numpy as np
    from training import dedup
    from synth_data import random_corpus_text
    rng = random.Random(9)
    texts = [random_corpus_text(rng, rng.randint(0, 40)) for _ in range(120)] + ["", "x" * 500]
    whole = dedup.scan_batch(texts)
    monkeypatch.setattr(dedup, "SUB_BATCH_CHARS", 50)
    parts = dedup.scan_batch(texts)
    assert all(a.dtype == b.dtype and np.array_equal(a, b) for a, b in zip(whole, parts))
    assert [len(x) for x in dedup.scan_batch([])] == [0, 0, 0]


def test_densify_fills_each_empty_bin_from_the_next_full_one():
    """_densify works on the empty cells of the whole batch at once; the reference walks each row."""
    import numpy as np
    from training.dedup import NUM_BINS, _EMPTY, _densify
    rng = np.random.default_rng(0)
    for _ in range(60):
        n = int(rng.integers(1, 12))
        sig = rng.integers(0, 2**32 - 1, size=(n, NUM_BINS), dtype=np.uint32)
        sig[rng.random((n, NUM_BINS)) < rng.choice([0.0, 0.05, 0.6, 0.99])] = _EMPTY
        sig[rng.integers(0, n)] = _EMPTY if rng.random() < 0.3 else sig[rng.integers(0, n)]
        want = sig.copy()
        for r in range(n):
            full = [b for b in range(NUM_BINS) if sig[r, b] != _EMPTY]
            for b in range(NUM_BINS):
                if sig[r, b] == _EMPTY and full:
                    donor = min(full, key=lambda f: (f - b) % NUM_BINS)
                    want[r, b] = (int(sig[r, donor]) + ((donor - b) % NUM_BINS) * 0x9E3779B1) % 2**32
        assert (_densify(sig.copy()) == want).all()


def test_rows_store_keeps_order_across_chunks():
    import numpy as np
    from training.dedup import Rows, redundant
    rows, flat = Rows(np.uint64, 2, chunk_rows=5), Rows(np.uint64, chunk_rows=5)
    assert rows.array().shape == (0, 2) and rows.parts() == [] and flat.array().shape == (0,)
    data = np.arange(26, dtype=np.uint64).reshape(13, 2)
    for a, b in ((0, 3), (3, 4), (4, 12), (12, 13)):  # batches that straddle chunk edges
        rows.add(data[a:b])
        flat.add(data[a:b, 0])
    assert rows.n == 13 and [len(p) for p in rows.parts()] == [5, 5, 3]
    assert (rows.array() == data).all() and (flat.array() == data[:, 0]).all()
    keys = np.array([[1, 2], [3, 4], [1, 9], [7, 8], [5, 4], [6, 6]], np.uint64)  # 0~2 (band 0), 1~4 (band 1)
    store = Rows(np.uint64, 2, chunk_rows=4)
    store.add(keys)
    assert redundant(store.parts()).tolist() == [False, False, True, False, True, False] == redundant(keys).tolist()


def test_exact_duplicates_counted_over_all_documents_and_formats(tmp_path):
    c = tmp_path / "c"
    c.mkdir()
    docs = ["The first document, about leases.", "A second one\nover two lines.", "Third: notices and fees."]
    (c / "a.txt").write_text("\n\n".join(docs) + "\n")
    (c / "zz-copy.md").write_text("  " + docs[0].upper().replace(" ", "\n") + "\n")  # the same after normalising
    with open(c / "rows.jsonl", "w") as f:
        f.write(json.dumps({"text": docs[1]}) + "\n")
        f.write("not json\n")
    (c / "blob.txt").write_bytes(b"\x00\x01\x02binary")
    f = scan_corpus([str(c)], processes=1)
    assert f.documents == 5 and f.exact_duplicates == 2 and f.near_duplicates == 0
    assert f.bad_rows == 1 and f.bad_row_examples[0].startswith(f"{c / 'rows.jsonl'}:2: not valid JSON")
    assert any("blob.txt: is binary" in s for s in f.skipped)
    assert f.unique_bytes == sum(len(d.encode()) for d in docs)
    assert f.tokens_method == "bytes/4 guess" and f.tokens == pytest.approx(f.clean_bytes / 4)


@pytest.mark.parametrize("fmt", ["jsonl", "txt"])
def test_near_duplicate_share_measured_on_every_document(tmp_path, fmt):
    """1,000 documents, 30% of them copies with 1% of the words changed, shuffled across 8 files: the scan
    reports 30% +-5 points (a sample of 1,000 out of N would see about 30% x 1,000/N)."""
    copies = write_near_dup_corpus(tmp_path / "c", 1000, 0.3, seed=11, fmt=fmt)
    f = scan_corpus([str(tmp_path / "c")], processes=2)
    assert f.documents == 1000 and f.exact_duplicates == 0 and f.near_dup_sample == 1000
    assert f.near_dup_rate == pytest.approx(copies / 1000, abs=0.05)
    assert f.clean_bytes < 0.8 * f.unique_bytes


def test_unrelated_documents_are_not_near_duplicates(tmp_path):
    write_corpus(tmp_path / "c", 0.5, seed=2, jsonl=True, files=3)
    f = scan_corpus([str(tmp_path / "c")], processes=1)
    assert f.documents > 100 and f.near_duplicates == 0 and f.clean_bytes == f.unique_bytes


def test_two_processes_give_the_same_answer(tmp_path, monkeypatch):
    write_near_dup_corpus(tmp_path / "c", 300, 0.2, seed=3, files=3)
    one = scan_corpus([str(tmp_path / "c")], processes=1)
    monkeypatch.setattr(scan_mod, "BATCH_CHARS", 20_000)  # many batches
    seen = []
    two = scan_corpus([str(tmp_path / "c")], processes=2, progress=lambda d, t, w: seen.append((d, t)))
    for k in ("documents", "exact_duplicates", "near_duplicates", "unique_bytes", "total_bytes", "clean_bytes"):
        assert getattr(one, k) == getattr(two, k), k
    assert len(seen) > 10 and seen[-1][0] == seen[-1][1]


def test_a_file_not_utf8_past_its_head_is_skipped_with_the_line(tmp_path):
    c = tmp_path / "c"
    c.mkdir()
    (c / "good.txt").write_text("one document\n\nanother one\n")
    (c / "late.txt").write_bytes(b"fine\n" * 3000 + b"\xff\xfe broken\n")
    f = scan_corpus([str(c)], processes=1)
    assert any(s.startswith(f"{c / 'late.txt'}:3001: not UTF-8 text") for s in f.skipped), f.skipped
    assert f.documents >= 2


def test_a_worker_that_finds_a_file_not_utf8_stops_its_count(tmp_path, monkeypatch):
    """The bad byte lies deep in a block, past the tail the parent decodes: a worker finds it. The file is
    skipped with its line; its documents from the blocks before count, none after; other files are whole."""
    import training.data as d
    monkeypatch.setattr(d, "BLOCK_BYTES", 1 << 17)
    monkeypatch.setattr(scan_mod, "BATCH_CHARS", 1 << 16)
    c = tmp_path / "c"
    c.mkdir()
    (c / "a-good.txt").write_text("".join(f"good document {i}\n\n" for i in range(500)))
    body = "".join(f"fine document number {i}\n\n" for i in range(20_000))
    cut = len(body) // 2
    (c / "b-late.txt").write_bytes(body[:cut].encode() + b"\xff\xfe broken\n\n" + body[cut:].encode())
    (c / "c-good.txt").write_text("".join(f"other document {i}\n\n" for i in range(300)))
    line = body[:cut].count("\n") + 1
    before = body[:(cut // (1 << 17)) * (1 << 17)].count("\n\n")  # documents of the whole blocks before the bad one
    assert len(list(d.text_segments(c / "b-late.txt", "blank_line"))) > 3  # the parent reads on: it is the workers'
    for procs in (1, 2):
        f = scan_corpus([str(c)], processes=procs)
        assert [s for s in f.skipped if "b-late.txt" in s] == [
            f"{c / 'b-late.txt'}:{line}: not UTF-8 text at byte {cut:,} (bytes ff fe 20 62); convert the file "
            f"(e.g. iconv -f latin1 -t utf-8) or remove it from the corpus; skipped"]
        assert 800 + before - 2 <= f.documents <= 800 + before, (procs, f.documents, before)


def test_scan_units_are_the_training_units(tmp_path, monkeypatch):
    """The workers cut .txt/.md segments into documents; the scan must count exactly iter_units' units."""
    import random
    import training.data as d
    from synth_data import random_corpus_text
    monkeypatch.setattr(d, "UNIT_CHARS", 200)
    monkeypatch.setattr(d, "BLOCK_BYTES", 97)
    monkeypatch.setattr(scan_mod, "BATCH_CHARS", 300)
    rng = random.Random(7)
    c = tmp_path / "c"
    c.mkdir()
    for i in range(4):
        (c / f"t{i}.txt").write_text(random_corpus_text(rng, 400, "<|endoftext|>"))
    (c / "m.md").write_text(random_corpus_text(rng, 300))
    (c / "r.jsonl").write_text("".join(json.dumps({"text": random_corpus_text(rng, 60)}) + "\n" for _ in range(5)))
    for sep in ("blank_line", "line", "<|endoftext|>"):
        units = [u[2] for u in d.iter_units(sorted(c.iterdir()), doc_separator=sep)]
        for procs in (1, 2):
            f = scan_corpus([str(c)], processes=procs, doc_separator=sep)
            assert f.documents == len(units) and f.total_bytes == sum(len(u.encode()) for u in units), (sep, procs)


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
