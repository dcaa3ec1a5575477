"""rstsafe.httpx keeps a witness: POST-only traffic paced past the default TTL settles.

A POST that may have been sent is never retried, so it may not probe past the TTL; every
connection it discards is seen open at its own pace, no longer, and the proven idle never
grows past the pace. The witness (``OriginKeepAlive.offer_witness``) is the expired
connection kept open, unused: seen open at twice the pace, it proves a longer idle.

Times: the server keeps idle connections 4 s, rstsafe's default TTL is 0.2 s, the
POSTs go 0.4 s apart (twice the TTL, a tenth of the server's timeout).
"""

from __future__ import annotations

import time
from collections import Counter

import anyio
import httpx
import pytest

import rstsafe.httpx
from rstsafe import KeepAlive
from rstsafe.core import Origin
from rstsafe.testing import ConnectionEnd, Healthy, MisbehavingServer
from rstsafe.testing._fixtures import ServerFactory

KEEPALIVE = KeepAlive(default_idle_ttl=0.2, margin=0.05, jitter=0.0, max_lifetime=None)
PACE = 0.4
POSTS = 8


def _wait_until_ended(server: MisbehavingServer, count: int) -> list[ConnectionEnd]:
    """How the server's connections ended, once none is open (10 s at most)."""
    deadline = time.monotonic() + 10.0
    ends = [r.end for r in server.connections]
    while time.monotonic() < deadline and ConnectionEnd.OPEN in ends:
        time.sleep(0.02)
        ends = [r.end for r in server.connections]
    assert len(ends) == count
    return ends


def _assert_settled_and_closed(server: MisbehavingServer) -> None:
    """The first connection (the witness) and the one every later POST reused, both
    closed by the client at the end; every POST executed once."""
    assert len(server.connections) == 2
    assert [r.requests for r in server.connections] == [1, POSTS - 1]
    assert _wait_until_ended(server, 2) == [ConnectionEnd.CLIENT_CLOSED] * 2
    paths = Counter(e.path for e in server.executed)
    assert len(paths) == POSTS
    assert set(paths.values()) == {1}


def test_post_only_traffic_past_the_ttl_settles_on_few_connections(
    misbehaving_server: ServerFactory,
) -> None:
    """8 POSTs 0.4 s apart (TTL 0.2 s, server 4 s): 2 connections, not 8; closed at the end."""
    server = misbehaving_server(Healthy(keepalive=4.0))
    transport = rstsafe.httpx.Transport(keepalive=KEEPALIVE)
    origin = Origin("http", server.host, server.port)
    with httpx.Client(transport=transport, timeout=10) as client:
        for index in range(POSTS):
            if index:
                time.sleep(PACE)
            response = client.post(f"{server.url}/orders/{index}", content=b"{}")
            assert response.status_code == 200
        state = transport.keepalive_registry.for_origin(origin)
        held = state.witness_held  # the first connection, open and unused
        assert held
        assert state.idle_ttl().before_jitter > PACE  # proven by the witness
    assert not state.witness_held  # the client's close released it
    _assert_settled_and_closed(server)


def test_a_connect_needing_the_witness_place_closes_it(
    misbehaving_server: ServerFactory,
) -> None:
    """max_connections=1: the witness holds the one place; the next connect closes it."""
    server = misbehaving_server(Healthy(keepalive=4.0))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    transport = rstsafe.httpx.Transport(keepalive=KEEPALIVE, limits=limits)
    origin = Origin("http", server.host, server.port)
    # Without the release, the second POST's connect would wait for the place until its
    # connect timeout and fail with ConnectTimeout.
    with httpx.Client(transport=transport, timeout=httpx.Timeout(10, connect=3)) as client:
        assert client.post(f"{server.url}/orders/0", content=b"{}").status_code == 200
        time.sleep(PACE)
        assert client.post(f"{server.url}/orders/1", content=b"{}").status_code == 200
        state = transport.keepalive_registry.for_origin(origin)
        assert not state.witness_held
        assert transport.open_sockets == 1
    assert len(server.connections) == 2
    assert [r.requests for r in server.connections] == [1, 1]


@pytest.mark.anyio
async def test_async_post_only_traffic_past_the_ttl_settles_on_few_connections(
    misbehaving_server: ServerFactory,
) -> None:
    """The async twin (asyncio and trio): the released witness is closed at the next await."""
    server = misbehaving_server(Healthy(keepalive=4.0))
    transport = rstsafe.httpx.AsyncTransport(keepalive=KEEPALIVE)
    origin = Origin("http", server.host, server.port)
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        for index in range(POSTS):
            if index:
                await anyio.sleep(PACE)
            response = await client.post(f"{server.url}/orders/{index}", content=b"{}")
            assert response.status_code == 200
        state = transport.keepalive_registry.for_origin(origin)
        held = state.witness_held
        assert held
        assert state.idle_ttl().before_jitter > PACE  # proven by the witness
    assert not state.witness_held
    assert not transport._backend.pending_closes  # closed, not just released
    _assert_settled_and_closed(server)


@pytest.mark.anyio
async def test_async_connect_needing_the_witness_place_closes_it(
    misbehaving_server: ServerFactory,
) -> None:
    """max_connections=1 on asyncio and trio: the next connect closes the witness first."""
    server = misbehaving_server(Healthy(keepalive=4.0))
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    transport = rstsafe.httpx.AsyncTransport(keepalive=KEEPALIVE, limits=limits)
    async with httpx.AsyncClient(
        transport=transport, timeout=httpx.Timeout(10, connect=3)
    ) as client:
        assert (await client.post(f"{server.url}/orders/0", content=b"{}")).status_code == 200
        await anyio.sleep(PACE)
        assert (await client.post(f"{server.url}/orders/1", content=b"{}")).status_code == 200
        assert transport.open_sockets == 1
    assert len(server.connections) == 2
    assert [r.requests for r in server.connections] == [1, 1]
