"""The dated GPU price table (recipes/gpu_prices.yaml): each card's names, memory, dense bf16 peak and price.
Its own module so that the estimate and the calibration file both read it without importing each other."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

PRICES_FILE = Path(__file__).resolve().parents[2] / "recipes" / "gpu_prices.yaml"


@dataclass(frozen=True)
class Card:
    name: str
    memory_gib: float
    peak_bf16_tflops: float
    price_per_hour: float
    price_source: str
    price_date: str
    names: tuple = ()


def load_cards(path: Path | None = None) -> list[Card]:
    data = yaml.safe_load(Path(path or PRICES_FILE).read_text())
    return [Card(name=c["names"][0], names=tuple(str(n).lower() for n in c["names"]), memory_gib=float(c["memory_gib"]),
                 peak_bf16_tflops=float(c["peak_bf16_tflops"]), price_per_hour=float(c["price_per_hour"]),
                 price_source=c["price_source"], price_date=str(c["price_date"])) for c in data["cards"]]


def find_card(name: str, cards: list[Card] | None = None) -> Card | None:
    key = name.strip().lower()
    return next((c for c in (cards or load_cards()) if key in c.names or key == c.name.lower()), None)
