"""The events contract in code (training/events.py EVENTS): every `emit(...)` in the engine names a known
event type and only its keys; README's events table is the one generated from EVENTS; a recorded real run
and a constructed bad line are checked by `problems()`. Real runs are checked line by line in
tests/integration/test_events_contract_run.py and wherever a test reads events through conftest.events_of."""
from __future__ import annotations

import ast
import json
from pathlib import Path

from training.events import COMMON, EVENTS, markdown_table, problems

ROOT = Path(__file__).resolve().parents[2]


def emit_calls() -> list[tuple[str, int, str, list[str]]]:
    """(file, line, event type, keyword names) of every `*.emit("type", key=...)` call in training/."""
    out = []
    for f in sorted((ROOT / "training").rglob("*.py")):
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "emit":
                first = node.args[0] if node.args else None
                assert isinstance(first, ast.Constant), f"{f}:{node.lineno}: emit's event type must be a literal"
                out.append((str(f.relative_to(ROOT)), node.lineno, first.value,
                            [k.arg for k in node.keywords if k.arg is not None]))
    return out


def test_every_emit_in_the_source_uses_only_contract_keys():
    calls = emit_calls()
    assert len(calls) >= 20  # the worker, the stages, the guard, the measurer, the machine sampler
    bad = [f"{f}:{line}: {event}" + (f" key {k}" if k else " is not an event type")
           for f, line, event, keys in calls
           for k in ([None] if event not in EVENTS else [k for k in keys if k not in EVENTS[event]])]
    assert not bad, "emit() outside training/events.py EVENTS:\n" + "\n".join(bad)


def test_the_machine_sample_matches_the_gpu_event():
    from training.runtime.machine import Machine
    m = Machine()
    try:
        rec = {"v": 1, "t": 0.0, "event": "gpu", **m.sample()}
    finally:
        m.close()
    assert problems(rec) == []
    assert rec.get("gpus") or rec["host"]["ram_total_gib"] > 0


def test_problems_names_unknown_types_and_keys():
    assert problems({"v": 1, "t": 1.0, "event": "step", "stage": "cpt", "loss": 1.0}) == []
    assert problems({"v": 1, "t": 1.0, "event": "step", "stage": "cpt", "los": 1.0}) == ["step: unknown key 'los'"]
    assert problems({"v": 1, "t": 1.0, "event": "stepp"}) == ["unknown event type 'stepp'"]
    assert problems({"event": "finished"}) == ["missing v", "missing t"]
    assert set(COMMON) == {"v", "t", "event"}


def test_a_recorded_real_run_is_inside_the_contract():
    lines = (ROOT / "tests" / "tui" / "data" / "sample-run" / "events.jsonl").read_text().splitlines()
    bad = [(i + 1, p) for i, line in enumerate(lines) for p in problems(json.loads(line))]
    assert len(lines) > 20 and not bad, bad


def test_readme_events_table_is_generated_from_the_contract():
    readme = (ROOT / "README.md").read_text()
    start, end = "<!-- events-table: python -m training.events --markdown -->\n", "\n<!-- /events-table -->"
    assert start in readme and end in readme, "README lost its generated events table markers"
    shown = readme.split(start, 1)[1].split(end, 1)[0]
    assert shown == markdown_table(), "README's events table is stale: paste `python -m training.events --markdown`"
