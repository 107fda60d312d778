"""The monitor's data-preparation line, folded from `prepare` events (training/runtime/prepare.py)."""
from __future__ import annotations

from pathlib import Path

from tui.runstate import RunState, fmt_bytes
from tui.widgets.timeline import timeline_text


def test_preparing_line_until_the_first_step():
    st = RunState(run=Path("/nonexistent"))
    st.apply({"event": "prepare", "stage": "cpt", "phase": "tokenize", "fraction": 0.35, "bytes_done": 2.1e9,
              "bytes_total": 6e9, "t": 1.0})
    assert st.current().preparing == "preparing data: 35%, 2.1 GB of 6 GB"
    assert "preparing data: 35%, 2.1 GB of 6 GB" in timeline_text(st).plain
    st.apply({"event": "prepare", "stage": "cpt", "phase": "dedup", "fraction": 0.1, "bytes_done": 1.2e9,
              "bytes_total": 6e9, "t": 2.0})
    assert st.current().preparing.endswith("(finding near duplicates)")
    st.apply({"event": "prepare", "stage": "cpt", "phase": "done", "fraction": 1.0, "bytes_done": 6e9,
              "bytes_total": 6e9, "t": 3.0})
    assert st.current().preparing is None
    st.apply({"event": "step", "stage": "cpt", "step": 1, "total_steps": 10, "loss": 3.0, "t": 4.0})
    assert "preparing" not in timeline_text(st).plain


def test_fmt_bytes():
    assert [fmt_bytes(x) for x in (512, 640e6, 2.1e9, 6e9, None)] == ["512 B", "640 MB", "2.1 GB", "6 GB", "?"]
