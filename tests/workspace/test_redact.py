"""Secrets never reach a model: env values and well-known credential shapes are replaced."""

from __future__ import annotations

import pytest

from mimiverse.workspace.redact import RedactingStream, Redactor, looks_secret

KEY_BLOCK = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "-----END OPENSSH PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEY_BLOCK, "[REDACTED:PRIVATE_KEY]"),
        ("-----BEGIN RSA PRIVATE KEY-----\nMIIEow (cut)", "[REDACTED:PRIVATE_KEY]"),
        ("id AKIAIOSFODNN7EXAMPLE.", "id [REDACTED:AWS_ACCESS_KEY]."),
        ("ghp_" + "x" * 36, "[REDACTED:GITHUB_TOKEN]"),
        ("gho_" + "Ab1" * 12, "[REDACTED:GITHUB_TOKEN]"),
        ("github_pat_" + "A1_b" * 20, "[REDACTED:GITHUB_TOKEN]"),
        ("OPENAI=sk-proj-" + "a" * 40, "OPENAI=[REDACTED:API_KEY]"),
        ("key sk-" + "Z9" * 16, "key [REDACTED:API_KEY]"),
        ("xoxb-1234567890-abcdefghij", "[REDACTED:SLACK_TOKEN]"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9P",
            "[REDACTED:JWT]",
        ),
        ("Authorization: Bearer abc.def-123456", "Authorization: Bearer [REDACTED:AUTH_HEADER]"),
        ("authorization:token 0123456789abcdef", "authorization:token [REDACTED:AUTH_HEADER]"),
        ("curl -H 'Bearer 0123456789abcdef0123'", "curl -H 'Bearer [REDACTED:AUTH_HEADER]'"),
        (
            "postgres://app:s3cr3t@db:5432/x",
            "postgres://app:[REDACTED:URL_PASSWORD]@db:5432/x",
        ),
        (
            "https://h/x?user=a&password=pw1&y=2",
            "https://h/x?user=a&password=[REDACTED:URL_PASSWORD]&y=2",
        ),
    ],
)
def test_credential_shapes(text: str, expected: str) -> None:
    assert Redactor(environ={})(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "unexpected token identifier at line 3",
        "http://localhost:8080/a@b and git@github.com:org/repo.git",
        "max_tokens = 1024; KEY_UP pressed; sk-learn",
        "def test_password_hash(): assert hash_password('x') != 'x'",
    ],
)
def test_ordinary_text_is_left_alone(text: str) -> None:
    assert Redactor(environ={})(text) == text


def test_secret_looking_environment_values() -> None:
    env = {
        "GITHUB_TOKEN": "abcdef123456",
        "DB_PASSWORD": "correct horse",
        "MY_API_KEY": "k-0987654321",
        "PATH": "/usr/bin:/bin",
        "AUTH_ENABLED": "true",
        "SECRET_PORT": "543210",
        "SHORT_KEY": "abc",
    }
    redact = Redactor(environ=env)
    text = "abcdef123456 | correct horse | k-0987654321 | /usr/bin:/bin | true | 543210 | abc"
    assert redact(text) == (
        "[REDACTED:GITHUB_TOKEN] | [REDACTED:DB_PASSWORD] | [REDACTED:MY_API_KEY] | "
        "/usr/bin:/bin | true | 543210 | abc"
    )


def test_os_environ_is_read_at_construction(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MIMI_TEST_SECRET", "from-the-environment")
    assert Redactor()("x from-the-environment y") == "x [REDACTED:MIMI_TEST_SECRET] y"


def test_values_passed_in_and_added_later() -> None:
    redact = Redactor({"session": "s-1234"}, environ={})
    redact.add("DEPLOY", "deploy-value-42")
    assert redact("s-1234 deploy-value-42") == "[REDACTED:session] [REDACTED:DEPLOY]"


def test_longest_value_wins() -> None:
    redact = Redactor(environ={"A_TOKEN": "abcdef", "B_TOKEN": "abcdefghij"})
    assert redact("abcdefghij") == "[REDACTED:B_TOKEN]"


def test_looks_secret() -> None:
    assert looks_secret("aws_secret_access_key", "wJalrXUtnFEMI")
    assert looks_secret("PASSWD", "hunter2")
    assert not looks_secret("HOME", "/root/secret-place")
    assert not looks_secret("TOKEN", "12345678")


def test_stream_catches_secrets_split_across_chunks() -> None:
    stream = RedactingStream(Redactor(environ={"API_TOKEN": "split-secret-value"}))
    out = [stream.feed("line one\nsplit-sec"), stream.feed("ret-value here\n")]
    out.append(stream.feed(KEY_BLOCK[:60]))
    out.append(stream.feed(KEY_BLOCK[60:] + "\nafter\n"))
    out.append(stream.feed("no newline at end"))
    out.append(stream.flush())
    assert out[0] == "line one\n"
    assert "".join(out) == (
        "line one\n[REDACTED:API_TOKEN] here\n[REDACTED:PRIVATE_KEY]\nafter\nno newline at end"
    )


def test_stream_releases_a_long_line_without_newline() -> None:
    stream = RedactingStream(Redactor(environ={}), hold=100)
    assert stream.feed("x" * 50) == ""
    assert stream.feed("x" * 60) == "x" * 110
