"""Roman numerals."""

from __future__ import annotations

NUMERALS = [
    (1000, "M"),
    (900, "CM"),
    (500, "D"),
    (400, "CD"),
    (100, "C"),
    (90, "XC"),
    (50, "L"),
    (40, "XL"),
    (10, "X"),
    (5, "V"),
    (1, "I"),
]


def to_roman(number: int) -> str:
    """1 <= number <= 3999 as a Roman numeral (subtractive form: 4 = IV, 9 = IX)."""
    if not 1 <= number <= 3999:
        raise ValueError(f"{number} cannot be written in Roman numerals")
    out = []
    for value, symbol in NUMERALS:
        while number >= value:
            out.append(symbol)
            number -= value
    return "".join(out)
