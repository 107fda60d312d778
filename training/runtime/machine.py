"""The run's machine, sampled by the worker into `gpu` events: per-GPU numbers from NVML, or the host's CPU
and RAM (psutil) where there is no NVIDIA GPU. A monitor attached from another terminal or another machine
reads these events, so it shows the machine the run is on, not its own. No torch here.
"""
from __future__ import annotations

import socket
import threading

INTERVAL_S = 10.0


def _try(fn):
    try:
        return fn()
    except Exception:  # noqa: BLE001 - a reading the driver does not give is shown as missing
        return None


class Machine:
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
        except Exception as e:  # noqa: BLE001 - no driver, no library, no device: all mean "no GPU here"
            self.why_no_gpu = str(e).strip() or type(e).__name__

    def sample(self) -> dict:
        """The `gpu` event's fields: {gpus: [...]} or {host: {...}, note}; both with hostname."""
        if self.nvml is not None:
            try:
                return {"gpus": self._gpus(), "hostname": socket.gethostname()}
            except Exception as e:  # noqa: BLE001
                self.why_no_gpu = f"NVML stopped answering: {e}"
                self.close()
        return {"host": self._host(), "note": f"no NVIDIA GPU found ({self.why_no_gpu}); showing the host",
                "hostname": socket.gethostname()}

    def _gpus(self) -> list[dict]:
        nv = self.nvml
        out = []
        for i in range(nv.nvmlDeviceGetCount()):
            h = nv.nvmlDeviceGetHandleByIndex(i)
            name = nv.nvmlDeviceGetName(h)
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            out.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                        "mem_used_gib": mem.used / 2**30, "mem_total_gib": mem.total / 2**30,
                        "util_pct": _try(lambda: nv.nvmlDeviceGetUtilizationRates(h).gpu),
                        "temp_c": _try(lambda: nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU)),
                        "power_w": _try(lambda: nv.nvmlDeviceGetPowerUsage(h) / 1000)})
        return out

    @staticmethod
    def _host() -> dict:
        import psutil
        vm = psutil.virtual_memory()
        return {"cpu_pct": psutil.cpu_percent(interval=None), "ram_used_gib": (vm.total - vm.available) / 2**30,
                "ram_total_gib": vm.total / 2**30, "cores": psutil.cpu_count() or 1}

    def close(self) -> None:
        if self.nvml is not None:
            _try(self.nvml.nvmlShutdown)
            self.nvml = None


class MachineEvents:
    """A daemon thread that emits a `gpu` event now and every `interval` seconds until stop()."""

    def __init__(self, events, interval: float = INTERVAL_S):
        self.events, self.interval = events, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="machine-sampler", daemon=True)

    def start(self) -> "MachineEvents":
        self._thread.start()
        return self

    def _loop(self) -> None:
        m = Machine()
        try:
            while True:
                self.events.emit("gpu", **m.sample())
                if self._stop.wait(self.interval):
                    break
        finally:
            m.close()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
