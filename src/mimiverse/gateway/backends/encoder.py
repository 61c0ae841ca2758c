"""What the embedded embedding models share: the encoder interface, token-budget batching,
onnxruntime session options and L2 normalisation."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float32]

BATCH_TOKENS = 4096
"""Padded tokens per onnxruntime run (bounds activation memory)."""


class Encoder(Protocol):
    """A loaded embedding model: texts → token ids → unit vectors. ``LocalEmbedBackend``
    runs the batches, up to ``lanes`` at once."""

    dim: int
    max_tokens: int
    lanes: int
    """How many ``run`` calls may go at once (each on its own thread)."""

    def batches(self, texts: list[str], kind: str) -> list[tuple[list[int], list[list[int]]]]:
        """(input rows, their token ids) per onnxruntime run."""
        ...

    def run(self, ids: list[list[int]]) -> Floats:
        """One onnxruntime pass over a batch of token ids → unit vectors."""
        ...


def batch_by_tokens(ids: list[list[int]]) -> list[tuple[list[int], list[list[int]]]]:
    """Inputs sorted by length, grouped so that padded tokens stay under ``BATCH_TOKENS``:
    little is spent on padding, and memory stays bounded."""
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    groups: list[list[int]] = []
    for i in order:
        if groups and (len(groups[-1]) + 1) * len(ids[i]) <= BATCH_TOKENS:
            groups[-1].append(i)
        else:
            groups.append([i])
    return [(g, [ids[i] for i in g]) for g in groups]


def session_options(threads: int) -> Any:
    """onnxruntime options for an embedded encoder on ``threads`` cores."""
    import onnxruntime as ort  # type: ignore[import-untyped]

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    options.enable_cpu_mem_arena = False  # measured: same speed, ~200 MB less resident
    # Idle workers sleep instead of spinning: the cores are shared with the llama.cpp
    # models, and measured no slower (faster on a busy machine).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


def unit(vectors: Floats) -> Floats:
    """Rows scaled to length 1."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)
