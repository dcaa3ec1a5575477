"""Each behaviour does what it says: what the clients raise, and what the server recorded.

Clients: plain ``socket``, ``http.client``, ``requests`` and ``httpx``. Races are made
deterministic by waiting for the server's own record (``closing_since``, a connection's
end) instead of sleeping.
"""

from __future__ import annotations

import http.client
import select
import socket

import httpx
import pytest
import requests
import urllib3

from rstsafe.testing import (
    AbortiveClose,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    BlackHole,
    CloseAfterRequests,
    ConnectionEnd,
    EarlyResponse,
    IdleCloseWithLag,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
)

GET = b"GET /again HTTP/1.1\r\nHost: x\r\n\r\n"
# Long enough that a test thread delayed by a busy machine still sends inside the window.
LAG = 2.0
BIG_BODY = b"u" * (8 * 1024 * 1024)


def _ended(server: MisbehavingServer, count: int = 1) -> bool:
    records = server.connections
    return len(records) >= count and all(r.end is not ConnectionEnd.OPEN for r in records)


def _closing(server: MisbehavingServer) -> bool:
    records = server.connections
    return bool(records) and records[-1].closing_since is not None


def _exchange(sock: socket.socket, request: bytes = GET) -> bytes:
    """Send one request and read one (small) response."""
    sock.sendall(request)
    data = b""
    while b"body=" not in data or not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def _get(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    """Send a GET on ``conn`` and return the response (headers read)."""
    conn.request("GET", "/")
    return conn.getresponse()


def _reset_cause(exc: BaseException) -> BaseException | None:
    """Walk __cause__/__context__ and args to the innermost ConnectionResetError, if any."""
    seen: list[BaseException] = [exc]
    while seen:
        current = seen.pop()
        if isinstance(current, ConnectionResetError):
            return current
        seen += [c for c in (current.__cause__, current.__context__) if c is not None]
        seen += [a for a in current.args if isinstance(a, BaseException)]
    return None


# -- IdleCloseWithLag (C1, C2) -------------------------------------------------------


def test_idle_close_with_lag_resets_a_request_sent_in_the_window_socket() -> None:
    """A request written after the idle deadline but before the close is answered by RST."""
    with MisbehavingServer(IdleCloseWithLag(idle=0.3, lag=LAG)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            _exchange(sock)
            assert server.wait_until(_closing)
            sock.sendall(GET)  # the write succeeds: the peer's kernel still ACKs
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)
        assert server.wait_until(_ended)
        record = server.connections[0]
        assert record.end is ConnectionEnd.RST
        assert record.requests == 1
        assert "unread request data" in record.reason
        assert server.executions() == 1


def test_idle_close_with_lag_http_client_sees_connection_reset() -> None:
    """http.client reusing the connection in the window gets ConnectionResetError."""
    with MisbehavingServer(IdleCloseWithLag(idle=0.3, lag=LAG)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            assert server.wait_until(_closing)
            conn.request("POST", "/orders", body=b"{}")
            with pytest.raises(ConnectionResetError):
                conn.getresponse()
        finally:
            conn.close()
        assert server.wait_until(_ended)
        assert server.ends() == (ConnectionEnd.RST,)
        assert server.executions(method="POST") == 0


def test_idle_close_with_lag_requests_and_httpx_errors() -> None:
    """requests raises ConnectionError(ProtocolError(ConnectionResetError)); httpx ReadError."""
    with MisbehavingServer(IdleCloseWithLag(idle=0.3, lag=LAG)) as server:
        with requests.Session() as session:
            session.get(server.url)
            assert server.wait_until(_closing)
            with pytest.raises(requests.exceptions.ConnectionError) as caught:
                session.get(server.url)
            protocol_error = caught.value.args[0]
            assert isinstance(protocol_error, urllib3.exceptions.ProtocolError)
            assert isinstance(protocol_error.args[1], ConnectionResetError)
        with httpx.Client() as client:
            client.get(server.url)
            assert server.wait_until(_closing)
            with pytest.raises(httpx.ReadError) as httpx_caught:
                client.get(server.url)
            assert _reset_cause(httpx_caught.value) is not None
        assert server.wait_until(lambda s: _ended(s, 2))
        assert server.ends() == (ConnectionEnd.RST, ConnectionEnd.RST)


def test_idle_close_with_lag_can_advertise_its_timeout() -> None:
    """With advertised=N every response carries Keep-Alive: timeout=N; without it, none."""
    advertising = IdleCloseWithLag(idle=0.3, lag=LAG, advertised=0.3)
    with MisbehavingServer(advertising) as server, requests.Session() as session:
        assert session.get(server.url).headers["Keep-Alive"] == "timeout=0.3"
    silent = IdleCloseWithLag(idle=0.3, lag=LAG)
    with MisbehavingServer(silent) as server, requests.Session() as session:
        assert "Keep-Alive" not in session.get(server.url).headers


def test_idle_close_with_lag_rejects_a_bad_advertised_value() -> None:
    """advertised must be a positive number of seconds; the error names the field."""
    with pytest.raises(ValueError, match="advertised"):
        IdleCloseWithLag(advertised=0)


def test_idle_close_with_lag_is_a_fin_when_nothing_arrives() -> None:
    """Without a request in the window, the delayed close is a plain FIN."""
    with MisbehavingServer(IdleCloseWithLag(idle=0.2, lag=0.3)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            _exchange(sock)
            assert server.wait_until(_ended)
            assert sock.recv(4096) == b""
        record = server.connections[0]
        assert record.end is ConnectionEnd.FIN
        assert record.reason == "idle for 0.2 s, closed 0.3 s later"
        assert record.closing_since is not None
        assert record.ended_at is not None
        assert record.ended_at - record.closing_since >= 0.25  # the lag (timer slack allowed)


# -- IdleDrop (C3, C7) --------------------------------------------------------------


def test_idle_drop_sends_no_fin_and_resets_the_next_bytes_socket() -> None:
    """After the drop the socket stays silent (no FIN); the next request gets RST."""
    with MisbehavingServer(IdleDrop(idle=0.2)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            _exchange(sock)
            assert server.wait_until(_closing)
            readable, _, _ = select.select([sock], [], [], 0.3)
            assert readable == []  # no FIN arrived
            sock.sendall(GET)
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)
        assert server.wait_until(_ended)
        assert server.ends() == (ConnectionEnd.RST,)
        assert server.executions() == 1


def test_idle_drop_errors_per_client() -> None:
    """http.client: ConnectionResetError; requests: ConnectionError; httpx: ReadError."""
    with MisbehavingServer(IdleDrop(idle=0.2)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/")
            conn.getresponse().read()
            assert server.wait_until(_closing)
            conn.request("GET", "/")
            with pytest.raises(ConnectionResetError):
                conn.getresponse()
        finally:
            conn.close()
        with requests.Session() as session:
            session.get(server.url)
            assert server.wait_until(lambda s: len(s.connections) == 2 and _closing(s))
            with pytest.raises(requests.exceptions.ConnectionError) as caught:
                session.get(server.url)
            assert isinstance(caught.value.args[0].args[1], ConnectionResetError)
        with httpx.Client() as client:
            client.get(server.url)
            assert server.wait_until(lambda s: len(s.connections) == 3 and _closing(s))
            with pytest.raises(httpx.ReadError):
                client.get(server.url)
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.ends() == (ConnectionEnd.RST,) * 3
        assert server.executions() == 3


# -- CloseAfterRequests (C1, C7) -----------------------------------------------------


@pytest.mark.parametrize(
    ("reset", "end", "error"),
    [
        (False, ConnectionEnd.FIN, http.client.RemoteDisconnected),
        (True, ConnectionEnd.RST, ConnectionResetError),
    ],
)
def test_close_after_requests_http_client(
    reset: bool, end: ConnectionEnd, error: type[Exception]
) -> None:
    """After `count` responses (no Connection: close) the next request on it fails."""
    with MisbehavingServer(CloseAfterRequests(count=2, reset=reset)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            for _ in range(2):
                conn.request("GET", "/")
                response = conn.getresponse()
                assert response.getheader("Connection") is None
                response.read()
            assert server.wait_until(_ended)
            with pytest.raises(error):  # after an RST the send itself may already fail
                _get(conn)
        finally:
            conn.close()
        assert server.ends() == (end,)
        assert server.connections[0].requests == 2


def test_close_after_requests_pooled_clients_reconnect() -> None:
    """requests and httpx see the close before reuse and retry on a new connection."""
    with MisbehavingServer(CloseAfterRequests(count=1, reset=True)) as server:
        with requests.Session() as session:
            session.get(server.url)
            assert server.wait_until(_ended)
            assert session.get(server.url).status_code == 200
        with httpx.Client() as client:
            client.get(server.url)
            assert server.wait_until(lambda s: _ended(s, 3))
            assert client.get(server.url).status_code == 200
        assert server.wait_until(lambda s: _ended(s, 4))
        assert server.ends() == (ConnectionEnd.RST,) * 4


def test_close_after_requests_socket_sees_fin_or_rst() -> None:
    """A raw client reads end-of-file after a FIN close, ConnectionResetError after an RST."""
    with MisbehavingServer(CloseAfterRequests(count=1)) as fin_server:
        with socket.create_connection(fin_server.address, timeout=10) as sock:
            _exchange(sock)
            assert sock.recv(4096) == b""
        with (
            MisbehavingServer(CloseAfterRequests(count=1, reset=True)) as rst_server,
            socket.create_connection(rst_server.address, timeout=10) as sock,
        ):
            _exchange(sock)
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)


# -- ProcessThenReset (C10) ----------------------------------------------------------


def test_process_then_reset_executes_and_resets() -> None:
    """The POST is executed exactly once, yet every client sees a reset, not a response."""
    with MisbehavingServer(ProcessThenReset()) as server:
        headers = {"Idempotency-Key": "k-1"}
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("POST", "/orders", body=b"{}", headers=headers)
            with pytest.raises(ConnectionResetError):
                conn.getresponse()
        finally:
            conn.close()
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            requests.post(server.url + "/orders", data=b"{}", headers=headers, timeout=10)
        assert isinstance(caught.value.args[0].args[1], ConnectionResetError)
        with pytest.raises(httpx.ReadError):
            httpx.post(server.url + "/orders", content=b"{}", headers=headers)
        # Three client-side failures, three executions: a blind retry duplicates orders.
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.executions(method="POST", path="/orders", idempotency_key="k-1") == 3
        assert server.ends() == (ConnectionEnd.RST,) * 3


def test_process_then_reset_socket() -> None:
    """A raw client's POST is executed; its read raises ConnectionResetError."""
    with MisbehavingServer(ProcessThenReset()) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)
        assert server.wait_until(_ended)
        assert server.executed[0].body_bytes == 2


def test_process_then_fin_executes_and_closes() -> None:
    """With reset=False: RemoteDisconnected (http.client), RemoteProtocolError (httpx)."""
    with MisbehavingServer(ProcessThenReset(reset=False)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("POST", "/pay", body=b"1")
            with pytest.raises(http.client.RemoteDisconnected):
                conn.getresponse()
        finally:
            conn.close()
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            requests.post(server.url + "/pay", data=b"1", timeout=10)
        assert isinstance(caught.value.args[0].args[1], http.client.RemoteDisconnected)
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            httpx.post(server.url + "/pay", content=b"1")
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.executions(method="POST", path="/pay") == 3
        assert server.ends() == (ConnectionEnd.FIN,) * 3


# -- ResetUnread (C7, C2) -----------------------------------------------------------


def test_reset_unread_never_executes() -> None:
    """The connection is reset before the request is read: not executed, RST recorded."""
    with MisbehavingServer(ResetUnread()) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(GET)
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            requests.post(server.url + "/x", data=b"1", timeout=10)
        assert _reset_cause(caught.value) is not None
        with pytest.raises(httpx.ReadError):
            httpx.get(server.url)
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.executions() == 0
        assert server.ends() == (ConnectionEnd.RST,) * 3
        assert server.connections[0].reason == "reset before reading the request"


def test_reset_unread_http_client() -> None:
    """http.client gets ConnectionResetError; a client that leaves first is not reset."""
    with MisbehavingServer(ResetUnread()) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            with pytest.raises(ConnectionResetError):
                _get(conn)
        finally:
            conn.close()
        socket.create_connection(server.address, timeout=10).close()
        assert server.wait_until(lambda s: _ended(s, 2))
        assert server.ends() == (ConnectionEnd.RST, ConnectionEnd.CLIENT_CLOSED)
        assert server.executions() == 0


# -- EarlyResponse (C6) ---------------------------------------------------------------


def test_early_response_http_client_loses_the_413_to_the_reset() -> None:
    """http.client, still uploading, gets ConnectionResetError; the server recorded RST."""
    with MisbehavingServer(EarlyResponse()) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            with pytest.raises(ConnectionResetError):
                conn.request("POST", "/upload", body=BIG_BODY)
        finally:
            conn.close()
        assert server.wait_until(_ended)
        record = server.connections[0]
        assert record.end is ConnectionEnd.RST
        assert record.reason.startswith("answered 413 before reading the body")
        assert server.executions() == 0


def test_early_response_is_sent_before_the_reset() -> None:
    """The 413 leaves before the RST: a raw client that reads first gets it intact."""
    with MisbehavingServer(EarlyResponse(status=413, body_limit=10)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            head = b"POST /u HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
            sock.sendall(head + b"p" * 200_000)  # more than the server reads at once
            assert server.wait_until(_ended)
            response = sock.recv(4096)
            assert response.startswith(b"HTTP/1.1 413 ")
            assert b"Connection: close" in response
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)
        assert server.ends() == (ConnectionEnd.RST,)


def test_early_response_pooled_clients_read_the_413() -> None:
    """urllib3 and httpcore read the early 413 despite the broken upload."""
    with MisbehavingServer(EarlyResponse()) as server:
        assert requests.post(server.url, data=BIG_BODY, timeout=10).status_code == 413
        assert httpx.post(server.url, content=BIG_BODY).status_code == 413
        assert server.wait_until(lambda s: _ended(s, 2))
        assert server.executions() == 0


def test_early_response_serves_small_bodies() -> None:
    """A body within body_limit is read and served normally."""
    with MisbehavingServer(EarlyResponse(body_limit=100)) as server:
        assert requests.post(server.url + "/s", data=b"s" * 100, timeout=10).status_code == 200
        assert server.executions(path="/s") == 1


# -- TruncatedBody (C5, C7) -----------------------------------------------------------


def test_truncated_body_then_fin() -> None:
    """FIN mid-body: IncompleteRead, ChunkedEncodingError, RemoteProtocolError."""
    with MisbehavingServer(TruncatedBody(missing=16)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/t")
            response = conn.getresponse()
            assert response.getheader("Content-Length") == str(len(b"GET /t body=0\n") + 16)
            with pytest.raises(http.client.IncompleteRead):
                response.read()
        finally:
            conn.close()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):
            requests.get(server.url + "/t", timeout=10)
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            httpx.get(server.url + "/t")
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.ends() == (ConnectionEnd.FIN,) * 3
        assert server.executions() == 3


def test_truncated_body_then_rst() -> None:
    """RST mid-body: ConnectionResetError from http.client, ReadError from httpx."""
    with MisbehavingServer(TruncatedBody(reset=True)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/t")
            response = conn.getresponse()
            with pytest.raises(ConnectionResetError):
                response.read()
        finally:
            conn.close()
        with pytest.raises(requests.exceptions.ChunkedEncodingError) as caught:
            requests.get(server.url + "/t", timeout=10)
        assert _reset_cause(caught.value) is not None
        with pytest.raises(httpx.ReadError):
            httpx.get(server.url + "/t")
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.ends() == (ConnectionEnd.RST,) * 3


def test_truncated_body_socket_reads_short_then_eof() -> None:
    """A raw client gets fewer bytes than Content-Length announced, then end-of-file."""
    with MisbehavingServer(TruncatedBody(missing=5)) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            sock.sendall(GET)
            data = b""
            while chunk := sock.recv(4096):
                data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        assert body == b"GET /again body=0\n"
        assert f"Content-Length: {len(body) + 5}".encode() in head


# -- BlackHole (C3) ----------------------------------------------------------------


def test_black_hole_reads_but_never_answers() -> None:
    """Every client times out; nothing is executed; the connection ends only at stop."""
    with MisbehavingServer(BlackHole()) as server:
        with socket.create_connection(server.address, timeout=0.3) as sock:
            sock.sendall(GET)
            with pytest.raises(TimeoutError):
                sock.recv(4096)
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(server.url, data=b"1", timeout=(5, 0.3))
        with pytest.raises(httpx.ReadTimeout):
            httpx.get(server.url, timeout=httpx.Timeout(5, read=0.3))
        assert server.wait_until(lambda s: s.received_unexecuted == 3)
        assert server.executions() == 0
        with socket.create_connection(server.address, timeout=10) as silent:
            assert server.wait_until(lambda s: len(s.connections) == 4)
            server.stop()
            assert silent.recv(1) == b""
    assert server.connections[3].end is ConnectionEnd.FIN
    assert server.connections[3].reason == "server stopped"


def test_black_hole_http_client_times_out() -> None:
    """http.client waiting for a response raises TimeoutError."""
    with MisbehavingServer(BlackHole()) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=0.3)
        try:
            with pytest.raises(TimeoutError):
                _get(conn)
        finally:
            conn.close()
        assert server.wait_until(lambda s: s.received_unexecuted == 1)


# -- AcceptQueueOverflow (C4) ---------------------------------------------------------


def test_accept_queue_overflow_stalls_new_connections() -> None:
    """With the queue full, SYNs are dropped: connect times out for every client."""
    with MisbehavingServer(AcceptQueueOverflow(backlog=1)) as server:
        with pytest.raises(TimeoutError):
            socket.create_connection(server.address, timeout=0.5).close()
        with pytest.raises(requests.exceptions.ConnectTimeout):
            requests.get(server.url, timeout=(0.5, 5))
        with pytest.raises(httpx.ConnectTimeout):
            httpx.get(server.url, timeout=httpx.Timeout(5, connect=0.5))
        assert server.connections == ()


def test_accept_queue_overflow_http_client_connect_times_out() -> None:
    """http.client's connect times out (TimeoutError) while the queue is full."""
    with MisbehavingServer(AcceptQueueOverflow(backlog=2)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=0.5)
        try:
            with pytest.raises(TimeoutError):
                _get(conn)
        finally:
            conn.close()


def test_accept_queue_fill_needs_the_right_behaviour() -> None:
    """fill_accept_queue() is only for a started AcceptQueueOverflow server."""
    with MisbehavingServer(BlackHole()) as server, pytest.raises(RuntimeError):
        server.fill_accept_queue()


# -- AbortiveClose (C5) ---------------------------------------------------------------


def test_abortive_close_after_a_full_response() -> None:
    """The response arrives intact, then RST: the next read raises ConnectionResetError."""
    with MisbehavingServer(AbortiveClose()) as server:
        with socket.create_connection(server.address, timeout=10) as sock:
            assert _exchange(sock).endswith(b"GET /again body=0\n")
            with pytest.raises(ConnectionResetError):
                sock.recv(4096)
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/")
            assert conn.getresponse().read() == b"GET / body=0\n"
            assert server.wait_until(lambda s: _ended(s, 2))
            with pytest.raises(ConnectionResetError):  # on the send or on the read
                _get(conn)
        finally:
            conn.close()
        assert server.ends() == (ConnectionEnd.RST, ConnectionEnd.RST)
        assert server.connections[0].reason == "SO_LINGER 0 close after responding"


def test_abortive_close_pooled_clients_reconnect() -> None:
    """requests and httpx notice the RST before reuse and use a new connection."""
    with MisbehavingServer(AbortiveClose()) as server:
        with requests.Session() as session:
            assert session.get(server.url).status_code == 200
            assert server.wait_until(_ended)
            assert session.get(server.url).status_code == 200
        with httpx.Client() as client:
            assert client.get(server.url).status_code == 200
            assert server.wait_until(lambda s: _ended(s, 3))
            assert client.get(server.url).status_code == 200
        assert server.wait_until(lambda s: _ended(s, 4))
        assert server.ends() == (ConnectionEnd.RST,) * 4


# -- AdvertiseKeepAlive (C1) ----------------------------------------------------------


def test_advertise_keep_alive_lies_about_the_timeout() -> None:
    """Keep-Alive says timeout=5, the server closes (FIN) after 0.3 s of idleness."""
    with MisbehavingServer(AdvertiseKeepAlive(advertised=5, actual=0.3)) as server:
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            conn.request("GET", "/")
            response = conn.getresponse()
            assert response.getheader("Keep-Alive") == "timeout=5"
            response.read()
            assert server.wait_until(_ended)
            conn.request("GET", "/")
            with pytest.raises(http.client.RemoteDisconnected):
                conn.getresponse()
        finally:
            conn.close()
        record = server.connections[0]
        assert record.end is ConnectionEnd.FIN
        assert record.reason == "idle for 0.3 s"
        assert record.ended_at is not None
        assert record.ended_at - record.accepted_at < 5


def test_advertise_keep_alive_seen_by_every_client() -> None:
    """requests and httpx see the header; a raw client reads EOF after the real timeout."""
    with MisbehavingServer(AdvertiseKeepAlive(advertised=30, actual=0.3)) as server:
        with requests.Session() as session:
            assert session.get(server.url).headers["Keep-Alive"] == "timeout=30"
        with httpx.Client() as client:
            assert client.get(server.url).headers["Keep-Alive"] == "timeout=30"
        with socket.create_connection(server.address, timeout=10) as sock:
            assert b"Keep-Alive: timeout=30\r\n" in _exchange(sock)
            assert sock.recv(4096) == b""  # the FIN, 0.3 s later
        assert server.wait_until(lambda s: _ended(s, 3))
        assert server.connections[2].end is ConnectionEnd.FIN


# -- Refuse (C8) ----------------------------------------------------------------------


def test_refuse_every_client_is_refused() -> None:
    """Nothing listens: ConnectionRefusedError, requests ConnectionError, httpx ConnectError."""
    with MisbehavingServer(Refuse()) as server:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=10).close()
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        try:
            with pytest.raises(ConnectionRefusedError):
                conn.request("GET", "/")
        finally:
            conn.close()
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            requests.get(server.url, timeout=10)
        assert isinstance(caught.value.args[0].reason, urllib3.exceptions.NewConnectionError)
        with pytest.raises(httpx.ConnectError):
            httpx.get(server.url)
        assert server.connections == ()
        assert server.executions() == 0
