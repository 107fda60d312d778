"""The preflight's memory side: peak memory of a stage (torch allocator and NVML on CUDA, peak RSS on the CPU),
the out-of-memory test, and the micro-batch search that halves on out-of-memory (used by preflight_measure.py)."""
from __future__ import annotations

import math
from pathlib import Path

from training.runtime.preflight import GIB, MARGIN


def sync() -> None:
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def du(path: Path) -> int:
    if not path.exists():
        return 0
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class PeakMemory:
    """Peak memory of the stage: CUDA allocator peak plus NVML's device-used peak (sampled every 0.2 s),
    or the process's peak RSS (VmHWM, reset through /proc/self/clear_refs)."""

    def __init__(self):
        import torch
        self.cuda = torch.cuda.is_available()
        self.nvml_peak = 0.0
        self._stop = None

    def start(self) -> "PeakMemory":
        import threading
        import torch
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            try:
                import pynvml
                pynvml.nvmlInit()
                h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
                self._stop = threading.Event()

                def sample():
                    while not self._stop.is_set():
                        self.nvml_peak = max(self.nvml_peak, pynvml.nvmlDeviceGetMemoryInfo(h).used / GIB)
                        self._stop.wait(0.2)
                threading.Thread(target=sample, daemon=True).start()
            except Exception:
                pass
        else:
            try:
                Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            except OSError:
                pass
        return self

    def stop(self) -> dict:
        import torch
        if self._stop is not None:
            self._stop.set()
        if self.cuda:
            free, total = torch.cuda.mem_get_info()
            peak = torch.cuda.max_memory_allocated() / GIB
            return {"peak_mem_gib": peak, "peak_mem_kind": "cuda_max_allocated", "nvml_peak_gib": self.nvml_peak or None,
                    "memory_limit_gib": total / GIB, "headroom_gib": total / GIB - max(peak, self.nvml_peak)}
        peak = _vm_hwm_gib()
        limit = _host_total_gib()
        return {"peak_mem_gib": peak, "peak_mem_kind": "rss_peak", "nvml_peak_gib": None,
                "memory_limit_gib": limit, "headroom_gib": limit - peak}


def _vm_hwm_gib() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GIB
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _host_total_gib() -> float:
    import psutil
    return psutil.virtual_memory().total / GIB


class SimulatedOOM(RuntimeError):
    """Raised instead of a real CUDA out-of-memory when a batch-token cap simulates a smaller card (tests)."""


def _is_oom(e: BaseException) -> bool:
    import torch
    return isinstance(e, (torch.cuda.OutOfMemoryError, SimulatedOOM)) or "out of memory" in str(e).lower()


def find_micro_batch(rows_per_step: int, try_step, limit_gib: float, margin: float = MARGIN,
                     start: int | None = None) -> dict:
    """The largest micro-batch (halving from `start`, at most rows_per_step) whose measured step peak leaves
    `margin` of `limit_gib` free; `try_step(micro) -> peak GiB` raises on out-of-memory. The accumulation
    keeps rows_per_step (rounded up when the micro-batch does not divide it)."""
    m = max(1, min(start or rows_per_step, rows_per_step))
    tried = []
    while True:
        try:
            peak = try_step(m)
        except Exception as e:  # noqa: BLE001 - only out-of-memory is expected; everything else propagates
            if not _is_oom(e):
                raise
            tried.append({"micro": m, "result": "out of memory" + (" (simulated)" if isinstance(e, SimulatedOOM) else "")})
            free_memory()
            if m == 1:
                return {"micro": None, "tried": tried, "reason": "even micro-batch 1 ran out of memory"}
            m //= 2
            continue
        ok = peak <= (1 - margin) * limit_gib
        tried.append({"micro": m, "result": f"peak {peak:.2f} GiB", "fits": ok})
        if ok or m == 1:
            accum = math.ceil(rows_per_step / m)
            why = (f"measured: micro-batch {m} peaks at {peak:.2f} GiB, within {1 - margin:.0%} of {limit_gib:.1f} GiB"
                   + ("" if ok else " (NOT within the margin even at 1)")
                   + f"; tried {', '.join(str(t['micro']) for t in tried)}; grad_accum {accum} keeps "
                   f"{rows_per_step} rows per optimizer step")
            return {"micro": m, "accum": accum, "peak_gib": peak, "fits": ok, "tried": tried, "reason": why}
        free_memory()
        m //= 2


def free_memory() -> None:
    import gc
    import torch
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
