"""Numeric helpers."""

from __future__ import annotations


def clamp(value: float, low: float, high: float) -> float:
    """``value`` limited to the range [low, high]."""
    return max(low, min(value, high))


def lerp(a: float, b: float, t: float) -> float:
    """Linear interpolation from ``a`` (t=0) to ``b`` (t=1)."""
    return a + (b - a) * t
