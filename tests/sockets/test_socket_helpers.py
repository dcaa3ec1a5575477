"""graceful_close, abortive_close, probe_liveness, check_socket and the keepalive options."""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import cast

import pytest

import rstsafe
import rstsafe.sockets
from rstsafe.sockets._helpers import (
    CloseOutcome,
    Liveness,
    abortive_close,
    apply_socket_options,
    check_socket,
    graceful_close,
    httpx_socket_options,
    is_alive,
    keepalive_options,
    probe_liveness,
    urllib3_socket_options,
)

from .helpers import PATIENCE, read_to_end

Pair = Callable[[], tuple[socket.socket, socket.socket]]

LINUX = hasattr(socket, "TCP_KEEPIDLE") and hasattr(socket, "TCP_USER_TIMEOUT")
linux_only = pytest.mark.skipif(not LINUX, reason="checks Linux's TCP_KEEPIDLE/TCP_USER_TIMEOUT")


def wait_readable(sock: socket.socket) -> None:
    """Block until ``sock`` is readable (data, EOF or an error arrived)."""
    readable, _, _ = select.select([sock], [], [], PATIENCE)
    assert readable, "nothing arrived in time"


# -- graceful_close and abortive_close -----------------------------------------------------


def test_graceful_close_returns_eof_and_the_peer_reads_eof(tcp_pair: Pair) -> None:
    """graceful_close sends FIN: the peer reads EOF, closes, and we report EOF."""
    client, server_side = tcp_pair()
    closer = threading.Thread(target=lambda: results.append(graceful_close(server_side)))
    results: list[rstsafe.sockets.CloseResult] = []
    closer.start()
    assert read_to_end(client) == (b"", None)
    client.close()
    closer.join()
    assert results[0].outcome is CloseOutcome.EOF
    assert results[0].drained_bytes == 0
    assert server_side.fileno() == -1


def test_graceful_close_drains_unread_data_on_a_non_blocking_socket(tcp_pair: Pair) -> None:
    """Unread bytes are drained (counted) instead of turning the close into an RST."""
    client, server_side = tcp_pair()
    client.sendall(b"x" * 3000)
    server_side.setblocking(False)
    closer = threading.Thread(target=lambda: results.append(graceful_close(server_side)))
    results: list[rstsafe.sockets.CloseResult] = []
    closer.start()
    assert read_to_end(client) == (b"", None)  # FIN, not RST
    client.close()
    closer.join()
    assert results[0].outcome is CloseOutcome.EOF
    assert results[0].drained_bytes == 3000


def test_graceful_close_gives_up_after_the_timeout(tcp_pair: Pair) -> None:
    """A peer that never closes: graceful_close waits ``timeout`` and reports TIMEOUT."""
    client, server_side = tcp_pair()
    result = graceful_close(server_side, timeout=0.2)
    assert result.outcome is CloseOutcome.TIMEOUT
    assert result.elapsed >= 0.15
    assert server_side.fileno() == -1
    wait_readable(client)
    assert client.recv(1) == b""  # our FIN arrived


def test_graceful_close_of_a_reset_connection_reports_not_connected(tcp_pair: Pair) -> None:
    """After the peer's RST there is nothing to shut down: NOT_CONNECTED, and no exception."""
    client, server_side = tcp_pair()
    abortive_close(client)
    wait_readable(server_side)
    result = graceful_close(server_side)
    assert result.outcome is CloseOutcome.NOT_CONNECTED


def test_graceful_close_reports_a_reset_while_draining(tcp_pair: Pair) -> None:
    """A peer that resets while we drain: RESET, and the socket is closed."""
    client, server_side = tcp_pair()
    closer = threading.Thread(target=lambda: results.append(graceful_close(server_side)))
    results: list[rstsafe.sockets.CloseResult] = []
    closer.start()
    wait_readable(client)  # our FIN arrived: graceful_close is draining now
    abortive_close(client)
    closer.join()
    assert results[0].outcome is CloseOutcome.RESET


def test_graceful_close_of_an_unconnected_socket() -> None:
    """A socket that never connected is just closed."""
    sock = socket.socket()
    assert graceful_close(sock).outcome is CloseOutcome.NOT_CONNECTED
    assert sock.fileno() == -1


def test_graceful_close_rejects_a_negative_timeout() -> None:
    """The timeout is validated, and the error names it."""
    with socket.socket() as sock, pytest.raises(ValueError, match="timeout"):
        graceful_close(sock, timeout=-1)


def test_abortive_close_resets_the_peer(tcp_pair: Pair) -> None:
    """abortive_close is linger 0: the peer reads ConnectionResetError, not EOF."""
    client, server_side = tcp_pair()
    abortive_close(server_side)
    wait_readable(client)
    with pytest.raises(ConnectionResetError):
        client.recv(1)


# -- probe_liveness ------------------------------------------------------------------------


def test_probe_liveness_sees_an_open_idle_connection(tcp_pair: Pair) -> None:
    """Nothing arrived: ALIVE, and is_alive agrees, without blocking on a blocking socket."""
    client, _ = tcp_pair()
    client.settimeout(None)
    assert probe_liveness(client) is Liveness.ALIVE
    assert is_alive(client)


def test_probe_liveness_sees_the_peers_fin(tcp_pair: Pair) -> None:
    """The peer closed cleanly: CLOSED_BY_PEER."""
    client, server_side = tcp_pair()
    server_side.close()
    wait_readable(client)
    assert probe_liveness(client) is Liveness.CLOSED_BY_PEER
    assert not is_alive(client)


def test_probe_liveness_sees_the_peers_rst(tcp_pair: Pair) -> None:
    """The peer reset the connection: RESET_BY_PEER."""
    client, server_side = tcp_pair()
    abortive_close(server_side)
    wait_readable(client)
    assert probe_liveness(client) is Liveness.RESET_BY_PEER


def test_probe_liveness_does_not_consume_unread_data(tcp_pair: Pair) -> None:
    """Unsolicited bytes: UNREAD_DATA, and the bytes are still there to read afterwards."""
    client, server_side = tcp_pair()
    server_side.sendall(b"late")
    wait_readable(client)
    assert probe_liveness(client) is Liveness.UNREAD_DATA
    assert probe_liveness(client) is Liveness.UNREAD_DATA
    assert client.recv(10) == b"late"


def test_probe_liveness_of_a_closed_socket_is_an_error() -> None:
    """Probing a socket we closed ourselves is a programming error, said plainly."""
    sock = socket.socket()
    sock.close()
    with pytest.raises(ValueError, match="closed"):
        probe_liveness(sock)


# -- keepalive options ---------------------------------------------------------------------

LINUX_NAMES = {
    "SOL_SOCKET": 1,
    "SO_KEEPALIVE": 9,
    "IPPROTO_TCP": 6,
    "TCP_KEEPIDLE": 4,
    "TCP_KEEPINTVL": 5,
    "TCP_KEEPCNT": 6,
    "TCP_USER_TIMEOUT": 18,
}
MACOS_NAMES = {
    "SOL_SOCKET": 0xFFFF,
    "SO_KEEPALIVE": 8,
    "IPPROTO_TCP": 6,
    "TCP_KEEPALIVE": 0x10,
    "TCP_KEEPINTVL": 0x101,
    "TCP_KEEPCNT": 0x102,
}
WINDOWS_NAMES = {
    "SOL_SOCKET": 0xFFFF,
    "SO_KEEPALIVE": 8,
    "IPPROTO_TCP": 6,
    "TCP_KEEPIDLE": 3,
    "TCP_KEEPINTVL": 17,
    "TCP_KEEPCNT": 16,
}
OLD_WINDOWS_NAMES = {"SOL_SOCKET": 0xFFFF, "SO_KEEPALIVE": 8, "IPPROTO_TCP": 6}


def test_keepalive_options_for_linux() -> None:
    """Linux: TCP_KEEPIDLE/INTVL/CNT in seconds and TCP_USER_TIMEOUT in milliseconds."""
    options = keepalive_options(
        idle=20, interval=5, count=4, user_timeout=40, constants=LINUX_NAMES
    )
    assert options == [(1, 9, 1), (6, 4, 20), (6, 5, 5), (6, 6, 4), (6, 18, 40_000)]


def test_keepalive_options_for_macos_use_tcp_keepalive_for_idle() -> None:
    """macOS: the idle time is TCP_KEEPALIVE, and TCP_USER_TIMEOUT does not exist."""
    options = keepalive_options(
        idle=20, interval=5, count=4, user_timeout=40, constants=MACOS_NAMES
    )
    assert options == [(0xFFFF, 8, 1), (6, 0x10, 20), (6, 0x101, 5), (6, 0x102, 4)]


def test_keepalive_options_for_windows() -> None:
    """Windows 10 1709+: Python exposes TCP_KEEPIDLE/INTVL/CNT; old Windows only SO_KEEPALIVE."""
    assert keepalive_options(idle=20, interval=5, count=4, constants=WINDOWS_NAMES) == [
        (0xFFFF, 8, 1),
        (6, 3, 20),
        (6, 17, 5),
        (6, 16, 4),
    ]
    assert keepalive_options(constants=OLD_WINDOWS_NAMES) == [(0xFFFF, 8, 1)]


def test_keepalive_options_round_fractions_up_to_whole_seconds() -> None:
    """The kernel counts whole seconds: 1.5 s becomes 2 s (never a shorter probe)."""
    options = keepalive_options(idle=1.5, interval=2.2, user_timeout=0.0015, constants=LINUX_NAMES)
    assert options[1:3] == [(6, 4, 2), (6, 5, 3)]
    assert options[-1] == (6, 18, 2)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"idle": 0}, "idle"),
        ({"idle": 40_000}, "idle"),
        ({"idle": "30"}, "idle"),
        ({"interval": 0.5}, "interval"),
        ({"count": 0}, "count"),
        ({"count": 200}, "count"),
        ({"count": 2.5}, "count"),
        ({"count": True}, "count"),
        ({"user_timeout": 0}, "user_timeout"),
        ({"user_timeout": -1}, "user_timeout"),
    ],
)
def test_keepalive_options_validate_and_name_the_field(
    kwargs: dict[str, object], field: str
) -> None:
    """Out-of-range values raise ValueError naming the field."""
    with pytest.raises(ValueError, match=f"^{field} "):
        keepalive_options(**kwargs)  # type: ignore[arg-type]


@linux_only
def test_apply_socket_options_sets_what_check_socket_reads() -> None:
    """The options really take effect on a socket (read back with getsockopt)."""
    with socket.socket() as sock:
        apply_socket_options(sock, keepalive_options(idle=25, interval=7, count=2, user_timeout=39))
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 25
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == 7
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == 2
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 39_000


def test_urllib3_socket_options_keep_tcp_nodelay() -> None:
    """urllib3's own default (TCP_NODELAY) stays, followed by the keepalive options."""
    options = urllib3_socket_options()
    assert options[0] == (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    assert options[1:] == keepalive_options()


def test_extra_options_replace_a_default_with_the_same_name() -> None:
    """Passing TCP_NODELAY=0 replaces the default instead of setting it twice."""
    options = urllib3_socket_options([(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)])
    assert options == [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)]


class _Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def http_url() -> Iterator[str]:
    """A plain HTTP/1.1 keep-alive server on 127.0.0.1."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    server.daemon_threads = False
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@linux_only
def test_urllib3_connections_get_keepalive_and_nodelay(http_url: str) -> None:
    """A real urllib3 connection made with these options has keepalive and TCP_NODELAY on."""
    import urllib3

    with urllib3.PoolManager(socket_options=urllib3_socket_options()) as manager:
        pool = manager.connection_from_url(http_url)
        conn = cast("urllib3.connection.HTTPConnection", pool._get_conn())
        try:
            conn.connect()
            sock = conn.sock
            assert sock is not None
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == 30
        finally:
            conn.close()


@linux_only
@pytest.mark.parametrize("give_options", [True, False], ids=["with-options", "httpx-default"])
def test_httpx_sets_tcp_nodelay_itself(http_url: str, give_options: bool) -> None:
    """httpcore sets TCP_NODELAY whatever the options; ours add keepalive on top."""
    import httpx

    options = httpx_socket_options() if give_options else None
    transport = httpx.HTTPTransport(socket_options=options)
    with httpx.Client(transport=transport) as client, client.stream("GET", http_url) as response:
        sock = response.extensions["network_stream"].get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
        keepalive = sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)
        response.read()
    assert keepalive == (1 if give_options else 0)


# -- check_socket --------------------------------------------------------------------------


def codes(sock: socket.socket) -> list[str]:
    return [hazard.code for hazard in check_socket(sock)]


def test_check_socket_flags_a_default_socket() -> None:
    """A fresh blocking socket: keepalive off and no timeout, each with a fix."""
    with socket.socket() as sock:
        hazards = check_socket(sock)
    assert [h.code for h in hazards] == ["keepalive-off", "no-timeout"]
    assert all(h.fix and h.message and h.cause.startswith("C") for h in hazards)


def test_check_socket_flags_linger_zero_and_a_tight_timeout() -> None:
    """SO_LINGER on with 0 (C5) and a 100 ms timeout (C9) are both reported."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.settimeout(0.1)
        assert codes(sock) == ["linger-zero", "keepalive-off", "timeout-too-tight"]


@linux_only
def test_check_socket_passes_a_well_configured_socket() -> None:
    """Keepalive options from keepalive_options() and a sane timeout: no hazards."""
    with socket.socket() as sock:
        apply_socket_options(sock, keepalive_options())
        sock.settimeout(5.0)
        assert check_socket(sock) == []


@linux_only
def test_check_socket_flags_the_linux_default_keepalive_idle() -> None:
    """SO_KEEPALIVE alone keeps Linux's 7200 s idle: too late for any middlebox (C3)."""
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 7200)
        sock.setblocking(False)  # non-blocking: no timeout hazard
        assert codes(sock) == ["keepalive-idle-too-long"]


def test_check_socket_leaves_keepalive_alone_on_unix_sockets() -> None:
    """Keepalive is a TCP matter: a Unix socket pair is only checked for its timeout."""
    left, right = socket.socketpair()
    with left, right:
        right.settimeout(5.0)
        assert codes(left) == ["no-timeout"]
        assert codes(right) == []
