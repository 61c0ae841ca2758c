"""The symbol map: definitions and references from tree-sitter tags, files ranked by PageRank.

Like aider's repo map: a file that references a name defined in another file gives that
file a vote (weighted by how rare the name is); PageRank over those votes, optionally
personalised to the files in focus, orders definitions for a token-budgeted map of the
repository that fits in a prompt.
"""

from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import networkx as nx
from tree_sitter import QueryCursor

from mimiverse.index.chunk import parse, tags_query


@dataclass(frozen=True)
class Tag:
    """A definition or reference of ``name`` at ``line`` (1-based) in ``path``."""

    path: str
    name: str
    line: int
    role: str
    """``def`` or ``ref``."""
    kind: str
    """function, class, method, call, import, … (from the query's capture name)."""
    signature: str = ""
    """For definitions: the definition's first line, stripped."""


def extract_tags(path: str, text: str, language: str) -> list[Tag]:
    """Every definition and reference the language's tag query finds."""
    query = tags_query(language)
    if query is None:
        return []
    source = text.encode("utf-8", "surrogatepass")
    tree = parse(language, source)
    if tree is None:
        return []
    lines = text.split("\n")
    tags: list[Tag] = []
    for capture, nodes in QueryCursor(query).captures(tree.root_node).items():
        if not capture.startswith("name."):
            continue
        _, role, kind = [*capture.split("."), "", ""][:3]
        for node in nodes:
            name = source[node.start_byte : node.end_byte].decode("utf-8", "replace")
            name = name.rsplit(".", 1)[-1] if kind == "import" else name
            line = node.start_point[0] + 1
            is_def = role == "definition"
            signature = lines[line - 1].strip()[:200] if is_def and line <= len(lines) else ""
            tags.append(Tag(path, name, line, "def" if is_def else "ref", kind, signature))
    tags.sort(key=lambda t: (t.line, t.role, t.name))
    return tags


class SymbolMap:
    """Definitions and references across a project, kept per file."""

    def __init__(self) -> None:
        self._by_file: dict[str, list[Tag]] = {}
        self._lock = threading.Lock()
        self._ranks: dict[str, float] | None = None

    def update(self, path: str, text: str, language: str) -> None:
        """(Re)read one file's tags."""
        tags = extract_tags(path, text, language)
        with self._lock:
            self._by_file[path] = tags
            self._ranks = None

    def remove(self, path: str) -> None:
        """Forget a file."""
        with self._lock:
            self._by_file.pop(path, None)
            self._ranks = None

    def _tags(self) -> Iterable[Tag]:
        with self._lock:
            files = list(self._by_file.values())
        for tags in files:
            yield from tags

    def definitions(self, name: str) -> list[Tag]:
        """Where ``name`` (or ``Class.name``'s last part) is defined."""
        short = name.rsplit(".", 1)[-1]
        return [t for t in self._tags() if t.role == "def" and t.name == short]

    def references(self, name: str) -> list[Tag]:
        """Where ``name`` is used (calls, imports, base classes …)."""
        short = name.rsplit(".", 1)[-1]
        return [t for t in self._tags() if t.role == "ref" and t.name == short]

    def rank(self, focus: Iterable[str] = ()) -> dict[str, float]:
        """PageRank of files over reference → definition edges (personalised to ``focus``)."""
        focus = [f for f in focus if f in self._by_file]
        if not focus and self._ranks is not None:
            return self._ranks
        defines: dict[str, set[str]] = defaultdict(set)
        refs: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        with self._lock:
            items = list(self._by_file.items())
        for path, tags in items:
            for t in tags:
                if t.role == "def":
                    defines[t.name].add(path)
                else:
                    refs[t.name][path] += 1
        graph: nx.MultiDiGraph = nx.MultiDiGraph()
        graph.add_nodes_from(path for path, _ in items)
        for name, users in refs.items():
            definers = defines.get(name)
            if not definers:
                continue
            # Names defined in many files (run, get, __init__) say little: damp them.
            weight_name = 1.0 / len(definers)
            for user, count in users.items():
                for definer in definers:
                    if definer != user:
                        graph.add_edge(user, definer, weight=weight_name * math.sqrt(count))
        if graph.number_of_nodes() == 0:
            return {}
        personalization = {f: 1.0 for f in focus} if focus else None
        try:
            ranks: dict[str, float] = nx.pagerank(
                graph, weight="weight", personalization=personalization
            )
        except nx.PowerIterationFailedConvergence:
            ranks = {n: 1.0 / graph.number_of_nodes() for n in graph.nodes}
        if not focus:
            self._ranks = ranks
        return ranks

    def repo_map(self, budget_tokens: int = 1024, focus: Iterable[str] = ()) -> str:
        """The most important definitions, grouped by file, within ~``budget_tokens``.

        Tokens are estimated as characters / 4 (the usual rule of thumb for code).
        """
        focus = list(focus)
        ranks = self.rank(focus)
        with self._lock:
            items = dict(self._by_file)
        ordered = sorted(items, key=lambda p: -ranks.get(p, 0.0))
        budget_chars = budget_tokens * 4
        out: list[str] = []
        used = 0
        for path in ordered:
            defs = [t for t in items[path] if t.role == "def"]
            if not defs:
                continue
            block = [f"{path}:"] + [f"  {t.line}: {t.signature}" for t in defs]
            text = "\n".join(block)
            if used + len(text) + 1 > budget_chars:
                # Fit a shorter version of this file (its first definitions) if possible.
                room = budget_chars - used - len(block[0]) - 2
                partial = [block[0]]
                for line in block[1:]:
                    if room - len(line) - 1 < 0:
                        break
                    partial.append(line)
                    room -= len(line) + 1
                if len(partial) > 1:
                    out.append("\n".join(partial))
                break
            out.append(text)
            used += len(text) + 1
        return "\n".join(out)
