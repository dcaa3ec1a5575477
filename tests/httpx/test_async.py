"""rstsafe.httpx.AsyncClient on asyncio and trio (anyio's pytest plugin runs each test twice)."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Callable

import anyio
import httpx
import pytest

import rstsafe
import rstsafe.httpx
from rstsafe import KeepAlive
from rstsafe.testing import (
    ConnectionEnd,
    EarlyResponse,
    IdleCloseWithLag,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    Refuse,
)
from rstsafe.testing._fixtures import ServerFactory

pytestmark = pytest.mark.anyio

PAUSE = 0.6
LARGE_BODY = b"u" * (8 * 1024 * 1024)

# A wrong claim (the server really closes far sooner): safe send trusts a claimed
# timeout, so requests that could not be retried do reuse the connection the server has
# closed, which these tests need in order to show what rstsafe does then. Without a claim
# such requests go on a fresh connection instead (test_no_post_meets_the_race).
WRONG_CLAIM = rstsafe.KeepAlive(server_keepalive=10.0)


async def _wait(server: MisbehavingServer, predicate: Callable[[MisbehavingServer], bool]) -> None:
    """Poll the server's records without blocking the event loop (or starting a thread)."""
    with anyio.fail_after(10):
        while not predicate(server):
            await anyio.sleep(0.01)


def _closing(server: MisbehavingServer) -> bool:
    return any(r.closing_since is not None for r in server.connections)


def _all_ended(server: MisbehavingServer) -> bool:
    return all(r.end is not ConnectionEnd.OPEN for r in server.connections)


async def _chunks() -> AsyncIterator[bytes]:
    yield b"streamed"


async def test_keepalive_race_get_retried(misbehaving_server: ServerFactory) -> None:
    """IdleCloseWithLag: the GET that meets the RST is resent at once on a fresh connection."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=2.0))
    async with rstsafe.httpx.AsyncClient() as client:
        assert (await client.get(server.url + "/a")).status_code == 200
        await _wait(server, _closing)
        assert (await client.get(server.url + "/b")).status_code == 200
    assert server.executions(path="/b") == 1
    assert len(server.connections) == 2


async def test_keepalive_race_post_with_configured_keepalive(
    misbehaving_server: ServerFactory,
) -> None:
    """With ``server_keepalive`` configured, POSTs paced past the idle timer never fail."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    async with rstsafe.httpx.AsyncClient(keepalive=KeepAlive(server_keepalive=0.3)) as client:
        for index in range(3):
            response = await client.post(f"{server.url}/o/{index}", content=b"1")
            assert response.status_code == 200
            await anyio.sleep(PAUSE)
    assert all(server.executions(path=f"/o/{i}") == 1 for i in range(3))


async def test_idle_drop_learner_protects_posts(misbehaving_server: ServerFactory) -> None:
    """IdleDrop: a GET meets the first dead connection, is retried, and later POSTs are safe."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    async with rstsafe.httpx.AsyncClient() as client:
        for index in range(2):
            assert (await client.get(f"{server.url}/g/{index}")).status_code == 200
            await anyio.sleep(PAUSE)
        for index in range(2):
            response = await client.post(f"{server.url}/o/{index}", content=b"1")
            assert response.status_code == 200
            await anyio.sleep(PAUSE)
    assert all(server.executions(path=f"/o/{i}") == 1 for i in range(2))


async def test_process_then_reset_post_executed_once(misbehaving_server: ServerFactory) -> None:
    """Resets on fresh connections are httpx's failures: raised unchanged, each run once."""
    server = misbehaving_server(ProcessThenReset())
    async with rstsafe.httpx.AsyncClient() as client:
        with pytest.raises(httpx.ReadError) as caught:
            await client.post(server.url + "/pay", content=b"1")
        with pytest.raises(httpx.ReadError):
            await client.put(server.url + "/doc", content=_chunks())
        with pytest.raises(httpx.ReadError) as get_caught:
            await client.get(server.url + "/g")
    assert type(caught.value) is httpx.ReadError
    assert type(get_caught.value) is httpx.ReadError
    assert server.executions(path="/pay") == 1
    assert server.executions(path="/doc") == 1
    assert server.executions(path="/g") == 1


# When the RST fails the body write, httpcore abandons httpx's request-body async generator
# (plain httpx on trio too: httpx#3597, httpcore#1119; httpx's own suite ignores it).
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_stale_post_error_is_rstsafe_subclass_of_httpx(
    misbehaving_server: ServerFactory,
) -> None:
    """A POST meeting a stale reused connection: MaybeSent subclass with httpx's args, run 0x."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    async with rstsafe.httpx.AsyncClient(keepalive=WRONG_CLAIM) as client:
        assert (await client.get(server.url + "/warm")).status_code == 200
        await _wait(server, _closing)
        with pytest.raises(rstsafe.RequestMaybeSentError) as caught:
            await client.post(server.url + "/pay", content=b"1")
    error = caught.value
    assert isinstance(
        error, (rstsafe.httpx.MaybeSentReadError, rstsafe.httpx.MaybeSentRemoteProtocolError)
    )
    cause = error.__cause__
    assert isinstance(cause, httpx.TransportError)
    assert rstsafe.httpx.error_classes(type(cause))[1] is type(error)  # the exact httpx class
    assert error.args == cause.args
    assert "not idempotent" in str(error)
    assert server.executions(path="/pay") == 0


async def test_refused_is_httpx_connect_error(misbehaving_server: ServerFactory) -> None:
    """Nothing listening: httpx's ConnectError, unchanged (connect retries are httpx's)."""
    server = misbehaving_server(Refuse())
    async with rstsafe.httpx.AsyncClient() as client:
        with pytest.raises(httpx.ConnectError) as caught:
            await client.post(server.url + "/p", content=b"1")
    assert type(caught.value) is httpx.ConnectError


async def test_early_response_returned(
    misbehaving_server: ServerFactory, anyio_backend: str
) -> None:
    """A 413 sent during the upload is returned on trio; on asyncio when anyio lets it.

    anyio's asyncio transport does not read while it waits for a full send buffer to
    drain: a reset arriving in that wait closes it with the 413 unread. rstsafe stops
    the upload when it sees the 413 between slices, which wins most races (plain httpx
    on asyncio loses every one here); this server resets right after answering, the
    worst case. Either way the POST was never executed and never resent; a lost 413
    is httpx's ``ReadError``, unchanged (a fresh connection: not rstsafe's to act on).
    """
    server = misbehaving_server(EarlyResponse())
    async with rstsafe.httpx.AsyncClient() as client:
        try:
            response = await client.post(server.url + "/upload", content=LARGE_BODY, timeout=10)
        except httpx.ReadError as exc:  # a fresh connection: httpx's own error
            lost: httpx.ReadError | None = exc
        else:
            lost = None
            assert response.status_code == 413
    if anyio_backend == "trio":
        assert lost is None
    elif lost is not None:
        assert not isinstance(lost, rstsafe.RstsafeError)
    assert server.executions() == 0


async def test_thousand_concurrent_requests_over_twenty_connections(
    misbehaving_server: ServerFactory,
) -> None:
    """1,000 concurrent GETs, 20 connections, all dropped between waves: no error, no leak."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    statuses: Counter[int] = Counter()
    async with rstsafe.httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(index: int) -> None:
            response = await client.get(f"{server.url}/c/{index}")
            statuses[response.status_code] += 1

        for wave in range(2):
            async with anyio.create_task_group() as group:
                for index in range(wave * 500, wave * 500 + 500):
                    group.start_soon(one, index)
            pool = client._transport._pool  # type: ignore[attr-defined]
            assert 0 < len(pool.connections) <= 20
            if wave == 0:
                await anyio.sleep(PAUSE)  # the server forgets every pooled connection
    assert statuses == Counter({200: 1000})
    assert pool.connections == []
    assert server.executions() == 1000
    assert all(server.executions(path=f"/c/{i}") == 1 for i in (0, 499, 500, 999))
    await _wait(server, _all_ended)
