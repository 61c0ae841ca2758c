"""Production mode refuses to start when the server would be unsafe to expose."""

from __future__ import annotations

from mimiverse.errors import ConfigError
from mimiverse.server.clientinfo import is_loopback
from mimiverse.settings import Settings

MIN_SECRET_LENGTH = 32
KNOWN_DEFAULTS = frozenset(
    {
        "secret",
        "changeme",
        "change-me",
        "change_me",
        "default",
        "password",
        "mimiverse",
        "development",
        "dev-secret",
        "your-secret-key",
        "your-secret-key-here",
        "supersecret",
        "session-secret",
    }
)
"""Secrets copied from examples (the seed shipped one): refused whatever their length."""


def production_problems(settings: Settings) -> list[str]:
    """Everything that makes ``settings`` unsafe for MIMI_ENV=production (empty = fine)."""
    problems = []
    secret = settings.session_secret
    if not secret:
        problems.append(
            "MIMI_SESSION_SECRET is not set: set it to a random value of at least "
            f"{MIN_SECRET_LENGTH} characters (e.g. `python -c 'import secrets; "
            "print(secrets.token_urlsafe(48))'`)"
        )
    elif secret.strip().lower() in KNOWN_DEFAULTS or _low_entropy(secret):
        problems.append("MIMI_SESSION_SECRET is a well-known or trivial value: set a random one")
    elif len(secret) < MIN_SECRET_LENGTH:
        problems.append(
            f"MIMI_SESSION_SECRET has {len(secret)} characters; it needs at least "
            f"{MIN_SECRET_LENGTH}"
        )
    if not is_loopback(settings.host):
        if settings.auth != "accounts":
            problems.append(
                f"bound to {settings.host} with auth=local (no login): set MIMI_AUTH=accounts, "
                "or bind to 127.0.0.1"
            )
        if not (settings.tls_certfile or settings.trust_proxy_headers):
            problems.append(
                f"bound to {settings.host} without HTTPS: set MIMI_TLS_CERTFILE and "
                "MIMI_TLS_KEYFILE, or put a TLS proxy in front and set "
                "MIMI_TRUST_PROXY_HEADERS=true"
            )
    if settings.cookie_secure == "never":
        problems.append("MIMI_COOKIE_SECURE=never sends session cookies in clear text")
    if bool(settings.tls_certfile) != bool(settings.tls_keyfile):
        problems.append("set both MIMI_TLS_CERTFILE and MIMI_TLS_KEYFILE, or neither")
    return problems


def check_production(settings: Settings) -> None:
    """Raise ConfigError listing every problem when MIMI_ENV=production is unsafe."""
    if settings.env != "production":
        return
    problems = production_problems(settings)
    if problems:
        raise ConfigError(
            "refusing to start in production mode:\n- " + "\n- ".join(problems),
            problems=problems,
        )


def _low_entropy(secret: str) -> bool:
    """A run of one character, or very few distinct ones."""
    return len(set(secret)) < 8
