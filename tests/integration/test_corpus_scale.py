"""Real corpora as users bring them (issue 12): one big .txt file, one long document, near copies, bad files.
The CPT runs train the demo's tiny model for real; the data-step tests call training/runtime/prepare.py
with the demo's real tokenizer and read back the Arrow blocks it wrote."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import cli, events_of, only_run, tiny_recipe, write_recipe
from synth_data import write_corpus, write_near_dup_corpus

pytestmark = pytest.mark.integration


def one_big_txt(folder: Path, mb: float, seed: int = 5) -> Path:
    """The guide's shape: one corpus.txt, documents (paragraph runs joined) separated by blank lines."""
    write_corpus(folder / "src", mb, seed=seed)
    out = folder / "corpus.txt"
    with open(out, "w") as f:
        for p in sorted((folder / "src").glob("*.txt")):
            f.write(p.read_text().replace("\n\n", "\n") + "\n\n")
    return out


def cpt_only(tmp_path: Path, data: list[str], **stage) -> Path:
    d = tiny_recipe(tmp_path / "runs", cpt_steps=4)
    d["stages"] = [d["stages"][0]]
    d["stages"][0].update(data=data, eval_steps=2, save_steps=2, **stage)
    d["eval"] = {"enabled": False}
    return write_recipe(tmp_path / "r.yaml", d)


@pytest.fixture(scope="module")
def tok(demo_home):
    from transformers import AutoTokenizer
    from training.demo import resolve_builtin
    return AutoTokenizer.from_pretrained(resolve_builtin("builtin:tiny-llama"))


def stage(data, **kw):
    from training.recipe import CptStage
    return CptStage(type="cpt", name="cpt", learning_rate=1e-5, data=[str(x) for x in data], **{"seq_len": 64, **kw})


def test_cpt_on_one_big_txt_file_trains_and_evaluates(tmp_path, demo_home):
    corpus = one_big_txt(tmp_path, 0.6)
    res = cli("--recipe", str(cpt_only(tmp_path, [str(corpus)], eval_fraction=0.02)))
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    run = only_run(tmp_path / "runs")
    ev = events_of(run)
    prep = [e for e in ev if e["event"] == "prepare"]
    assert prep and prep[-1]["fraction"] == 1.0 and prep[-1]["bytes_total"] == corpus.stat().st_size
    d = next(e for e in ev if e["event"] == "stage_start")["data"]
    assert d["train_documents"] > 150 and d["eval_documents"] >= 1 and d["eval_blocks"] >= 1
    assert d["train_tokens"] == d["train_blocks"] * 256 and not d["cached"]
    assert [e for e in ev if e["event"] == "eval"] and ev[-1]["status"] == "ok"
    log = (run / "train.log").read_text()
    assert f"[cpt] data: train {d['train_documents']:,} documents, {d['train_tokens']:,} tokens" in log
    assert "encoded by the word cache" in log  # the demo's byte-level BPE is a layout word_cache.py reproduces
    assert not (run / "cache").exists()  # removed once the stage's model is saved


def test_one_long_document_still_gets_both_splits(tmp_path, tok):
    from training.runtime.prepare import load_splits, prepare
    import random
    rng = random.Random(0)  # not periodic: two 64-token blocks of the same text would look like one block on both sides
    text = " ".join(f"word{rng.randrange(997)} term{rng.randrange(13)}" for _ in range(40_000))  # one document
    (tmp_path / "one.md").write_text(text)
    meta = prepare(stage([tmp_path / "one.md"], eval_fraction=0.05), tok, tmp_path / "cache", processes=1)
    train, ev = load_splits(meta)
    assert meta["train_documents"] + meta["eval_documents"] == 1
    assert len(train) >= 1 and ev is not None and len(ev) >= 1
    assert len(train) + len(ev) == meta["train_blocks"] + meta["eval_blocks"]
    # blocks moved to eval leave train: no block is on both sides
    seen = {tuple(r["input_ids"]) for r in train}
    assert not any(tuple(r["input_ids"]) in seen for r in ev)


def test_split_dedup_modes_and_cache_reuse(tmp_path, tok):
    from training.runtime.prepare import load_splits, prepare
    copies = write_near_dup_corpus(tmp_path / "c", 300, 0.2, seed=4, files=3, fmt="txt")
    (tmp_path / "c" / "exact.txt").write_text((tmp_path / "c" / "part-000.txt").read_text())  # 100 exact copies
    events = []
    got = {}
    for mode in ("none", "exact", "near"):
        got[mode] = prepare(stage([tmp_path / "c"], dedup=mode), tok, tmp_path / mode,
                            lambda e, **k: events.append(k), processes=2)
    assert got["none"]["duplicates_dropped"] == 0
    assert got["exact"]["exact_dropped"] == 100
    assert got["near"]["duplicates_dropped"] == pytest.approx(100 + copies, abs=5)
    docs = {m: got[m]["train_documents"] + got[m]["eval_documents"] for m in got}
    assert docs["none"] == 400 and docs["exact"] == 300 and docs["near"] == pytest.approx(300 - copies, abs=5)
    assert all(g["eval_documents"] > 0 and g["train_documents"] > 0 for g in got.values())
    assert {e["phase"] for e in events} >= {"dedup", "done"}
    # --resume: the same stage over the same files finds the cache, the blocks are the same
    again = prepare(stage([tmp_path / "c"], dedup="near"), tok, tmp_path / "near", processes=2)
    assert again["cached"] and again["train_blocks"] == got["near"]["train_blocks"]
    assert load_splits(again)[0][0] == load_splits(got["near"])[0][0]


def test_word_cache_writes_the_same_blocks_as_the_tokenizer(tmp_path, tok, monkeypatch):
    """The word cache (runtime/word_cache.py) in two worker processes: byte-for-byte the blocks the tokenizer
    alone writes, on documents in several scripts, some holding the tokenizer's own special-token text."""
    from training.runtime.prepare import load_splits, prepare
    write_corpus(tmp_path / "c", 0.3, seed=11)
    odd = ["naïve café — Ölçü 東京都 привет 😀 it's 1,234.56", "a doc <|end|> with a special token's text",
           "tabs\tand\r\nCRLF  lines\u00a0nbsp"]
    (tmp_path / "c" / "odd.txt").write_text("\n\n".join(f"{odd[i % 3]} number {i}" for i in range(300)))
    got = {}
    for mode in ("on", "off"):
        monkeypatch.setenv("TUNE_WIZARD_WORD_CACHE", mode)
        got[mode] = prepare(stage([tmp_path / "c"], dedup="none"), tok, tmp_path / mode, processes=2)
    assert got["on"]["encoder"] == "word cache" and got["off"]["encoder"] == "tokenizer"
    assert got["on"]["units_via_tokenizer"] == 100  # the documents holding "<|end|>"
    for a, b in zip(load_splits(got["on"]), load_splits(got["off"])):
        assert a["input_ids"] == b["input_ids"]
    assert got["on"]["train_tokens"] == got["off"]["train_tokens"] > 10_000


def test_worker_processes_cut_the_documents_iter_units_reads(tmp_path, tok, monkeypatch):
    """The data step's workers decode and cut .txt/.md segments themselves: the token stream they pack must be
    iter_units' units, in order, each document inside its affixes (pieces of long ones included)."""
    import random
    import training.data as d
    from synth_data import random_corpus_text
    from training.runtime import prepare as prep
    from training.tokens import doc_affixes
    monkeypatch.setattr(d, "UNIT_CHARS", 300)
    monkeypatch.setattr(prep, "BATCH_CHARS", 2_000)  # many segments, several per worker
    rng = random.Random(3)
    (tmp_path / "c").mkdir()
    for i in range(3):
        (tmp_path / "c" / f"t{i}.txt").write_text(random_corpus_text(rng, 1500, "<|endoftext|>"))
    (tmp_path / "c" / "m.md").write_text(random_corpus_text(rng, 400))
    (tmp_path / "c" / "r.jsonl").write_text("".join(json.dumps({"text": f"row {i} " * 40}) + "\n" for i in range(30)))
    files = sorted((tmp_path / "c").iterdir())
    st = stage([tmp_path / "c"], dedup="none", eval_fraction=0.0, doc_separator="<|endoftext|>")
    meta = prep.prepare(st, tok, tmp_path / "cache", processes=2)
    prefix, suffix = doc_affixes(tok)
    want = []
    for _, _, text, first, last in d.iter_units(files, doc_separator="<|endoftext|>"):
        want += (list(prefix) if first else []) + tok(text, add_special_tokens=False)["input_ids"] + \
            ([x for x in suffix if x is not None] if last else [])
    got = [t for row in prep.load_splits(meta)[0] for t in row["input_ids"]]
    assert len(got) == len(want) // 64 * 64 and got == want[:len(got)]
    assert meta["train_documents"] == sum(1 for u in d.iter_units(files, doc_separator="<|endoftext|>") if u[3])


def test_a_file_not_utf8_deep_inside_stops_the_data_step_with_its_line(tmp_path, tok):
    """The bad byte lies past the tail the parent decodes: a worker finds it, and the step stops with the
    file, line and byte (DataError, exit 2 in a run)."""
    from training.data import DataError
    from training.runtime.prepare import prepare
    body = b"".join(b"fine document %d about notices\n\n" % i for i in range(20_000))
    (tmp_path / "a.txt").write_bytes(body[:300_000] + b"\xe9 bad\n\n" + body[300_000:])
    line = body[:300_000].count(b"\n") + 1
    with pytest.raises(DataError, match=rf"a\.txt:{line}: not UTF-8 text at byte 300,000 \(bytes e9 20 62 61\)"):
        prepare(stage([tmp_path / "a.txt"]), tok, tmp_path / "cache", processes=2)


def test_documents_joined_with_the_tokenizer_affixes(tmp_path, tok, monkeypatch):
    """Packing calls tokens.doc_affixes: every document is followed by its suffix (EOS today), none dropped."""
    from training.runtime.prepare import load_splits, prepare
    (tmp_path / "a.txt").write_text("\n\n".join(f"document number {i} about leases" for i in range(200)))
    meta = prepare(stage([tmp_path / "a.txt"], eval_fraction=0.0), tok, tmp_path / "cache", processes=1)
    flat = [t for r in load_splits(meta)[0] for t in r["input_ids"]]
    assert flat.count(tok.eos_token_id) >= 200 - 64 // 5  # all but those in the dropped tail


BAD = {
    "binary-only-folder": ({"b.txt": b"\x00\x01 binary"}, "stages.0.data: no readable text file: all 1 skipped"),
    "late-non-utf8": ({"a.txt": b"fine words here\n" * 1000 + b"\n\nbad \xe9 byte\n"},
                      "a.txt:1003: not UTF-8 text at byte 16,006 (bytes e9 20 62 79)"),
    "too-little-after-dedup": ({"a.txt": b"same words again\n\n" * 500},
                               "less than one seq_len=256 block"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_corpus_is_one_line_and_exit_2(tmp_path, demo_home, case):
    files, expect = BAD[case]
    (tmp_path / "c").mkdir()
    for name, content in files.items():
        (tmp_path / "c" / name).write_bytes(content)
    res = cli("--recipe", str(cpt_only(tmp_path, [str(tmp_path / "c")])))
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    out = res.stdout + res.stderr
    assert any(expect in ln for ln in out.splitlines()), out[-3000:]
    assert "Traceback" not in out


def test_binary_file_in_a_folder_is_skipped_and_counted(tmp_path, tok):
    from training.runtime.prepare import prepare
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "blob.txt").write_bytes(b"\x00\x01\x02 binary")
    (tmp_path / "c" / "a.txt").write_text("\n\n".join(f"document {i} on notices and fees" for i in range(300)))
    meta = prepare(stage([tmp_path / "c"]), tok, tmp_path / "cache", processes=1)
    assert meta["files"] == 1 and len(meta["skipped_files"]) == 1 and "blob.txt: is binary" in meta["skipped_files"][0]


def test_empty_folder_is_refused(tmp_path, tok):
    from training.data import DataError
    from training.runtime.prepare import prepare
    (tmp_path / "c").mkdir()
    with pytest.raises(DataError, match="no .txt, .md, .jsonl or .parquet file there"):
        prepare(stage([tmp_path / "c"]), tok, tmp_path / "cache")


def test_plan_json_reports_the_near_duplicate_share(tmp_path, demo_home):
    copies = write_near_dup_corpus(tmp_path / "c", 1000, 0.3, seed=9)
    res = cli("plan", "--model", "builtin:tiny-llama", "--corpus", str(tmp_path / "c"), "--gpu", "H100",
              "--gap", "knowledge", "--json")
    assert res.returncode == 0, res.stderr[-2000:]
    c = json.loads(res.stdout)["facts"]["corpus"]
    assert c["documents"] == 1000 and abs(c["near_dup_rate"] - copies / 1000) <= 0.05
