"""bench/throughput.py's code path on tiny shapes (--small): the parts that use the 1B/8B shapes on a GPU
run here with the same builders, chooser and JSON. Nothing is timed against a threshold: that is the
benchmark's job (bench/RESULTS.md)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from conftest import ROOT

pytestmark = pytest.mark.integration


def test_small_run_prints_every_variant_as_json(demo_home):
    res = subprocess.run([sys.executable, str(ROOT / "bench" / "throughput.py"), "--small", "--json", "--steps", "1",
                          "--warmup", "0", "--parts", "cpt1b,qlora8b"], capture_output=True, text=True,
                         timeout=900, env=dict(os.environ), cwd=ROOT)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout)
    names = [v["variant"] for v in out["variants"]]
    assert names == ["cpt1b_guide", "cpt1b_default", "qlora8b_guide", "qlora8b_default", "qlora8b_default_qv_only"]
    for v in out["variants"]:
        assert set(v) >= {"variant", "real_tokens_per_s", "mfu", "peak_mem_gib", "speedup_vs_guide"}
        assert v["real_tokens_per_s"] > 0 and "error" not in v
    guide, default = out["variants"][0], out["variants"][1]
    assert guide["speedup_vs_guide"] == 1.0
    assert default["speedup_vs_guide"] == round(default["real_tokens_per_s"] / guide["real_tokens_per_s"], 2)
    assert default["settings"]["micro_batch_size"] * default["settings"]["grad_accum"] == 32  # the guide's 4 x 8
    assert out["resolved_defaults"]["cpt1b"] and all(d["reason"] for d in out["resolved_defaults"]["cpt1b"])
    mon = out["monitoring"]
    assert mon["event_write_s"] > 0 and mon["fraction_of_step"] is not None
