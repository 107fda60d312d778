"""Which checkpoints can be trusted, and saving a folder so that it is either complete or absent.

The Trainer writes `checkpoints/<stage>/checkpoint-N` in place (weights, then optimizer and scheduler,
RNG states, trainer_state.json). A kill -9 or a full disk in the middle leaves a folder that looks like
a checkpoint but is not one. So a checkpoint counts only once `tw-complete.json` is in it: written last,
after every file has been flushed to disk, naming each file and its size. Resume takes the newest
checkpoint whose marker is there and whose files still have those sizes, and removes the others.

Final outputs (`<stage>/model`, `<stage>/adapter`) are written into a temporary sibling folder and
renamed into place (a rename is atomic), so an output folder that exists is complete.

No torch here: the face and the resume checks use it too.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import time
from pathlib import Path

MARKER = "tw-complete.json"
_CKPT = re.compile(r"^checkpoint-(\d+)$")


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON to a temporary file, flush it to disk, then rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def mark_complete(ckpt: Path, step: int, extra: dict | None = None) -> None:
    """Flush every file of a checkpoint to disk, then write the marker that makes it usable."""
    files = {}
    for p in sorted(ckpt.rglob("*")):
        if p.is_file() and p.name != MARKER:
            _fsync_file(p)
            files[str(p.relative_to(ckpt))] = p.stat().st_size
    _fsync_dir(ckpt)
    write_json_atomic(ckpt / MARKER, {"step": step, "t": round(time.time(), 3), "files": files, **(extra or {})})
    _fsync_dir(ckpt)


def checkpoint_problem(ckpt: Path) -> str | None:
    """None when the checkpoint is complete, else why it cannot be used."""
    m = ckpt / MARKER
    if not m.is_file():
        return "no completion marker (the save was interrupted)"
    try:
        data = json.loads(m.read_text(encoding="utf-8"))
        files = data["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return "unreadable completion marker"
    for rel, size in files.items():
        p = ckpt / rel
        if not p.is_file():
            return f"{rel} is missing"
        if p.stat().st_size != size:
            return f"{rel} has {p.stat().st_size} bytes, the marker says {size}"
    if not (ckpt / "trainer_state.json").is_file():
        return "no trainer_state.json"
    return None


def step_of(ckpt: Path) -> int | None:
    m = _CKPT.match(ckpt.name)
    return int(m.group(1)) if m else None


def all_checkpoints(stage_dir: Path) -> list[Path]:
    """checkpoint-N folders of a stage, oldest first."""
    if not stage_dir.is_dir():
        return []
    found = [p for p in stage_dir.iterdir() if p.is_dir() and step_of(p) is not None]
    return sorted(found, key=step_of)


def latest_complete(stage_dir: Path) -> Path | None:
    for ckpt in reversed(all_checkpoints(stage_dir)):
        if checkpoint_problem(ckpt) is None:
            return ckpt
    return None


def discard_incomplete(stage_dir: Path) -> list[tuple[str, str]]:
    """Remove every checkpoint folder that is not complete; returns [(name, why)] of those removed."""
    removed = []
    for ckpt in all_checkpoints(stage_dir):
        why = checkpoint_problem(ckpt)
        if why is not None:
            shutil.rmtree(ckpt, ignore_errors=True)
            removed.append((ckpt.name, why))
    return removed


def temp_output(final: Path) -> Path:
    """A clean temporary folder next to `final` to save into before `publish`."""
    tmp = final.with_name(f".{final.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    return tmp


def publish(tmp: Path, final: Path) -> None:
    """Rename a fully written folder into place (replacing an older one)."""
    for p in tmp.rglob("*"):
        if p.is_file():
            _fsync_file(p)
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(final.parent)
