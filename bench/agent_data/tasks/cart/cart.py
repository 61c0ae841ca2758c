"""A shopping cart."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    name: str
    price: float
    quantity: int = 1


class Cart:
    """Items a customer is about to buy."""

    def __init__(self, items: list[Item] = []) -> None:
        self.items = items

    def add(self, name: str, price: float, quantity: int = 1) -> None:
        self.items.append(Item(name, price, quantity))

    def total(self) -> float:
        return sum(item.price * item.quantity for item in self.items)

    def __len__(self) -> int:
        return sum(item.quantity for item in self.items)
