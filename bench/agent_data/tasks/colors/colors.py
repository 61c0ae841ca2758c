"""Colours as (r, g, b) floats in [0, 1], and their hex form."""

from __future__ import annotations

from mathutil import clamp, lerp


def to_byte(channel: float) -> int:
    """A channel in [0, 1] as an integer 0-255 (out-of-range values are clamped)."""
    return round(clamp(channel * 255, 255, 0))


def rgb_to_hex(r: float, g: float, b: float) -> str:
    """'#rrggbb' for a colour."""
    return "#" + "".join(f"{to_byte(c):02x}" for c in (r, g, b))


def mix(
    c1: tuple[float, float, float], c2: tuple[float, float, float], t: float
) -> tuple[float, float, float]:
    """The colour ``t`` of the way from ``c1`` to ``c2``."""
    return (lerp(c1[0], c2[0], t), lerp(c1[1], c2[1], t), lerp(c1[2], c2[2], t))
