"""rstsafe.httpx's public API and pure helpers: errors, bodies, configuration, socket options."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import cast

import httpx
import pytest

import rstsafe
import rstsafe.httpx
from rstsafe import FailureKind, KeepAlive, RetryPolicy, classify
from rstsafe._core.classify import Origin
from rstsafe._core.clock import ManualClock
from rstsafe.httpx._state import _body_info, _error_status, _Shared, _Tracker
from rstsafe.httpx._transport import _inner_limits
from rstsafe.testing import Healthy
from rstsafe.testing._fixtures import ServerFactory


def test_error_classes_subclass_httpx_and_rstsafe() -> None:
    """The raised classes are the httpx class and rstsafe's delivery class, static."""
    not_sent, maybe_sent = rstsafe.httpx.error_classes(httpx.ReadError)
    assert httpx.ReadError in not_sent.__mro__
    assert rstsafe.RequestNotSentError in not_sent.__mro__
    assert httpx.TransportError in maybe_sent.__mro__
    assert rstsafe.RequestMaybeSentError in maybe_sent.__mro__
    assert rstsafe.httpx.error_classes(httpx.ReadError) == (not_sent, maybe_sent)
    assert rstsafe.httpx.error_classes(cast("type[httpx.ReadError]", maybe_sent)) == (
        not_sent,
        maybe_sent,
    )
    assert maybe_sent is rstsafe.httpx.MaybeSentReadError
    assert not_sent is rstsafe.httpx.NotSentReadError
    with pytest.raises(ValueError, match="base"):
        rstsafe.httpx.error_classes(httpx.UnsupportedProtocol)


def test_error_carries_request_and_message() -> None:
    """An error instance has httpx's ``request`` and rstsafe's facts and message."""
    request = httpx.Request("GET", "http://127.0.0.1:1/")
    failure = classify(ConnectionResetError(104, "Connection reset by peer"))
    _, maybe_sent = rstsafe.httpx.error_classes(httpx.ReadError)
    error = maybe_sent("boom", failure=failure, request=request)
    assert cast("httpx.ReadError", error).request is request
    assert isinstance(error, httpx.ReadError)
    assert str(error) == "boom"
    assert error.failure is failure


def _chunks() -> Iterator[bytes]:
    yield b"x"


def test_only_byte_streams_are_replayable() -> None:
    """content=bytes, data= and json= are replayable; generators and files are not."""
    for request in (
        httpx.Request("POST", "http://h/", content=b"abc"),
        httpx.Request("POST", "http://h/", json={"a": 1}),
        httpx.Request("POST", "http://h/", data={"a": "1"}),
        httpx.Request("GET", "http://h/"),
    ):
        assert _body_info(request.stream).replayable
    assert not _body_info(httpx.Request("PUT", "http://h/", content=_chunks()).stream).replayable
    files = {"f": ("a.txt", b"abc")}
    assert not _body_info(httpx.Request("POST", "http://h/", files=files).stream).replayable


def test_error_status_detection() -> None:
    """Only an HTTP/1.x 4xx or 5xx status line counts as an early error response."""
    assert _error_status(b"HTTP/1.1 413 Content Too Large")
    assert _error_status(b"HTTP/1.0 500 ")
    assert not _error_status(b"HTTP/1.1 200 OK")
    assert not _error_status(b"HTTP/1.1 100 Continue")
    assert not _error_status(b"HTTP/1.1 4")
    assert not _error_status(b"garbage that is long")


def test_inner_limits_hand_idle_expiry_to_rstsafe() -> None:
    """HTTP/1.1 pools get no httpcore expiry; HTTP/2 pools the configured or default TTL."""
    limits = httpx.Limits(max_connections=7, max_keepalive_connections=3, keepalive_expiry=5)
    inner = _inner_limits(limits, KeepAlive(), http2=False)
    assert (inner.max_connections, inner.max_keepalive_connections) == (7, 3)
    assert inner.keepalive_expiry is None
    assert _inner_limits(limits, KeepAlive(), http2=True).keepalive_expiry == 4.0
    configured = KeepAlive(server_keepalive=75)
    assert _inner_limits(limits, configured, http2=True).keepalive_expiry == 73.0


def test_server_disconnected_is_a_close() -> None:
    """httpcore's HTTP/2 "Server disconnected" classifies as a close (retryable when stale)."""
    assert classify(httpx.RemoteProtocolError("Server disconnected")).kind is FailureKind.CLOSED


def test_client_builds_rstsafe_transports_everywhere() -> None:
    """Default and proxy transports are rstsafe's, configured once; a given transport is kept."""
    policy = RetryPolicy(retries=0, max_stale_retries=1)
    with rstsafe.httpx.Client(retry=policy, proxy="http://127.0.0.1:9") as client:
        transport = client._transport
        assert isinstance(transport, rstsafe.httpx.Transport)
        assert transport.retry_policy is policy
        proxies = list(client._mounts.values())
        assert proxies
        assert all(isinstance(t, rstsafe.httpx.Transport) for t in proxies)
    mine = httpx.MockTransport(lambda request: httpx.Response(204))
    with rstsafe.httpx.Client(transport=mine) as client:
        assert client.get("http://h/").status_code == 204


def test_async_client_builds_async_transports() -> None:
    """AsyncClient's transports are AsyncTransport; limits and http2 pass through."""
    client = rstsafe.httpx.AsyncClient(limits=httpx.Limits(max_connections=3))
    assert isinstance(client._transport, rstsafe.httpx.AsyncTransport)
    assert client._transport._pool._max_connections == 3


def test_transport_under_a_plain_httpx_client(misbehaving_server: ServerFactory) -> None:
    """rstsafe.httpx.Transport works under httpx.Client; connections get TCP keepalive."""
    server = misbehaving_server(Healthy())
    transport = rstsafe.httpx.Transport()
    with httpx.Client(transport=transport) as client:
        with client.stream("GET", server.url) as response:
            sock = response.extensions["network_stream"].get_extra_info("socket")
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            response.read()
        registry = transport.keepalive_registry
        assert len(registry) == 1


def test_socket_options_can_be_replaced(misbehaving_server: ServerFactory) -> None:
    """``socket_options=[]`` turns the keepalive options off (TCP_NODELAY stays)."""
    server = misbehaving_server(Healthy())
    with rstsafe.httpx.Client(socket_options=[]) as client, client.stream("GET", server.url) as r:
        sock = r.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 0
        r.read()


def test_bad_configuration_names_the_field() -> None:
    """Invalid rstsafe settings raise ValueError naming the field, before any I/O."""
    with pytest.raises(ValueError, match="max_lifetime"):
        rstsafe.httpx.Client(keepalive=KeepAlive(max_lifetime=-1))


def _tracked(keepalive: KeepAlive) -> tuple[_Shared, _Tracker, ManualClock]:
    clock = ManualClock(100.0)
    shared = _Shared(keepalive, RetryPolicy(retries=0), h2_prior_knowledge=False, clock=clock)
    return shared, _Tracker(shared, Origin("http", "127.0.0.1", 8080)), clock


def test_expiry_cache_never_delays_the_ttl() -> None:
    """The cached expiry check turns true no later than the TTL at its most jittered."""
    _, tracker, clock = _tracked(KeepAlive(server_keepalive=10.0, jitter=0.2))
    tracker.finisher(None)()
    ttl = KeepAlive(server_keepalive=10.0).ttl_below(10.0)  # 8 s before jitter
    assert not tracker.expired()
    clock.advance(ttl * 0.8 - 0.01)
    assert not tracker.expired()
    clock.advance(ttl * 0.2 + 0.02)
    assert tracker.expired()


def test_expiry_cache_sees_a_shorter_ttl_at_once() -> None:
    """A new Keep-Alive header (or a stale connection) bumps the epoch: no cached answer."""
    shared, tracker, clock = _tracked(KeepAlive(jitter=0.0))
    tracker.finisher(None)()
    clock.advance(1.0)
    assert not tracker.expired()  # default TTL 4 s; now cached until then
    origin = Origin("http", "127.0.0.1", 8080)
    shared.state(origin).observe_header("timeout=1")
    shared.saw_header(origin, "timeout=1")
    assert tracker.expired()  # TTL 0.75 s < 1 s idle
    shared2, tracker2, clock2 = _tracked(KeepAlive(jitter=0.0))
    tracker2.finisher(None)()
    clock2.advance(1.0)
    assert not tracker2.expired()
    shared2.expire_idle(origin, tracker2.life.last_used_at)  # a stale connection as old
    assert tracker2.expired()
