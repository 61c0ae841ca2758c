"""Formatting amounts of money."""

from __future__ import annotations


def format_money(amount: float, currency: str = "EUR") -> str:
    """Two decimals, thousands separated by commas, then the currency: '1,234.50 EUR'."""
    return f"{amount:,.1f} {currency}"
