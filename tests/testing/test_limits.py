"""MisbehavingServer's limits: connections at once (503), body size (413), non-loopback warning."""

from __future__ import annotations

import http.client
import logging
import socket
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import pytest
import requests

from rstsafe.testing import (
    ConnectionEnd,
    Healthy,
    MisbehavingServer,
    NamespaceFactory,
)

GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until its FIN (fails on a reset)."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _connection_threads(server: MisbehavingServer) -> list[threading.Thread]:
    prefix = f"rstsafe-{server.name}-conn-"
    return [t for t in threading.enumerate() if t.name.startswith(prefix) and t.is_alive()]


@pytest.fixture
def held() -> Iterator[ExitStack]:
    """Client connections held open for the test, closed at teardown."""
    with ExitStack() as stack:
        yield stack


def _hold_served(server: MisbehavingServer, stack: ExitStack, count: int) -> list[Any]:
    """Open ``count`` keep-alive connections, each served one GET (so each holds a slot)."""
    conns = []
    for _ in range(count):
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        stack.callback(conn.close)
        conn.request("GET", "/held")
        response = conn.getresponse()
        assert response.status == 200
        response.read()
        conns.append(conn)
    return conns


def test_connection_beyond_the_cap_gets_503_and_no_thread(held: ExitStack) -> None:
    """cap=4: connections 5..24 get 503 + FIN from the accept thread; 4 threads, 4 served."""
    with MisbehavingServer(Healthy(keepalive=None), max_connections=4) as server:
        _hold_served(server, held, 4)
        assert server.active_connections == 4
        extra = [socket.create_connection(server.address, timeout=10) for _ in range(20)]
        for sock in extra:
            held.callback(sock.close)
            sock.sendall(GET)
        for sock in extra:
            response = _read_all(sock)  # ends with the server's FIN: no reset
            assert response.startswith(b"HTTP/1.1 503 Service Unavailable\r\n")
            assert b"Retry-After: 1\r\n" in response
            assert b"Connection: close\r\n" in response
            assert response.endswith(b"over max_connections=4\n")
        assert len(_connection_threads(server)) == 4
        assert server.active_connections == 4
        assert server.executions() == 4
        assert server.wait_until(
            lambda s: all(r.end is not ConnectionEnd.OPEN for r in s.connections[4:])
        )
        rejected = server.connections[4:]
        assert len(rejected) == 20
        for record in rejected:
            assert record.requests == 0
            assert record.reason.startswith("rejected: answered 503 (over max_connections=4)")
            assert record.end in (ConnectionEnd.FIN, ConnectionEnd.CLIENT_CLOSED)


def test_a_freed_slot_serves_the_next_connection(held: ExitStack) -> None:
    """Once a served connection ends, the next one is served again (the slot is freed)."""
    with MisbehavingServer(Healthy(keepalive=None), max_connections=1) as server:
        (first,) = _hold_served(server, held, 1)
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(GET)
            assert _read_all(sock).startswith(b"HTTP/1.1 503 ")
        first.close()
        assert server.wait_until(lambda s: s.connections[0].end is not ConnectionEnd.OPEN)
        assert server.active_connections == 0
        assert requests.get(server.url + "/again", timeout=10).status_code == 200
        assert server.executions(path="/again") == 1


@pytest.mark.timeout(30)
def test_a_flood_of_connections_keeps_threads_bounded(held: ExitStack) -> None:
    """300 connections against cap=2: every one is answered, threads never exceed the cap."""
    with MisbehavingServer(Healthy(keepalive=None), max_connections=2) as server:
        _hold_served(server, held, 2)
        before = threading.active_count()
        socks = []
        for _ in range(300):
            sock = socket.create_connection(server.address, timeout=10)
            held.callback(sock.close)
            socks.append(sock)
            assert len(_connection_threads(server)) <= 2
        for sock in socks:
            assert sock.recv(12) == b"HTTP/1.1 503"
        assert threading.active_count() == before
        assert len(_connection_threads(server)) == 2
        assert len(server.connections) == 302


def test_body_over_max_body_gets_413_before_it_is_read() -> None:
    """Content-Length 1e9 over max_body=1000: 413 after 500 bytes sent, then a FIN."""
    with MisbehavingServer(Healthy(), max_body=1000) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            head = b"POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n\r\n"
            sock.sendall(head + b"b" * 500)
            response = _read_all(sock)
        assert response.startswith(b"HTTP/1.1 413 ")
        assert b"Connection: close\r\n" in response
        assert response.endswith(b"request body over 1000 bytes\n")
        assert server.wait_until(lambda s: s.ends() != (ConnectionEnd.OPEN,))
        (record,) = server.connections
        assert record.reason == "answered 413: Content-Length 1000000000 is over max_body=1000"
        assert record.end in (ConnectionEnd.FIN, ConnectionEnd.CLIENT_CLOSED)
        assert server.executions() == 0


def test_expect_100_continue_gets_413_instead_of_100() -> None:
    """A client that waits for 100 Continue gets the 413 and never sends the body."""
    with MisbehavingServer(Healthy(), max_body=10) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(
                b"PUT /u HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n"
            )
            response = _read_all(sock)
        assert response.startswith(b"HTTP/1.1 413 ")
        assert b"100 Continue" not in response
        assert server.executions() == 0


def test_chunked_body_is_cut_off_at_max_body() -> None:
    """A chunked body: 413 as soon as the chunks announced pass max_body."""
    with MisbehavingServer(Healthy(), max_body=1000) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            chunk = b"258\r\n" + b"c" * 600 + b"\r\n"  # 0x258 = 600
            sock.sendall(
                b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunk
            )
            sock.sendall(b"258\r\n")  # announces 1200 bytes in all
            response = _read_all(sock)
        assert response.startswith(b"HTTP/1.1 413 ")
        assert server.wait_until(lambda s: s.ends() != (ConnectionEnd.OPEN,))
        assert "chunked body reached 1200 bytes, over max_body=1000" in server.connections[0].reason
        assert server.executions() == 0


def test_bodies_up_to_max_body_are_served() -> None:
    """A body of exactly max_body bytes is read and executed; requests sees the 413 above it."""
    with MisbehavingServer(Healthy(), max_body=1000) as server:
        assert requests.post(server.url + "/ok", data=b"o" * 1000, timeout=10).status_code == 200
        assert requests.post(server.url + "/no", data=b"n" * 5000, timeout=10).status_code == 413
        assert server.executions(path="/ok") == 1
        assert server.executions(path="/no") == 0
        assert server.executed[0].body_bytes == 1000


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_connections": 0}, ValueError, "max_connections"),
        ({"max_connections": 1.5}, TypeError, "max_connections"),
        ({"max_connections": True}, TypeError, "max_connections"),
        ({"max_body": -1}, ValueError, "max_body"),
        ({"max_body": "1M"}, TypeError, "max_body"),
    ],
)
def test_bad_limits_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    """Bad limits raise TypeError or ValueError whose message starts with the keyword."""
    with pytest.raises(error, match=rf"^{name} "):
        MisbehavingServer(**kwargs)


def test_loopback_binds_without_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """127.0.0.1 logs nothing."""
    with caplog.at_level(logging.WARNING, logger="rstsafe.testing"), MisbehavingServer():
        pass
    assert [r for r in caplog.records if r.name == "rstsafe.testing"] == []


@pytest.mark.root
def test_non_loopback_bind_logs_a_warning(
    network_namespace: NamespaceFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """0.0.0.0 (inside a namespace of our own) logs one warning naming address and port."""
    namespace = network_namespace()
    with (
        caplog.at_level(logging.WARNING, logger="rstsafe.testing"),
        MisbehavingServer(host="0.0.0.0", allow_non_loopback=True, namespace=namespace) as server,
    ):
        (record,) = [r for r in caplog.records if r.name == "rstsafe.testing"]
        assert record.levelno == logging.WARNING
        message = record.getMessage()
        assert f"bound 0.0.0.0 port {server.port}, which is not a loopback address" in message
        with namespace.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(GET)
            assert sock.recv(12) == b"HTTP/1.1 200"
