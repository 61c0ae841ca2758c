"""Remove secrets from text before any model (or log) sees it.

Two kinds of secret are replaced with ``[REDACTED:<NAME>]``:

- values of environment variables whose names look secret (``*TOKEN*``, ``*SECRET*``,
  ``*KEY*``, ``*PASSWORD*`` …), read from ``os.environ`` when the ``Redactor`` is built,
  plus any values the caller passes;
- well-known credential shapes: private key blocks, AWS access keys, GitHub, OpenAI-style
  and Slack tokens, JWTs, ``Authorization`` headers and passwords inside URLs.

Patterns are compiled once per ``Redactor``; calling it is one or two regex passes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

SECRET_NAME = re.compile(
    r"TOKEN|SECRET|KEY|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE|"
    r"SIGNATURE|SALT|DSN|CONN(ECTION)?_?STR",
    re.IGNORECASE,
)
"""Environment variable names whose values are treated as secrets."""

MIN_SECRET_LENGTH = 6
"""Shorter values (``KEY=1``) are too common in ordinary text to redact."""

_HARMLESS_VALUES = frozenset({"true", "false", "yes", "no", "none", "null", "enabled", "disabled"})

PATTERNS: dict[str, str] = {
    "PRIVATE_KEY": (
        r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----[\s\S]*?"
        r"(?:-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|\Z)"
    ),
    "AWS_ACCESS_KEY": r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA)[0-9A-Z]{16}\b",
    "GITHUB_TOKEN": r"\b(?:gh[pousr]_[A-Za-z0-9]{30,255}|github_pat_[A-Za-z0-9_]{22,255})\b",
    "API_KEY": r"\bsk-(?:proj-|ant-|or-|live-|test-)?[A-Za-z0-9_\-]{20,}",
    "SLACK_TOKEN": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "MIMI_TOKEN": r"\bmimi_[0-9a-f]{16}_[A-Za-z0-9_\-]{20,}",
    "SESSION_COOKIE": r"(?P<SESSION_COOKIE_p>\bmimi_session=)[A-Za-z0-9_\-]{20,}",
    "JWT": r"\beyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]{10,}",
    "AUTH_HEADER": (
        r"(?P<AUTH_HEADER_p>(?i:authorization)\s*:\s*(?i:(?:bearer|basic|token|digest)\s+)?)"
        r"[A-Za-z0-9._~+/\-]{8,}=*"
        r"|(?P<AUTH_HEADER_q>\b(?i:bearer)\s+)[A-Za-z0-9._~+/\-]{16,}=*"
    ),
    "URL_PASSWORD": (
        r"(?P<URL_PASSWORD_p>://[^\s:/@]+:)[^\s/@]+(?=@)"
        r"|(?P<URL_PASSWORD_q>[?&](?i:password|passwd|pwd|token|secret|api_?key|access_token)=)"
        r"[^\s&#]+"
    ),
}
"""Credential shapes, by the name that replaces them. A group ``<NAME>_p``/``<NAME>_q``
marks a prefix that is kept (``Authorization: Bearer ``, ``https://user:``)."""


def looks_secret(name: str, value: str) -> bool:
    """Whether environment variable ``name=value`` should be redacted."""
    return (
        bool(SECRET_NAME.search(name))
        and len(value) >= MIN_SECRET_LENGTH
        and not value.isdigit()
        and value.lower() not in _HARMLESS_VALUES
    )


class Redactor:
    """Callable ``str -> str`` that replaces secrets with ``[REDACTED:<NAME>]``.

    ``secrets`` are name → value pairs always redacted (whatever the name);
    ``environ`` (default ``os.environ``) contributes the values of secret-looking names.
    """

    def __init__(
        self,
        secrets: Mapping[str, str] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._values: dict[str, str] = {
            value: name for name, value in env.items() if looks_secret(name, value)
        }
        for name, value in (secrets or {}).items():
            if len(value) >= 4:
                self._values[value] = name
        self._literal = _literal_pattern(self._values)
        self._shapes = re.compile(
            "|".join(f"(?P<{name}>{pattern})" for name, pattern in PATTERNS.items())
        )

    def add(self, name: str, value: str) -> None:
        """Redact ``value`` from now on, replaced by ``[REDACTED:<name>]``."""
        if len(value) >= 4:
            self._values[value] = name
            self._literal = _literal_pattern(self._values)

    def __call__(self, text: str) -> str:
        if self._literal is not None:
            text = self._literal.sub(lambda m: f"[REDACTED:{self._values[m.group(0)]}]", text)
        return self._shapes.sub(_replace_shape, text)


def _replace_shape(match: re.Match[str]) -> str:
    name = match.lastgroup or "SECRET"
    kept = match.group(f"{name}_p") if f"{name}_p" in match.re.groupindex else None
    if kept is None and f"{name}_q" in match.re.groupindex:
        kept = match.group(f"{name}_q")
    return f"{kept or ''}[REDACTED:{name}]"


def _literal_pattern(values: Mapping[str, str]) -> re.Pattern[str] | None:
    if not values:
        return None
    ordered = sorted(values, key=len, reverse=True)  # longest first: no partial matches
    return re.compile("|".join(re.escape(v) for v in ordered))


_KEY_BEGIN = re.compile(r"-----BEGIN[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
_KEY_END = re.compile(r"-----END[A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")


class RedactingStream:
    """Redacts text that arrives in chunks: only whole lines pass through ``redact``.

    A line cut between two chunks is held until its end arrives, and an open private key
    block until its END line, so a secret split across chunks is still caught. Text is
    held back at most ``hold`` characters; past that it is redacted as it stands.
    """

    def __init__(self, redact: Callable[[str], str], *, hold: int = 65_536) -> None:
        self._redact = redact
        self._hold = hold
        self._pending = ""

    def feed(self, text: str) -> str:
        """Redacted text that is safe to release now (possibly empty)."""
        self._pending += text
        cut = self._pending.rfind("\n") + 1
        begin = _last_open_key(self._pending[:cut])
        if begin is not None:
            cut = begin
        if cut == 0 and len(self._pending) > self._hold:
            cut = len(self._pending)
        ready, self._pending = self._pending[:cut], self._pending[cut:]
        return self._redact(ready) if ready else ""

    def flush(self) -> str:
        """Everything still held, redacted (at the end of the stream)."""
        ready, self._pending = self._pending, ""
        return self._redact(ready) if ready else ""


def _last_open_key(text: str) -> int | None:
    """Where an unterminated private key block starts in ``text``, if one does."""
    start = None
    for match in _KEY_BEGIN.finditer(text):
        start = match.start()
    if start is None or _KEY_END.search(text, start):
        return None
    return start
