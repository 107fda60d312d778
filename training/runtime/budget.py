"""The budget cap: spend = elapsed hours x price per GPU-hour x GPU count, over every segment of a run
(a resumed run keeps counting from where it stopped). Pure arithmetic; the guard callback acts on it."""
from __future__ import annotations

from dataclasses import dataclass


def elapsed_before(events: list[dict]) -> float:
    """Seconds of wall time already spent by earlier segments: a segment's `finished` runtime_s (counted
    from the worker's start, like the spend), or for a killed segment its run_start to its last event."""
    total, start, last, runtime = 0.0, None, None, None

    def close():
        return runtime if runtime is not None else (max(0.0, last - start) if start is not None else 0.0)

    for ev in events:
        t = ev.get("t")
        if not isinstance(t, (int, float)):
            continue
        if ev.get("event") == "run_start":
            total += close()
            start, runtime = t, None
        elif ev.get("event") == "finished" and isinstance(ev.get("runtime_s"), (int, float)):
            runtime = ev["runtime_s"]
        last = t
    return total + close()


@dataclass
class Budget:
    cap_usd: float | None
    price_per_gpu_hour: float
    gpu_count: int
    t0: float                   # this segment's start (time.time())
    spent_before_s: float = 0.0

    @property
    def usd_per_s(self) -> float:
        return self.price_per_gpu_hour * self.gpu_count / 3600.0

    def spend(self, now: float) -> float:
        return (self.spent_before_s + max(0.0, now - self.t0)) * self.usd_per_s

    def reached(self, now: float) -> bool:
        return self.cap_usd is not None and self.spend(now) >= self.cap_usd

    def projected(self, now: float, remaining_s: float) -> float:
        return self.spend(now) + max(0.0, remaining_s) * self.usd_per_s

    def over(self, now: float, remaining_s: float) -> bool:
        return self.cap_usd is not None and self.projected(now, remaining_s) > self.cap_usd
