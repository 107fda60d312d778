"""Calibration that learns: measured throughput on this machine's card, used before the static constants.

Every preflight and every finished run appends one line per stage to the calibration file, a JSON Lines
file at $TUNE_WIZARD_CALIBRATION, else $TUNE_WIZARD_HOME/calibration.jsonl (default
~/.cache/tune-wizard/calibration.jsonl). Clear it by deleting the file;
TUNE_WIZARD_CALIBRATION=off turns it off (nothing read, nothing written).

A point: card (the CUDA device name, or "cpu"), model shape (params, layers, hidden), method, seq,
micro-batch, grad_accum, settings, measured tokens/s, MFU (when the card's peak is known) and peak memory.

`nearest(card, method, shape, seq)`: the measured point on the same card and method whose model size and
sequence length are closest (log distance); its throughput is carried over to the asked shape by the FLOPs
per token (the measured MFU is kept): tokens/s x F(point) / F(asked). Pure Python, no torch.
"""
from __future__ import annotations

import datetime as _dt
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

SAME_CARD_ALIASES = {"nvidia h200": "h200", "nvidia h100 80gb hbm3": "h100", "nvidia a100-sxm4-80gb": "a100-80gb",
                     "nvidia a100-sxm4-40gb": "a100-40gb", "nvidia geforce rtx 4090": "rtx4090", "nvidia l40s": "l40s"}


def path() -> Path | None:
    env = os.environ.get("TUNE_WIZARD_CALIBRATION")
    if env and env.lower() == "off":
        return None
    if env:
        return Path(os.path.expanduser(env))
    home = Path(os.environ.get("TUNE_WIZARD_HOME", Path.home() / ".cache" / "tune-wizard"))
    return home / "calibration.jsonl"


def card_key(name: str | None) -> str:
    """One spelling per card: 'NVIDIA H100 80GB HBM3' (CUDA), 'H100' (the price table) and 'h100' all match."""
    n = (name or "cpu").strip().lower()
    if n in SAME_CARD_ALIASES:
        return SAME_CARD_ALIASES[n]
    try:
        from training.plan.cards import find_card
        c = find_card(n.removeprefix("nvidia ").replace(" ", "-"))
        if c is not None:
            return c.name.lower()
    except Exception:  # noqa: BLE001 - an unreadable price table must not break the lookup
        pass
    return n


def flops_per_token(flops_params: float, layers: int, hidden: int, seq: int, method: str) -> float:
    k = 6 if method == "full" else 4
    return k * flops_params + 6 * layers * hidden * seq


def append(points: list[dict]) -> Path | None:
    p = path()
    if p is None or not points:
        return None
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "a", encoding="utf-8") as f:
        for pt in points:
            f.write(json.dumps(pt) + "\n")
    return p


def load() -> list[dict]:
    p = path()
    if p is None or not p.is_file():
        return []
    out = []
    for line in p.read_text(encoding="utf-8").splitlines():
        try:
            d = json.loads(line)
        except ValueError:
            continue  # a torn last line (two writers) is skipped, never fatal
        if isinstance(d, dict) and d.get("tokens_per_s"):
            out.append(d)
    return out


def point(source: str, card: str, shape, method: str, seq: int, micro: int, accum: int, tokens_per_s: float,
          peak_mem_gib: float | None, settings: dict | None = None, card_tflops: float | None = None) -> dict:
    f = flops_per_token(shape.flops_params, shape.layers, shape.hidden, seq, method)
    return {"date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), "source": source,
            "card": card, "card_key": card_key(card), "model": shape.name, "params": shape.total_params,
            "flops_params": shape.flops_params, "layers": shape.layers, "hidden": shape.hidden,
            "method": method, "seq": seq, "micro_batch": micro, "grad_accum": accum,
            "tokens_per_s": tokens_per_s, "peak_mem_gib": peak_mem_gib,
            "mfu": (tokens_per_s * f / (card_tflops * 1e12)) if card_tflops else None,
            "settings": settings or {}}


@dataclass
class Hit:
    tokens_per_s: float   # carried over to the asked shape and seq
    point: dict

    def describe(self) -> str:
        p = self.point
        return (f"measured on this card ({p['source']} {p['date'][:10]}: {p['card']}, {p['model']}, {p['method']}, "
                f"seq {p['seq']}, micro-batch {p['micro_batch']}: {p['tokens_per_s']:,.0f} tok/s)")


def nearest(card: str, method: str, shape, seq: int, points: list[dict] | None = None) -> Hit | None:
    key = card_key(card)
    pts = [p for p in (load() if points is None else points) if p.get("card_key") == key and p.get("method") == method]
    if not pts:
        return None

    def dist(p):
        return abs(math.log(max(p["flops_params"], 1) / max(shape.flops_params, 1))) + \
            0.5 * abs(math.log(max(p["seq"], 1) / max(seq, 1)))
    best = min(pts, key=lambda p: (dist(p), p["date"]))  # ties: the oldest... newest below
    best = max((p for p in pts if dist(p) == dist(best)), key=lambda p: p["date"])
    f_point = flops_per_token(best["flops_params"], best["layers"], best["hidden"], best["seq"], method)
    f_asked = flops_per_token(shape.flops_params, shape.layers, shape.hidden, seq, method)
    return Hit(tokens_per_s=best["tokens_per_s"] * f_point / f_asked, point=best)


def record_preflight(report: dict, recipe) -> Path | None:
    """Append a preflight's per-stage measurements."""
    from training.plan.shapes import model_shape
    shape = model_shape(recipe.model.id)
    if shape is None:
        return None
    tflops = _card_tflops(report["device"])
    pts = [point("preflight", report["device"], shape, s["method"], s["seq"], s["micro_batch_size"], s["grad_accum"],
                 s["tokens_per_s"], s["peak_mem_gib"], {"recipe": recipe.name}, tflops)
           for s in report["stages"] if s.get("tokens_per_s")]
    return append(pts)


def record_run(run_dir: Path) -> Path | None:
    """Append a finished run's per-stage throughput (median tokens/s of its logged steps after the first)."""
    import statistics
    from training.events import read_events
    from training.recipe_load import load_recipe
    from training.plan.shapes import model_shape
    recipe = load_recipe(run_dir / "recipe.yaml", check_paths=False)
    shape = model_shape(recipe.model.id)
    if shape is None:
        return None
    events = read_events(run_dir / "events.jsonl")
    device = next((e.get("device") for e in events if e["event"] == "run_start"), "cpu")
    tflops = _card_tflops(device)
    pts = []
    for st in recipe.stages:
        tps = [e["tokens_per_s"] for e in events if e["event"] == "step" and e.get("stage") == st.name
               and e.get("step", 0) > 1 and e.get("tokens_per_s")]
        end = next((e for e in events if e["event"] == "stage_end" and e.get("stage") == st.name), None)
        if not tps or end is None:
            continue
        method = "full" if st.type == "cpt" else st.method
        seq = st.seq_len if st.type == "cpt" else st.max_seq_len
        pts.append(point("run", device, shape, method, seq, st.micro_batch_size, st.grad_accum,
                         statistics.median(tps), end.get("peak_mem_gib"), {"run": run_dir.name}, tflops))
    return append(pts)


def _card_tflops(device: str) -> float | None:
    if card_key(device) == "cpu":
        return None
    try:
        from training.plan.cards import find_card
        c = find_card(card_key(device))
        return c.peak_bf16_tflops if c else None
    except Exception:  # noqa: BLE001
        return None
