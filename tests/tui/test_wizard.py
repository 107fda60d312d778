"""Pilot drives the whole wizard on the demo data, with the keyboard only, to a written recipe; then
runs it from the review step, and stops it from the monitor (a real, tiny training run)."""
from __future__ import annotations

import asyncio
import time

import pytest
import yaml
from conftest import events_of
from helpers import demo_assets_built_like_the_app  # noqa: F401 (autouse fixture)

from tui.app import TuneWizardApp
from tui.screens.confirm import Confirm
from tui.screens.monitor import MonitorScreen


async def wait_for(pilot, cond, timeout: float = 60.0, what: str = "condition"):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if cond():
            return
        await pilot.pause(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def title(app) -> str:
    return type(app.screen).__name__


async def walk_to_review(pilot, app):
    """From the first screen to the review step: demo data, CPT -> SFT, short stages, a price and a budget."""
    await pilot.press("ctrl+t", "ctrl+n")
    await wait_for(pilot, lambda: title(app) == "GapStep", what="gap step")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "CorpusStep" and "corpus" in app.wizard.facts, timeout=300,
                   what="corpus scan (the first one builds the demo assets)")
    assert "MB clean text: < 10 MB -> RAG only" in str(app.screen.query_one("#evidence").render())
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "PairsStep" and "pairs" in app.wizard.facts, what="pairs scan")
    assert "valid pairs: 500 - 5,000 -> LoRA/QLoRA" in str(app.screen.query_one("#evidence").render())
    # back to the text step and forward again: the answers stay
    await pilot.press("ctrl+b")
    await wait_for(pilot, lambda: title(app) == "CorpusStep", what="back to corpus")
    assert app.screen.query_one("#corpus").value == "builtin:demo-corpus"
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "PairsStep" and "pairs" in app.wizard.facts, what="pairs again")
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "BudgetStep", what="budget step")
    await pilot.press("tab", "tab", "ctrl+u", *"2.5", "tab", *"0.05", "ctrl+n")
    await wait_for(pilot, lambda: title(app) == "RecommendStep", what="recommendation")
    assert app.wizard.plan == ("sft", "lora")  # 0.5 MB of text and 1,657 pairs: the guide says SFT (LoRA)
    await pilot.press("down", "down", "down", "enter")  # override: CPT -> SFT (lora)
    assert app.wizard.plan == ("cpt_sft", "lora")
    for field, value in (("#ov-cpt-max_steps", "6"), ("#ov-sft-max_steps", "4"), ("#ov-sft-lora_r", "8")):
        app.screen.query_one(field).focus()
        await pilot.press("ctrl+u", *value)
    await pilot.press("ctrl+n")
    await wait_for(pilot, lambda: title(app) == "ReviewStep", what="review step")


def test_wizard_writes_the_demo_recipe_and_asks_before_overwriting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def drive():
        app = TuneWizardApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await walk_to_review(pilot, app)
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: (tmp_path / "wizard.yaml").exists(), what="recipe written")
            first = (tmp_path / "wizard.yaml").read_text()
            (tmp_path / "wizard.yaml").write_text("# mine\n")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm), what="overwrite question")
            await pilot.press("n")
            await pilot.pause(0.2)
            assert (tmp_path / "wizard.yaml").read_text() == "# mine\n"
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm), what="overwrite question")
            await pilot.press("y")
            await wait_for(pilot, lambda: (tmp_path / "wizard.yaml").read_text() == first, what="overwrite")
            return first

    text = asyncio.run(drive())
    r = yaml.safe_load(text)
    assert r["model"]["id"] == "builtin:tiny-llama"
    assert r["hardware"] == {"gpu": "cpu", "gpu_count": 1, "price_per_gpu_hour": 2.5, "budget_usd": 0.05}
    cpt, sft = r["stages"]
    assert (cpt["type"], cpt["data"], cpt["max_steps"]) == ("cpt", ["builtin:demo-corpus"], 6)
    assert (sft["type"], sft["method"], sft["data"], sft["max_steps"]) == ("sft", "lora", "builtin:demo-pairs", 4)
    assert sft["lora"] == {"r": 8, "alpha": 16}
    assert cpt["learning_rate"] == sft["learning_rate"] == 2e-3  # the demo's values for the random-init model
    # why: the rules that fired, and the user's override of the recommendation (SFT -> CPT -> SFT), in the recipe
    d = r["decision"]
    assert (d["path"], d["method"]) == ("cpt_sft", "lora") and d["reasons"]
    assert any("over the recommended" in w for w in d["warnings"])
    assert d["evidence"]["pairs_valid"] > 1600 and d["evidence"]["gap"] == "unknown"  # nothing judged or measured: unknown, not a default "knowledge"


@pytest.mark.integration
def test_wizard_runs_the_recipe_and_the_monitor_stops_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def drive():
        app = TuneWizardApp(monitor_opts={"interval": 0.2})
        async with app.run_test(size=(80, 24)) as pilot:
            await walk_to_review(pilot, app)
            await pilot.press("ctrl+r")
            await wait_for(pilot, lambda: isinstance(app.screen, MonitorScreen), timeout=60, what="monitor")
            mon = app.screen
            await wait_for(pilot, lambda: mon.state.n_events > 0, timeout=120, what="first event")
            await pilot.press("s")
            await wait_for(pilot, lambda: isinstance(app.screen, Confirm), what="stop question")
            await pilot.press("y")
            await wait_for(pilot, lambda: mon.state.finished is not None, timeout=120, what="run to stop")
            return mon.run, mon.state

    run, state = asyncio.run(drive())
    evs = events_of(run)
    assert run.parent == (tmp_path / "runs").resolve() and (run / "recipe.yaml").exists()
    assert evs[-1]["event"] == "finished" and evs[-1]["status"] in ("stopped", "ok")
    assert state.finished["status"] == evs[-1]["status"]


def test_back_and_next_buttons_move_one_step(tmp_path, monkeypatch):
    """Enter on the Back or Next button moves exactly one step (a step that handles buttons of its own
    must not run the base handler twice: that once popped every screen and left the terminal blank)."""
    monkeypatch.chdir(tmp_path)

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+t", "ctrl+n")
            await wait_for(pilot, lambda: title(app) == "GapStep", what="gap step")
            app.screen.query_one("#back").focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: title(app) == "ModelStep", what="back to the model step")
            assert [type(s).__name__ for s in app.screen_stack] == ["Screen", "ModelStep"]
            app.screen.query_one("#next").focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: title(app) == "GapStep", what="next to the gap step")
            assert [type(s).__name__ for s in app.screen_stack] == ["Screen", "ModelStep", "GapStep"]

    asyncio.run(go())
