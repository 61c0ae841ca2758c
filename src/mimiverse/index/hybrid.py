"""Reciprocal-rank fusion of ranked lists, with a cap on hits per file."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from mimiverse.index.stores.base import Hit

RRF_K = 60
"""The standard RRF constant (Cormack et al., 2009): damps the weight of top ranks."""


def fuse(
    rankings: Mapping[str, Sequence[Hit]],
    *,
    limit: int,
    per_file: int = 3,
    weights: Mapping[str, float] | None = None,
    k: int = RRF_K,
) -> list[Hit]:
    """One list from several (method → hits best first), scored by Σ w / (k + rank)."""
    fused: dict[int, Hit] = {}
    for method, hits in rankings.items():
        weight = (weights or {}).get(method, 1.0)
        for rank, hit in enumerate(hits, start=1):
            entry = fused.get(hit.chunk_id)
            if entry is None:
                entry = Hit(hit.chunk_id, hit.path, hit.start_line, hit.end_line, hit.language,
                            hit.kind, hit.symbol, hit.content)  # fmt: skip
                fused[hit.chunk_id] = entry
            entry.ranks[method] = rank
            entry.scores[method] = hit.score
            entry.score += weight / (k + rank)
    return cap_per_file(sorted(fused.values(), key=lambda h: -h.score), per_file, limit)


def cap_per_file(hits: Sequence[Hit], per_file: int, limit: int) -> list[Hit]:
    """At most ``per_file`` hits from one file, then the first ``limit``."""
    taken: dict[str, int] = {}
    out: list[Hit] = []
    for hit in hits:
        if taken.get(hit.path, 0) >= per_file:
            continue
        taken[hit.path] = taken.get(hit.path, 0) + 1
        out.append(hit)
        if len(out) == limit:
            break
    return out
