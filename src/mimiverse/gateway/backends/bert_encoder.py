"""BERT-family sentence encoders exported to ONNX (bge-small-en-v1.5), on onnxruntime.

The model file takes token ids, attention mask and token type ids and returns the last
hidden state; the tokenizer is the model's own ``tokenizer.json``, read by the
``tokenizers`` library. bge pools the ``[CLS]`` state and wants an instruction before
queries (none before passages).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mimiverse.gateway.backends.encoder import (
    Floats,
    session_options,
    unit,
)

BGE_QUERY_INSTRUCTION = "Represent this sentence for searching relevant passages: "


class BertEncoder:
    """``tokenizer.json`` + ONNX model: token ids → ``[CLS]``-pooled unit vectors."""

    def __init__(
        self,
        model: Path,
        tokenizer: Path,
        *,
        threads: int,
        max_tokens: int,
        query_prefix: str = "",
    ) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from tokenizers import Tokenizer

        self._tokenizer = Tokenizer.from_file(str(tokenizer))
        self._tokenizer.no_padding()
        self._tokenizer.no_truncation()
        # One thread per run, ``threads`` runs at once: on 2 cores 34 chunks/s against 25 for
        # one run on 2 threads (bench/embedders.py's chunks; 350 against 200 for short ones),
        # with the same vectors (each run sees one input).
        self.lanes = max(1, threads)
        self._session = ort.InferenceSession(
            str(model), session_options(1), providers=["CPUExecutionProvider"]
        )
        inputs = {i.name for i in self._session.get_inputs()}
        self._token_types = "token_type_ids" in inputs
        (output,) = self._session.get_outputs()[:1]
        self.dim = int(output.shape[-1])
        self.max_tokens = max(8, max_tokens)
        self._query_prefix = query_prefix
        self._cls, self._sep, self._pad = (self._special(t) for t in ("[CLS]", "[SEP]", "[PAD]"))

    def _special(self, token: str) -> int:
        found = self._tokenizer.token_to_id(token)
        if found is None:
            raise ValueError(f"the tokenizer has no {token} token")
        return int(found)

    def token_ids(self, texts: list[str], kind: str = "passage") -> list[list[int]]:
        """Token ids with ``[CLS]``/``[SEP]``, the query instruction for queries, cut to
        ``max_tokens``."""
        prefix = self._query_prefix if kind == "query" else ""
        encoded = self._tokenizer.encode_batch(
            [prefix + t for t in texts], add_special_tokens=False
        )
        keep = self.max_tokens - 2
        return [[self._cls, *e.ids[:keep], self._sep] for e in encoded]

    def batches(self, texts: list[str], kind: str) -> list[tuple[list[int], list[list[int]]]]:
        """One input per run. The int8 export quantises activations per tensor
        (DynamicQuantizeLinear), so batch mates would change each other's vectors (cosine
        0.996); alone is also faster (see ``__init__``)."""
        return [([row], [ids]) for row, ids in enumerate(self.token_ids(texts, kind))]

    def run(self, ids: list[list[int]]) -> Floats:
        """One onnxruntime pass over a batch of token ids → unit vectors."""
        width = max(len(x) for x in ids)
        tokens = np.full((len(ids), width), self._pad, np.int64)
        mask = np.zeros((len(ids), width), np.int64)
        for row, x in enumerate(ids):
            tokens[row, : len(x)] = x
            mask[row, : len(x)] = 1
        feed = {"input_ids": tokens, "attention_mask": mask}
        if self._token_types:
            feed["token_type_ids"] = np.zeros_like(tokens)
        hidden = self._session.run(None, feed)[0]
        return unit(hidden[:, 0])  # the [CLS] state
