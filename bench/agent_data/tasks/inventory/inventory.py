"""Stock levels, loaded from data/stock.json (a list of {sku, name, quantity})."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "stock.json"


def load(path: Path = DATA) -> list[dict[str, Any]]:
    """The stock records."""
    with path.open(encoding="utf-8") as fh:
        records: list[dict[str, Any]] = json.load(fh)
    return records


def total_units(items: list[dict[str, Any]]) -> int:
    """Units in stock over all items."""
    return sum(item.get("qty", 0) for item in items)


def low_stock(items: list[dict[str, Any]], threshold: int = 5) -> list[str]:
    """SKUs with fewer than ``threshold`` units, sorted."""
    return sorted(item["sku"] for item in items if item["quantity"] < threshold)
