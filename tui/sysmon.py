"""One sample of the machine: per-GPU numbers from NVML, or host RAM/CPU from psutil when no NVIDIA GPU.

Plain functions, no UI: the monitor calls `Sampler.sample()` from a thread worker.
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


class Sampler:
    """Opens NVML once; falls back to the host when there is no driver or no device."""

    def __init__(self):
        self.nvml = None
        self.why_no_gpu = None
        try:
            import pynvml
            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() == 0:
                raise RuntimeError("no devices")
            self.nvml = pynvml
        except Exception as e:  # no driver, no library, no device: all mean "no GPU here"
            self.why_no_gpu = str(e).strip() or type(e).__name__

    def sample(self) -> Sample:
        if self.nvml is not None:
            try:
                return Sample(gpus=self._gpus())
            except Exception as e:
                self.why_no_gpu = f"NVML stopped answering: {e}"
                self.close()
        return Sample(host=self._host(), note=f"no NVIDIA GPU found ({self.why_no_gpu}); showing the host")

    def _gpus(self) -> list[GpuSample]:
        nv = self.nvml
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = nv.nvmlDeviceGetName(h)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            out.append(GpuSample(index=i, name=name.decode() if isinstance(name, bytes) else name,
                                 mem_used_gib=mem.used / 2**30, mem_total_gib=mem.total / 2**30,
                                 util_pct=_try(lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
                                 temp_c=_try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
                                 power_w=_try(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000)))
        return out

    @staticmethod
    def _host() -> HostSample:
        import psutil
        vm = psutil.virtual_memory()
        return HostSample(cpu_pct=psutil.cpu_percent(interval=None), ram_used_gib=(vm.total - vm.available) / 2**30,
                          ram_total_gib=vm.total / 2**30, cores=psutil.cpu_count() or 1)

    def close(self) -> None:
        if self.nvml is not None:
            try:
                self.nvml.nvmlShutdown()
            except Exception:
                pass
            self.nvml = None


def _try(fn):
    try:
        return fn()
    except Exception:
        return None
