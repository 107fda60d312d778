"""The engine runs without the UI library, and the UI never loads the ML stack (it must start fast)."""
from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "transformers", "peft", "trl", "datasets", "bitsandbytes", "accelerate")


def modules(pkg: str) -> list[str]:
    # with the prefix, walk_packages also descends into subpackages (training.plan, training.runtime.stages ...)
    return sorted(m.name for m in pkgutil.walk_packages([str(ROOT / pkg)], prefix=f"{pkg}.")
                  if not m.name.rsplit(".", 1)[-1].startswith("_"))


def loaded_after_import(names: list[str], blocked: tuple[str, ...] = ()) -> set[str]:
    """Import `names` in a fresh interpreter where `blocked` packages cannot be imported at all."""
    code = (
        "import sys, importlib.abc\n"
        f"blocked = {blocked!r}\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name.split('.')[0] in blocked: raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        f"for n in {names!r}: importlib.import_module(n)\n"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))\n"
    )
    out = subprocess.run([sys.executable, "-c", "import importlib\n" + code], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return set(out.stdout.split())


def test_training_imports_without_textual():
    mods = [m for m in modules("training")]
    loaded = loaded_after_import(mods, blocked=("textual",))
    assert "textual" not in loaded


def test_tui_never_loads_the_ml_stack():
    loaded = loaded_after_import(modules("tui"), blocked=HEAVY)
    assert not loaded & set(HEAVY), loaded & set(HEAVY)


def test_help_is_fast_and_light():
    out = subprocess.run([sys.executable, "-X", "importtime", "-m", "tui.cli", "--help"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "--recipe" in out.stdout
    imported = {line.split("|")[-1].strip().split(".")[0] for line in out.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY + ("textual",)), imported & set(HEAVY)
