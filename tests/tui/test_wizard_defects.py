"""Regression tests for the wizard defects of issue 13 item 5, each driven through Pilot as a user would."""
from __future__ import annotations

import asyncio

import yaml
from helpers import FixedSampler, demo_assets_built_like_the_app, sample_run  # noqa: F401 (autouse fixture)
from test_wizard import title, wait_for, walk_to_review

from tui.app import TuneWizardApp


async def type_into(pilot, field_id: str, text: str) -> None:
    pilot.app.screen.query_one(field_id).focus()
    await pilot.press("ctrl+u", *text)


async def to_step(pilot, name: str, model: str | None = None) -> None:
    """Demo data (or another model typed in), then Ctrl+N until `name`, waiting for each scan."""
    app = pilot.app
    await pilot.press("ctrl+t")
    if model is not None:
        await type_into(pilot, "#model", model)
    while title(app) != name:
        before = title(app)
        await pilot.press("ctrl+n")
        await wait_for(pilot, lambda: title(app) != before, timeout=300, what=f"leaving {before}")
        need = {"CorpusStep": "corpus", "PairsStep": "pairs"}.get(title(app))
        await wait_for(pilot, lambda: need is None or need in app.wizard.facts, timeout=300, what="the scan")


def test_a_corpus_of_many_large_files_scans_inside_the_running_app(tmp_path, monkeypatch):
    """Over 64 MB in several files makes the scan start a process pool; started inside the app it failed
    with `bad value(s) in fds_to_keep` and Next stayed blocked. The scan now runs in a child process."""
    monkeypatch.chdir(tmp_path)
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    para = "the tenant shall give notice of any breach within thirty days " * 30 + "\n\n"
    for k in range(3):  # 3 x 33 MB: two work units, so two pool workers
        (corpus / f"part-{k}.txt").write_text(para * (33_000_000 // len(para)))

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await to_step(pilot, "CorpusStep")
            await type_into(pilot, "#corpus", str(corpus))
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: "corpus" in app.wizard.facts or "[red]" in str(
                app.screen.query_one("#evidence").render()), timeout=300, what="the scan")
            evidence = str(app.screen.query_one("#evidence").render())
            assert "corpus" in app.wizard.facts, evidence
            assert app.wizard.facts["corpus"]["files"] == 3 and "3 files" in evidence and "fds_to_keep" not in evidence
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: title(app) == "PairsStep", what="Next after the scan")

    asyncio.run(go())


def test_a_typo_in_a_number_field_blocks_next_and_names_the_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await to_step(pilot, "RecommendStep")
            await type_into(pilot, "#ov-sft-learning_rate", "2 e-5")
            await pilot.press("ctrl+n")
            await pilot.pause(0.3)
            assert title(app) == "RecommendStep"  # not on to the review with learning_rate 2.0
            note = str(app.screen.query_one("#nav-note").render())
            assert "plan step" in note and "SFT lr" in note and "'2 e-5' is not a number" in note
            await type_into(pilot, "#ov-sft-learning_rate", "2e-5")
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: title(app) == "ReviewStep", what="review after the fix")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: (tmp_path / "wizard.yaml").exists(), what="recipe written")
        sft = [s for s in yaml.safe_load((tmp_path / "wizard.yaml").read_text())["stages"] if s["type"] == "sft"][0]
        assert sft["learning_rate"] == 2e-5

    asyncio.run(go())


def test_review_validates_with_the_recipe_loader_and_writes_nothing_invalid(tmp_path, monkeypatch):
    """A model folder that does not exist: the review shows the loader's problem in
    full, wrapped at 80 columns, and neither Ctrl+S nor Ctrl+R writes or starts anything."""
    monkeypatch.chdir(tmp_path)
    model = str(tmp_path / "models" / "llama-missing")
    # the model step refuses a missing folder itself (engine.check_model); here the folder is taken to have
    # vanished after that step, so that the review's own check is what must catch it
    from tui import engine
    monkeypatch.setattr(engine, "check_model", lambda m, timeout=8.0: (None, None))

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await to_step(pilot, "ReviewStep", model=model)
            shown = str(app.screen.query_one("#yaml").render())
            assert "the recipe is not valid, nothing was written" in shown
            assert f"model folder '{model}' does not exist" in shown.replace("\n", "")
            await pilot.press("ctrl+s")
            await pilot.pause(0.3)
            assert "not written" in str(app.screen.query_one("#nav-note").render())
            await pilot.press("ctrl+r")
            await pilot.pause(0.5)
            assert "nothing was written" in str(app.screen.query_one("#nav-note").render())
            assert title(app) == "ReviewStep"
        assert not (tmp_path / "wizard.yaml").exists() and not (tmp_path / "runs").exists()

    asyncio.run(go())


def test_a_model_id_with_a_space_is_refused_on_the_model_step(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await type_into(pilot, "#model", "meta llama/Llama-3.1-8B")
            assert "has a space" in str(app.screen.query_one("#evidence").render())
            await pilot.press("ctrl+n")
            await pilot.pause(0.2)
            assert title(app) == "ModelStep"
            assert "model step" in str(app.screen.query_one("#nav-note").render())

    asyncio.run(go())


def test_focus_order_and_no_verdict_before_a_probe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(80, 24)) as pilot:
            await to_step(pilot, "GapStep")
            assert app.focused is app.screen.query_one("#prompts")  # typing a prompt types it
            await pilot.press("end", "enter", *"What is a tenancy?")
            assert "What is a tenancy?" in app.screen.query_one("#prompts").text
            assert app.screen.query_one("#verdict").pressed_button is None  # nothing judged yet
            assert "unknown" in str(app.screen.query_one("#evidence").render())
            seen = set()
            for _ in range(8):  # every tab stop is a control the user can see; the scrolling body is none
                await pilot.press("tab")
                seen.add(app.focused.id)
            assert "body" not in seen and {"prompts", "verdict", "next"} <= seen
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: title(app) == "CorpusStep", what="corpus step")
            assert app.wizard.answers["gap"] is None and "What is a tenancy?" in app.wizard.answers["prompts"]
            await wait_for(pilot, lambda: "corpus" in app.wizard.facts, timeout=300, what="scan")
            await to_step(pilot, "ReviewStep")
            assert app.focused is app.screen.query_one("#path")  # Enter here must not launch training
            await pilot.press("enter")
            await pilot.pause(0.5)
            assert title(app) == "ReviewStep" and not (tmp_path / "runs").exists()

    asyncio.run(go())


def test_texts_plan_names_and_counts(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    async def go():
        app = TuneWizardApp()
        async with app.run_test(size=(120, 40)) as pilot:
            await to_step(pilot, "RecommendStep")
            decision = str(app.screen.query_one("#decision").render())
            assert "training.decide" not in decision and "recommended: SFT (lora)" in decision
            labels = [p["label"] for p in app.screen.plans]
            assert "CPT (full weights) -> SFT (lora)" in labels and "CPT (full) -> SFT (lora)" not in labels

    asyncio.run(go())
    from tui.screens.step_corpus import _n
    assert (_n(1, "file"), _n(2, "file"), _n(1070, "document")) == ("1 file", "2 files", "1,070 documents")


def monitor_exit(run, keys=("ctrl+q",)) -> str:
    async def go():
        app = TuneWizardApp(run=run, monitor_opts={"interval": 0.1, "sampler": FixedSampler()})
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause(0.5)
            log = str(app.screen.query_one("#log").render())
            await pilot.press(*keys)
            await pilot.pause(0.3)
        return app.return_value, log

    return asyncio.run(go())


def test_leaving_the_monitor_says_how_to_attach_stop_or_resume(tmp_path):
    live = sample_run(tmp_path / "a", running=True, keep_events=1)  # only run_start so far
    said, log = monitor_exit(live)
    assert f"tune-wizard attach {live}" in said and f"tune-wizard stop {live}" in said
    # the first seconds: what the run is doing, not the libraries' start-up warnings from train.log
    assert "loading the model and preparing the data" in log
    dead = sample_run(tmp_path / "b", keep_events=20)  # killed mid-run: no finished event, no process
    said, log = monitor_exit(dead, keys=("q",))
    assert f"--resume {dead}" in said and "resume it" in said and "loading the model" not in log
