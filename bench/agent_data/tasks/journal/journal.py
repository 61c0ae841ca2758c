"""An append-only journal kept in a text file, one entry a line."""

from __future__ import annotations

from pathlib import Path


class Journal:
    """Entries are appended to ``path``; several Journal objects may share one file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._out = self.path.open("a", encoding="utf-8")

    def write(self, entry: str) -> None:
        """Append one entry (newlines inside it are replaced by spaces)."""
        self._out.write(entry.replace("\n", " ") + "\n")

    def entries(self) -> list[str]:
        """Every entry in the file, oldest first."""
        if not self.path.exists():
            return []
        return self.path.read_text(encoding="utf-8").splitlines()
