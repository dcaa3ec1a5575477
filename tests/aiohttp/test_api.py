"""rstsafe.aiohttp's surface: construction checks, error classes, bodies, middlewares."""

from __future__ import annotations

import asyncio
import io
import json
import pickle
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp.client_reqrep import ClientRequest, ConnectionKey
from yarl import URL

import rstsafe
import rstsafe.aiohttp
import rstsafe.core
from rstsafe import Delivery, FailureKind, KeepAlive, RetryPolicy
from rstsafe._core.retry import RetryAction
from rstsafe.aiohttp._connector import _Tracked, body_info
from rstsafe.core import BodyKind
from rstsafe.testing import ConnectionEnd, IdleCloseWithLag, MisbehavingServer
from rstsafe.testing._fixtures import ServerFactory

pytestmark = pytest.mark.anyio


async def test_bad_keepalive_and_retry_are_type_errors_naming_them() -> None:
    """Wrong types for keepalive= and retry= fail at construction, naming the parameter."""
    with pytest.raises(TypeError, match="keepalive"):
        rstsafe.aiohttp.ClientSession(keepalive=5.0)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="retry"):
        rstsafe.aiohttp.TCPConnector(retry=3)  # type: ignore[arg-type]


async def test_backoff_retries_are_rejected_pointing_at_retry_if_safe() -> None:
    """``retries>0`` and ``retry_statuses`` are ValueErrors naming them: they stay the caller's."""
    with pytest.raises(ValueError, match=r"retry\.retries.*retry_if_safe"):
        rstsafe.aiohttp.ClientSession(retry=RetryPolicy())
    with pytest.raises(ValueError, match=r"retry\.retry_statuses"):
        rstsafe.aiohttp.ClientSession(retry=RetryPolicy(retries=0, retry_statuses=frozenset({503})))


async def test_conflicting_settings_are_rejected() -> None:
    """keepalive= or retry= beside connector= is a ValueError: they are the connector's."""
    plain = aiohttp.TCPConnector()
    try:
        with pytest.raises(ValueError, match="keepalive and retry"):
            rstsafe.aiohttp.ClientSession(connector=plain, retry=RetryPolicy(retries=0))
    finally:
        await plain.close()
    connector = rstsafe.aiohttp.TCPConnector()
    try:
        with pytest.raises(ValueError, match="keepalive and retry"):
            rstsafe.aiohttp.ClientSession(connector=connector, keepalive=KeepAlive())
    finally:
        await connector.close()


async def test_defaults_and_settings_are_reachable() -> None:
    """The session builds an rstsafe connector with retries=0 and the given KeepAlive."""
    keepalive = KeepAlive(server_keepalive=75.0)
    session = rstsafe.aiohttp.ClientSession(keepalive=keepalive)
    async with session:
        assert isinstance(session.connector, rstsafe.aiohttp.TCPConnector)
        assert session.retry_policy.retries == 0
        assert session.retry_policy.max_stale_retries == 2
        assert session.keepalive_registry.config is keepalive


async def test_keepalive_timeout_given_stays_aiohttps() -> None:
    """A ``keepalive_timeout`` you pass is aiohttp's (an upper bound); none gives the backstop."""
    given = rstsafe.aiohttp.TCPConnector(keepalive_timeout=30)
    default = rstsafe.aiohttp.TCPConnector()
    forced = rstsafe.aiohttp.TCPConnector(force_close=True)
    try:
        assert given._keepalive_timeout == 30
        assert default._keepalive_timeout == 3600.0
        assert forced.force_close
    finally:
        for connector in (given, default, forced):
            await connector.close()


def _os_error_pair() -> tuple[type[BaseException], type[BaseException]]:
    return rstsafe.aiohttp.ERROR_CLASSES[aiohttp.ClientOSError]


def test_error_classes_are_the_exact_aiohttp_exceptions() -> None:
    """Every pair extends its aiohttp class and rstsafe's not-sent / maybe-sent error."""
    for base, (not_sent, maybe_sent) in rstsafe.aiohttp.ERROR_CLASSES.items():
        assert issubclass(not_sent, base)
        assert issubclass(maybe_sent, base)
        assert issubclass(not_sent, rstsafe.RequestNotSentError)
        assert issubclass(maybe_sent, rstsafe.RequestMaybeSentError)
        assert not_sent.__module__ == "rstsafe.aiohttp"  # tracebacks name the public module
        assert getattr(rstsafe.aiohttp, not_sent.__name__) is not_sent
        assert getattr(rstsafe.aiohttp, maybe_sent.__name__) is maybe_sent


def _failure(kind: FailureKind, delivery: Delivery) -> rstsafe.Failure:
    facts = rstsafe.ConnectionFacts(reused=True, idle_seconds=1.5, bytes_sent=0)
    return rstsafe.Failure(kind=kind, delivery=delivery, facts=facts, exception=ValueError("x"))


def test_errors_keep_aiohttps_args_and_pickle_with_their_facts() -> None:
    """aiohttp's args (errno, os_error, host) survive, and so does a pickle round trip."""
    history = rstsafe.core.RetryHistory().record(
        rstsafe.core.RetryDecision(action=RetryAction.GIVE_UP, reason="not retried"),
        failure=_failure(FailureKind.RESET, Delivery.MAYBE_SENT),
    )
    reset = rstsafe.aiohttp.MaybeSentClientOSError(
        104,
        "Connection reset by peer",
        message="connection reset",
        failure=_failure(FailureKind.RESET, Delivery.MAYBE_SENT),
        history=history,
    )
    key = ConnectionKey("example.org", 443, True, True, None, None, None)
    connect = rstsafe.aiohttp.NotSentClientConnectorError(
        key,
        ConnectionRefusedError(111, "Connection refused"),
        message="connection refused",
        failure=_failure(FailureKind.REFUSED, Delivery.NOT_SENT),
    )
    disconnected = rstsafe.aiohttp.NotSentServerDisconnectedError(
        message="closed", failure=_failure(FailureKind.CLOSED, Delivery.NOT_SENT)
    )
    for error in (reset, connect, disconnected):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error)
        assert repr(copy.args) == repr(error.args)  # exceptions compare by identity
        assert str(copy) == str(error)
        assert copy.failure is not None
        assert error.failure is not None
        assert copy.failure.kind is error.failure.kind
        assert copy.failure.facts == error.failure.facts
        assert copy.failure.exception is None  # not pickled
        assert len(copy.history) == len(error.history)
    assert reset.errno == 104
    assert str(reset) == "connection reset"
    assert connect.host == "example.org"
    assert isinstance(connect.os_error, ConnectionRefusedError)
    assert disconnected.args == ("Server disconnected",)


async def _agen() -> AsyncIterator[bytes]:
    yield b"x"


def _request(data: Any = None, **kwargs: Any) -> ClientRequest:
    return ClientRequest(
        "POST", URL("http://127.0.0.1/"), data=data, loop=asyncio.get_running_loop(), **kwargs
    )


async def test_body_kinds_follow_the_brief() -> None:
    """bytes, str, JSON, url-encoded and bytes-only multipart replay; files, generators do not."""
    form = aiohttp.FormData({"a": "1"})
    multipart = aiohttp.FormData()
    multipart.add_field("a", b"1", filename="a.bin")
    file_form = aiohttp.FormData()
    file_form.add_field("f", io.BytesIO(b"1"), filename="f.bin")
    cases: list[tuple[Any, BodyKind]] = [
        (None, BodyKind.NONE),
        (b"bytes", BodyKind.BYTES),
        ("text", BodyKind.BYTES),
        (aiohttp.JsonPayload({"a": 1}, dumps=json.dumps), BodyKind.BYTES),
        (form, BodyKind.BYTES),
        (multipart, BodyKind.BYTES),
        (file_form, BodyKind.STREAM),
        (io.BytesIO(b"file"), BodyKind.STREAM),
        (_agen(), BodyKind.STREAM),
    ]
    for data, kind in cases:
        request = _request(data)
        assert body_info(request).kind is kind, data
        close = getattr(request.body, "close", None)  # aiohttp >= 3.12
        if close is not None:
            await close()


async def _stale_then(
    session: aiohttp.ClientSession, server: MisbehavingServer, path: str, **kwargs: Any
) -> int:
    """Warm a connection, wait until the server gives up on it, then POST (keyed) on it."""
    async with session.get(server.url + "/warm") as response:
        await response.read()
    while not any(r.closing_since for r in server.connections):
        await asyncio.sleep(0.01)
    headers = {"Idempotency-Key": path}
    async with session.post(server.url + path, headers=headers, **kwargs) as response:
        await response.read()
        return response.status


@pytest.mark.usefixtures("retries_available")
async def test_per_request_middlewares_keep_rstsafe_innermost(
    misbehaving_server: ServerFactory,
) -> None:
    """A request's own ``middlewares=()`` keeps the retry; user middlewares see one call."""
    calls: list[str] = []

    async def counting(request: ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        calls.append(request.url.path)
        response: aiohttp.ClientResponse = await handler(request)
        return response

    without = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    async with rstsafe.aiohttp.ClientSession(middlewares=(counting,)) as session:
        assert await _stale_then(session, without, "/b", middlewares=()) == 200
    counted = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    async with rstsafe.aiohttp.ClientSession(middlewares=(counting,)) as session:
        assert await _stale_then(session, counted, "/c") == 200
    assert calls == ["/warm", "/warm", "/c"]  # /b skipped them; /c sent twice, seen once
    for server, path in ((without, "/b"), (counted, "/c")):
        assert server.executions(path=path) == 1
        assert len(server.connections) == 2  # the stale one, and the retry's


@pytest.mark.usefixtures("retries_available")
async def test_aiohttps_own_retry_stays_and_shares_the_budget(
    misbehaving_server: ServerFactory,
) -> None:
    """With no stale retry allowed, aiohttp's own GET retry still repairs the stale reuse."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    policy = RetryPolicy(retries=0, max_stale_retries=0)
    async with rstsafe.aiohttp.ClientSession(retry=policy) as session:
        async with session.get(server.url + "/a") as response:
            await response.read()
        while not any(r.closing_since for r in server.connections):
            await asyncio.sleep(0.01)
        async with session.get(server.url + "/b") as response:
            assert response.status == 200
    assert server.executions(path="/b") == 1
    assert len(server.connections) == 2


@pytest.mark.usefixtures("retries_available")
async def test_request_methods_work_where_aiohttp_clientsession_is_patched_to_ours(
    misbehaving_server: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``aiohttp.ClientSession`` patched to rstsafe's class, every request method works."""
    server = misbehaving_server()
    monkeypatch.setattr(aiohttp, "ClientSession", rstsafe.aiohttp.ClientSession)
    async with rstsafe.aiohttp.ClientSession() as session:
        calls = (
            session.request("GET", server.url + "/request", middlewares=()),
            session.get(server.url + "/get"),
            session.options(server.url + "/options"),
            session.head(server.url + "/head"),
            session.post(server.url + "/post", data=b"x"),
            session.put(server.url + "/put", data=b"x"),
            session.patch(server.url + "/patch", data=b"x"),
            session.delete(server.url + "/delete"),
        )
        for call in calls:
            async with call as response:
                assert response.status == 200
    for method in ("request", "get", "options", "head", "post", "put", "patch", "delete"):
        assert server.executions(path=f"/{method}") == 1


@pytest.mark.usefixtures("retries_available")
async def test_another_connector_makes_a_plain_aiohttp_session(
    misbehaving_server: ServerFactory,
) -> None:
    """On a connector not rstsafe's the session is aiohttp's: its middlewares only, no retry."""
    calls: list[str] = []

    async def counting(request: ClientRequest, handler: Any) -> aiohttp.ClientResponse:
        calls.append(request.url.path)
        response: aiohttp.ClientResponse = await handler(request)
        return response

    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    connector = aiohttp.TCPConnector()
    ours = rstsafe.aiohttp.ClientSession(connector=connector, middlewares=(counting,))
    with pytest.raises(AttributeError, match=r"not a rstsafe\.aiohttp\.TCPConnector"):
        _ = ours.keepalive_registry
    with pytest.raises(AttributeError, match=r"not a rstsafe\.aiohttp\.TCPConnector"):
        _ = ours.retry_policy
    async with ours as session:
        assert session.connector is connector
        assert session._middlewares == (counting,)
        async with session.post(server.url + "/a", data=b"x") as response:
            await response.read()
        while not any(r.closing_since for r in server.connections):
            await asyncio.sleep(0.01)
        # aiohttp reuses the stale connection and never resends a POST: its error, as is.
        with pytest.raises(aiohttp.ClientConnectionError) as caught:
            async with session.post(server.url + "/b", data=b"x", middlewares=()):
                pass
    # aiohttp's own class (a reset or a close, as the race goes), not rstsafe's subclass.
    assert type(caught.value) in (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
    assert calls == ["/a"]


async def test_connection_transport_attributes_can_be_patched(
    misbehaving_server: ServerFactory,
) -> None:
    """A connection's counting transport takes attribute assignment, as asyncio's does."""
    url = URL(misbehaving_server().url)
    assert url.host is not None
    assert url.port is not None
    loop = asyncio.get_running_loop()
    inner, protocol = await loop.create_connection(asyncio.Protocol, url.host, url.port)
    connector = rstsafe.aiohttp.TCPConnector()
    try:
        origin = rstsafe.core.Origin("http", url.host, url.port)
        tracked: Any = _Tracked(inner, connector._rstsafe, origin, protocol)
        written: list[bytes] = []
        tracked.write = written.append  # what mock.patch.object(transport, "write") does
        tracked.write(b"GET / HTTP/1.1\r\n")
        assert written == [b"GET / HTTP/1.1\r\n"]
        assert tracked.life.bytes_sent == 0  # the patched write, not the counting one
        del tracked.write
        tracked.write(b"Host: x\r\n\r\n")
        assert tracked.life.bytes_sent == len(b"Host: x\r\n\r\n")
    finally:
        inner.close()
        await connector.close()


async def test_a_new_connection_is_closed_when_tracking_it_fails(
    misbehaving_server: ServerFactory,
) -> None:
    """When tracking a new connection fails, the error is raised and the socket closed."""
    server = misbehaving_server()
    url = URL(server.url)
    connector = rstsafe.aiohttp.TCPConnector()
    try:
        request = ClientRequest("GET", url, loop=asyncio.get_running_loop())
        # An origin rstsafe cannot key its keep-alive state by (as a mocked request's URL).
        bad: Any = object()
        connector._rstsafe.origins[(url.scheme, url.host, url.port)] = bad
        with pytest.raises(AttributeError):
            await connector.connect(request, [], aiohttp.ClientTimeout(total=5))
        for _ in range(500):
            if server.connections and server.connections[0].end is not ConnectionEnd.OPEN:
                break
            await asyncio.sleep(0.01)
        assert len(server.connections) == 1
        assert server.connections[0].end is not ConnectionEnd.OPEN
    finally:
        await connector.close()
