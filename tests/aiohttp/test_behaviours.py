"""rstsafe.aiohttp.ClientSession against every misbehaving-server behaviour.

Each test asserts what rstsafe returns or raises and what the server executed (a POST
is never executed twice); where plain aiohttp fails in the same scenario, the test shows
that too, so it can fail.
"""

from __future__ import annotations

import asyncio
import inspect
import re
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import anyio
import pytest

import rstsafe
import rstsafe._compat.aiohttp
import rstsafe.aiohttp
from rstsafe import FailureKind, KeepAlive, RetryPolicy
from rstsafe.core import TTLSource
from rstsafe.testing import (
    AbortiveClose,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    Behaviour,
    BlackHole,
    CloseAfterRequests,
    EarlyResponse,
    Healthy,
    IdleCloseWithLag,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
)
from rstsafe.testing._fixtures import ServerFactory

pytestmark = pytest.mark.anyio

PAUSE = 0.6  # past the servers' 0.3 s idle timers below, with 0.3 s to spare
BODY = b'{"order": 1}'
LARGE_BODY = b"u" * (512 * 1024)  # below aiohttp's 1 MiB "large body" warning
Session = Callable[..., aiohttp.ClientSession]
SESSIONS = [
    pytest.param(aiohttp.ClientSession, id="plain"),
    pytest.param(rstsafe.aiohttp.ClientSession, id="rstsafe"),
]


async def _wait(server: MisbehavingServer, predicate: Callable[[MisbehavingServer], bool]) -> None:
    """Poll the server's records without blocking the event loop."""
    with anyio.fail_after(10):
        while not predicate(server):
            await asyncio.sleep(0.01)


def _closing(server: MisbehavingServer) -> bool:
    return any(r.closing_since is not None for r in server.connections)


async def _send(session: aiohttp.ClientSession, method: str, url: str, **kwargs: Any) -> int:
    """One request, body read; POSTs carry a small JSON body."""
    data = BODY if method == "POST" else None
    async with session.request(method, url, data=data, **kwargs) as response:
        await response.read()
        return response.status


async def _paced(session: aiohttp.ClientSession, url: str, count: int, pause: float) -> list[int]:
    """``count`` requests alternating GET and POST, ``pause`` apart, each path unique."""
    statuses = []
    for index in range(count):
        if index:
            await asyncio.sleep(pause)
        method = "GET" if index % 2 == 0 else "POST"
        statuses.append(await _send(session, method, f"{url}/r/{index}"))
    return statuses


async def _chunks() -> AsyncIterator[bytes]:
    yield b"streamed "
    yield b"body"


async def test_healthy_server_paced_across_its_keepalive(misbehaving_server: ServerFactory) -> None:
    """Against a server closing idle connections (FIN), every GET and POST succeeds once."""
    server = misbehaving_server(Healthy(keepalive=0.3))
    async with rstsafe.aiohttp.ClientSession() as session:
        assert await _paced(session, server.url, 4, PAUSE) == [200] * 4
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(4))


@pytest.mark.usefixtures("retries_available")
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_write_refused_on_a_closing_connection_is_resent(
    misbehaving_server: ServerFactory, slow_client: aiohttp.TraceConfig, method: str
) -> None:
    """The issue's failure: the pooled connection closes before the write; nothing sent.

    aiohttp refuses the write ("Can not write request body", ``ClientConnectionResetError``
    or ``ServerDisconnectedError``, depending on what it saw first); plain aiohttp raises
    it, rstsafe proves
    nothing was sent and resends on a fresh connection, even the POST, once.
    """
    server = misbehaving_server(Healthy(keepalive=0.3))
    outcomes: dict[str, object] = {}
    for name, factory in (
        ("plain", aiohttp.ClientSession),
        ("rstsafe", rstsafe.aiohttp.ClientSession),
    ):
        async with factory(trace_configs=[slow_client]) as session:
            path = f"/{name}"
            assert await _send(session, "GET", server.url + "/warm") == 200
            await asyncio.sleep(0.1)  # reused at 0.1 s idle, then held 0.5 s before writing
            try:
                outcomes[name] = await _send(
                    session, method, server.url + path, trace_request_ctx={"delay": 0.5}
                )
            except aiohttp.ClientError as exc:
                outcomes[name] = exc
    plain = outcomes["plain"]
    assert isinstance(plain, (aiohttp.ClientConnectionError))
    assert not isinstance(plain, rstsafe.RstsafeError)
    assert outcomes["rstsafe"] == 200
    assert server.executions(path="/plain") == 0
    assert server.executions(path="/rstsafe") == 1


@pytest.mark.usefixtures("retries_available")
@pytest.mark.parametrize("factory", SESSIONS)
async def test_keepalive_race_get_is_retried_on_a_fresh_connection(
    misbehaving_server: ServerFactory, factory: Session
) -> None:
    """IdleCloseWithLag: a GET meeting the RST is resent at once (aiohttp resends it too)."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=2.0))
    async with factory() as session:
        assert await _send(session, "GET", server.url + "/a") == 200
        await _wait(server, _closing)
        assert await _send(session, "GET", server.url + "/b") == 200
    assert server.executions(path="/b") == 1
    assert len(server.connections) == 2


@pytest.mark.usefixtures("retries_available")
async def test_keepalive_race_no_post_meets_it(misbehaving_server: ServerFactory) -> None:
    """Without header or config no POST meets the race: safe send, then learning."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    session = rstsafe.aiohttp.ClientSession()
    async with session:
        assert await _send(session, "GET", server.url + "/first") == 200
        for index in range(4):
            await asyncio.sleep(PAUSE)
            method = "GET" if index % 2 else "POST"
            assert await _send(session, method, f"{server.url}/orders/{index}") == 200
    assert all(server.executions(path=f"/orders/{i}") == 1 for i in range(4))


@pytest.mark.usefixtures("retries_available")
async def test_keepalive_race_post_on_a_wrong_claim_fails_once_then_the_learner_avoids_it(
    misbehaving_server: ServerFactory,
) -> None:
    """A claimed 10 s keep-alive (wrong): the first POST meets the race and fails; then none do."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    session = rstsafe.aiohttp.ClientSession(keepalive=rstsafe.KeepAlive(server_keepalive=10.0))
    async with session:
        assert await _send(session, "GET", server.url + "/first") == 200
        await asyncio.sleep(PAUSE)
        with pytest.raises(aiohttp.ClientOSError) as caught:
            await _send(session, "POST", server.url + "/orders/0")
        error = caught.value
        assert isinstance(error, rstsafe.aiohttp.MaybeSentClientOSError)
        assert isinstance(error, rstsafe.RequestMaybeSentError)
        assert error.errno == 104  # aiohttp's args, kept
        assert error.failure is not None
        assert error.failure.kind is FailureKind.RESET
        assert error.failure.facts.reused is True
        assert error.failure.facts.bytes_sent
        assert error.attempts == 1
        assert "not idempotent" in str(error)
        registry = session.keepalive_registry
        state = registry.for_origin(next(iter(registry)))
        assert state.idle_ttl().source is TTLSource.LEARNED
        for index in range(1, 4):
            await asyncio.sleep(PAUSE)
            method = "GET" if index % 2 == 0 else "POST"
            assert await _send(session, method, f"{server.url}/orders/{index}") == 200
    assert server.executions(path="/orders/0") == 0  # the RST meant it was never read
    assert all(server.executions(path=f"/orders/{i}") == 1 for i in range(1, 4))


async def test_plain_aiohttp_posts_fail_in_the_keepalive_race(
    misbehaving_server: ServerFactory,
) -> None:
    """Plain aiohttp, same workload: every POST after a pause meets the RST and fails."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    failures = 0
    async with aiohttp.ClientSession() as session:
        for index in range(4):
            await asyncio.sleep(PAUSE if index else 0)
            method = "GET" if index % 2 == 0 else "POST"
            try:
                await _send(session, method, f"{server.url}/orders/{index}")
            except aiohttp.ClientOSError:
                failures += 1
    assert failures == 2


@pytest.mark.usefixtures("retries_available")
async def test_idempotency_key_makes_a_stale_post_retryable(
    misbehaving_server: ServerFactory,
) -> None:
    """A POST with an Idempotency-Key meeting the race is resent at once, executed once."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    async with rstsafe.aiohttp.ClientSession() as session:
        assert await _send(session, "GET", server.url + "/first") == 200
        await _wait(server, _closing)
        headers = {"Idempotency-Key": "k-1"}
        assert await _send(session, "POST", server.url + "/pay", headers=headers) == 200
    assert server.executions(idempotency_key="k-1") == 1
    assert len(server.connections) == 2


# aiohttp's own resend of an idempotent request refuses a consumed body from 3.14 on;
# before, it rebuilds the request from what is left of an async generator (nothing).
_AIOHTTP_CHECKS_CONSUMED = (
    re.search(
        r"retry_persistent_connection = False[^\n]*\n(?:[^\n]*\n){0,12}[^\n]*consumed",
        inspect.getsource(aiohttp.ClientSession._request),
    )
    is not None
)


@pytest.mark.usefixtures("retries_available")
async def test_streamed_body_is_never_replayed_by_rstsafe(
    misbehaving_server: ServerFactory,
) -> None:
    """A PUT (idempotent) with an async generator body on a stale connection: rstsafe gives up.

    aiohttp >= 3.14 then refuses its own resend too; older aiohttp resends the PUT itself
    with what is left of the generator, an empty body (aiohttp's behaviour, shown here).
    The server's timeout is claimed (10 s, wrongly): safe send trusts a claim, so the PUT
    reuses the connection the server has closed.
    """
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    claimed = rstsafe.KeepAlive(server_keepalive=10.0)
    async with rstsafe.aiohttp.ClientSession(keepalive=claimed) as session:
        assert await _send(session, "GET", server.url + "/first") == 200
        await _wait(server, _closing)
        try:
            async with session.put(server.url + "/doc", data=_chunks()) as response:
                await response.read()
                outcome: object = response.status
        except aiohttp.ClientOSError as exc:
            outcome = exc
    if _AIOHTTP_CHECKS_CONSUMED:
        assert isinstance(outcome, rstsafe.RequestMaybeSentError)
        assert "cannot be sent again" in str(outcome)
        assert server.executions(path="/doc") == 0
        assert len(server.connections) == 1  # neither rstsafe nor aiohttp opened another
    else:
        assert outcome == 200
        assert server.executions(path="/doc") == 1  # aiohttp's resend, not rstsafe's


async def test_keepalive_race_with_configured_server_keepalive(
    misbehaving_server: ServerFactory,
) -> None:
    """IdleCloseWithLag with ``server_keepalive`` configured: no GET or POST ever fails."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    keepalive = KeepAlive(server_keepalive=0.3)
    async with rstsafe.aiohttp.ClientSession(keepalive=keepalive) as session:
        assert await _paced(session, server.url, 4, PAUSE) == [200] * 4
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(4))
    assert len(server.connections) == 4


@pytest.mark.usefixtures("retries_available")
async def test_keep_alive_header_sets_the_ttl(misbehaving_server: ServerFactory) -> None:
    """An honest ``Keep-Alive: timeout=1``: the TTL comes from it; reused below, fresh above."""
    server = misbehaving_server(AdvertiseKeepAlive(advertised=1.0, actual=1.0))
    session = rstsafe.aiohttp.ClientSession()
    async with session:
        for index, pause in enumerate((0.0, 1.2, 0.2, 1.2)):
            await asyncio.sleep(pause)
            method = "GET" if index % 2 == 0 else "POST"
            assert await _send(session, method, f"{server.url}/r/{index}") == 200
        state = session.keepalive_registry.for_origin(next(iter(session.keepalive_registry)))
        assert state.header_timeout == 1.0
        assert state.idle_ttl().source is TTLSource.HEADER
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(4))
    assert len(server.connections) == 3


async def test_lying_keep_alive_header_is_survived(misbehaving_server: ServerFactory) -> None:
    """A header promising 5 s on a server closing after 0.3 s: no error (the FIN is seen)."""
    server = misbehaving_server(AdvertiseKeepAlive(advertised=5.0, actual=0.3))
    async with rstsafe.aiohttp.ClientSession() as session:
        assert await _paced(session, server.url, 4, PAUSE) == [200] * 4
    assert server.executions(method="POST") == 2


@pytest.mark.usefixtures("retries_available")
async def test_idle_drop_no_post_fails(misbehaving_server: ServerFactory) -> None:
    """IdleDrop (NAT forgot the connection), nothing claimed: GETs recover, POSTs go fresh."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    async with rstsafe.aiohttp.ClientSession() as session:
        for index in range(5):
            await asyncio.sleep(PAUSE if index else 0.0)
            method = "GET" if index % 2 == 0 else "POST"
            assert await _send(session, method, f"{server.url}/r/{index}") == 200
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(5))


@pytest.mark.usefixtures("retries_available")
async def test_idle_drop_get_retried_post_fails_only_before_learning(
    misbehaving_server: ServerFactory,
) -> None:
    """IdleDrop, a wrong 10 s claim: GETs recover; one POST fails, never executed."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    claimed = rstsafe.KeepAlive(server_keepalive=10.0)
    async with rstsafe.aiohttp.ClientSession(keepalive=claimed) as session:
        assert await _send(session, "GET", server.url + "/r/0") == 200
        await asyncio.sleep(PAUSE)
        with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)) as caught:
            await _send(session, "POST", server.url + "/r/1")
        for index in range(2, 5):
            await asyncio.sleep(PAUSE)
            method = "GET" if index % 2 == 0 else "POST"
            assert await _send(session, method, f"{server.url}/r/{index}") == 200
    error = caught.value
    assert isinstance(error, rstsafe.RequestMaybeSentError)
    assert error.failure is not None
    assert error.failure.stale
    assert server.executions(path="/r/1") == 0
    assert all(server.executions(path=f"/r/{i}") == 1 for i in (0, 2, 3, 4))


@pytest.mark.usefixtures("retries_available")
async def test_stale_retry_closes_every_idle_connection_as_old(
    misbehaving_server: ServerFactory,
) -> None:
    """After one stale connection, the others idle as long are closed, not tried one by one."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    policy = RetryPolicy(retries=0, max_stale_retries=1)
    async with rstsafe.aiohttp.ClientSession(retry=policy) as session:
        # Concurrent: three connections (the pool is empty when each one asks).
        statuses = await asyncio.gather(
            *(_send(session, "GET", f"{server.url}/{i}") for i in range(3))
        )
        assert statuses == [200] * 3
        assert len(server.connections) == 3
        await _wait(server, lambda s: all(r.closing_since for r in s.connections))
        # One stale retry allowed and no aiohttp retry for a POST: succeeding proves the
        # two other stale connections were not tried.
        headers = {"Idempotency-Key": "after"}
        assert await _send(session, "POST", server.url + "/after", headers=headers) == 200
    assert len(server.connections) == 4


@pytest.mark.parametrize(
    "behaviour",
    [CloseAfterRequests(count=2, reset=True), AbortiveClose()],
    ids=["close-after-requests", "abortive-close"],
)
async def test_server_resets_after_responses(
    misbehaving_server: ServerFactory, behaviour: Behaviour
) -> None:
    """RST after every (second) response: seen before reuse; all succeed, once each."""
    server = misbehaving_server(behaviour)
    async with rstsafe.aiohttp.ClientSession() as session:
        assert await _paced(session, server.url, 6, 0.2) == [200] * 6
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(6))


@pytest.mark.parametrize("factory", SESSIONS)
async def test_process_then_reset_on_a_fresh_connection_is_aiohttps(
    misbehaving_server: ServerFactory, factory: Session
) -> None:
    """The duplicate hazard on a fresh connection: not rstsafe's to act on; same as aiohttp.

    The POST runs once and fails with aiohttp's own exception; the GET is resent once by
    aiohttp's own retry of idempotent requests.
    """
    server = misbehaving_server(ProcessThenReset())
    async with factory() as session:
        with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)) as post:
            await _send(session, "POST", server.url + "/pay")
        with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)) as get:
            await _send(session, "GET", server.url + "/g")
    assert not isinstance(post.value, rstsafe.RstsafeError)
    assert not isinstance(get.value, rstsafe.RstsafeError)
    assert server.executions(method="POST", path="/pay") == 1
    assert server.executions(path="/g") == 2


async def test_reset_unread_is_aiohttps(misbehaving_server: ServerFactory) -> None:
    """RST before reading, on a fresh connection: aiohttp's error, unchanged; nothing ran."""
    server = misbehaving_server(ResetUnread())
    async with rstsafe.aiohttp.ClientSession() as session:
        with pytest.raises((aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)) as caught:
            await _send(session, "POST", server.url + "/p")
    assert not isinstance(caught.value, rstsafe.RstsafeError)
    assert server.executions() == 0


@pytest.mark.parametrize("factory", SESSIONS)
async def test_early_response_is_aiohttps(
    misbehaving_server: ServerFactory, factory: Session
) -> None:
    """A 413 sent while the body uploads: whatever aiohttp makes of it, rstsafe adds nothing.

    aiohttp returns the 413 or reports the reset that follows it (a race in its writer);
    either way nothing is executed and the error, if any, is aiohttp's own.
    """
    server = misbehaving_server(EarlyResponse())
    async with factory() as session:
        try:
            async with session.post(server.url + "/upload", data=LARGE_BODY) as response:
                outcome: object = response.status
        except aiohttp.ClientError as exc:
            outcome = exc
    assert outcome == 413 or (
        isinstance(outcome, aiohttp.ClientError) and not isinstance(outcome, rstsafe.RstsafeError)
    )
    assert server.executions() == 0


@pytest.mark.parametrize("reset", [False, True])
async def test_truncated_body_is_aiohttps_error_and_not_retried(
    misbehaving_server: ServerFactory, reset: bool
) -> None:
    """A body cut short after the headers: aiohttp's ClientPayloadError, ran once."""
    server = misbehaving_server(TruncatedBody(reset=reset))
    async with rstsafe.aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError) as caught:
            await _send(session, "GET", server.url + "/t")
        with pytest.raises(aiohttp.ClientPayloadError):
            await _send(session, "POST", server.url + "/p")
    assert not isinstance(caught.value, rstsafe.RstsafeError)
    assert server.executions(path="/t") == 1
    assert server.executions(path="/p") == 1


async def test_black_hole_read_timeout_is_aiohttps(misbehaving_server: ServerFactory) -> None:
    """No answer: aiohttp's read timeout, unchanged; the POST is not resent."""
    server = misbehaving_server(BlackHole())
    timeout = aiohttp.ClientTimeout(total=5, sock_read=0.3)
    async with rstsafe.aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(aiohttp.ServerTimeoutError) as caught:
            await _send(session, "POST", server.url + "/p")
    assert not isinstance(caught.value, rstsafe.RstsafeError)
    await _wait(server, lambda s: s.received_unexecuted == 1)
    assert server.executions() == 0


async def test_accept_queue_overflow_connect_timeout_is_aiohttps(
    misbehaving_server: ServerFactory,
) -> None:
    """A full accept queue: aiohttp's connect timeout, unchanged; nothing reached a server."""
    server = misbehaving_server(AcceptQueueOverflow())
    timeout = aiohttp.ClientTimeout(total=5, sock_connect=0.3)
    async with rstsafe.aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(aiohttp.ServerTimeoutError) as caught:
            await _send(session, "POST", server.url + "/p")
    assert not isinstance(caught.value, rstsafe.RstsafeError)
    assert server.connections == ()


async def test_refused_is_aiohttps(misbehaving_server: ServerFactory) -> None:
    """Nothing listening: aiohttp's ClientConnectorError (not retried by either)."""
    server = misbehaving_server(Refuse())
    async with rstsafe.aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientConnectorError) as caught:
            await _send(session, "POST", server.url + "/p")
    assert not isinstance(caught.value, rstsafe.RstsafeError)
    assert isinstance(caught.value.os_error, ConnectionRefusedError)


async def test_max_requests_close_connections(
    misbehaving_server: ServerFactory,
) -> None:
    """``max_requests=2``: five sequential requests need three connections, no errors."""
    server = misbehaving_server(Healthy(keepalive=None))
    async with rstsafe.aiohttp.ClientSession(keepalive=KeepAlive(max_requests=2)) as session:
        assert await _paced(session, server.url, 5, 0.0) == [200] * 5
    assert len(server.connections) == 3


async def test_connector_alone_under_a_plain_session(misbehaving_server: ServerFactory) -> None:
    """rstsafe's TCPConnector under a plain aiohttp session: the configured TTL avoids the race."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    connector = rstsafe.aiohttp.TCPConnector(keepalive=KeepAlive(server_keepalive=0.3))
    async with aiohttp.ClientSession(connector=connector) as session:
        assert await _paced(session, server.url, 4, PAUSE) == [200] * 4
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(4))
    assert len(server.connections) == 4


@pytest.mark.skipif(
    rstsafe._compat.aiohttp.AIOHTTP_VERSION < (3, 12),
    reason="aiohttp < 3.12 has no ResponseHandler.closed to learn from",
)
async def test_a_close_seen_while_idle_teaches_the_ttl(misbehaving_server: ServerFactory) -> None:
    """The server closing an idle connection (FIN) after 0.3 s shortens the TTL below it."""
    server = misbehaving_server(Healthy(keepalive=0.3))
    session = rstsafe.aiohttp.ClientSession()
    async with session:
        assert await _send(session, "GET", server.url + "/a") == 200
        await _wait(server, lambda s: all(r.ended_at is not None for r in s.connections))
        await asyncio.sleep(0.05)  # the loop reads the FIN
        state = session.keepalive_registry.for_origin(next(iter(session.keepalive_registry)))
        ttl = state.idle_ttl()
        assert ttl.source is TTLSource.LEARNED
        assert ttl.seconds < 0.3
