"""Letter grades from scores out of 100."""

from __future__ import annotations


def letter(score: float) -> str:
    """A for 90 and above, B for 80 and above, C for 70 and above, D for 60 and above, else F."""
    if not 0 <= score <= 100:
        raise ValueError(f"score {score} is not in 0-100")
    if score > 90:
        return "A"
    if score > 80:
        return "B"
    if score > 70:
        return "C"
    if score > 60:
        return "D"
    return "F"


def report(scores: dict[str, float]) -> list[str]:
    """'name: letter' for each student, in name order."""
    return [f"{name}: {letter(score)}" for name, score in sorted(scores.items())]
