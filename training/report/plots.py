"""Loss-curve PNGs for the run report: one image per stage, train loss per logged step and eval loss.

matplotlib with the Agg backend (no display needed over SSH), imported only here, only by the report.
"""
from __future__ import annotations

import re
from pathlib import Path


def safe_name(stage: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", stage) or "stage"


def loss_series(events: list[dict]) -> dict[str, dict[str, list[tuple[int, float]]]]:
    """{stage: {"train": [(step, loss)], "eval": [(step, eval_loss)]}} in the order the stages ran."""
    out: dict[str, dict[str, list[tuple[int, float]]]] = {}
    for ev in events:
        kind = ev.get("event")
        if kind == "step" and isinstance(ev.get("loss"), (int, float)):
            out.setdefault(ev["stage"], {"train": [], "eval": []})["train"].append((ev["step"], ev["loss"]))
        elif kind == "eval" and isinstance(ev.get("eval_loss"), (int, float)):
            out.setdefault(ev["stage"], {"train": [], "eval": []})["eval"].append((ev["step"], ev["eval_loss"]))
    return out


def plot_losses(events: list[dict], folder: Path) -> dict[str, Path]:
    """Write folder/loss-<stage>.png for every stage with logged losses; returns {stage: path}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for stage, series in loss_series(events).items():
        if not series["train"] and not series["eval"]:
            continue
        fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
        if series["train"]:
            xs, ys = zip(*series["train"])
            ax.plot(xs, ys, label="train loss", color="#1f77b4", linewidth=1.6)
        if series["eval"]:
            xs, ys = zip(*series["eval"])
            ax.plot(xs, ys, label="eval loss (held out)", color="#d62728", marker="o", linewidth=1.4)
        ax.set_title(f"stage {stage}")
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("loss (nats per token)")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = folder / f"loss-{safe_name(stage)}.png"
        fig.savefig(path)
        plt.close(fig)
        written[stage] = path
    return written
