"""The official OpenAI Python client against a real `mimiverse serve` (/v1 compatibility)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.conftest import MimiServe

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, fim_gguf: Path
) -> Iterator[MimiServe]:
    data = tmp_path_factory.mktemp("openai-client")
    server = MimiServe(
        data / "serve.log", data, models_dir=str(models_dir), chat_model_file=str(fim_gguf),
        embedded_chat_ctx="1024", embedded_fim_ctx="1024",
    )  # fmt: skip
    yield server
    server.kill()


@pytest.fixture
def client(serve: MimiServe) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=serve.url + "/v1", api_key="unused", max_retries=0) as c:
        yield c


def test_models(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == [
        "embedded-fim",
        "embedded-chat",
        "embedded-embed",
    ]


def test_chat_stream(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="embedded-chat",
        messages=[{"role": "user", "content": "Say hi."}],
        max_tokens=8,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip()


def test_completions_with_suffix_is_fim(client: openai.OpenAI) -> None:
    result = client.completions.create(
        model="embedded-fim",
        prompt="def add(a, b):\n    return ",
        suffix="\n\nprint(add(1, 2))\n",
        max_tokens=8,
        temperature=0,
    )
    assert "a + b" in result.choices[0].text


def test_unknown_model_is_a_not_found_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError, match="embedded-fim"):
        client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
