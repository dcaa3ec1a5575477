"""rstsafe.httpx keeps httpx's contract: host types, pools, errors passed through, limits."""

from __future__ import annotations

import contextlib
import inspect
import pickle
import socket
import threading
import time
from collections.abc import Iterator

import anyio
import httpcore
import httpx
import pytest

import rstsafe
import rstsafe.httpx
from rstsafe import FailureKind, KeepAlive, RetryPolicy, classify
from rstsafe._compat.httpx import SOCKS_SCHEMES
from rstsafe._core.classify import ConnectionFacts, Origin
from rstsafe._core.retry import RetryAction, RetryDecision, RetryHistory
from rstsafe.httpx._errors import _ERROR_CLASSES
from rstsafe.testing import BlackHole, Healthy, IdleDrop
from rstsafe.testing._fixtures import ServerFactory

PROXIES = [
    (None, httpcore.ConnectionPool, httpcore.AsyncConnectionPool),
    ("http://127.0.0.1:3128", httpcore.HTTPProxy, httpcore.AsyncHTTPProxy),
    ("https://127.0.0.1:3128", httpcore.HTTPProxy, httpcore.AsyncHTTPProxy),
    ("socks5://127.0.0.1:1080", httpcore.SOCKSProxy, httpcore.AsyncSOCKSProxy),
]
if "socks5h" in SOCKS_SCHEMES:  # httpx 0.28 and later
    PROXIES.append(("socks5h://127.0.0.1:1080", httpcore.SOCKSProxy, httpcore.AsyncSOCKSProxy))

# A wrong claim (the server really closes far sooner): safe send trusts a claimed
# timeout, so requests that could not be retried do reuse the connection the server has
# closed, which these tests need in order to show what rstsafe does then. Without a claim
# such requests go on a fresh connection instead (test_no_post_meets_the_race).
WRONG_CLAIM = rstsafe.KeepAlive(server_keepalive=10.0)


@pytest.mark.parametrize(("proxy", "sync_pool", "async_pool"), PROXIES)
def test_transports_are_httpx_transports_with_httpx_pools(
    proxy: str | None, sync_pool: type, async_pool: type
) -> None:
    """Transport is an httpx.HTTPTransport whose ``_pool`` is the pool httpx would build."""
    transport = rstsafe.httpx.Transport(proxy=proxy)
    plain = httpx.HTTPTransport(proxy=proxy)
    assert isinstance(transport, httpx.HTTPTransport)
    assert type(transport._pool) is type(plain._pool) is sync_pool
    async_transport = rstsafe.httpx.AsyncTransport(proxy=proxy)
    assert isinstance(async_transport, httpx.AsyncHTTPTransport)
    assert type(async_transport._pool) is async_pool
    if proxy is not None:
        assert getattr(transport._pool, "_proxy_url") == getattr(plain._pool, "_proxy_url")  # noqa: B009


def test_client_proxies_and_mounts_as_httpx(monkeypatch: pytest.MonkeyPatch) -> None:
    """Environment proxies become rstsafe transports with httpx's proxy pools; mounts kept."""
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:3128")
    monkeypatch.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with rstsafe.httpx.Client() as client:
        http = client._transport_for_url(httpx.URL("http://example.org"))
        other = client._transport_for_url(httpx.URL("https://example.org"))
    assert isinstance(http, rstsafe.httpx.Transport)
    assert isinstance(other, rstsafe.httpx.Transport)
    assert isinstance(http._pool, httpcore.HTTPProxy)
    assert isinstance(other._pool, httpcore.SOCKSProxy)
    mine = httpx.HTTPTransport()
    with rstsafe.httpx.Client(mounts={"http://": mine}, trust_env=False) as client:
        assert client._transport_for_url(httpx.URL("http://example.org")) is mine
        assert isinstance(client._transport, rstsafe.httpx.Transport)


def test_positional_arguments_mean_what_httpx_says() -> None:
    """Arguments bind to the installed httpx.HTTPTransport signature, unknown ones refused."""
    values: dict[str, object] = {"verify": True, "cert": None, "trust_env": True}
    values.update(http1=True, http2=False)
    values["limits"] = httpx.Limits(max_connections=7)
    order = [n for n in inspect.signature(httpx.HTTPTransport.__init__).parameters if n != "self"]
    # httpx's own order (0.27 puts trust_env after limits, 0.28 after cert):
    positional = [values[name] for name in order[: order.index("limits") + 1]]
    transport = rstsafe.httpx.Transport(*positional)
    assert transport._pool._max_connections == 7
    with pytest.raises(TypeError):
        rstsafe.httpx.Transport(no_such_argument=1)
    with pytest.raises(ValueError, match="proxy"):
        rstsafe.httpx.Transport(proxy="ftp://127.0.0.1")


def test_bad_settings_name_the_parameter() -> None:
    """Bad rstsafe settings: TypeError or ValueError naming the parameter, at construction."""
    with pytest.raises(ValueError, match="retries"):
        rstsafe.httpx.Transport(retry=RetryPolicy())
    with pytest.raises(ValueError, match="retry_statuses"):
        rstsafe.httpx.AsyncClient(retry=RetryPolicy(retries=0, retry_statuses=frozenset({429})))
    with pytest.raises(TypeError, match="retry"):
        rstsafe.httpx.Transport(retry=3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="keepalive"):
        rstsafe.httpx.Client(keepalive=5)  # type: ignore[arg-type]
    assert rstsafe.httpx.Transport(retry=RetryPolicy(retries=0)).retry_policy.retries == 0


def test_unsupported_protocol_passes_through_unchanged() -> None:
    """httpx's UnsupportedProtocol comes back as is: same class, message and args."""
    with httpx.Client() as plain, pytest.raises(httpx.UnsupportedProtocol) as expected:
        plain.get("invalid://example.org")
    with rstsafe.httpx.Client() as client, pytest.raises(httpx.UnsupportedProtocol) as caught:
        client.get("invalid://example.org")
    assert type(caught.value) is httpx.UnsupportedProtocol
    assert caught.value.args == expected.value.args
    assert str(caught.value) == str(expected.value)


def test_read_timeout_is_httpx_and_prompt(misbehaving_server: ServerFactory) -> None:
    """GET to a silent server, read=0.5: httpx's ReadTimeout after one attempt (< 1.5 s)."""
    server = misbehaving_server(BlackHole())
    with rstsafe.httpx.Client(timeout=httpx.Timeout(2, read=0.5)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as caught:
            client.get(server.url)
        elapsed = time.monotonic() - started
    assert type(caught.value) is httpx.ReadTimeout
    assert 0.4 < elapsed < 1.5  # one read timeout, no retry storm
    assert server.wait_until(lambda s: s.received_unexecuted == 1)


@pytest.mark.anyio
async def test_async_read_timeout_is_httpx_and_prompt(misbehaving_server: ServerFactory) -> None:
    """The async client, asyncio and trio: httpx's ReadTimeout after one attempt (< 1.5 s)."""
    server = misbehaving_server(BlackHole())
    async with rstsafe.httpx.AsyncClient(timeout=httpx.Timeout(2, read=0.5)) as client:
        started = time.monotonic()
        with pytest.raises(httpx.ReadTimeout) as caught:
            await client.get(server.url)
        elapsed = time.monotonic() - started
    assert type(caught.value) is httpx.ReadTimeout
    assert 0.4 < elapsed < 1.5
    with anyio.fail_after(5):
        while server.received_unexecuted != 1:
            await anyio.sleep(0.01)


def _history(failure: rstsafe.Failure) -> RetryHistory:
    decision = RetryDecision(action=RetryAction.GIVE_UP, reason="POST not retried: test")
    return RetryHistory().record(decision, failure=failure)


@pytest.mark.parametrize("base", sorted(_ERROR_CLASSES, key=str))
def test_every_error_class_pickles_with_its_facts(base: type[httpx.TransportError]) -> None:
    """Each static class is importable by name and survives pickling with facts and request."""
    facts = ConnectionFacts(
        origin=Origin("http", "127.0.0.1", 8080), reused=True, idle_seconds=4.9, bytes_sent=0
    )
    failure = classify(ConnectionResetError(104, "Connection reset by peer"), facts=facts)
    request = httpx.Request("GET", "http://127.0.0.1:8080/x")
    for cls, delivery_class in zip(
        rstsafe.httpx.error_classes(base),
        (rstsafe.RequestNotSentError, rstsafe.RequestMaybeSentError),
        strict=True,
    ):
        assert getattr(rstsafe.httpx, cls.__name__) is cls
        assert issubclass(cls, base)
        assert issubclass(cls, delivery_class)
        error = cls(
            "rstsafe's message", failure=failure, history=_history(failure), request=request
        )
        error.args = ("httpx's message",)
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is cls
        assert copy.args == ("httpx's message",)
        assert str(copy) == "rstsafe's message"
        assert copy.failure == failure
        assert copy.history == error.history
        assert copy.attempts == 1
        assert isinstance(copy, httpx.TransportError)
        assert copy.request.url == request.url


def test_stale_error_keeps_httpx_args(misbehaving_server: ServerFactory) -> None:
    """Where rstsafe acts (stale POST), args are httpx's and str() has rstsafe's facts."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    with rstsafe.httpx.Client(keepalive=WRONG_CLAIM) as client:
        assert client.get(server.url + "/warm").status_code == 200
        assert server.wait_until(lambda s: any(r.closing_since for r in s.connections))
        with pytest.raises(rstsafe.RequestMaybeSentError) as caught:
            client.post(server.url + "/pay", content=b"1")
    error = caught.value
    cause = error.__cause__
    assert isinstance(cause, httpx.TransportError)
    assert isinstance(error, type(cause))
    assert error.args == cause.args
    assert error.failure is not None
    assert error.failure.kind in {FailureKind.RESET, FailureKind.CLOSED, FailureKind.BROKEN_PIPE}
    assert "not idempotent" in str(error)
    assert pickle.loads(pickle.dumps(error)).failure == error.failure
    assert server.executions(path="/pay") == 0


# ---------------------------------------------------------------------------------------
# SOCKS5 on loopback: a minimal proxy (RFC 1928, no authentication, CONNECT only).


def _relay(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _socks_session(client: socket.socket, connects: list[tuple[str, int]]) -> None:
    with client:
        greeting = client.recv(2)
        client.recv(greeting[1])  # the offered methods
        client.sendall(b"\x05\x00")  # no authentication
        head = client.recv(4)
        if head[3] == 1:
            host = socket.inet_ntoa(client.recv(4))
        else:  # 3: a domain name (socks5h)
            host = client.recv(client.recv(1)[0]).decode()
        port = int.from_bytes(client.recv(2), "big")
        connects.append((host, port))
        with socket.create_connection((host, port)) as upstream:
            client.sendall(b"\x05\x00\x00\x01" + bytes(4) + bytes(2))
            back = threading.Thread(target=_relay, args=(upstream, client), daemon=True)
            back.start()
            _relay(client, upstream)
            back.join(5)


@pytest.fixture
def socks_proxy() -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """A SOCKS5 proxy on 127.0.0.1; yields its URL and the (host, port) of each CONNECT."""
    listener = socket.create_server(("127.0.0.1", 0))
    connects: list[tuple[str, int]] = []
    sessions: list[threading.Thread] = []
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                client, _ = listener.accept()
            except OSError:
                return
            session = threading.Thread(target=_socks_session, args=(client, connects))
            session.start()
            sessions.append(session)

    acceptor = threading.Thread(target=accept)
    acceptor.start()
    try:
        yield f"socks5://127.0.0.1:{listener.getsockname()[1]}", connects
    finally:
        stop.set()
        listener.shutdown(socket.SHUT_RDWR)
        listener.close()
        acceptor.join(5)
        for session in sessions:
            session.join(5)


@pytest.mark.parametrize("scheme", sorted(SOCKS_SCHEMES))
def test_socks_proxy_requests_go_through_the_proxy(
    misbehaving_server: ServerFactory,
    socks_proxy: tuple[str, list[tuple[str, int]]],
    scheme: str,
) -> None:
    """Through a SOCKS5 proxy on loopback, requests succeed and rstsafe's TTL applies."""
    server = misbehaving_server(Healthy())
    url, connects = socks_proxy
    keepalive = KeepAlive(server_keepalive=0.5)  # TTL below 0.5 s: the pause outlives it
    proxy = url.replace("socks5", scheme, 1)
    with rstsafe.httpx.Client(proxy=proxy, keepalive=keepalive) as client:
        transport = client._transport_for_url(httpx.URL(server.url))
        assert isinstance(transport, rstsafe.httpx.Transport)
        assert isinstance(transport._pool, httpcore.SOCKSProxy)
        assert client.get(server.url + "/a").status_code == 200
        assert client.get(server.url + "/b").status_code == 200  # reused
        time.sleep(0.6)
        assert client.post(server.url + "/c", content=b"1").status_code == 200  # fresh
    assert len(connects) == 2
    assert all(port == server.address[1] for _, port in connects)
    assert server.executions(path="/c") == 1
