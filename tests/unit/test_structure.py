"""The layout shows the architecture (issue 13): training/ holds the shared contract on top and three
packages; imports only run down (contract <- plan <- report <- runtime), never in a circle, and the engine
never imports the face. Read from the source with ast: every import counts, also one inside a function
(a lazy import is still a dependency)."""
from __future__ import annotations

import ast
from pathlib import Path


ROOT = Path(__file__).resolve().parents[2]
# how documents and pairs are read is contract too: dedup (which documents count, for the scan and the CPT
# stage alike) and hub_data (hf: dataset ids read as local snapshots)
# and what every layer needs to know about a model and its tokenizer: family (resolution, nested text configs,
# attention kernel) and tokens (document affixes, end-of-turn, the masking training uses)
CONTRACT = {"__init__", "recipe", "recipe_load", "recipe_io", "events", "data", "pairs", "dedup", "hub_data", "family", "tokens", "demo"}
SHIMS = {"worker"}  # `python -m training.worker` for runs started before the move: one line to runtime.worker
PACKAGES = {"plan", "runtime", "report"}
RANK = {"contract": 0, "plan": 1, "report": 2, "runtime": 3}  # a module imports its own rank or lower
# commands are faces, like tui/: `tune-wizard plan --preflight` resolves and measures a recipe, so the plan
# command may call the runtime; no module of the engine imports a command
COMMANDS = {"training.plan.cli"}


def module_name(f: Path) -> str:
    parts = list(f.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph(pkg: str) -> dict[str, set[str]]:
    files = {module_name(f): f for f in (ROOT / pkg).rglob("*.py")}
    graph = {}
    for mod, f in files.items():
        deps = set()
        for node in ast.walk(ast.parse(f.read_text(), str(f))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    deps.add(full if full in files else node.module)
            elif isinstance(node, ast.Import):
                deps.update(a.name for a in node.names)
        graph[mod] = deps - {mod}
    return graph


def layer(mod: str) -> str | None:
    parts = mod.split(".")
    if parts[0] != "training":
        return None
    if len(parts) > 1 and parts[1] in PACKAGES:
        return parts[1]
    return "contract"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every elementary circle's members, as strongly connected components of more than one module."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in graph:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_training_top_level_is_the_contract_and_three_packages():
    top = ROOT / "training"
    files = {f.stem for f in top.glob("*.py")}
    dirs = {d.name for d in top.iterdir() if d.is_dir() and d.name != "__pycache__"}
    assert files == CONTRACT | SHIMS, f"unexpected modules on top of training/: {sorted(files - CONTRACT - SHIMS)}"
    assert dirs == PACKAGES, f"unexpected folders in training/: {sorted(dirs - PACKAGES)}"
    assert (top / "worker.py").read_text().count("import") <= 2  # the shim stays a shim


def test_imports_only_run_down_the_structure():
    graph = import_graph("training")
    up = [f"{m} -> {d}" for m, deps in graph.items() for d in deps
          if layer(d) is not None and m != "training.worker" and m not in COMMANDS and RANK[layer(d)] > RANK[layer(m)]]
    assert not [m for m, deps in graph.items() if deps & COMMANDS], "an engine module imports a command"
    assert not up, "imports that run back up (contract <- plan <- report <- runtime):\n" + "\n".join(sorted(up))


def test_the_engine_never_imports_the_face():
    graph = import_graph("training")
    bad = [f"{m} -> {d}" for m, deps in graph.items() for d in deps if d.split(".")[0] in ("tui", "textual")]
    assert not bad, bad


def test_no_import_circles_at_all():
    assert cycles(import_graph("training")) + cycles(import_graph("tui")) == []


def test_the_circle_finder_finds_circles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []
