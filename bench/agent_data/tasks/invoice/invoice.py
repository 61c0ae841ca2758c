"""Invoices: lines of quantity × unit price, and a printable summary."""

from __future__ import annotations

from dataclasses import dataclass, field

from money import format_money


@dataclass
class Line:
    description: str
    quantity: int
    unit_price: float

    @property
    def total(self) -> float:
        return self.quantity * self.unit_price


@dataclass
class Invoice:
    number: str
    lines: list[Line] = field(default_factory=list)

    def add(self, description: str, quantity: int, unit_price: float) -> None:
        self.lines.append(Line(description, quantity, unit_price))

    @property
    def total(self) -> float:
        return sum(line.total for line in self.lines)

    def summary(self) -> str:
        """One line per item, then the total."""
        rows = [f"{line.description}: {format_money(line.total)}" for line in self.lines]
        rows.append(f"Total: {format_money(self.total)}")
        return "\n".join(rows)
