"""The worked examples of docs/sockets.md, against real servers on loopback.

(a) C1/C3: Redis closes idle clients (``timeout 1``); a PING/PONG heartbeat hides it.
(b) C4: accept-queue overflow; the post-connect heartbeat rejects the doomed connection.
(c) C6: a server that reads part of a request and closes: RST, unless it closes gracefully.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

import rstsafe
import rstsafe.sockets
from rstsafe import PoolConfig
from rstsafe.sockets import DiscardReason, Liveness, probe_liveness
from rstsafe.testing import AcceptQueueOverflow, MisbehavingServer, NetworkNamespace

from .helpers import PATIENCE, PongServer, read_to_end, resp_command, resp_ping


def wait_for_liveness(sock: socket.socket, expected: Liveness) -> None:
    """Poll (without consuming anything) until ``sock`` is in the ``expected`` state."""
    pause = threading.Event()
    for _ in range(int(PATIENCE / 0.05)):
        if probe_liveness(sock) is expected:
            return
        pause.wait(0.05)
    raise AssertionError(f"the socket never became {expected}")


# -- (a) Redis closes idle clients --------------------------------------------------------------


@pytest.mark.realserver
def test_redis_without_rstsafe_the_idle_connection_fails(redis_server: tuple[str, int]) -> None:
    """Plain socket: after Redis' idle timeout the next command fails on the user's code."""
    with socket.create_connection(redis_server, timeout=PATIENCE) as sock:
        assert resp_command(sock, b"SET", b"greeting", b"hello") == b"+OK"
        wait_for_liveness(sock, Liveness.CLOSED_BY_PEER)  # Redis' `timeout 1` closed it
        # EOF (read_line raises ConnectionAbortedError), or an RST if Redis' kernel answered
        # the write before we read.
        with pytest.raises((ConnectionAbortedError, ConnectionResetError)):
            resp_command(sock, b"GET", b"greeting")


@pytest.mark.realserver
def test_redis_with_a_heartbeat_pool_no_error_reaches_the_user(
    redis_server: tuple[str, int],
) -> None:
    """rstsafe.Pool with a PING heartbeat: the stale connection is replaced before use."""

    def connect() -> socket.socket:
        return socket.create_connection(redis_server, timeout=PATIENCE)

    with rstsafe.Pool(connect, heartbeat=resp_ping) as pool:
        with pool.connection() as sock:
            assert resp_command(sock, b"SET", b"greeting", b"hello") == b"+OK"
        first = sock
        wait_for_liveness(first, Liveness.CLOSED_BY_PEER)  # idle > 1 s: Redis closed it
        with pool.connection() as sock:
            assert resp_command(sock, b"GET", b"greeting") == b"hello"
        assert sock is not first
        counters = pool.counters
    assert (counters.created, counters.failed_validation, counters.validated) == (2, 1, 2)
    assert counters.discarded[DiscardReason.FAILED_VALIDATION] == 1
    assert first.fileno() == -1


@pytest.mark.realserver
def test_redis_idle_ttl_below_the_server_timeout_avoids_even_the_ping(
    redis_server: tuple[str, int],
) -> None:
    """idle_ttl below Redis' `timeout` retires the connection before Redis closes it."""

    def connect() -> socket.socket:
        return socket.create_connection(redis_server, timeout=PATIENCE)

    config = PoolConfig(idle_ttl=0.5)
    with rstsafe.Pool(connect, heartbeat=resp_ping, config=config) as pool:
        with pool.connection() as sock:
            assert resp_command(sock, b"PING") == b"+PONG"
        threading.Event().wait(0.6)
        with pool.connection() as sock:
            assert resp_command(sock, b"PING") == b"+PONG"
        counters = pool.counters
    assert counters.discarded[DiscardReason.IDLE_TTL] == 1
    assert counters.failed_validation == 0


# -- (b) accept-queue overflow ----------------------------------------------------------------


class Targets:
    """A client that knows two servers: the first is tried first, as a multi-host client would."""

    def __init__(
        self,
        overflowing: MisbehavingServer,
        healthy: tuple[str, int] | None,
        open_connection: Callable[[tuple[str, int], float], socket.socket],
    ) -> None:
        self.overflowing = overflowing
        self.healthy = healthy
        self.open_connection = open_connection
        self.attempts = 0
        self.heartbeat_errors: list[Exception] = []

    def connect(self) -> socket.socket:
        self.attempts += 1
        if self.attempts == 1 or self.healthy is None:
            sock = self.open_connection(self.overflowing.address, 0.3)
            if self.attempts == 1:
                # Other clients fill the queue while our handshake waits for our first
                # byte (TCP_DEFER_ACCEPT): connect() succeeded, the connection is doomed.
                self.overflowing.fill_accept_queue()
            return sock
        return self.open_connection(self.healthy, PATIENCE)

    def heartbeat(self, sock: socket.socket) -> None:
        try:
            resp_ping(sock)
        except Exception as exc:
            self.heartbeat_errors.append(exc)
            raise


def plain_connection(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout=timeout)


def test_without_a_heartbeat_the_doomed_connection_reaches_the_user() -> None:
    """No validation: the user's first request on the overflowed connection just hangs."""
    with MisbehavingServer(AcceptQueueOverflow(prefill=False)) as server:
        targets = Targets(server, None, plain_connection)
        config = PoolConfig(close_timeout=0.0)
        with rstsafe.Pool(targets.connect, config=config) as pool, pool.connection() as sock:
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                resp_ping(sock)


def test_the_heartbeat_rejects_an_overflowed_connection(pong_server: PongServer) -> None:
    """C4: connect() succeeded into a full accept queue; the PING gets no PONG; pool moves on."""
    with MisbehavingServer(AcceptQueueOverflow(prefill=False)) as server:
        targets = Targets(server, pong_server.address, plain_connection)
        config = PoolConfig(heartbeat_timeout=0.5, close_timeout=0.0)
        with rstsafe.Pool(targets.connect, heartbeat=targets.heartbeat, config=config) as pool:
            with pool.connection() as sock:
                resp_ping(sock)  # the user's own request works
            counters = pool.counters
    assert [type(e) for e in targets.heartbeat_errors] == [TimeoutError]
    assert (counters.created, counters.failed_validation) == (2, 1)
    assert pong_server.accepted == 1


def test_an_overflowing_server_alone_gives_a_clear_error() -> None:
    """No healthy server: bounded attempts, then NoHealthyConnectionError listing each failure."""
    with MisbehavingServer(AcceptQueueOverflow(prefill=False)) as server:
        targets = Targets(server, None, plain_connection)
        config = PoolConfig(heartbeat_timeout=0.3, close_timeout=0.0, max_connect_attempts=3)
        pool = rstsafe.Pool(targets.connect, heartbeat=targets.heartbeat, config=config)
        with (
            pool,
            pytest.raises(rstsafe.sockets.NoHealthyConnectionError) as info,
            pool.connection(),
        ):
            pass
    failures = info.value.failures
    assert len(failures) == 3
    # The first connection was accepted by the kernel and starved (no PONG); the queue
    # was full for the next ones, whose SYNs were dropped: connect() itself timed out.
    assert all(isinstance(f, TimeoutError) for f in failures)
    assert "3 new connection(s)" in str(info.value)


@pytest.fixture
def abort_on_overflow_namespace() -> Iterator[NetworkNamespace]:
    """A network namespace with net.ipv4.tcp_abort_on_overflow=1 (root only)."""
    available, reason = NetworkNamespace.available()
    if not available:
        pytest.skip(reason)
    with NetworkNamespace(sysctls={"net.ipv4.tcp_abort_on_overflow": "1"}) as ns:
        yield ns


@pytest.mark.root
def test_with_abort_on_overflow_the_heartbeat_gets_the_rst(
    abort_on_overflow_namespace: NetworkNamespace,
) -> None:
    """In a namespace with tcp_abort_on_overflow=1 the doomed PING gets an RST, not silence."""
    ns = abort_on_overflow_namespace
    listener = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    healthy = PongServer(listener)
    try:
        with MisbehavingServer(AcceptQueueOverflow(prefill=False), namespace=ns) as server:
            targets = Targets(server, healthy.address, ns.create_connection)
            config = PoolConfig(heartbeat_timeout=PATIENCE, close_timeout=0.0)
            with rstsafe.Pool(targets.connect, heartbeat=targets.heartbeat, config=config) as pool:
                with pool.connection() as sock:
                    resp_ping(sock)
                counters = pool.counters
            netstat = ns.read_proc("net/netstat")
    finally:
        healthy.close()
    assert [type(e) for e in targets.heartbeat_errors] == [ConnectionResetError]
    assert (counters.created, counters.failed_validation) == (2, 1)
    names, values = [line.split() for line in netstat.splitlines() if line.startswith("TcpExt:")]
    assert int(dict(zip(names, values, strict=True))["ListenOverflows"]) >= 1


# -- (c) a server that reads part of the request and closes -------------------------------------

REQUEST = b"POST /upload HTTP/1.1\r\nContent-Length: 4950\r\n\r\n" + b"x" * 4950
EARLY_RESPONSE = b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


@pytest.mark.parametrize("graceful", [True, False], ids=["graceful_close", "plain-close"])
def test_a_server_that_stops_reading_early(graceful: bool) -> None:
    """C6: reading 1000 of 5000 bytes then close() sends RST; graceful_close sends FIN."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with socket.create_connection(listener.getsockname(), timeout=PATIENCE) as client:
            server_side, _ = listener.accept()
            server_side.settimeout(PATIENCE)
            client.sendall(REQUEST)
            received = b""
            while len(received) < 1000:  # the server reads only the first 1000 bytes
                received += server_side.recv(1000 - len(received))
            wait_for_liveness(server_side, Liveness.UNREAD_DATA)  # the rest has arrived, unread
            server_side.sendall(EARLY_RESPONSE)
            results: list[rstsafe.sockets.CloseResult] = []
            if graceful:
                closer = threading.Thread(
                    target=lambda: results.append(rstsafe.graceful_close(server_side))
                )
                closer.start()
            else:
                server_side.close()
            data, error = read_to_end(client)
        if graceful:
            closer.join()
    if graceful:
        assert (data, error) == (EARLY_RESPONSE, None)  # the response, then a clean EOF
        assert results[0].outcome is rstsafe.sockets.CloseOutcome.EOF
        assert results[0].drained_bytes == len(REQUEST) - 1000
    else:
        assert isinstance(error, ConnectionResetError)  # the unread bytes turned close into RST
