"""Safe path resolution: every path from a request or a model stays inside the root."""

from __future__ import annotations

import os
from pathlib import Path

from mimiverse.errors import PathOutsideWorkspace


class Workspace:
    """One project root. ``resolve`` is the only way from a user or model path to disk."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root).expanduser().resolve()

    def resolve(self, path: str | Path, *, must_exist: bool = False) -> Path:
        """The absolute path of ``path`` (relative to the root), refused if it leaves the root.

        Symlinks are followed before the check, so a link pointing out is refused too.
        """
        text = str(path).strip()
        if not text:
            raise PathOutsideWorkspace("empty path: give a path relative to the project root")
        if "\x00" in text:
            raise PathOutsideWorkspace(f"path {text!r} contains a NUL byte")
        candidate = Path(text)
        if candidate.is_absolute():
            try:
                candidate = candidate.resolve().relative_to(self.root)
            except ValueError:
                raise PathOutsideWorkspace(
                    f"path {text!r} is outside the project; use a path relative to "
                    f"the project root (e.g. 'src/app.py')",
                    path=text,
                ) from None
        full = (self.root / candidate).resolve()
        full = self._without_root_name(candidate, full)
        if full != self.root and self.root not in full.parents:
            raise PathOutsideWorkspace(
                f"path {text!r} resolves outside the project (via '..' or a symlink); "
                "use a path relative to the project root",
                path=text,
            )
        if must_exist and not full.exists():
            from mimiverse.errors import NotFound

            raise NotFound(
                f"no file or directory {self.relative(full)!r} in the project", path=text
            )
        return full

    def _without_root_name(self, candidate: Path, full: Path) -> Path:
        """``app/src/x.py`` in project ``app`` means ``src/x.py`` when only that exists.

        Models (and people) often prefix the project's own folder name.
        """
        parts = candidate.parts
        if len(parts) < 2 or parts[0] != self.root.name or full.exists():
            return full
        if (self.root / parts[0]).exists():
            return full
        stripped = (self.root / Path(*parts[1:])).resolve()
        return stripped if stripped.exists() else full

    def relative(self, path: str | Path) -> str:
        """``path`` relative to the root, with forward slashes ('.' for the root)."""
        rel = os.path.relpath(Path(path), self.root)
        return rel.replace(os.sep, "/")

    def __repr__(self) -> str:
        return f"Workspace({str(self.root)!r})"
