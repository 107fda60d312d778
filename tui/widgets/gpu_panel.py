"""Per-GPU memory, utilisation, temperature and power (NVML), or host RAM and CPU with a plain note."""
from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from tui.sysmon import Sample


def _bar(frac: float, width: int = 10) -> str:
    frac = min(1.0, max(0.0, frac))
    n = int(round(frac * width))
    return "▮" * n + "▯" * (width - n)


def gpu_text(s: Sample | None) -> Text:
    where = f" of the run: {s.hostname}" if s is not None and s.from_run and s.hostname else ""
    t = Text(f"hardware{where}\n", style="bold")
    if s is None:
        return t.append("sampling...", style="dim")
    for g in s.gpus:
        mem = g.mem_used_gib / g.mem_total_gib if g.mem_total_gib else 0
        t.append(f"GPU{g.index} {g.name[:18]}\n")
        t.append(f" mem {_bar(mem)} {g.mem_used_gib:.1f}/{g.mem_total_gib:.0f} GiB\n",
                 style="red" if mem > 0.95 else "")
        t.append(f" util {g.util_pct if g.util_pct is not None else '-'}%  "
                 f"{g.temp_c if g.temp_c is not None else '-'}°C  "
                 f"{f'{g.power_w:.0f}' if g.power_w is not None else '-'} W\n")
    if s.host is not None:
        h = s.host
        t.append("no GPU found: host\n", style="yellow")
        t.append(f" CPU {_bar(h.cpu_pct / 100)} {h.cpu_pct:.0f}% of {h.cores}\n")
        t.append(f" RAM {_bar(h.ram_used_gib / h.ram_total_gib)} {h.ram_used_gib:.1f}/{h.ram_total_gib:.1f} GiB")
    return t


class GpuPanel(Static):
    def show(self, s: Sample | None) -> None:
        self.update(gpu_text(s))
