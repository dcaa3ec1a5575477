"""MisbehavingServer basics: HTTP/1.1 keep-alive service, accounting, addresses, clean stop."""

from __future__ import annotations

import http.client
import os
import socket
import threading

import httpx
import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st

from rstsafe.testing import (
    ConnectionEnd,
    ConnectionRecord,
    Execution,
    Healthy,
    IdleDrop,
    MisbehavingServer,
    ServerEvent,
)


def _ended(server: MisbehavingServer, count: int = 1) -> bool:
    records = server.connections
    return len(records) >= count and all(r.end is not ConnectionEnd.OPEN for r in records)


def _ipv6_loopback() -> tuple[bool, str]:
    if not socket.has_ipv6:
        return False, "Python was built without IPv6"
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError as exc:
        return False, f"::1 is not available here: {exc}"
    return True, ""


IPV6, NO_IPV6 = _ipv6_loopback()


def test_serves_every_method_on_one_keepalive_connection() -> None:
    """GET/HEAD/POST/PUT/PATCH/DELETE share one connection; each is executed and counted."""
    with MisbehavingServer(Healthy()) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            bodies = []
            for method, body in [
                ("GET", None),
                ("HEAD", None),
                ("POST", b"x" * 10),
                ("PUT", b"y" * 3),
                ("PATCH", b""),
                ("DELETE", None),
            ]:
                conn.request(method, "/items/1?q=1", body=body)
                response = conn.getresponse()
                assert response.status == 200
                assert response.getheader("Connection") is None
                bodies.append(response.read())
        finally:
            conn.close()
        assert bodies[0] == b"GET /items/1 body=0\n"
        assert bodies[1] == b""  # HEAD: headers only
        assert bodies[2] == b"POST /items/1 body=10\n"
        assert server.wait_until(_ended)
        (record,) = server.connections
        assert record.requests == 6
        assert record.end is ConnectionEnd.CLIENT_CLOSED
        assert server.executions() == 6
        assert server.executions(method="post", path="/items/1") == 1
        assert [e.body_bytes for e in server.executed] == [0, 0, 10, 3, 0, 0]
        assert server.executed[0].target == "/items/1?q=1"


def test_chunked_request_bodies_are_read_in_full() -> None:
    """A chunked upload (requests with a generator) is read and its size reported."""
    with MisbehavingServer(Healthy()) as server, requests.Session() as session:
        response = session.put(server.url + "/up", data=iter([b"ab", b"cde", b"f" * 100]))
        assert response.text == "PUT /up body=105\n"
        assert server.executed[0].body_bytes == 105


def test_idempotency_key_and_status_override() -> None:
    """Idempotency-Key is recorded; ?status= and ?retry-after= shape the response."""
    with MisbehavingServer(Healthy()) as server, httpx.Client() as client:
        response = client.post(
            server.url + "/orders?status=503&retry-after=2",
            content=b"{}",
            headers={"Idempotency-Key": "order-7"},
        )
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "2"
        client.post(server.url + "/orders", headers={"X-Idempotency-Key": "order-8"})
        assert server.executions(idempotency_key="order-7") == 1
        assert server.executions(idempotency_key="order-8") == 1
        assert server.executions(method="POST", path="/orders") == 2
        assert server.executions(method="GET") == 0


def test_client_connection_close_gets_fin() -> None:
    """A request with Connection: close is answered with Connection: close, then FIN."""
    with MisbehavingServer(Healthy()) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert b"Connection: close" in data
        assert data.endswith(b"GET / body=0\n")
        assert server.wait_until(_ended)
        assert server.connections[0].end is ConnectionEnd.FIN


def test_http10_request_without_keepalive_is_closed() -> None:
    """An HTTP/1.0 request without Connection: keep-alive gets one response and a FIN."""
    with MisbehavingServer(Healthy()) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"GET /old HTTP/1.0\r\n\r\n")
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        assert data.startswith(b"HTTP/1.1 200 OK\r\n")
        assert server.wait_until(_ended)
        assert server.connections[0].end is ConnectionEnd.FIN


def test_expect_100_continue_is_honoured() -> None:
    """Expect: 100-continue gets an interim 100 before the body is read."""
    with (
        MisbehavingServer(Healthy()) as server,
        socket.create_connection(server.address, timeout=10) as sock,
    ):
        sock.sendall(
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
        )
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"abcd")
        assert sock.recv(4096).endswith(b"POST /p body=4\n")


def test_bad_request_gets_400_and_fin() -> None:
    """A malformed request line is answered 400 and the connection closed with a FIN."""
    with MisbehavingServer(Healthy()) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"NONSENSE\r\n\r\n")
            assert sock.recv(4096).startswith(b"HTTP/1.1 400 Bad Request\r\n")
            assert sock.recv(4096) == b""
        assert server.wait_until(_ended)
        assert server.connections[0].end is ConnectionEnd.FIN
        assert server.executions() == 0


def test_idle_connections_get_fin_and_http_client_sees_remote_disconnected() -> None:
    """Healthy(keepalive) closes idle connections with FIN; http.client reusing one fails."""
    with MisbehavingServer(Healthy(keepalive=0.3)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            assert server.wait_until(_ended)
            assert server.connections[0].end is ConnectionEnd.FIN
            assert server.connections[0].reason == "idle for 0.3 s"
            conn.request("GET", "/")
            with pytest.raises(http.client.RemoteDisconnected):
                conn.getresponse()
        finally:
            conn.close()


def test_requests_and_httpx_survive_a_fin_closed_idle_connection() -> None:
    """urllib3 and httpcore notice the FIN before reuse and open a new connection."""
    with MisbehavingServer(Healthy(keepalive=0.3)) as server:
        with requests.Session() as session:
            assert session.get(server.url).status_code == 200
            assert server.wait_until(_ended)
            assert session.get(server.url).status_code == 200
        with httpx.Client() as client:
            assert client.get(server.url).status_code == 200
            assert server.wait_until(lambda s: _ended(s, 3))
            assert client.get(server.url).status_code == 200
        assert server.wait_until(lambda s: _ended(s, 4))
        assert server.executions() == 4
        assert len(server.connections) == 4


@pytest.mark.skipif(not IPV6, reason=NO_IPV6 or "n/a")
def test_ipv6_loopback() -> None:
    """host='::1' binds IPv6 loopback and the URL brackets the address."""
    with MisbehavingServer(Healthy(), host="::1") as server:
        assert server.url == f"http://[::1]:{server.port}"
        assert server.address == ("::1", server.port)
        with httpx.Client() as client:
            assert client.get(server.url + "/six").text == "GET /six body=0\n"
        assert server.connections[0].peer[0] == "::1"


def test_addresses() -> None:
    """url, address and port describe the bound listener."""
    with MisbehavingServer() as server:
        assert server.port > 0
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert server.address == ("127.0.0.1", server.port)
        assert server.name == "healthy"
        assert "running" in repr(server)


def test_on_event_reports_executions_and_connection_ends() -> None:
    """on_event receives each Execution and each ended ConnectionRecord."""
    events: list[ServerEvent] = []
    lock = threading.Lock()

    def collect(event: ServerEvent) -> None:
        with lock:
            events.append(event)

    with MisbehavingServer(Healthy(), on_event=collect) as server:
        with requests.Session() as session:
            session.post(server.url + "/e", data=b"abc")
        assert server.wait_until(_ended)
    with lock:
        kinds = [type(e) for e in events]
    assert kinds == [Execution, ConnectionRecord]


def test_wait_until_returns_false_on_timeout() -> None:
    """wait_until gives up after its timeout and says so."""
    with MisbehavingServer() as server:
        assert not server.wait_until(lambda s: s.executions() > 0, timeout=0.05)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_stop_is_idempotent_and_releases_every_socket_and_thread() -> None:
    """stop() closes open, idle and dropped connections, joins threads and is idempotent."""
    before = _open_fds()
    server = MisbehavingServer(IdleDrop(idle=0.2)).start()
    clients = [socket.create_connection(server.address, timeout=10) for _ in range(5)]
    try:
        clients[0].sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert clients[0].recv(4096).startswith(b"HTTP/1.1 200")
        assert server.wait_until(lambda s: len(s.connections) == 5)
        assert server.wait_until(lambda s: s.connections[0].closing_since is not None)
        server.stop()
        server.stop()
        ends = server.ends()
        assert ends[0] is ConnectionEnd.RST  # dropped: never a FIN, even at stop
        assert all(end is not ConnectionEnd.OPEN for end in ends)
        assert not [t for t in threading.enumerate() if t.name.startswith("rstsafe-")]
    finally:
        for client in clients:
            client.close()
    assert _open_fds() == before
    with pytest.raises(RuntimeError, match="only once"):
        server.start()


def test_many_concurrent_requests_over_a_bounded_pool() -> None:
    """1,000 httpx requests from 20 threads over at most 20 connections are all served."""
    errors: list[BaseException] = []
    with (
        MisbehavingServer(Healthy(keepalive=None)) as server,
        httpx.Client(limits=httpx.Limits(max_connections=20), timeout=30) as client,
    ):

        def worker(index: int) -> None:
            try:
                for n in range(50):
                    response = client.post(f"{server.url}/w{index}", content=b"z" * n)
                    assert response.text == f"POST /w{index} body={n}\n"
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        assert server.executions() == 1000
        assert len(server.connections) <= 20


def _raw_exchange(server: MisbehavingServer, request: bytes) -> bytes:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while not data.endswith(b"\n") or b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        return data


def test_chunked_extensions_and_trailers() -> None:
    """Chunk extensions and trailers are accepted; a bad chunk size is a 400."""
    with MisbehavingServer(Healthy()) as server:
        good = _raw_exchange(
            server,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nWiki\r\n5;ext=1\r\npedia\r\n0\r\nX-Trailer: yes\r\n\r\n",
        )
        assert good.endswith(b"POST /c body=9\n")
        bad = _raw_exchange(
            server,
            b"POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        )
        assert bad.startswith(b"HTTP/1.1 400 ")
        assert server.executions() == 1


def test_chunked_bodies_of_any_shape_are_counted() -> None:
    """Property: however a body is split into chunks, body_bytes is its length."""
    with MisbehavingServer(Healthy(keepalive=None)) as server:

        @settings(max_examples=40, deadline=None)
        @given(st.lists(st.binary(min_size=1, max_size=300), max_size=8))
        def check(chunks: list[bytes]) -> None:
            encoded = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n\r\n"
            head = b"PUT /h HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            response = _raw_exchange(server, head + encoded)
            assert response.endswith(f"PUT /h body={sum(map(len, chunks))}\n".encode())

        check()
