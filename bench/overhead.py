"""What monitoring costs per training step: writing one `step` event to events.jsonl (as EventCallback does),
one host sample through psutil, and one NVML sample of every GPU where NVML answers. Each is timed over
many repetitions (median); the fraction is their sum over the default variant's median step time, i.e. as
if all three happened on every optimizer step (the engine logs every `logging_steps` steps, so less)."""
from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path


def _median_s(fn, n: int = 300) -> float:
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def monitoring_overhead(step_s: float | None) -> dict:
    from training.events import EventWriter
    out: dict = {}
    with tempfile.TemporaryDirectory() as d:
        ev = EventWriter(Path(d) / "events.jsonl")
        fields = dict(stage="cpt", step=100, total_steps=1000, epoch=0.1, loss=2.345678, lr=1e-5, grad_norm=0.9,
                      tokens=123456789, tokens_per_s=54321.0, step_time_s=0.5, elapsed_s=50.0, eta_s=450.0)
        out["event_write_s"] = _median_s(lambda: ev.emit("step", **fields))
        ev.close()
    try:
        import psutil
        proc = psutil.Process()

        def host():
            return psutil.cpu_percent(None), psutil.virtual_memory().used, proc.memory_info().rss
        out["host_sample_s"] = _median_s(host)
    except ImportError:
        out["host_sample_s"] = None
    out["nvml_sample_s"] = _nvml_sample_s()
    total = sum(v for v in out.values() if v)
    out["step_s"] = step_s
    out["fraction_of_step"] = round(total / step_s, 6) if step_s else None
    out = {k: (round(v, 7) if isinstance(v, float) else v) for k, v in out.items()}
    return out


def _nvml_sample_s() -> float | None:
    try:
        import pynvml
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:
        return None
    if not handles:
        return None

    def sample():
        for h in handles:
            pynvml.nvmlDeviceGetMemoryInfo(h)
            pynvml.nvmlDeviceGetUtilizationRates(h)
            pynvml.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
            pynvml.nvmlDeviceGetPowerUsage(h)
    try:
        return _median_s(sample, 100)
    finally:
        pynvml.nvmlShutdown()
