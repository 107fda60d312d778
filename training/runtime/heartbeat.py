"""The worker's pid file and heartbeat: how any terminal tells a live run from a dead one.

RUN_DIR/pid        the worker's pid (it leads its own session and process group, so pgid == pid)
RUN_DIR/heartbeat  JSON {t, pid, stage, step, total_steps}, rewritten atomically every few seconds

A run is alive when its pid exists, is a tune-wizard worker for this run (not a reused pid), and is
not a zombie. A heartbeat older than STALE_S with a live pid means a hung process. No torch here.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

from training.runtime.checkpoints import write_json_atomic

INTERVAL_S = 5.0
STALE_S = 120.0


def read_pid(run: Path) -> int | None:
    try:
        return int((run / "pid").read_text().strip())
    except (OSError, ValueError):
        return None


def worker_alive(run: Path) -> bool:
    pid = read_pid(run)
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        worker = any(m in cmd for m in (b"training.runtime.worker", b"training.worker"))  # old runs: training.worker
        return worker and any(Path(c.decode(errors="replace")).name == run.name for c in cmd if c)
    except OSError:
        return True  # no /proc (macOS): trust the pid


def read_heartbeat(run: Path) -> dict | None:
    try:
        return json.loads((run / "heartbeat").read_text())
    except (OSError, ValueError):
        return None


class Heartbeat:
    """A daemon thread that rewrites RUN_DIR/heartbeat; `update()` sets what it reports."""

    def __init__(self, run: Path, interval: float = INTERVAL_S):
        self.path = run / "heartbeat"
        self.interval = interval
        self.state: dict = {"pid": os.getpid()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self.beat()
        self._thread.start()
        return self

    def update(self, **kw) -> None:
        self.state.update(kw)

    def beat(self) -> None:
        try:
            write_json_atomic(self.path, {"t": round(time.time(), 3), **self.state})
        except OSError:
            pass  # a full disk must not kill training from this thread; the checkpoint save reports it

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def stop(self) -> None:
        self._stop.set()
        self.beat()
