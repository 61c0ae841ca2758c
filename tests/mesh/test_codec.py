"""Canonical CBOR: one encoding per value; the decoder takes nothing else."""

from __future__ import annotations

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mimiverse.mesh import codec
from mimiverse.mesh.errors import NotCanonical

values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


@settings(max_examples=150, deadline=None)
@given(values)
def test_round_trip_is_exact(value: codec.Value) -> None:
    data = codec.encode(value)
    assert codec.decode(data) == value
    assert codec.encode(codec.decode(data)) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_bytes_decode_only_if_canonical(data: bytes) -> None:
    try:
        value = codec.decode(data)
    except NotCanonical:
        return
    assert codec.encode(value) == data


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.text(max_size=6), st.integers(-1000, 1000), min_size=2, max_size=6))
def test_map_order_does_not_change_the_bytes(mapping: dict[str, int]) -> None:
    forward: dict[str, codec.Value] = dict(mapping)
    backward: dict[str, codec.Value] = dict(reversed(list(mapping.items())))
    assert codec.encode(forward) == codec.encode(backward)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (bytes.fromhex("1801"), "non-minimal integer"),
        (bytes.fromhex("a2616202616101"), "map keys out of order"),
        (bytes.fromhex("a2616101616102"), "duplicate map key"),
        (bytes.fromhex("9f01ff"), "indefinite-length array"),
        (bytes.fromhex("0101"), "trailing bytes"),
        (bytes.fromhex("c11a514b67b0"), "a tag (epoch date)"),
        (bytes.fromhex("c24101"), "a bignum tag"),
        (bytes.fromhex("fb3ff0000000000000"), "a float wider than needed"),
        (bytes.fromhex("f97e00"), "NaN"),
        (bytes.fromhex("a10101"), "an integer map key"),
        (bytes.fromhex("5801ff"), "a byte string with a long length prefix"),
        (bytes.fromhex("62c328"), "invalid UTF-8"),
        (bytes.fromhex("81" * 20 + "00"), "nested too deep"),
        (b"", "empty input"),
    ],
)
def test_non_canonical_input_is_refused(data: bytes, why: str) -> None:
    with pytest.raises(NotCanonical):
        codec.decode(data)


def test_values_outside_the_model_cannot_be_encoded() -> None:
    for bad in (float("nan"), float("inf"), {1: "x"}, (1, 2), {1, 2}, 2**64, object()):
        with pytest.raises(NotCanonical):
            codec.encode(bad)  # type: ignore[arg-type]


def test_size_limit() -> None:
    data = codec.encode(b"x" * 100)
    with pytest.raises(NotCanonical, match="over the limit"):
        codec.decode(data, max_bytes=50)


def test_same_value_as_cbor2_sees_it() -> None:
    value: codec.Value = {"b": [1, b"\x00", None], "a": {"z": True, "y": -1.5}}
    assert cbor2.loads(codec.encode(value)) == value
