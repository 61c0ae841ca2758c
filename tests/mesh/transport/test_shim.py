"""The fault shim, and the channel staying correct under loss, duplication and reordering."""

from __future__ import annotations

import asyncio
import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nacl.signing import SigningKey

from mimiverse.mesh.transport import Link, ShimLink, ShimSpec, memory_pair
from mimiverse.mesh.transport.replay import ReplayWindow

from .conftest import FAST, MakePeer, Roster, eventually


def test_spec_parses_from_text() -> None:
    spec = ShimSpec.parse("loss=0.1, dup=0.05,reorder=0.2,delay=0.001-0.01,seed=7")
    assert spec == ShimSpec(loss=0.1, duplicate=0.05, reorder=0.2, delay_s=(0.001, 0.01), seed=7)
    assert ShimSpec.parse("") == ShimSpec()
    assert ShimSpec.parse("delay=0.02").delay_s == (0.02, 0.02)
    with pytest.raises(ValueError, match="use loss, dup"):
        ShimSpec.parse("jitter=3")
    with pytest.raises(ValueError, match="probability"):
        ShimSpec.parse("loss=1.5")


async def test_shim_drops_duplicates_and_reorders_raw_frames() -> None:
    a, b = memory_pair(max_queue=10_000)
    shim = ShimSpec(loss=0.2, duplicate=0.2, reorder=0.3, reorder_delay_s=0.01, seed=3).wrap(a)
    for i in range(500):
        await shim.send(i.to_bytes(2, "big"))
    await eventually(
        lambda: shim.counts["delivered"] == 500 - shim.counts["dropped"] + shim.counts["duplicated"]
    )
    got = [int.from_bytes(await b.recv(), "big") for _ in range(shim.counts["delivered"])]
    assert 0 < shim.counts["dropped"] < 500 and shim.counts["duplicated"] > 0
    assert len(got) > len(set(got))  # duplicates arrived
    assert got != sorted(got)  # order changed
    assert set(got) <= set(range(500))
    await shim.close()


@given(st.lists(st.integers(min_value=1, max_value=3000), max_size=300), st.integers(1, 64))
def test_replay_window_accepts_each_counter_at_most_once(counters: list[int], size: int) -> None:
    window = ReplayWindow(size)
    accepted: list[int] = []
    for counter in counters:
        if window.check(counter) == "ok":
            window.accept(counter)
            accepted.append(counter)
        else:
            assert counter in accepted or counter <= window.highest - size
    assert len(accepted) == len(set(accepted))
    if counters:
        assert max(counters) in accepted  # the newest is never refused


async def test_channel_stays_correct_through_the_shim(
    keys: list[SigningKey], make_peer: MakePeer
) -> None:
    """Loss: messages missing, never corrupted. Duplicates: refused as replays. Reorder: accepted once."""
    shims: list[ShimLink] = []
    spec = ShimSpec(
        loss=0.1, duplicate=0.2, reorder=0.2, delay_s=(0.0, 0.004), reorder_delay_s=0.01, seed=11
    )

    def wrap(link: Link) -> Link:
        shim = spec.wrap(link)
        shims.append(shim)
        return shim

    limits = dataclasses.replace(FAST, max_rejects=None)
    a, b = keys[0], keys[1]
    server = await make_peer(b, Roster(a), limits=limits)
    client = await make_peer(a, Roster(b), listen=False, limits=limits, wrap_link=wrap)
    client.node.add_peer(server.url)
    await eventually(lambda: client.node.channel(server.public) is not None)
    sent = [f"msg-{i}".encode() for i in range(400)]
    for message in sent:
        await client.node.send(server.public, message)
    [shim] = shims
    expected = len(sent) - shim.counts["dropped"]
    await eventually(
        lambda: (
            len(server.messages) == expected
            and shim.counts["delivered"] == expected + shim.counts["duplicated"]
        )
    )
    await asyncio.sleep(0.05)
    got = [m for _, m in server.messages]
    inbound = server.node.channel(client.public)
    assert inbound is not None
    assert len(got) == len(set(got)) == expected  # every delivered message exactly once
    assert set(got) <= set(sent)
    assert got != sorted(got, key=sent.index)  # some arrived out of order, and were accepted
    assert inbound.stats.rejected == {"replayed": shim.counts["duplicated"]}
    assert server.kinds() == ["replayed"] * shim.counts["duplicated"]
    assert 0 < shim.counts["dropped"] < 100 and shim.counts["reordered"] > 0
