"""Socket helpers: close without RST, keepalive options, hazards, and a liveness probe.

These are the field guide's answers for code that holds raw sockets:

- C5 and C6: :func:`graceful_close` half-closes and drains, so the kernel never answers a
  close with an RST because of unread data. The abortive close (``SO_LINGER`` on with a
  zero timeout, which sends RST instead of FIN) exists only as :func:`abortive_close`.
- C3: :func:`keepalive_options` builds the TCP keepalive and ``TCP_USER_TIMEOUT`` options for
  the running platform, in the forms urllib3 and httpx take.
- C1, C3, C7: :func:`probe_liveness` tells whether an idle socket was closed or reset by the
  peer, without consuming any data.
"""

from __future__ import annotations

import enum
import math
import select
import socket
import struct
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias, cast

from rstsafe._core.clock import MonotonicClock

__all__ = (
    "CloseOutcome",
    "CloseResult",
    "Liveness",
    "SocketHazard",
    "SocketOption",
    "abortive_close",
    "apply_socket_options",
    "check_socket",
    "graceful_close",
    "httpx_socket_options",
    "is_alive",
    "keepalive_options",
    "probe_liveness",
    "urllib3_socket_options",
)

SocketOption: TypeAlias = tuple[int, int, int] | tuple[int, int, bytes]
"""One option as ``(level, optname, value)``: what ``socket.setsockopt`` takes, what urllib3's
``socket_options`` holds and what httpx's ``HTTPTransport(socket_options=...)`` accepts."""
#: urllib3's own spelling of a socket options list (``urllib3.util.connection``).
Urllib3SocketOptions: TypeAlias = list[tuple[int, int, int | bytes]]

_CLOCK = MonotonicClock()
_DRAIN_CHUNK = 64 * 1024
_LINGER = struct.Struct("ii")


# ---------------------------------------------------------------------------------------------
# Closing
# ---------------------------------------------------------------------------------------------


class CloseOutcome(enum.Enum):
    """How [`graceful_close`][rstsafe.graceful_close] ended."""

    #: The peer answered our FIN with its own: a clean four-way close.
    EOF = "eof"
    #: The peer did not close within the timeout; everything that had arrived was drained
    #: before the close, so the close itself sent no RST.
    TIMEOUT = "timeout"
    #: The peer reset the connection while we drained.
    RESET = "reset"
    #: The socket was not connected (never was, or the peer's RST had already torn it down).
    NOT_CONNECTED = "not_connected"
    #: Another socket error ended the drain, for example ``ETIMEDOUT`` after keepalive probes.
    FAILED = "failed"


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseResult:
    """What [`graceful_close`][rstsafe.graceful_close] did: how it ended and how many unread bytes
    it discarded."""

    outcome: CloseOutcome
    drained_bytes: int
    elapsed: float


def _wait_readable(sock: socket.socket, timeout: float) -> bool:
    """Whether ``sock`` becomes readable within ``timeout`` seconds (0 polls once)."""
    timeout = max(timeout, 0.0)
    if hasattr(select, "poll"):
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(math.ceil(timeout * 1000)))
    # Windows: select() has no FD_SETSIZE problem there (it takes a list of handles).
    readable, _, _ = select.select([sock], [], [], timeout)  # pragma: no cover - Windows
    return bool(readable)  # pragma: no cover - Windows


def graceful_close(sock: socket.socket, *, timeout: float = 2.0) -> CloseResult:
    """Close ``sock`` with a FIN, never an RST caused by unread data (C5, C6).

    Shuts down the write side (the peer reads EOF after everything we sent), reads and
    discards whatever the peer still sends until its EOF or until ``timeout`` seconds pass,
    then closes. A plain ``close()`` with unread bytes in the receive buffer makes the kernel
    send RST (RFC 2525 section 2.17) and the peer may lose the response we sent; this does not.

    Works on blocking, timeout and non-blocking sockets alike (it waits with ``poll``, not with
    the socket's own timeout). The socket is always closed when this returns; socket errors
    end the drain and show in the outcome instead of being raised. If the peer keeps sending
    past ``timeout``, what arrives after the close still gets an RST: nothing can prevent that
    but a longer timeout.

    Args:
        sock: a connected stream socket (a TLS socket is shut down without ``close_notify``).
        timeout: how long to wait for the peer's EOF, in seconds; 0 drains only what has
            already arrived.
    """
    if not timeout >= 0.0:
        raise ValueError(f"timeout must be >= 0 seconds, got {timeout!r}")
    started = _CLOCK.now()
    drained = 0
    outcome = CloseOutcome.TIMEOUT
    try:
        try:
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            # ENOTCONN: never connected, or the peer's RST already tore the connection down.
            outcome = CloseOutcome.NOT_CONNECTED
        else:
            deadline = started + timeout
            while True:
                if not _wait_readable(sock, deadline - _CLOCK.now()):
                    break  # nothing more arrived in time: TIMEOUT, with an empty buffer
                try:
                    chunk = sock.recv(_DRAIN_CHUNK)
                except (BlockingIOError, InterruptedError):
                    continue  # a spurious wake-up; poll again
                except TimeoutError:
                    continue
                except (ConnectionResetError, ConnectionAbortedError):
                    outcome = CloseOutcome.RESET
                    break
                except OSError:
                    outcome = CloseOutcome.FAILED
                    break
                if not chunk:
                    outcome = CloseOutcome.EOF
                    break
                drained += len(chunk)
    finally:
        sock.close()
    return CloseResult(outcome=outcome, drained_bytes=drained, elapsed=_CLOCK.now() - started)


def abortive_close(sock: socket.socket) -> None:
    """Close ``sock`` with an RST on purpose: ``SO_LINGER`` on with a zero timeout (C5).

    The peer sees "Connection reset by peer" and anything not yet sent is thrown away. This is
    what Jedis' ``setSoLinger(true, 0)`` and Toxiproxy's ``reset_peer`` do. It is here so that
    tests and fault injectors can say what they mean; production code wants
    [`graceful_close`][rstsafe.graceful_close]. Skipping TIME_WAIT is not a reason: TIME_WAIT
    protects the next
    connection on the same ports from this one's stray segments.
    """
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER.pack(1, 0))
    finally:
        sock.close()


# ---------------------------------------------------------------------------------------------
# Liveness
# ---------------------------------------------------------------------------------------------


class Liveness(enum.Enum):
    """What [`probe_liveness`][rstsafe.sockets.probe_liveness] found on an idle socket."""

    #: Nothing to read and no error: as far as this host knows, the peer still has it open.
    ALIVE = "alive"
    #: The peer sent FIN: the next request would get ``RemoteDisconnected`` or an RST (C1).
    CLOSED_BY_PEER = "closed_by_peer"
    #: The peer (or a middlebox) sent RST (C3, C7).
    RESET_BY_PEER = "reset_by_peer"
    #: Bytes arrived that nobody asked for: an idle connection of a request/response protocol
    #: must not be reused (a late response, or the server's goodbye before its FIN).
    UNREAD_DATA = "unread_data"
    #: Another socket error is pending, for example ``ETIMEDOUT`` after keepalive probes or
    #: ``TCP_USER_TIMEOUT`` gave up.
    FAILED = "failed"


def probe_liveness(sock: socket.socket) -> Liveness:
    """Probe an idle socket without blocking and without consuming data.

    Polls for readability with a zero timeout, and when readable peeks one byte
    (``MSG_PEEK``): EOF means the peer closed, an error means reset or failed, a byte means
    unread data, which stays in the buffer. This is urllib3's and httpcore's pre-reuse check
    (``wait_for_read(sock, timeout=0)``), with the reason kept. A pending socket error is
    reported once, as the kernel does: after ``RESET_BY_PEER`` the socket reads EOF.

    It cannot see a peer that vanished without a packet (a middlebox that dropped its state
    silently, C3): only TCP keepalive or an application heartbeat finds those.
    """
    if sock.fileno() < 0:
        raise ValueError("sock is closed")
    if not _wait_readable(sock, 0.0):
        return Liveness.ALIVE
    try:
        # socket.socket.recv, not sock.recv: on a TLS socket this peeks at the raw TCP stream
        # (``ssl.SSLSocket.recv`` rejects flags), which is what liveness is about.
        data = socket.socket.recv(sock, 1, socket.MSG_PEEK)
    except (BlockingIOError, InterruptedError):
        return Liveness.ALIVE
    except (ConnectionResetError, ConnectionAbortedError):
        return Liveness.RESET_BY_PEER
    except OSError:
        return Liveness.FAILED
    return Liveness.UNREAD_DATA if data else Liveness.CLOSED_BY_PEER


def is_alive(sock: socket.socket) -> bool:
    """Whether an idle socket may be reused: [`probe_liveness`][rstsafe.sockets.probe_liveness]
    found it ``ALIVE``."""
    return probe_liveness(sock) is Liveness.ALIVE


# ---------------------------------------------------------------------------------------------
# Keepalive options
# ---------------------------------------------------------------------------------------------

# Linux caps TCP_KEEPIDLE and TCP_KEEPINTVL at 32767 seconds (MAX_TCP_KEEPIDLE) and
# TCP_KEEPCNT at 127 (MAX_TCP_KEEPCNT); larger values fail with EINVAL at setsockopt time.
# We check here so the error names the field instead.
_MAX_KEEPALIVE_SECONDS = 32767
_MAX_KEEPALIVE_COUNT = 127


def _whole_seconds(name: str, value: float) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"{name} must be a number of seconds, got {value!r}")
    if not 1.0 <= value <= _MAX_KEEPALIVE_SECONDS:
        raise ValueError(
            f"{name} must be between 1 and {_MAX_KEEPALIVE_SECONDS} seconds, got {value!r}"
        )
    # The kernel counts keepalive time in whole seconds; round up so that a fractional
    # request never turns into a shorter probe than asked (1.5 s -> 2 s).
    return math.ceil(value)


def keepalive_options(
    *,
    idle: float = 30.0,
    interval: float = 10.0,
    count: int = 3,
    user_timeout: float | None = None,
    constants: Mapping[str, int] | None = None,
) -> list[SocketOption]:
    """TCP keepalive options for this platform, as ``(level, optname, value)`` tuples (C3).

    A connection idle for ``idle`` seconds gets a probe every ``interval`` seconds and is
    declared dead after ``count`` unanswered probes, so a peer or middlebox that vanished is
    found after about ``idle + interval * count`` seconds, and the probes keep NAT and load
    balancer state alive meanwhile. ``user_timeout`` (Linux ``TCP_USER_TIMEOUT``, RFC 5482)
    bounds how long sent data may stay unacknowledged before the connection is dropped; the
    usual choice is ``idle + interval * count``.

    The defaults: ``idle`` 30 s is below every common middlebox idle limit (AWS ALB 60 s, Azure
    LB 4 min, AWS NAT gateway and NLB 350 s, mobile carriers about 5 min) and near Go's
    ``net.Dialer`` (15 s idle and interval); the Linux default ``tcp_keepalive_time`` (7200 s)
    is far too long for any of them. 10 s x 3 probes declares a dead peer within a minute.

    Options are chosen by what the ``socket`` module exposes (``constants``, default: the
    running Python's): ``TCP_KEEPIDLE`` (Linux, Windows 10 1709+, FreeBSD) or else
    ``TCP_KEEPALIVE`` (macOS, the same meaning), ``TCP_KEEPINTVL``, ``TCP_KEEPCNT`` and
    ``TCP_USER_TIMEOUT`` (Linux only; milliseconds). An option the platform lacks is left out;
    ``SO_KEEPALIVE`` is always first. On Windows before 10 1709, where Python exposes none of
    these, only ``SO_KEEPALIVE`` is returned; use ``sock.ioctl(socket.SIO_KEEPALIVE_VALS,
    (1, idle_ms, interval_ms))`` there.

    Raises:
        ValueError: naming the field, for a value out of range.
    """
    idle_s = _whole_seconds("idle", idle)
    interval_s = _whole_seconds("interval", interval)
    if isinstance(count, bool) or not isinstance(count, int):
        raise ValueError(f"count must be an integer, got {count!r}")
    if not 1 <= count <= _MAX_KEEPALIVE_COUNT:
        raise ValueError(f"count must be between 1 and {_MAX_KEEPALIVE_COUNT}, got {count!r}")
    user_timeout_ms: int | None = None
    if user_timeout is not None:
        if isinstance(user_timeout, bool) or not isinstance(user_timeout, (int, float)):
            raise ValueError(f"user_timeout must be a number of seconds, got {user_timeout!r}")
        if not 0.001 <= user_timeout <= 2**31 / 1000:
            raise ValueError(
                f"user_timeout must be between 0.001 s and 24 days, got {user_timeout!r}"
            )
        user_timeout_ms = math.ceil(user_timeout * 1000)

    names = vars(socket) if constants is None else constants
    options: list[SocketOption] = [(names["SOL_SOCKET"], names["SO_KEEPALIVE"], 1)]
    tcp = names["IPPROTO_TCP"]
    idle_name = "TCP_KEEPIDLE" if "TCP_KEEPIDLE" in names else "TCP_KEEPALIVE"
    wanted: Sequence[tuple[str, int | None]] = (
        (idle_name, idle_s),
        ("TCP_KEEPINTVL", interval_s),
        ("TCP_KEEPCNT", count),
        ("TCP_USER_TIMEOUT", user_timeout_ms),
    )
    options.extend(
        (tcp, names[name], value) for name, value in wanted if value is not None and name in names
    )
    return options


def _merge(
    defaults: Iterable[tuple[int, int, int | bytes]], extra: Iterable[SocketOption]
) -> list[SocketOption]:
    """``defaults`` followed by ``extra``; an ``extra`` option replaces a default one."""
    added = list(extra)
    overridden = {(level, name) for level, name, _ in added}
    kept = [o for o in defaults if (o[0], o[1]) not in overridden]
    return [cast("SocketOption", o) for o in kept] + added


def urllib3_socket_options(
    options: Iterable[SocketOption] | None = None,
) -> Urllib3SocketOptions:
    """urllib3's default socket options with ``options`` added (default:
    [`keepalive_options`][rstsafe.keepalive_options]).

    urllib3 *replaces* its defaults when ``socket_options=`` is given, so passing only the
    keepalive options would silently drop ``TCP_NODELAY`` (``default_socket_options`` is
    ``[(IPPROTO_TCP, TCP_NODELAY, 1)]``). Use the result as
    ``urllib3.PoolManager(socket_options=...)`` or ``HTTPAdapter``'s pool keyword arguments.
    """
    from urllib3.connection import HTTPConnection  # here: rstsafe.httpx loads no urllib3

    extra = keepalive_options() if options is None else options
    merged = _merge(HTTPConnection.default_socket_options, extra)
    return [(level, name, value) for level, name, value in merged]


def httpx_socket_options(
    options: Iterable[SocketOption] | None = None,
) -> list[SocketOption]:
    """Socket options for ``httpx.HTTPTransport(socket_options=...)`` (and the async transport).

    httpx's default is no options at all (``socket_options=None``), and nothing is lost by
    giving some: httpcore's sync back end sets ``TCP_NODELAY`` itself after the caller's
    options on every new connection, and its anyio back end opens sockets through asyncio or
    trio, both of which set ``TCP_NODELAY`` on TCP streams. So this returns
    ``TCP_NODELAY`` (to state it, harmlessly set twice) followed by ``options`` (default:
    [`keepalive_options`][rstsafe.keepalive_options]).
    """
    extra = keepalive_options() if options is None else options
    return _merge([(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)], extra)


def apply_socket_options(sock: socket.socket, options: Iterable[SocketOption]) -> None:
    """``setsockopt`` every ``(level, optname, value)`` of ``options`` on ``sock``, in order."""
    for level, optname, value in options:
        sock.setsockopt(level, optname, value)


# ---------------------------------------------------------------------------------------------
# Hazards
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class SocketHazard:
    """One thing about a socket's settings that leads to resets or hangs, and its fix."""

    #: A stable identifier: ``linger-zero``, ``keepalive-off``, ``keepalive-idle-too-long``,
    #: ``no-timeout`` or ``timeout-too-tight``.
    code: str
    cause: str  # the field guide's cause, "C5"
    message: str
    fix: str


def _keepalive_hazards(sock: socket.socket, max_keepalive_idle: float) -> list[SocketHazard]:
    if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE):
        return [
            SocketHazard(
                code="keepalive-off",
                cause="C3",
                message="SO_KEEPALIVE is off: an idle connection whose peer or middlebox "
                "dropped it is only found on the next write",
                fix="rstsafe.sockets.apply_socket_options(sock, rstsafe.keepalive_options())",
            )
        ]
    idle_option = getattr(socket, "TCP_KEEPIDLE", getattr(socket, "TCP_KEEPALIVE", None))
    if idle_option is None:
        return []  # pragma: no cover - a platform without a per-socket keepalive idle
    idle = sock.getsockopt(socket.IPPROTO_TCP, idle_option)
    if idle <= max_keepalive_idle:
        return []
    return [
        SocketHazard(
            code="keepalive-idle-too-long",
            cause="C3",
            message=f"keepalive probes start after {idle} s idle, later than "
            f"{max_keepalive_idle:g} s: middleboxes drop idle state before that",
            fix="rstsafe.sockets.apply_socket_options(sock, rstsafe.keepalive_options(idle=30))",
        )
    ]


def check_socket(
    sock: socket.socket,
    *,
    min_timeout: float = 1.0,
    max_keepalive_idle: float = 300.0,
) -> list[SocketHazard]:
    """Hazards on a live socket's settings, each with a code and a fix; empty when none.

    - ``linger-zero``: ``SO_LINGER`` on with 0 makes every close an RST (C5).
    - ``keepalive-off``: a dead peer or a middlebox that dropped the connection's state is
      never noticed on an idle connection (C3).
    - ``keepalive-idle-too-long``: keepalive is on but its first probe comes after
      ``max_keepalive_idle`` seconds (default 300 s, below the AWS NAT gateway's 350 s; Linux's
      own default is 7200 s), too late to keep middlebox state alive.
    - ``no-timeout``: a blocking socket without a timeout hangs forever on a peer that vanished.
    - ``timeout-too-tight``: a timeout below ``min_timeout`` seconds (default 1 s) aborts
      operations that a slow handshake or a retransmission would have completed (C9: a 100 ms
      ``SO_RCVTIMEO`` against a 110 ms handshake).

    A non-blocking socket (timeout 0) is left alone: its event loop owns the timeouts.
    """
    hazards: list[SocketHazard] = []
    onoff, seconds = _LINGER.unpack(
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER.size)
    )
    if onoff and seconds == 0:
        hazards.append(
            SocketHazard(
                code="linger-zero",
                cause="C5",
                message="SO_LINGER is on with a 0 s timeout: close() sends RST, not FIN, "
                "and unsent data is discarded",
                fix="turn SO_LINGER off and close with rstsafe.graceful_close(sock)",
            )
        )
    if sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM:
        hazards.extend(_keepalive_hazards(sock, max_keepalive_idle))
    timeout = sock.gettimeout()
    if timeout is None:
        hazards.append(
            SocketHazard(
                code="no-timeout",
                cause="C3",
                message="the socket is blocking without a timeout: a vanished peer hangs it "
                "forever",
                fix="sock.settimeout(...) with a value above the slowest expected response",
            )
        )
    elif 0.0 < timeout < min_timeout:
        hazards.append(
            SocketHazard(
                code="timeout-too-tight",
                cause="C9",
                message=f"the socket timeout {timeout:g} s is below {min_timeout:g} s: a slow "
                "handshake or one retransmission (200 ms minimum RTO) aborts the operation",
                fix=f"sock.settimeout({min_timeout:g}) or more, measured against the real RTT",
            )
        )
    return hazards
