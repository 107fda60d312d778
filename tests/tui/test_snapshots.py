"""Every screen pinned at 80x24 (an SSH default) and 120x40. Update on purpose with --snapshot-update.

The wizard is driven by keys on the demo data; the monitor shows a recorded real run with a fixed clock
and fixed host numbers, from a fixed folder, so the pictures depend on nothing but the code."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import FixedSampler, demo_assets_built_like_the_app, sample_run  # noqa: F401 (autouse fixture)
from test_wizard import title, wait_for

from tui.app import TuneWizardApp
from tui.runstate import load_run

SIZES = [(80, 24), (120, 40)]
FIXED = Path("/tmp/tune-wizard-snapshots")  # the same absolute paths on every run


@pytest.fixture
def fixed_dir(monkeypatch):
    # the calibration file (training/plan/calibration.py) collects points from every run of the session, so the
    # plan's estimate would depend on which tests ran before: the pictures are taken without it
    monkeypatch.setenv("TUNE_WIZARD_CALIBRATION", "off")
    shutil.rmtree(FIXED, ignore_errors=True)
    FIXED.mkdir(parents=True)
    monkeypatch.chdir(FIXED)
    yield FIXED
    shutil.rmtree(FIXED, ignore_errors=True)


STEP_KEYS = {  # screen -> how many Ctrl+N after the demo data is chosen
    "ModelStep": 0, "GapStep": 1, "CorpusStep": 2, "PairsStep": 3, "BudgetStep": 4, "RecommendStep": 5,
    "ReviewStep": 6,
}


def goto(step: str):
    async def run_before(pilot):
        app = pilot.app
        await pilot.press("ctrl+t")
        for _ in range(STEP_KEYS[step]):
            before = title(app)
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: title(app) != before, what=f"leaving {before}")
            need = {"CorpusStep": "corpus", "PairsStep": "pairs"}.get(title(app))
            await wait_for(pilot, lambda: need is None or need in app.wizard.facts, timeout=300, what="the scan")
        await pilot.pause(0.5)
    return run_before


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("step", list(STEP_KEYS))
def test_wizard_step(snap_compare, fixed_dir, step, size):
    assert snap_compare(TuneWizardApp(), terminal_size=size, run_before=goto(step))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize("running", [True, False], ids=["running", "finished"])
def test_monitor(snap_compare, fixed_dir, running, size):
    run = sample_run(fixed_dir, running=running, keep_events=30 if running else None)
    st = load_run(run)
    now = st.t_last + 2.0
    app = TuneWizardApp(run=run, monitor_opts={"sampler": FixedSampler(), "now": now, "interval": 0.05})

    async def settle(pilot):
        await pilot.pause(0.5)

    assert snap_compare(app, terminal_size=size, run_before=settle)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_help(snap_compare, fixed_dir, size):
    async def open_help(pilot):
        await pilot.press("f1")
        await pilot.pause(0.2)

    assert snap_compare(TuneWizardApp(), terminal_size=size, run_before=open_help)


def test_stop_question(snap_compare, fixed_dir):
    run = sample_run(fixed_dir, running=True, keep_events=30)
    st = load_run(run)
    app = TuneWizardApp(run=run, monitor_opts={"sampler": FixedSampler(), "now": st.t_last + 2.0})

    async def ask(pilot):
        await pilot.pause(0.3)
        await pilot.press("s")
        await pilot.pause(0.2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=ask)
