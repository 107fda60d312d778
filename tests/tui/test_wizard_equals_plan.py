"""Two faces, one engine: the same answers through the wizard (Pilot, keys) and through `tune-wizard plan`
write the same recipe, byte for byte (issue 13 item 1). The data are generated here (no demo model):
an 8B/14B model known by name, a folder of several corpus files, a pairs file."""
from __future__ import annotations

import asyncio
import json

import pytest
from conftest import cli
from helpers import demo_assets_built_like_the_app  # noqa: F401 (autouse fixture)
from synth_data import write_corpus, write_pairs
from test_wizard import title, wait_for

from tui.app import TuneWizardApp


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("eq")
    write_corpus(d / "docs", 2, seed=21)  # a folder of many .txt files
    return d, write_pairs(d / "few.jsonl", 120), write_pairs(d / "pairs.jsonl", 1200, seed=3)


async def type_into(pilot, field_id: str, text: str) -> None:
    pilot.app.screen.query_one(field_id).focus()
    await pilot.press("ctrl+u", *text)  # ctrl+u clears an Input; typed key by key as a user would


async def answer(pilot, model: str, corpus: str, pairs: str, gpu: str, gpus: int, pick=None) -> None:
    """Model, no verdict, corpus, pairs, GPU and count; on the plan step the user's pick (a row, the method)."""
    app = pilot.app
    await type_into(pilot, "#model", model)
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "GapStep", what="gap step")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "CorpusStep", what="corpus step")
    await type_into(pilot, "#corpus", corpus)
    await pilot.press("ctrl+n")  # scans the new paths
    await wait_for(pilot, lambda: "corpus" in app.wizard.facts, timeout=120, what="corpus scan")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "PairsStep", what="pairs step")
    await type_into(pilot, "#pairs", pairs)
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: "pairs" in app.wizard.facts, timeout=120, what="pairs scan")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "BudgetStep", what="budget step")
    app.screen.query_one("#gpu").value = gpu  # the dropdown; choosing it fills the table's price
    await pilot.pause(0.1)
    await type_into(pilot, "#gpu_count", str(gpus))
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "RecommendStep", what="recommendation")
    if pick:
        table = app.screen.query_one("#plans")
        table.focus()
        row = next(i for i, p in enumerate(app.screen.plans) if (p["path"], p["method"]) == pick)
        table.move_cursor(row=row)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.wizard.plan == pick


def wizard_recipe(tmp_path, monkeypatch, *args, pick=None) -> tuple[str | None, dict]:
    """The recipe the wizard writes to eq.yaml (None when it writes none) and its recommendation."""
    monkeypatch.chdir(tmp_path)

    async def drive():
        app = TuneWizardApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await answer(pilot, *args, pick=pick)
            rec = dict(app.wizard.recommendation)
            await pilot.press("ctrl+n")
            await pilot.pause(0.3)
            if title(app) != "ReviewStep":
                return None, rec, str(app.screen.query_one("#nav-note").render())
            await type_into(pilot, "#path", "eq.yaml")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: (tmp_path / "eq.yaml").exists(), what="recipe written")
            return (tmp_path / "eq.yaml").read_text(), rec, ""

    text, rec, note = asyncio.run(drive())
    rec["note"] = note
    return text, rec


def plan_recipe(tmp_path, model, corpus, pairs, gpu, gpus, pick=None):
    over = ["--path", pick[0]] + (["--method", pick[1]] if pick[1] else []) if pick else []
    args = ["plan", "--model", model, "--corpus", corpus, "--pairs", pairs, "--gpu", gpu, "--gpus", str(gpus), *over]
    out = tmp_path / "plan.yaml"
    p = cli(*args, "--name", "eq", "-o", str(out), cwd=tmp_path)
    j = json.loads(cli(*args, "--json", cwd=tmp_path).stdout)
    return (out.read_text() if p.returncode == 0 else None), p, j["decision"]


def test_rag_only_both_write_nothing_for_the_same_reasons(data, tmp_path, monkeypatch):
    d, few, _ = data
    args = ("meta-llama/Llama-3.1-8B", str(d / "docs"), str(few), "H100", 1)
    text, rec = wizard_recipe(tmp_path, monkeypatch, *args)
    ptext, p, dec = plan_recipe(tmp_path, *args)
    assert (rec["path"], rec["method"]) == (dec["path"], dec["method"]) == ("rag_only", None)
    assert rec["reasons"] == dec["reasons"] and rec["warnings"] == dec["warnings"]
    assert text is None and "RAG only trains nothing" in rec["note"]
    assert ptext is None and p.returncode == 2 and "no recipe written" in p.stderr


def test_sft_qlora_same_recipe_byte_for_byte(data, tmp_path, monkeypatch):
    d, _, pairs = data
    args = ("Qwen/Qwen2.5-14B", str(d / "docs"), str(pairs), "RTX4090", 1)  # a bf16 14B base does not fit 24 GB
    text, rec = wizard_recipe(tmp_path, monkeypatch, *args)
    ptext, p, dec = plan_recipe(tmp_path, *args)
    assert p.returncode == 0, p.stderr
    assert (rec["path"], rec["method"]) == (dec["path"], dec["method"]) == ("sft", "qlora")
    assert text == ptext
    assert "method: qlora" in text and f"data: {pairs}" in text


def test_cpt_sft_on_four_gpus_same_recipe_byte_for_byte(data, tmp_path, monkeypatch):
    """The user overrides the recommendation (SFT) with CPT -> SFT on 4 H100s: plan --path/--method does the same;
    the recipe trains in 4 processes, as the budget bills 4 GPUs."""
    d, _, pairs = data
    args = ("meta-llama/Llama-3.1-8B", str(d / "docs"), str(pairs), "H100", 4)
    text, rec = wizard_recipe(tmp_path, monkeypatch, *args, pick=("cpt_sft", "lora"))
    ptext, p, dec = plan_recipe(tmp_path, *args, pick=("cpt_sft", "lora"))
    assert p.returncode == 0, p.stderr
    assert (rec["path"], rec["method"]) == ("sft", "lora")
    assert text == ptext
    assert "num_processes: 4" in text and "user override: cpt_sft/lora" in text
