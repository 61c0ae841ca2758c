"""Deterministic CBOR: one byte string per value, and a decoder that accepts nothing else.

``encode`` writes canonical CBOR (RFC 7049 §3.9: shortest integers and lengths, map keys
sorted length-first then bytewise, shortest float that keeps the value, definite lengths).
``decode`` is strict: it refuses duplicate map keys, tags, non-finite floats, values
outside the data model below, trailing bytes, and any input that would not re-encode to
exactly the same bytes. So a hash or signature over the bytes is a hash or signature over
the value, and no second encoding of a signed value can be smuggled in.

Data model: ``None``, ``bool``, ``int`` (-2**64 .. 2**64-1), finite ``float``, ``str``,
``bytes``, ``list`` and ``dict`` with ``str`` keys, nested at most ``MAX_DEPTH`` deep.
"""

from __future__ import annotations

import math
from typing import TypeAlias

import cbor2

from mimiverse.mesh.errors import NotCanonical

Value: TypeAlias = "bool | int | float | str | bytes | list[Value] | dict[str, Value] | None"

MAX_DEPTH = 16
_INT_MIN = -(2**64)
_INT_MAX = 2**64 - 1


def encode(value: Value) -> bytes:
    """The canonical CBOR bytes of ``value`` (raises NotCanonical outside the data model)."""
    _check(value, 0)
    return cbor2.dumps(value, canonical=True)


def decode(data: bytes, *, max_bytes: int | None = None) -> Value:
    """Decode canonical CBOR strictly; raises NotCanonical for anything else."""
    if max_bytes is not None and len(data) > max_bytes:
        raise NotCanonical(f"{len(data)} bytes is over the limit of {max_bytes}")
    try:
        value = cbor2.loads(
            data,
            allow_duplicate_keys=False,
            allow_indefinite=False,
            max_depth=MAX_DEPTH + 1,
            tag_hook=_no_tags,
        )
    except NotCanonical:
        raise
    except Exception as exc:  # cbor2 raises several types for malformed input
        raise NotCanonical(f"not valid CBOR: {exc}") from None
    _check(value, 0)
    if cbor2.dumps(value, canonical=True) != data:
        raise NotCanonical("CBOR is not in canonical form (or has trailing bytes)")
    return value  # type: ignore[no-any-return]


def _no_tags(decoder: object, tag: object) -> object:
    raise NotCanonical("CBOR tags are not allowed")


_SCALARS = frozenset({type(None), bool, str, bytes})


def _check(value: object, depth: int) -> None:
    kind = type(value)
    if kind in _SCALARS:
        return
    if kind is int:
        if not _INT_MIN <= value <= _INT_MAX:  # type: ignore[operator]
            raise NotCanonical("integer out of CBOR's 64-bit range")
        return
    if depth >= MAX_DEPTH:
        raise NotCanonical(f"nested deeper than {MAX_DEPTH}")
    if kind is list:
        for item in value:  # type: ignore[attr-defined]
            if type(item) not in _SCALARS:
                _check(item, depth + 1)
        return
    if kind is dict:
        for key, item in value.items():  # type: ignore[attr-defined]
            if type(key) is not str:
                raise NotCanonical("map keys must be text strings")
            if type(item) not in _SCALARS:
                _check(item, depth + 1)
        return
    if kind is float:
        if not math.isfinite(value):  # type: ignore[arg-type]
            raise NotCanonical("NaN and infinities are not allowed")
        return
    raise NotCanonical(f"{kind.__name__} is not in the mesh data model")
