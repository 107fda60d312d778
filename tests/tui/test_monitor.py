"""The run monitor on a real tiny run: launched detached, tailed live, and what it shows checked
against what the run wrote."""
from __future__ import annotations

import asyncio
import time

import pytest
from conftest import events_of, tiny_recipe
from helpers import demo_assets_built_like_the_app  # noqa: F401 (autouse fixture)

from training.recipe import Recipe
from training.runtime.runner import create_run_dir, launch, resolve
from tui.app import TuneWizardApp
from tui.screens.monitor import MonitorScreen
from tui.widgets.cost_meter import cost_text
from tui.widgets.timeline import timeline_text


@pytest.mark.integration
def test_monitor_follows_a_real_run(tmp_path):
    data = tiny_recipe(tmp_path / "runs", cpt_steps=8, sft_steps=4,
                       hardware={"gpu": "cpu", "price_per_gpu_hour": 36.0, "budget_usd": 0.001})
    recipe = resolve(Recipe.model_validate(data))
    run = create_run_dir(recipe, None)
    proc = launch(run)

    async def drive():
        app = TuneWizardApp(run=run, monitor_opts={"interval": 0.2})
        async with app.run_test(size=(80, 24)) as pilot:
            screen = app.screen
            assert isinstance(screen, MonitorScreen)
            seen_running = False
            deadline = time.time() + 240
            while not screen.state.finished and time.time() < deadline:
                await pilot.pause(0.3)
                cur = screen.state.current()
                seen_running |= bool(cur and cur.state == "running" and cur.train)
            assert screen.state.finished, "the monitor never saw the run finish"
            await pilot.pause(0.5)
            return screen, seen_running

    screen, seen_running = asyncio.run(drive())
    assert proc.wait(timeout=60) == 0
    evs = events_of(run)
    st = screen.state
    assert seen_running, "the monitor showed no step while the run was going"
    # every logged loss of each stage reached its chart, train and eval
    for name in ("cpt", "sft"):
        want = [(e["step"], e["loss"]) for e in evs if e["event"] == "step" and e["stage"] == name]
        assert want and st.stage(name).train == want
        assert [s for s, _ in st.stage(name).eval] == [e["step"] for e in evs
                                                         if e["event"] == "eval" and e["stage"] == name]
    assert "cpt (cpt) 8/8 done" in timeline_text(st).plain
    assert "sft (sft/lora) 4/4 done" in timeline_text(st).plain
    # cost: the time the budget cap bills (training/runtime/budget.py: the segment's runtime, from the worker's
    # start) at $36/h is $0.01 per second, over the $0.001 budget; it is what the run itself says it spent
    from training.runtime.budget import elapsed_before
    elapsed = elapsed_before(evs)
    cost = cost_text(st).plain
    assert f"so far ${elapsed / 100:.4f}" in cost
    assert abs(elapsed / 100 - evs[-1]["spent_usd"]) < 1e-3
    assert "OVER" in cost
    assert evs[-1]["event"] == "finished" and st.state(alive=False) == "ok"


def test_chart_draws_every_point_inside_its_box():
    from tui.widgets.loss_chart import braille_chart
    lines = braille_chart([("train", [(1, 5.0), (2, 4.0), (10, 1.0)], "cyan")], width=30, height=5)
    assert len(lines) == 5
    assert all(len(x.plain) == 30 for x in lines)
    assert lines[0].plain.startswith("     5│") and lines[-1].plain.startswith("     1│")
    assert any(ch != " " for ch in lines[0].plain[7:]) and any(ch != " " for ch in lines[-1].plain[7:])
