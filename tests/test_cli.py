"""The `mimiverse` command line: positions, usage errors, settings, models, doctor, and
`complete`/`chat` against a real `mimiverse serve` (marked ``model``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from mimiverse import cli
from mimiverse.cli import app, split_position
from tests.conftest import MimiServe, free_port

DOCS = Path(__file__).resolve().parents[1] / "docs" / "settings.md"
COMMANDS = ("serve", "models", "doctor", "chat", "complete", "settings")


@pytest.fixture
def run(
    make_settings: Callable[..., Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Result]:
    """Invoke the CLI in-process with clean MIMI_* env, a tmp data dir and wide, plain output."""
    make_settings()  # the fixture clears MIMI_* and points MIMI_CONFIG at a missing file
    monkeypatch.setenv("MIMI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("COLUMNS", "1000")  # typer's help console
    for name in ("FORCE_COLOR", "NO_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)
    # Tables must not wrap or colour cells, so rows can be matched as single lines.
    monkeypatch.setattr(cli, "console", Console(width=1000, color_system=None))
    monkeypatch.setattr(cli, "err", Console(width=1000, color_system=None, stderr=True))
    runner = CliRunner()

    def invoke(*args: str) -> Result:
        return runner.invoke(app, list(args))

    return invoke


# --- split_position ---------------------------------------------------------------------------

TEXT = "ab\ncd\n"


@pytest.mark.parametrize(
    ("text", "line", "col", "prefix"),
    [
        (TEXT, 1, 1, ""),
        (TEXT, 1, 2, "a"),
        (TEXT, 1, 3, "ab"),  # one past the end of line 1
        (TEXT, 2, 1, "ab\n"),
        (TEXT, 2, 3, "ab\ncd"),
        (TEXT, 3, 1, "ab\ncd\n"),  # the empty line after the final newline
        ("ab\ncd", 2, 3, "ab\ncd"),  # last line without a newline
        ("", 1, 1, ""),
        ("\n\n", 2, 1, "\n"),
        ("ab\r\ncd\r\n", 1, 3, "ab"),  # CRLF: the column stops before \r
        ("ab\r\ncd\r\n", 2, 1, "ab\r\n"),
        ("ab\r\ncd\r\n", 2, 3, "ab\r\ncd"),
        ("ab\r\ncd\r\n", 3, 1, "ab\r\ncd\r\n"),
        ("ab\rcd", 2, 2, "ab\rc"),  # old Mac line ends
        ("x = 'é'\ny", 1, 8, "x = 'é'"),  # columns count characters, not bytes
        # Only \n, \r\n and \r end lines (as in editors and the LSP); \f, \v and U+2028 do not.
        ("a\fb\nc", 2, 1, "a\fb\n"),
        ("a\u2028b\x0bc\nd", 1, 6, "a\u2028b\x0bc"),
    ],
)
def test_split_position(text: str, line: int, col: int, prefix: str) -> None:
    assert split_position(text, line, col) == (prefix, text[len(prefix) :])


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        (TEXT, 0, 1, "line 0 is outside the file (1–3)"),
        (TEXT, 4, 1, "line 4 is outside the file (1–3)"),
        (TEXT, -1, 1, "line -1 is outside the file (1–3)"),
        ("ab\ncd", 3, 1, "line 3 is outside the file (1–2)"),  # no line after an unended line
        ("", 2, 1, "line 2 is outside the file (1–1)"),
        (TEXT, 1, 0, "column 0 is outside line 1 (1–3)"),
        (TEXT, 1, 4, "column 4 is outside line 1 (1–3)"),  # the newline is not a column
        (TEXT, 3, 2, "column 2 is outside line 3 (1–1)"),
        ("ab\r\ncd", 1, 4, "column 4 is outside line 1 (1–3)"),  # nor is \r of CRLF
    ],
)
def test_split_position_out_of_range(text: str, line: int, col: int, message: str) -> None:
    with pytest.raises(ValueError) as info:
        split_position(text, line, col)
    assert str(info.value) == message


# --- commands without a model -----------------------------------------------------------------


def test_help_lists_every_command(run: Callable[..., Result]) -> None:
    result = run("--help")
    assert result.exit_code == 0, result.output
    for command in COMMANDS:
        assert f" {command} " in result.output, command


def test_no_arguments_shows_help(run: Callable[..., Result]) -> None:
    result = run()
    assert "Usage: mimiverse" in result.output
    assert all(f" {command} " in result.output for command in COMMANDS)


@pytest.mark.parametrize(
    ("position", "reason"),
    [
        ("{file}", "is not FILE:LINE:COL"),
        ("{file}:2", "is not FILE:LINE:COL"),
        ("{file}:x:1", "invalid literal for int()"),
        ("{file}:1:", "invalid literal for int()"),
        ("{file}:9:1", "line 9 is outside the file (1–3)"),
        ("{file}:1:99", "column 99 is outside line 1 (1–15)"),
        ("{missing}:1:1", "No such file or directory"),
    ],
)
def test_complete_bad_position_exits_2_with_usage(
    run: Callable[..., Result], tmp_path: Path, position: str, reason: str
) -> None:
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return a\n")
    arg = position.format(file=source, missing=tmp_path / "missing.py")
    result = run("complete", arg)
    assert result.exit_code == 2, result.output
    assert "error:" in result.stderr and reason in result.stderr
    assert "Usage: mimiverse complete path/to/file.py:12:8" in result.stderr
    assert result.stdout == ""


def test_complete_unreachable_url_names_the_fix(run: Callable[..., Result], tmp_path: Path) -> None:
    source = tmp_path / "calc.py"
    source.write_text("x = 1\n")
    url = f"http://127.0.0.1:{free_port()}"
    result = run("complete", f"{source}:1:1", "--url", url)
    assert result.exit_code == 1, result.output
    assert f"error: {url}: " in result.stderr
    assert "start the server (mimiverse serve) or correct --url" in result.stderr


def test_chat_unreachable_url_names_the_fix(run: Callable[..., Result]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run("chat", "hi", "--url", url)
    assert result.exit_code == 1, result.output
    assert f"error: {url}: " in result.stderr
    assert "start the server (mimiverse serve) or correct --url" in result.stderr


def test_settings_markdown_matches_docs(run: Callable[..., Result]) -> None:
    result = run("settings", "--markdown")
    assert result.exit_code == 0, result.output
    assert result.stdout == DOCS.read_text()


def test_settings_table_shows_values_and_keeps_brackets(run: Callable[..., Result]) -> None:
    result = run("settings")
    assert result.exit_code == 0, result.output
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "MIMI_PORT" in rows["port"] and "8484" in rows["port"]
    # Help text is printed as written, not read as rich markup ("[[endpoints]]" stays).
    assert "[[endpoints]] in TOML" in rows["endpoints"]


def test_invalid_setting_exits_2_naming_it(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_PORT", "not-a-port")
    result = run("settings")
    assert result.exit_code == 2, result.output
    assert "invalid settings:" in result.stderr and "port" in result.stderr


def test_models_lists_embedded_endpoints_and_bundled_weights(
    run: Callable[..., Result], tmp_path: Path
) -> None:
    result = run("models")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "embedded-fim" in out and "embedded-chat" in out
    assert "qwen2.5-coder-0.5b" in out and "qwen2.5-coder-1.5b" in out
    assert str(tmp_path / "data" / "models" / "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf") in out


def test_models_without_embedded(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MIMI_EMBEDDED", "false")
    monkeypatch.setenv(
        "MIMI_ENDPOINTS",
        '[{"name": "vllm", "kind": "openai", "url": "http://127.0.0.1:1/v1", '
        '"model": "qwen", "tasks": ["chat", "fim"]}]',
    )
    result = run("models")
    assert result.exit_code == 0, result.output
    assert "embedded-fim" not in result.stdout
    row = next(line for line in result.stdout.splitlines() if "vllm" in line)
    assert "openai" in row and "chat,fim" in row


def test_doctor_reports_redis_down_with_the_fix(
    run: Callable[..., Result], monkeypatch: pytest.MonkeyPatch
) -> None:
    closed = free_port()
    monkeypatch.setenv("MIMI_EMBEDDED", "false")
    monkeypatch.setenv("MIMI_REDIS_URL", f"redis://127.0.0.1:{closed}/0")
    result = run("doctor")
    assert result.exit_code == 1, result.output
    row = next(line for line in result.stdout.splitlines() if "store: redis" in line)
    assert "│ fail " in row
    assert f"127.0.0.1:{closed}" in row
    assert "apt-get install -y redis-server" in row
    # Fix texts are printed as written, not read as rich markup ("[[endpoints]]" stays).
    route = next(line for line in result.stdout.splitlines() if "route: fim" in line)
    assert "add an [[endpoints]] entry" in route


# --- against a real `mimiverse serve` ---------------------------------------------------------


@pytest.fixture(scope="module")
def serve(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, fim_gguf: Path
) -> Iterator[MimiServe]:
    data = tmp_path_factory.mktemp("cli-serve")
    # The 0.5B also serves chat, with small contexts, to keep the suite light.
    server = MimiServe(
        data / "serve.log", data, models_dir=str(models_dir), chat_model_file=str(fim_gguf),
        embedded_fim_ctx="1024", embedded_chat_ctx="1024",
    )  # fmt: skip
    yield server
    server.kill()


@pytest.mark.model
def test_complete_against_server(
    run: Callable[..., Result], serve: MimiServe, tmp_path: Path
) -> None:
    source = tmp_path / "calc.py"
    source.write_text("def add(a, b):\n    return \n\n\nprint(add(1, 2))\n")
    result = run("complete", f"{source}:2:12", "--url", serve.url, "--max-tokens", "12")
    assert result.exit_code == 0, result.output
    assert "a + b" in result.stdout


@pytest.mark.model
def test_complete_unknown_model_is_an_error(
    run: Callable[..., Result], serve: MimiServe, tmp_path: Path
) -> None:
    source = tmp_path / "calc.py"
    source.write_text("x = ")
    result = run("complete", f"{source}:1:5", "--url", serve.url, "--model", "no-such-model")
    assert result.exit_code == 1, result.output
    assert "error:" in result.stderr and "no-such-model" in result.stderr


@pytest.mark.model
def test_chat_against_server(run: Callable[..., Result], serve: MimiServe) -> None:
    result = run("chat", "Say hi", "--url", serve.url, "--max-tokens", "16")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip()


@pytest.mark.model
def test_chat_unknown_model_is_an_error(run: Callable[..., Result], serve: MimiServe) -> None:
    result = run("chat", "Say hi", "--url", serve.url, "--model", "no-such-model")
    assert result.exit_code == 1, result.output
    assert "error:" in result.stderr and "no-such-model" in result.stderr
