"""`tune-wizard plan` as a user runs it: generated corpora of unique documents and pair files."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import ROOT, cli
from synth_data import write_corpus, write_pairs

MODEL = ["--model", "meta-llama/Llama-3.1-8B", "--gpu", "H100"]


def plan_json(*args) -> dict:
    p = cli("plan", *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("plan")
    write_corpus(d / "small", 3, seed=11)
    write_corpus(d / "medium", 25, seed=12, jsonl=True, files=4)
    return d, write_pairs(d / "few.jsonl", 120), write_pairs(d / "thousands.jsonl", 3000)


def test_json_shape_and_few_mb_is_rag_only(data):
    d, few, _ = data
    out = plan_json(*MODEL, "--corpus", str(d / "small"), "--pairs", str(few), "--budget", "200")
    dec = out["decision"]
    assert dec["path"] == "rag_only" and dec["method"] is None
    assert all(isinstance(r, str) for r in dec["reasons"]) and dec["reasons"]
    assert 2.5 < out["facts"]["corpus"]["clean_mb"] < 3.5
    assert out["facts"]["pairs"]["valid"] == 120
    assert {(e["path"], e["method"]) for e in out["estimates"]} >= {("rag_only", None), ("sft", "lora"), ("cpt", None)}
    for e in out["estimates"]:
        assert {"path", "method", "hours", "usd", "peak_vram_gib"} <= set(e)


def test_tens_of_mb_with_thousands_of_pairs_is_sft(data):
    d, _, thousands = data
    out = plan_json(*MODEL, "--corpus", str(d / "medium"), "--pairs", str(thousands), "--budget", "200",
                    "--gap", "knowledge")
    assert (out["decision"]["path"], out["decision"]["method"]) == ("sft", "lora")
    assert 24 < out["facts"]["corpus"]["clean_mb"] < 26 and out["facts"]["pairs"]["valid"] == 3000
    assert any("knowledge gap but only" in w for w in out["decision"]["warnings"])


@pytest.mark.parametrize("budget,pairs,path,method", [("1000", True, "cpt_sft", "lora"), ("20", True, "sft", "qlora"),
                                                      ("1000", False, "cpt", None)])
def test_declared_large_corpus(data, budget, pairs, path, method):
    """Over 500 MB (declared here; bench/scan_bench.py scans a real 600 MB corpus for the same cases)."""
    _, _, thousands = data
    # an H200: 8B full CPT with update-keeping weights (bf16 + Kahan, 10 bytes per parameter) needs ~92 GiB
    # at micro-batch 4 without Liger, more than an H100 has (training/plan/memory.py)
    args = ["--model", "meta-llama/Llama-3.1-8B", "--gpu", "H200", "--corpus-size", "800MB", "--gap", "knowledge",
            "--budget", budget]
    out = plan_json(*args, *(["--pairs", str(thousands)] if pairs else []))
    dec = out["decision"]
    assert (dec["path"], dec["method"]) == (path, method), dec
    if budget == "20":
        assert any("under $100" in w for w in dec["warnings"])


def test_seventy_b_on_eight_h100_is_sharded():
    out = plan_json("--params", "70e9", "--corpus-size", "50GB", "--gpu", "H100", "--gpus", "8", "--gap", "knowledge")
    assert out["decision"]["path"] == "cpt"
    assert any("FSDP" in r for r in out["decision"]["reasons"])
    assert out["decision"]["estimate"]["stages"][0]["sharded"]


def test_recipe_written_runs_headless(tmp_path, data):
    """The written recipe is the engine's: a cpt_sft plan for the tiny model trains for real (a few steps)."""
    d, _, _ = data
    corpus = tmp_path / "corpus"
    write_corpus(corpus, 0.05, seed=5)
    pairs = write_pairs(tmp_path / "p.jsonl", 40)
    out = tmp_path / "r.yaml"
    p = cli("plan", "--model", "builtin:tiny-llama", "--corpus", str(corpus), "--pairs", str(pairs), "--gpu", "H100",
            "--path", "cpt_sft", "--method", "lora", "-o", str(out))
    assert p.returncode == 0, p.stderr
    assert "recipe written" in p.stdout and "less than 500 MB of clean text for CPT" in p.stdout
    p = cli("--recipe", str(out), "--set", "stages.cpt.max_steps=2", "--set", "stages.sft.max_steps=2",
            "--set", "stages.cpt.seq_len=64", "--set", "stages.cpt.micro_batch_size=2",
            "--set", f"output_dir={tmp_path / 'runs'}")
    assert p.returncode == 0, p.stderr + p.stdout
    run = next((tmp_path / "runs").iterdir())
    events = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    assert events[-1]["event"] == "finished" and events[-1]["status"] == "ok"
    assert (run / "sft" / "adapter").is_dir()
    again = cli("plan", "--model", "builtin:tiny-llama", "--corpus", str(corpus), "-o", str(out), "--path", "cpt")
    assert again.returncode == 2 and "exists" in again.stderr


def test_bad_input_is_one_line_and_exit_2(tmp_path):
    for args, needle in ((["--model", "x/unknown-model"], "--params"), (["--params", "8e9", "--gpu", "B9000"], "unknown GPU"),
                         (["--params", "8e9", "--corpus", str(tmp_path / "nope")], "no .txt/.md/.jsonl/.parquet"),
                         (["--params", "8e9", "--corpus-size", "lots"], "--corpus-size")):
        p = cli("plan", *args)
        assert p.returncode == 2 and needle in p.stderr and "Traceback" not in p.stderr
        assert len(p.stderr.strip().splitlines()) == 1


def test_plan_without_probe_never_imports_torch_or_textual(data):
    d, few, _ = data
    code = ("import sys; from training.plan.cli import main; "
            f"rc = main(['--model', 'meta-llama/Llama-3.1-8B', '--corpus', {str(d / 'small')!r}, '--pairs', {str(few)!r}, "
            "'--json']); bad = [m for m in ('torch', 'textual', 'transformers') if m in sys.modules]; "
            "assert rc == 0 and not bad, bad")
    p = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr


def test_gap_probe_runs_in_a_subprocess(tmp_path):
    from training.demo import ensure_assets
    from training.plan.probe import run_probe
    ensure_assets()
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What does json.dumps do?\n")
    g = run_probe("builtin:tiny-llama", str(prompts), [str(ensure_assets() / "corpus")],
                  max_new_tokens=4, time_limit=20)
    assert len(g.answers) == 1 and g.answers[0]["new_tokens"] <= 4
    assert g.ppl_domain > 0 and g.ppl_reference > 0 and g.ppl_ratio == pytest.approx(g.ppl_domain / g.ppl_reference)
    assert g.fertility_domain > 0 and g.split_terms and g.summary
