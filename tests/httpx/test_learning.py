"""rstsafe.httpx learns a per-connection request limit from many tasks at once."""

from __future__ import annotations

import math
import socket
import time
from collections import Counter

import anyio
import httpcore
import httpx
import pytest

import rstsafe.httpx
from rstsafe import KeepAlive, RetryPolicy
from rstsafe.core import Origin
from rstsafe.httpx._network import _Backend, _Stream
from rstsafe.httpx._state import _CURRENT, _Attempt, _Shared
from rstsafe.testing import CloseAfterRequests, ConnectionEnd
from rstsafe.testing._fixtures import ServerFactory

pytestmark = pytest.mark.anyio

TASKS = 50
REQUESTS = 1000
LIMIT = 5


async def test_concurrent_tasks_learn_a_request_limit_and_keep_the_idle_peers(
    misbehaving_server: ServerFactory,
) -> None:
    """50 tasks, a server resetting after 5 requests: <= 1.25 x 1,000 / 5 connections, 0 errors.

    The connections reach their 5th request together: their resets are a request limit
    (learned), not a restart, and a reset at the limit does not expire the idle peers.
    """
    server = misbehaving_server(CloseAfterRequests(count=LIMIT, reset=True))
    limits = httpx.Limits(max_connections=TASKS, max_keepalive_connections=TASKS)
    transport = rstsafe.httpx.AsyncTransport(limits=limits)
    statuses: Counter[int] = Counter()
    indexes = iter(range(REQUESTS))  # shared: each task takes the next index
    async with httpx.AsyncClient(transport=transport, timeout=30) as client:

        async def worker() -> None:
            for index in indexes:
                response = await client.get(f"{server.url}/items/{index}")
                statuses[response.status_code] += 1

        async with anyio.create_task_group() as group:
            for _ in range(TASKS):
                group.start_soon(worker)
        done = time.monotonic()  # the client closes what is left of its pool after this
    state = transport.keepalive_registry.for_origin(Origin("http", server.host, server.port))
    assert statuses == Counter({200: REQUESTS})
    assert state.learned_max_requests == LIMIT
    assert state.upper_bound is None  # no idle timeout was read into the resets
    # Before the end, the client closed no connection the server would still serve:
    # a reset at the limit expires no idle peer (it did: about 40 of the 50 first ones).
    wasted = [
        r
        for r in server.connections
        if r.end is ConnectionEnd.CLIENT_CLOSED
        and r.ended_at is not None
        and r.ended_at < done
        and r.requests < LIMIT
    ]
    assert wasted == []
    ideal = math.ceil(REQUESTS / LIMIT)
    assert ideal <= len(server.connections) <= 1.25 * ideal
    paths = Counter(e.path for e in server.executed)
    assert len(paths) == REQUESTS
    assert set(paths.values()) == {1}  # nothing executed twice


def test_a_connection_seen_closed_by_the_server_never_carries_a_request() -> None:
    """Found closed by a liveness check, then handed a request already assigned: nothing written.

    httpcore may have assigned a queued request to the idle connection before another
    task's pass found it closed and began closing it; the request's first write raises
    ConnectionNotAvailable (httpcore then assigns another connection) instead of going
    out on it and having its read cut by the pending close.
    """
    origin = Origin("http", "127.0.0.1", 8080)
    shared = _Shared(None, RetryPolicy(retries=0), h2_prior_knowledge=False)
    tracker = shared.track("127.0.0.1", 8080)
    tracker.life.begin_attempt()
    tracker.life.finish_request()
    tracker.checked_idle(is_open=False)  # the pool's liveness check: readable, closed
    attempt = _Attempt(origin, httpx.Request("GET", "http://127.0.0.1:8080/"))
    token = _CURRENT.set(attempt)
    try:
        with pytest.raises(httpcore.ConnectionNotAvailable, match="closed this connection"):
            tracker.wrote(100)
    finally:
        _CURRENT.reset(token)
    assert attempt.tracker is None  # not bound: the request goes elsewhere
    assert tracker.life.bytes_sent == 0


def test_a_connection_the_pool_is_closing_never_carries_a_request() -> None:
    """Expired by rstsafe's rules, answered readable to the pool: a request it had assigned
    writes nothing on it.

    httpcore's pool closes every idle connection whose stream answers ``is_readable``
    (through ``has_expired()``), after another task's pass may have assigned it a queued
    request; the request started first and had its read cut by the close (trio's
    "this socket was already closed", a ReadError with 50 tasks and a learned request
    limit). Here the limit is configured: one request per connection.
    """
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        shared = _Shared(
            KeepAlive(max_requests=1), RetryPolicy(retries=0), h2_prior_knowledge=False
        )
        stream = _Backend(shared, None).connect_tcp("127.0.0.1", port, timeout=5)
        assert isinstance(stream, _Stream)
        peer, _ = listener.accept()
        with peer:
            try:
                tracker = stream._tracker
                tracker.life.begin_attempt()
                tracker.life.finish_request()
                assert stream.get_extra_info("is_readable") is True  # the pool closes it
                attempt = _Attempt(
                    Origin("http", "127.0.0.1", port),
                    httpx.Request("GET", f"http://127.0.0.1:{port}/"),
                )
                token = _CURRENT.set(attempt)
                try:
                    with pytest.raises(httpcore.ConnectionNotAvailable, match="pool is closing"):
                        stream.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", timeout=5)
                finally:
                    _CURRENT.reset(token)
                assert attempt.tracker is None  # not bound: the request goes elsewhere
                assert tracker.life.bytes_sent == 0
            finally:
                stream.close()
            peer.settimeout(5)
            assert peer.recv(100) == b""  # the peer saw the close and not one byte
