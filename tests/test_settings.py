"""Every setting is declared once with help text and documented in docs/settings.md."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mimiverse import settings as settings_module
from mimiverse.settings import EndpointSettings, Settings

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"


def test_every_setting_has_help() -> None:
    for model in (Settings, EndpointSettings):
        for name, field in model.model_fields.items():
            assert field.description and len(field.description) > 10, f"{model.__name__}.{name}"


def test_docs_are_generated_from_code() -> None:
    assert DOCS.read_text() == settings_module.markdown(), (
        "docs/settings.md is out of date: run `mimiverse settings --markdown > docs/settings.md`"
    )


def test_env_and_toml(make_settings: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    toml = tmp_path / "mimiverse.toml"
    toml.write_text(
        'port = 9000\n[[endpoints]]\nname = "vllm"\nkind = "openai"\n'
        'url = "http://127.0.0.1:8000/v1"\nmodel = "qwen"\ntasks = ["chat", "fim"]\n'
    )
    make_settings()  # clears MIMI_* from the environment
    monkeypatch.setenv("MIMI_CONFIG", str(toml))
    monkeypatch.setenv("MIMI_PORT", "9100")
    monkeypatch.setenv("MIMI_ROUTES__FIM", '["vllm"]')
    s = Settings()
    assert s.port == 9100, "env beats the TOML file"
    assert s.endpoints[0].name == "vllm" and s.endpoints[0].tasks == ["chat", "fim"]
    assert s.routes == {"fim": ["vllm"]}


def test_unknown_setting_is_refused(make_settings: Any) -> None:
    with pytest.raises(ValidationError, match="pizza"):
        make_settings(pizza=1)


def test_bad_endpoint_kind_names_choices(make_settings: Any) -> None:
    with pytest.raises(ValidationError, match="'openai', 'ollama' or 'embedded'"):
        make_settings(endpoints=[{"name": "x", "kind": "grpc", "model": "m"}])
