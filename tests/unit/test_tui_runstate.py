"""RunState: the fold of a run's events into what the monitor and `runs` show (cost, projection, stages)."""
from __future__ import annotations

from pathlib import Path

from tui.runstate import RunState, money, tail_lines

RECIPE = """name: t
hardware: {gpu: H100, gpu_count: 2, price_per_gpu_hour: 1.5, budget_usd: 1.0}
stages:
  - {type: cpt, data: [x], max_steps: 100}
  - {type: sft, data: y, max_steps: 50}
"""


def state(tmp_path: Path) -> RunState:
    (tmp_path / "recipe.yaml").write_text(RECIPE)
    return RunState.from_run(tmp_path)


def test_price_counts_every_gpu_and_cost_is_wall_time(tmp_path):
    st = state(tmp_path)
    assert st.price_per_hour == 3.0 and st.budget_usd == 1.0
    st.apply({"event": "run_start", "t": 1000.0})
    assert st.cost_so_far(now=1000.0 + 1800) == 1.5  # half an hour of two $1.50 GPUs


def test_projection_uses_measured_pace_for_the_steps_left(tmp_path):
    st = state(tmp_path)
    st.apply({"event": "run_start", "t": 0.0})
    assert st.projected_cost(now=10) is None  # nothing measured yet: no guess
    st.apply({"event": "stage_start", "t": 1.0, "stage": "cpt", "type": "cpt", "method": "full", "total_steps": 100})
    st.apply({"event": "step", "t": 2.0, "stage": "cpt", "step": 40, "total_steps": 100, "loss": 3.0,
              "step_time_s": 10.0})
    # 60 cpt steps + 50 planned sft steps left, 10 s each = 1100 s at $3/h
    assert st.remaining_s() == 1100
    assert abs(st.projected_cost(now=400) - (400 + 1100) / 3600 * 3.0) < 1e-9
    assert st.over_budget(now=400)  # $1.25 projected > $1 budget
    assert st.current().name == "cpt" and st.last_loss() == 3.0


def test_finished_run_stops_the_clock(tmp_path):
    st = state(tmp_path)
    for ev in ({"event": "run_start", "t": 0.0}, {"event": "stage_end", "t": 50.0, "stage": "cpt", "steps": 100},
               {"event": "stage_end", "t": 90.0, "stage": "sft", "steps": 50},
               {"event": "finished", "t": 100.0, "status": "ok"}):
        st.apply(ev)
    assert st.elapsed_s(now=10_000) == 100
    assert st.remaining_s() == 0 and st.state(alive=False) == "ok"


def test_state_without_finish(tmp_path):
    st = state(tmp_path)
    assert st.state(alive=True) == "starting"
    st.apply({"event": "run_start", "t": 0.0})
    assert st.state(alive=True) == "running" and st.state(alive=False) == "dead"


def test_money_keeps_small_amounts_visible():
    assert money(0.00123) == "$0.0012" and money(12.345) == "$12.35" and money(None) == "?"


def test_tail_lines_folds_progress_bars(tmp_path):
    p = tmp_path / "train.log"
    p.write_text("a\n10%|#\r50%|###\r100%|#####\nb\n\n")
    assert tail_lines(p, 2) == ["100%|#####", "b"]
    assert tail_lines(tmp_path / "missing.log") == []


def test_headless_summary_counts_the_steps_run_not_the_last_one_logged(tmp_path):
    """A 4-step stage with logging every 10 steps logs step 1 only: the summary says 4 steps (stage_end's
    count) and that the loss was logged once, not 'loss 8.388 -> 8.388' over '1 steps'."""
    from tui.headless import summary
    ev = [{"event": "step", "stage": "cpt", "step": 1, "loss": 8.388},
          {"event": "eval", "stage": "cpt", "step": 4, "eval_loss": 7.837},
          {"event": "stage_end", "stage": "cpt", "output": "cpt/model", "steps": 4, "runtime_s": 49.0},
          {"event": "step", "stage": "sft", "step": 10, "loss": 5.9},
          {"event": "step", "stage": "sft", "step": 80, "loss": 5.4},
          {"event": "stage_end", "stage": "sft", "output": "sft/adapter", "steps": 80, "runtime_s": 30.0}]
    lines = summary(ev, tmp_path)
    assert "  cpt            4 steps  loss 8.388 (logged at step 1 only), eval loss 7.837  0:49  cpt/model" in lines
    assert any(ln.startswith("  sft           80 steps  loss 5.900 -> 5.400") for ln in lines), lines
    killed = summary([{"event": "step", "stage": "cpt", "step": 30, "loss": 7.0},
                      {"event": "step", "stage": "cpt", "step": 40, "loss": 6.5}], tmp_path)
    assert any("40 steps  loss 7.000 -> 6.500" in ln and "(no output)" in ln for ln in killed), killed
