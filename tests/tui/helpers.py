"""Shared bits of the TUI tests: a fixed hardware sample and a copy of the recorded run."""
from __future__ import annotations

import atexit
import subprocess
import sys
import shutil
from pathlib import Path

import pytest

from tui.sysmon import HostSample, Sample

DATA = Path(__file__).parent / "data"


class FixedSampler:
    """The same host numbers every time, so snapshots do not depend on this machine's load."""

    def sample(self) -> Sample:
        return Sample(host=HostSample(cpu_pct=97.0, ram_used_gib=3.1, ram_total_gib=16.0, cores=2),
                      note="no NVIDIA GPU found; showing the host")

    def close(self) -> None:
        pass


def sample_run(dst: Path, running: bool = False, keep_events: int | None = None) -> Path:
    """The recorded demo run copied to dst; `running` cuts it short and points pid at a live process."""
    run = dst / "demo-20261128-071933"
    shutil.copytree(DATA / "sample-run", run)
    if keep_events is not None:
        lines = (run / "events.jsonl").read_text().splitlines(keepends=True)[:keep_events]
        (run / "events.jsonl").write_text("".join(lines))
    if running:  # a stand-in process that looks like this run's worker (pid_alive checks its command line)
        proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)", "training.runtime.worker", str(run)])
        atexit.register(proc.kill)
        (run / "pid").write_text(f"{proc.pid}\n")
    return run


@pytest.fixture(scope="session", autouse=True)
def demo_assets_built_like_the_app(demo_home):
    """Build the demo assets the way the app does, in a fresh subprocess. (Built inside an interpreter
    that has already imported other modules, the demo's docstring pairs can come out one row different,
    which would change what the snapshots show.) Test modules import this fixture to use it."""
    from tui.engine import demo_dir
    return demo_dir()
