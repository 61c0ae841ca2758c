"""Password hashing with argon2id (argon2-cffi's RFC 9106 low-memory profile)."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from mimiverse.errors import BadRequest

MIN_LENGTH = 10
MAX_LENGTH = 1024
_hasher = PasswordHasher()  # argon2id, t=3, m=64 MiB, p=4
_DUMMY = _hasher.hash("a password nobody has")


class WeakPassword(BadRequest):
    """A new password that does not meet the rules."""

    code = "weak_password"


def check_strength(password: str, username: str = "") -> None:
    """Refuse passwords that are short, huge, or the user name."""
    if len(password) < MIN_LENGTH:
        raise WeakPassword(f"the password must have at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise WeakPassword(f"the password may have at most {MAX_LENGTH} characters")
    if username and password.lower() == username.lower():
        raise WeakPassword("the password must not be the user name")


def hash_password(password: str) -> str:
    """An argon2id hash string (salt and parameters inside)."""
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches; unknown users cost the same time (``stored=None``)."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """Whether a hash was made with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored)
