"""One sample of the machine: per-GPU numbers from NVML, or host RAM/CPU from psutil when no NVIDIA GPU.

Plain functions, no UI. The monitor shows the run's own `gpu` events when the run writes them (the worker
samples its machine, training/runtime/machine.py); `Sampler` samples this machine for older runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class GpuSample:
    index: int
    name: str
    mem_used_gib: float
    mem_total_gib: float
    util_pct: float | None
    temp_c: float | None
    power_w: float | None


@dataclass
class HostSample:
    cpu_pct: float
    ram_used_gib: float
    ram_total_gib: float
    cores: int


@dataclass
class Sample:
    gpus: list[GpuSample] = field(default_factory=list)
    host: HostSample | None = None
    note: str | None = None  # e.g. "no NVIDIA GPU found (NVML: ...)"
    hostname: str | None = None  # the machine sampled (a run's `gpu` events name theirs)
    from_run: bool = False  # True: read from the run's `gpu` events; False: sampled here


def sample_from(fields: dict) -> Sample:
    """A Sample from a `gpu` event's fields (training/runtime/machine.py writes them; the run's machine)."""
    host = fields.get("host")
    gpus = [GpuSample(**{k: g.get(k) for k in GpuSample.__dataclass_fields__}) for g in fields.get("gpus") or []]
    return Sample(gpus=gpus, host=HostSample(**{k: host.get(k) for k in HostSample.__dataclass_fields__}) if host else None,
                  note=fields.get("note"), hostname=fields.get("hostname"))


class Sampler:
    """This machine, for a run that writes no `gpu` events (runs started before they existed)."""

    def __init__(self):
        from training.runtime.machine import Machine
        self.machine = Machine()

    def sample(self) -> Sample:
        return sample_from(self.machine.sample())

    def close(self) -> None:
        self.machine.close()
