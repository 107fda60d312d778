"""The monitor reads the run's machine and bills time like the budget cap (issue 13 item 3)."""
from __future__ import annotations

import json

from training.runtime.budget import elapsed_before
from tui.runstate import load_run
from tui.sysmon import sample_from
from tui.widgets.gpu_panel import gpu_text


def write_events(run, evs):
    run.mkdir(parents=True, exist_ok=True)
    (run / "recipe.yaml").write_text("name: r\nhardware: {gpu: H100, gpu_count: 2, price_per_gpu_hour: 3.6}\n"
                                     "stages: [{type: cpt}]\n")
    (run / "events.jsonl").write_text("".join(json.dumps({"v": 1, **e}) + "\n" for e in evs))


SEGMENTS = [  # killed after 10 s, resumed 90 s later, finished after 20 s more
    {"t": 1000.0, "event": "run_start"}, {"t": 1010.0, "event": "step", "stage": "cpt", "step": 1, "loss": 2.0},
    {"t": 1100.0, "event": "run_start", "resumed": True},
    {"t": 1110.0, "event": "step", "stage": "cpt", "step": 2, "loss": 1.9},
]


def test_cost_of_a_resumed_run_counts_segments_like_the_budget_cap(tmp_path):
    run = tmp_path / "r-1"
    write_events(run, SEGMENTS)
    st = load_run(run)
    assert st.elapsed_s(now=1115.0) == elapsed_before(SEGMENTS + [{"t": 1115.0, "event": "x"}]) == 25.0
    assert st.cost_so_far(now=1115.0) == 25.0 / 3600 * 3.6 * 2  # not the 115 s from the first event
    write_events(run, SEGMENTS + [{"t": 1121.0, "event": "finished", "status": "ok", "runtime_s": 20.0}])
    st = load_run(run)
    assert st.elapsed_s() == elapsed_before(SEGMENTS + [{"t": 1121.0, "event": "finished", "runtime_s": 20.0}]) == 30.0


def test_the_monitor_shows_the_machine_the_run_reports(tmp_path):
    gpu = {"t": 1001.0, "event": "gpu", "hostname": "box-7",
           "gpus": [{"index": 0, "name": "NVIDIA H100 80GB HBM3", "mem_used_gib": 61.2, "mem_total_gib": 79.6,
                     "util_pct": 97, "temp_c": 64, "power_w": 612.0}]}
    run = tmp_path / "r-2"
    write_events(run, SEGMENTS[:1] + [gpu])
    st = load_run(run)
    sample = sample_from(st.machine)
    sample.from_run = True
    text = gpu_text(sample).plain
    assert "hardware of the run: box-7" in text and "GPU0 NVIDIA H100 80GB" in text and "61.2/80 GiB" in text
    host = sample_from({"host": {"cpu_pct": 50.0, "ram_used_gib": 3.0, "ram_total_gib": 16.0, "cores": 8},
                        "note": "no NVIDIA GPU found", "hostname": "cpu-box"})
    assert host.gpus == [] and host.host.cores == 8
