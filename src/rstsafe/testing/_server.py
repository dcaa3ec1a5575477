"""The misbehaving HTTP/1.1 keep-alive server: it decides exactly when a connection gets FIN or RST.

Design: one thread accepts, one thread per connection serves it. Every wait is a
``select`` on the connection and on a shared "wake" pipe that :meth:`stop` writes to,
so threads sleep in the kernel (no polling loops) and all wake up at once on stop.

Limits: at most ``max_connections`` connections are served at once (so at most that many
threads); one accepted beyond it is answered ``503`` with ``Connection: close`` by the
accept thread itself and closed gracefully. A request body above ``max_body`` bytes is
answered ``413`` without being read. Both end in a lingering close, as nginx's does: the
server shuts down its sending side and discards what the client still sends, for a
bounded time and number of bytes, so that the client reads the answer instead of an RST.

How a connection ends, and how we know which packet the kernel sent:

- **FIN**: ``close()`` with nothing unread in the receive buffer.
- **RST**: ``SO_LINGER`` on with timeout 0, then ``close()`` (an abortive close); or a
  ``close()`` with unread bytes in the receive buffer (RFC 2525 section 2.17: the
  kernel must reset, and Linux does). Before every close the server peeks at the
  receive buffer, so the record says which of the two the kernel sent.
"""

from __future__ import annotations

import contextlib
import enum
import errno
import http
import ipaddress
import itertools
import logging
import os
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from types import TracebackType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

from rstsafe.testing._behaviours import (
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
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
    behaviour_name,
)

if TYPE_CHECKING:
    from rstsafe.testing._netns import NetworkNamespace

try:  # SIOCOUTQ (TIOCOUTQ) is Linux's "bytes not yet acknowledged by the peer"
    import fcntl
    import termios

    _TIOCOUTQ: int | None = termios.TIOCOUTQ
except (ImportError, AttributeError):  # pragma: no cover - not Linux
    _TIOCOUTQ = None

__all__ = (
    "DEFAULT_MAX_BODY",
    "DEFAULT_MAX_CONNECTIONS",
    "ConnectionEnd",
    "ConnectionRecord",
    "Execution",
    "MisbehavingServer",
    "ServerEvent",
)

_LOG = logging.getLogger("rstsafe.testing")

# Limits on what a client may send. Precedents: h11 allows 16 KiB of incomplete
# headers, nginx 8 KiB per header line (large_client_header_buffers), Node 16 KiB.
_MAX_HEAD = 64 * 1024
# A client that stops halfway through a request is given this long before we close.
_READ_TIMEOUT = 30.0
# Sends are small; a client that does not read for this long is abandoned.
_SEND_TIMEOUT = 5.0
# How long to wait for the kernel to hand a response to the peer before an RST
# would throw it away (instant on loopback; generous for a busy machine).
_FLUSH_TIMEOUT = 2.0
# EarlyResponse waits this long for more of the upload before it closes.
_UPLOAD_WAIT = 1.0
# stop() waits this long for each thread.
_JOIN_TIMEOUT = 10.0
# TCP_DEFER_ACCEPT seconds for AcceptQueueOverflow: longer than any test.
_DEFER_ACCEPT = 60
# Connections served at once. Precedents: nginx worker_connections 512 per worker,
# gunicorn's async workers 1000, uvicorn --limit-concurrency none (answers 503 beyond it
# when set). Each connection here is a thread, so the default is lower: twice the largest
# pool this project's tests and benchmarks open (50 concurrent tasks).
DEFAULT_MAX_CONNECTIONS = 128
# Request body bytes. nginx's client_max_body_size is 1 MiB; the test suites here upload
# 8 MiB (to EarlyResponse, which answers before reading), so the default leaves room.
DEFAULT_MAX_BODY = 16 * 1024 * 1024
# The lingering close after a 503 or 413 (nginx: lingering_time 30 s, lingering_timeout
# 5 s): discard what the client still sends for at most this long and this many bytes.
_LINGER_TIME = 1.0
_LINGER_BYTES = 1024 * 1024
# Rejected connections lingering at once in the accept thread; beyond, the oldest is
# closed at once, so a flood of connections cannot exhaust descriptors.
_MAX_LINGERING = 64


class ConnectionEnd(enum.Enum):
    """How a connection accepted by the server ended."""

    OPEN = "open"
    """Still open."""
    FIN = "fin"
    """The server closed it gracefully (FIN), with nothing unread."""
    RST = "rst"
    """The server reset it: ``SO_LINGER`` 0, or a close with unread data."""
    CLIENT_CLOSED = "client-closed"
    """The client closed first (its FIN arrived); the server then closed too."""
    CLIENT_RESET = "client-reset"
    """The client reset it (or vanished) while the server read or wrote."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionRecord:
    """A connection the server accepted, as of the moment the record was taken.

    Attributes:
        id: 1 for the first connection accepted, then 2, 3 ...
        peer: The client's address (host, port).
        accepted_at: ``time.monotonic()`` when it was accepted.
        ended_at: ``time.monotonic()`` when it ended, or ``None`` while open.
        end: How it ended.
        requests: Requests executed on it.
        reason: Why it ended, in words (``"idle for 0.3 s"``, ``"server stopped"`` ...).
        closing_since: ``time.monotonic()`` when the server stopped reading it in order
            to close it later ([`IdleCloseWithLag`][rstsafe.testing.IdleCloseWithLag]) or forgot it
            ([`IdleDrop`][rstsafe.testing.IdleDrop]); ``None`` otherwise. A test waits for this
            before it
            sends the request that must meet the RST.
    """

    id: int
    peer: tuple[str, int]
    accepted_at: float
    ended_at: float | None = None
    end: ConnectionEnd = ConnectionEnd.OPEN
    requests: int = 0
    reason: str = ""
    closing_since: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Execution:
    """A request the server executed (read in full and acted on).

    Attributes:
        connection_id: The `ConnectionRecord.id` it arrived on.
        method: The request method, e.g. ``"POST"``.
        path: The request target without its query string.
        target: The request target as sent, query included.
        idempotency_key: The ``Idempotency-Key`` header (or ``X-Idempotency-Key``), if any.
        body_bytes: Bytes of request body received.
        at: ``time.monotonic()`` when it was executed.
    """

    connection_id: int
    method: str
    path: str
    target: str
    idempotency_key: str | None
    body_bytes: int
    at: float


ServerEvent = Execution | ConnectionRecord
"""What [`MisbehavingServer`][rstsafe.testing.MisbehavingServer] passes to `on_event`."""


class _Stop(Exception):
    """The server is stopping."""


class _Gone(Exception):
    """The client closed or reset the connection."""

    def __init__(self, end: ConnectionEnd, reason: str) -> None:
        super().__init__(reason)
        self.end = end
        self.reason = reason


class _Stalled(Exception):
    """The client stopped sending halfway through a request."""


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class _BodyTooLarge(Exception):
    """A chunked request body grew past max_body."""

    def __init__(self, received: int) -> None:
        super().__init__(f"{received} bytes")
        self.received = received


@dataclass(frozen=True, slots=True)
class _Request:
    method: str
    target: str
    version: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "

    @property
    def wants_close(self) -> bool:
        tokens = {t.strip().lower() for t in self.headers.get("connection", "").split(",")}
        if self.version == "HTTP/1.0":
            return "keep-alive" not in tokens
        return "close" in tokens


def _is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


def _unread_state(sock: socket.socket) -> ConnectionEnd | None:
    """Peek at the receive buffer: None if empty, RST if data waits, CLIENT_* if the peer left."""
    # Non-blocking first: with a timeout set, Python would poll before the recv.
    sock.setblocking(False)
    try:
        data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return None
    except OSError:
        return ConnectionEnd.CLIENT_RESET
    return ConnectionEnd.RST if data else ConnectionEnd.CLIENT_CLOSED


def _rejection(status: int, body: bytes, extra: str = "") -> bytes:
    """A complete ``Connection: close`` response with a text body."""
    phrase = http.HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nServer: rstsafe-misbehaving\r\n"
        f"Content-Length: {len(body)}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"{extra}Connection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body


def _flush(sock: socket.socket) -> None:
    """Wait until the kernel has no unsent or unacknowledged bytes left (SIOCOUTQ)."""
    if _TIOCOUTQ is None:  # pragma: no cover - not Linux
        return
    deadline = time.monotonic() + _FLUSH_TIMEOUT
    buf = bytearray(4)
    delay = 0.0005
    while time.monotonic() < deadline:
        try:
            fcntl.ioctl(sock.fileno(), _TIOCOUTQ, buf)
        except OSError:
            return
        if struct.unpack("i", buf)[0] == 0:
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.02)


class _Session:
    """Serves one connection in its own thread, following the server's behaviour."""

    def __init__(self, server: MisbehavingServer, conn_id: int, sock: socket.socket) -> None:
        self.server = server
        self.behaviour = server.behaviour
        self.id = conn_id
        self.sock = sock
        self.buf = bytearray()
        self.requests = 0
        self.closed = False
        self.selector = selectors.DefaultSelector()
        self.selector.register(sock, selectors.EVENT_READ)
        self.selector.register(server._wake_r, selectors.EVENT_READ)

    # -- waiting and reading -------------------------------------------------------

    def wait_readable(self, timeout: float | None) -> bool:
        """True when the socket is readable, False on timeout; raises _Stop on stop."""
        events = self.selector.select(timeout)
        for key, _ in events:
            if key.fileobj is self.server._wake_r:
                raise _Stop
        return bool(events)

    def recv_into_buffer(self) -> None:
        try:
            data = self.sock.recv(65536)
        except BlockingIOError:
            return
        except (ConnectionResetError, BrokenPipeError, TimeoutError) as exc:
            raise _Gone(ConnectionEnd.CLIENT_RESET, f"client reset ({exc})") from exc
        if not data:
            raise _Gone(ConnectionEnd.CLIENT_CLOSED, "client closed")
        self.buf += data

    def read_more(self) -> None:
        if not self.wait_readable(_READ_TIMEOUT):
            raise _Stalled
        self.recv_into_buffer()

    def read_until(self, marker: bytes, limit: int) -> bytes:
        while True:
            index = self.buf.find(marker)
            if index >= 0:
                end = index + len(marker)
                data = bytes(self.buf[:end])
                del self.buf[:end]
                return data
            if len(self.buf) > limit:
                raise _BadRequest(431, "request header too large")
            self.read_more()

    def read_exact(self, count: int) -> int:
        """Consume ``count`` bytes (keeping none of them); return ``count``."""
        remaining = count
        while remaining:
            if not self.buf:
                self.read_more()
            taken = min(remaining, len(self.buf))
            del self.buf[:taken]
            remaining -= taken
        return count

    def read_head(self) -> _Request:
        head = self.read_until(b"\r\n\r\n", _MAX_HEAD).decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise _BadRequest(400, f"bad request line {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise _BadRequest(400, f"bad header line {line[:80]!r}")
            key = name.lower()
            value = value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return _Request(parts[0], parts[1], parts[2], headers)

    def read_body(self, request: _Request) -> int:
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            total = 0
            while True:
                size_line = self.read_until(b"\r\n", 1024).split(b";")[0].strip()
                try:
                    size = int(size_line, 16)
                except ValueError:
                    raise _BadRequest(400, "bad chunk size") from None
                if size == 0:
                    while self.read_until(b"\r\n", _MAX_HEAD) != b"\r\n":
                        pass  # trailers are ignored
                    return total
                if total + size > self.server.max_body:
                    raise _BodyTooLarge(total + size)
                total += self.read_exact(size)
                while len(self.buf) < 2:
                    self.read_more()
                if self.buf[:2] != b"\r\n":
                    raise _BadRequest(400, "bad chunk terminator")
                del self.buf[:2]
        length = request.headers.get("content-length")
        if length is None:
            return 0
        if not length.isdigit():
            raise _BadRequest(400, "bad Content-Length")
        return self.read_exact(int(length))

    @staticmethod
    def declared_body(request: _Request) -> int | None:
        """Declared body size; None for chunked (unknown, possibly large)."""
        if "chunked" in request.headers.get("transfer-encoding", "").lower():
            return None
        length = request.headers.get("content-length", "0")
        return int(length) if length.isdigit() else 0

    # -- writing and closing -------------------------------------------------------

    def send(self, data: bytes) -> None:
        try:
            self.sock.sendall(data)
        except (ConnectionResetError, BrokenPipeError, TimeoutError) as exc:
            raise _Gone(ConnectionEnd.CLIENT_RESET, f"client reset ({exc})") from exc

    def close(self, reason: str) -> None:
        """Close: FIN if nothing is unread, otherwise the kernel sends RST (recorded so)."""
        state = _unread_state(self.sock)
        end = ConnectionEnd.FIN if state is None else state
        if state is ConnectionEnd.RST:
            reason = f"{reason}; unread request data turned the close into an RST"
        self._finish(end, reason)

    def linger_close(self, reason: str) -> None:
        """Answered and done: FIN, discard what the client still sends (bounded), close."""
        _flush(self.sock)
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_WR)
        self.buf.clear()
        deadline = time.monotonic() + _LINGER_TIME
        discarded = 0
        while discarded < _LINGER_BYTES:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not self.wait_readable(remaining):
                break
            try:
                data = self.sock.recv(65536)
            except OSError:
                break
            if not data:
                break
            discarded += len(data)
        self.close(reason)

    def abort(self, reason: str) -> None:
        """Abortive close: SO_LINGER on with timeout 0, so the kernel sends RST."""
        with contextlib.suppress(OSError):
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._finish(ConnectionEnd.RST, reason)

    def _finish(self, end: ConnectionEnd, reason: str) -> None:
        if self.closed:
            return
        self.closed = True
        self.selector.close()
        self.sock.close()
        self.server._record_end(self.id, end, reason, release=True)

    # -- the behaviour -------------------------------------------------------------

    def idle_timeout(self) -> float | None:
        behaviour = self.behaviour
        if isinstance(behaviour, Healthy):
            return behaviour.keepalive
        if isinstance(behaviour, IdleCloseWithLag | IdleDrop):
            return behaviour.idle
        if isinstance(behaviour, AdvertiseKeepAlive):
            return behaviour.actual
        return None

    def run(self) -> None:
        try:
            self.serve()
        except _Stop:
            if isinstance(self.behaviour, IdleDrop) and self.server._dropped(self.id):
                self.abort("server stopped (connection state was dropped)")
            else:
                self.close("server stopped")
        except _Gone as exc:
            self._finish(exc.end, exc.reason)
        except _Stalled:
            self.close(f"client sent an incomplete request for {_READ_TIMEOUT:g} s")
        except _BadRequest as exc:
            with contextlib.suppress(_Gone, _Stop):
                self.respond(exc.status, str(exc).encode() + b"\n", close=True)
            self.close(f"bad request: {exc}")
        finally:
            if not self.closed:  # an unexpected error: never leak the socket
                self.abort("server error")

    def serve(self) -> None:
        behaviour = self.behaviour
        idle = self.idle_timeout()
        while True:
            if not self.buf:
                if isinstance(behaviour, ResetUnread):
                    self.wait_readable(None)
                    gone = _unread_state(self.sock)
                    if gone in (ConnectionEnd.CLIENT_CLOSED, ConnectionEnd.CLIENT_RESET):
                        self._finish(gone, "client left without sending a request")
                    else:
                        self.abort("reset before reading the request")
                    return
                if not self.wait_readable(idle):
                    assert idle is not None
                    self.on_idle(idle)
                    return
                self.recv_into_buffer()
            request = self.read_head()
            declared = self.declared_body(request)
            if isinstance(behaviour, EarlyResponse) and (
                declared is None or declared > behaviour.body_limit
            ):
                self.respond(behaviour.status, b"request body too large\n", close=True)
                _flush(self.sock)
                # Close while the client is still uploading: wait (briefly) until more of
                # the body is in the receive buffer, so that the close is an RST.
                if declared is None or len(self.buf) < declared:
                    self.wait_readable(_UPLOAD_WAIT)
                self.close(f"answered {behaviour.status} before reading the body")
                return
            limit = self.server.max_body
            if declared is not None and declared > limit:
                # Before any 100 Continue: RFC 9110 section 10.1.1 lets a server answer
                # with the final status instead, and the client then need not send the body.
                self.respond(413, f"request body over {limit} bytes\n".encode(), close=True)
                self.linger_close(
                    f"answered 413: Content-Length {declared} is over max_body={limit}"
                )
                return
            if request.headers.get("expect", "").lower() == "100-continue":
                self.send(b"HTTP/1.1 100 Continue\r\n\r\n")
            try:
                body_bytes = self.read_body(request)
            except _BodyTooLarge as exc:
                self.respond(413, f"request body over {limit} bytes\n".encode(), close=True)
                self.linger_close(
                    f"answered 413: chunked body reached {exc.received} bytes, "
                    f"over max_body={limit}"
                )
                return
            if isinstance(behaviour, BlackHole):
                self.server._record_received()
                continue
            self.requests += 1
            self.server._record_execution(self.id, request, body_bytes)
            if isinstance(behaviour, ProcessThenReset):
                if behaviour.reset:
                    self.abort("reset after executing the request, without answering")
                else:
                    self.close("closed after executing the request, without answering")
                return
            self.answer(request, body_bytes)
            if self.closed:
                return
            if request.wants_close:
                _flush(self.sock)
                self.close("client asked for Connection: close")
                return
            if isinstance(behaviour, AbortiveClose):
                _flush(self.sock)
                self.abort("SO_LINGER 0 close after responding")
                return
            if isinstance(behaviour, CloseAfterRequests) and self.requests >= behaviour.count:
                _flush(self.sock)
                why = f"after {self.requests} request(s)"
                if behaviour.reset:
                    self.abort(f"reset {why}")
                else:
                    self.close(f"closed {why}")
                return

    def on_idle(self, idle: float) -> None:
        behaviour = self.behaviour
        if isinstance(behaviour, IdleCloseWithLag):
            # Stop reading now; the close (the FIN) happens only after the lag. A request
            # that arrives meanwhile stays unread, so the close becomes an RST.
            self.server._record_closing(self.id)
            if self.server._stopping.wait(behaviour.lag):
                raise _Stop
            self.close(f"idle for {idle:g} s, closed {behaviour.lag:g} s later")
        elif isinstance(behaviour, IdleDrop):
            # Forget the connection: never send a FIN; whatever arrives next gets an RST.
            self.server._record_closing(self.id)
            self.wait_readable(None)
            self.abort(f"state dropped after {idle:g} s idle; the next bytes got an RST")
        else:
            self.close(f"idle for {idle:g} s")

    def answer(self, request: _Request, body_bytes: int) -> None:
        target = urlsplit(request.target)
        status = 200
        query = parse_qs(target.query)
        if "status" in query and query["status"][0].isdigit():
            status = min(max(int(query["status"][0]), 200), 599)
        body = f"{request.method} {target.path} body={body_bytes}\n".encode()
        extra: list[tuple[str, str]] = []
        if "retry-after" in query and query["retry-after"][0].isdigit():
            extra.append(("Retry-After", query["retry-after"][0]))
        behaviour = self.behaviour
        if isinstance(behaviour, AdvertiseKeepAlive | IdleCloseWithLag) and behaviour.advertised:
            extra.append(("Keep-Alive", f"timeout={behaviour.advertised:g}"))
        if isinstance(behaviour, TruncatedBody):
            head = self.head(status, len(body) + behaviour.missing, extra, close=False)
            self.send(head + (b"" if request.method == "HEAD" else body))
            _flush(self.sock)
            why = f"response truncated, {behaviour.missing} body bytes missing"
            if behaviour.reset:
                self.abort(why)
            else:
                self.close(why)
            return
        self.respond(
            status,
            b"" if request.method == "HEAD" else body,
            close=request.wants_close,
            extra=extra,
            length=len(body),
        )

    def head(self, status: int, length: int, extra: list[tuple[str, str]], *, close: bool) -> bytes:
        try:
            phrase = http.HTTPStatus(status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {status} {phrase}",
            "Server: rstsafe-misbehaving",
            f"Content-Length: {length}",
            "Content-Type: text/plain; charset=utf-8",
        ]
        lines += [f"{name}: {value}" for name, value in extra]
        if close:
            lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def respond(
        self,
        status: int,
        body: bytes,
        *,
        close: bool,
        extra: list[tuple[str, str]] | None = None,
        length: int | None = None,
    ) -> None:
        size = len(body) if length is None else length
        self.send(self.head(status, size, extra or [], close=close) + body)


class MisbehavingServer:
    """An HTTP/1.1 keep-alive server on loopback that misbehaves exactly as told.

    It runs in background threads (one accepts, one per connection), binds port 0 by
    default and records every request it executed and every connection it accepted,
    with how the connection ended (FIN or RST). Use it as a context manager, or call
    `start` and `stop`.

    Limits: at most ``max_connections`` connections are served at once, each by its own
    thread. A connection accepted beyond that is answered ``503 Service Unavailable``
    (``Retry-After: 1``, ``Connection: close``) by the accept thread, shut down with a
    FIN and closed after a short lingering drain; it is recorded (``requests == 0``,
    reason ``"rejected: ..."``), and it starts no thread. A request whose body is larger
    than ``max_body`` bytes gets ``413`` before the body is read (for
    chunked bodies, as soon as the chunks pass the limit), then the same lingering close.
    Binding an address that is not loopback logs a warning on the ``rstsafe.testing``
    logger (shown on stderr when logging is not configured; ``rstsafe serve`` prints it).

    Normal requests get ``200 OK`` with a short text body, ``METHOD PATH body=N``. A
    query parameter ``?status=503`` changes the status, ``?retry-after=2`` adds a
    ``Retry-After`` header. Request bodies may use Content-Length or chunked encoding.

    Example:
        ```python
        with MisbehavingServer(ProcessThenReset()) as server:
            with pytest.raises(requests.ConnectionError):
                requests.post(server.url + "/orders", data=b"x")
            assert server.executions(method="POST", path="/orders") == 1
            assert server.connections[0].end is ConnectionEnd.RST
        ```

    Args:
        behaviour: What to do wrong; ``None`` means [`Healthy`][rstsafe.testing.Healthy].
        host: Address to bind, ``127.0.0.1`` (default) or ``::1``.
        port: Port to bind; 0 picks a free one.
        allow_non_loopback: Must be true to bind anything but a loopback address.
        max_connections: Connections served at once (default 128); more get a 503.
        max_body: Largest request body in bytes (default 16 MiB); larger gets a 413.
        namespace: Create the listener inside this network namespace; clients must
            then make their sockets with
            [`NetworkNamespace.socket`][rstsafe.testing.NetworkNamespace.socket].
        on_event: Called (from a server thread) with every [`Execution`][rstsafe.testing.Execution]
            and with
            the [`ConnectionRecord`][rstsafe.testing.ConnectionRecord] of every connection that
            ends. It must not raise.
    """

    def __init__(
        self,
        behaviour: Behaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_non_loopback: bool = False,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_body: int = DEFAULT_MAX_BODY,
        namespace: NetworkNamespace | None = None,
        on_event: Callable[[ServerEvent], None] | None = None,
    ) -> None:
        for limit_name, limit, minimum in (
            ("max_connections", max_connections, 1),
            ("max_body", max_body, 0),
        ):
            if isinstance(limit, bool) or not isinstance(limit, int):
                raise TypeError(f"{limit_name} must be an integer, got {type(limit).__name__}")
            if limit < minimum:
                raise ValueError(f"{limit_name} must be >= {minimum}, got {limit}")
        behaviour = Healthy() if behaviour is None else behaviour
        if not isinstance(behaviour, Behaviour) or type(behaviour) is Behaviour:
            raise ValueError(f"behaviour must be a Behaviour such as Healthy(), got {behaviour!r}")
        if host == "localhost":
            host = "127.0.0.1"
        try:
            loopback = _is_loopback(host)
        except ValueError:
            raise ValueError(
                f"host must be an IP address such as 127.0.0.1, got {host!r}"
            ) from None
        if not loopback and not allow_non_loopback:
            raise ValueError(
                f"host {host!r} is not a loopback address; pass allow_non_loopback=True "
                "to bind it anyway"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        self.behaviour = behaviour
        self.host = host
        self.max_connections = max_connections
        self.max_body = max_body
        self._loopback = loopback
        self._active = 0
        self._lingering: dict[socket.socket, tuple[int, float, int]] = {}
        self._requested_port = port
        self.port = 0
        self._family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._namespace = namespace
        self._on_event = on_event
        self._cond = threading.Condition()
        self._records: list[ConnectionRecord] = []
        self._executions: list[Execution] = []
        self._received_unexecuted = 0
        self._ids = itertools.count(1)
        self._listener: socket.socket | None = None
        self._fillers: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._accept_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._wake_r = -1
        self._wake_w = -1
        self._started = False
        self._stopped = False

    # -- addresses -----------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        """``(host, port)`` to connect to."""
        return (self.host, self.port)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``http://[::1]:PORT`` for IPv6), no trailing slash."""
        host = f"[{self.host}]" if self._family == socket.AF_INET6 else self.host
        return f"http://{host}:{self.port}"

    @property
    def name(self) -> str:
        """The behaviour's kebab-case name, e.g. ``"idle-close-with-lag"``."""
        return behaviour_name(self.behaviour)

    # -- lifecycle -----------------------------------------------------------------

    def __enter__(self) -> MisbehavingServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _new_socket(self) -> socket.socket:
        if self._namespace is not None:
            return self._namespace.socket(self._family, socket.SOCK_STREAM)
        return socket.socket(self._family, socket.SOCK_STREAM)

    def start(self) -> MisbehavingServer:
        """Bind and start serving; returns the server itself."""
        if self._started:
            raise RuntimeError("a MisbehavingServer can be started only once")
        self._started = True
        self._wake_r, self._wake_w = os.pipe()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        behaviour = self.behaviour
        listener = self._listener = self._new_socket()
        if self._requested_port:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self._requested_port))
        self.port = listener.getsockname()[1]
        if not self._loopback:
            _LOG.warning(
                "MisbehavingServer bound %s port %d, which is not a loopback address: other "
                "machines can reach it, and it resets, drops and stalls connections on "
                "purpose, with no authentication",
                self.host,
                self.port,
            )
        if isinstance(behaviour, Refuse):
            return  # bound, never listening: the port stays ours and refuses connections
        if isinstance(behaviour, AcceptQueueOverflow):
            defer_accept = getattr(socket, "TCP_DEFER_ACCEPT", None)  # Linux only
            if defer_accept is not None:
                listener.setsockopt(socket.IPPROTO_TCP, defer_accept, _DEFER_ACCEPT)
            listener.listen(behaviour.backlog)
            if behaviour.prefill:
                self.fill_accept_queue()
            return
        listener.listen(128)
        listener.setblocking(False)
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"rstsafe-{self.name}-accept", daemon=True
        )
        self._accept_thread.start()

    def fill_accept_queue(self) -> int:
        """Fill an [`AcceptQueueOverflow`][rstsafe.testing.AcceptQueueOverflow] listener's accept
        queue; return connections made.

        The server connects to itself ``backlog + 1`` times (the kernel queues
        ``min(backlog, somaxconn) + 1``), sending one byte each so that
        ``TCP_DEFER_ACCEPT`` lets the handshakes complete.
        """
        behaviour = self.behaviour
        if not isinstance(behaviour, AcceptQueueOverflow) or self._listener is None:
            raise RuntimeError("fill_accept_queue() needs a started AcceptQueueOverflow server")
        made = 0
        for _ in range(behaviour.backlog + 1):
            filler = self._new_socket()
            self._fillers.append(filler)
            filler.settimeout(2.0)
            try:
                filler.connect(self.address)
                filler.sendall(b"\0")
            except OSError:
                break
            made += 1
        return made

    def stop(self) -> None:
        """Stop serving, close every socket and join every thread (idempotent)."""
        with self._cond:
            if self._stopped:
                return
            self._stopped = True
        self._stopping.set()
        if self._wake_w >= 0:
            os.write(self._wake_w, b"x")
        deadline = time.monotonic() + _JOIN_TIMEOUT
        if self._accept_thread is not None:
            self._accept_thread.join(max(0.0, deadline - time.monotonic()))
        with self._cond:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.1, deadline - time.monotonic()))
        for filler in self._fillers:
            filler.close()
        if self._listener is not None:
            self._listener.close()
        alive = [t.name for t in threads if t.is_alive()]
        if self._accept_thread is not None and self._accept_thread.is_alive():
            alive.append(self._accept_thread.name)
        if not alive:  # a thread still running may still select() on the pipe
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
        else:
            raise RuntimeError(f"threads did not stop within {_JOIN_TIMEOUT:g} s: {alive}")

    def _accept_loop(self) -> None:
        assert self._listener is not None
        with selectors.DefaultSelector() as selector:
            selector.register(self._listener, selectors.EVENT_READ)
            selector.register(self._wake_r, selectors.EVENT_READ)
            try:
                self._accept_until_stopped(selector)
            finally:
                for sock in list(self._lingering):
                    self._end_lingering(selector, sock, "server stopped")

    def _accept_until_stopped(self, selector: selectors.BaseSelector) -> None:
        assert self._listener is not None
        while True:
            timeout = None
            if self._lingering:
                first = min(deadline for _, deadline, _ in self._lingering.values())
                timeout = max(0.0, first - time.monotonic())
            events = selector.select(timeout)
            if any(key.fileobj == self._wake_r for key, _ in events):
                return
            for key, _ in events:
                if key.fileobj is not self._listener:
                    self._drain_lingering(selector, key.fileobj)  # type: ignore[arg-type]
            now = time.monotonic()
            for sock, (_, deadline, _) in list(self._lingering.items()):
                if deadline <= now:
                    self._end_lingering(selector, sock, f"lingered {_LINGER_TIME:g} s")
            if not any(key.fileobj is self._listener for key, _ in events):
                continue
            try:
                sock, peer = self._listener.accept()
            except (BlockingIOError, ConnectionAbortedError):
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: back off instead of spinning.
                    if self._stopping.wait(0.05):
                        return
                    continue
                raise
            conn_id = next(self._ids)
            record = ConnectionRecord(
                id=conn_id, peer=(peer[0], peer[1]), accepted_at=time.monotonic()
            )
            with self._cond:
                self._records.append(record)
                full = self._active >= self.max_connections
                if not full:
                    self._active += 1
                self._cond.notify_all()
            if full:
                self._reject(selector, conn_id, sock)
                continue
            sock.setblocking(True)
            sock.settimeout(_SEND_TIMEOUT)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            session = _Session(self, conn_id, sock)
            thread = threading.Thread(
                target=session.run, name=f"rstsafe-{self.name}-conn-{conn_id}", daemon=True
            )
            with self._cond:
                self._threads = [t for t in self._threads if t.is_alive()]
                self._threads.append(thread)
            thread.start()

    def _reject(self, selector: selectors.BaseSelector, conn_id: int, sock: socket.socket) -> None:
        """Over max_connections: answer 503 from this thread, FIN, then drain (bounded)."""
        body = f"over max_connections={self.max_connections}\n".encode()
        sock.setblocking(False)
        with contextlib.suppress(OSError):  # a fresh socket's send buffer takes it whole
            sock.send(_rejection(503, body, "Retry-After: 1\r\n"))
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        if len(self._lingering) >= _MAX_LINGERING:
            oldest = min(self._lingering, key=lambda s: self._lingering[s][1])
            self._end_lingering(selector, oldest, "closed early: too many lingering")
        self._lingering[sock] = (conn_id, time.monotonic() + _LINGER_TIME, 0)
        selector.register(sock, selectors.EVENT_READ)

    def _drain_lingering(self, selector: selectors.BaseSelector, sock: socket.socket) -> None:
        conn_id, deadline, discarded = self._lingering[sock]
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            self._end_lingering(selector, sock, "client reset")
            return
        if not data:
            self._end_lingering(selector, sock, "client closed")
            return
        discarded += len(data)
        self._lingering[sock] = (conn_id, deadline, discarded)
        if discarded >= _LINGER_BYTES:
            self._end_lingering(selector, sock, f"discarded {discarded} bytes")

    def _end_lingering(
        self, selector: selectors.BaseSelector, sock: socket.socket, how: str
    ) -> None:
        conn_id, _, _ = self._lingering.pop(sock)
        selector.unregister(sock)
        state = _unread_state(sock)
        end = ConnectionEnd.FIN if state is None else state
        sock.close()
        reason = f"rejected: answered 503 (over max_connections={self.max_connections}); {how}"
        self._record_end(conn_id, end, reason)

    # -- accounting (called from session threads) -----------------------------------

    def _record_end(
        self, conn_id: int, end: ConnectionEnd, reason: str, *, release: bool = False
    ) -> None:
        """Record how a connection ended; ``release``: it was served, free its slot too.

        The slot is freed in the same step as the end is recorded, so a test that waited
        for the end can connect again at once and be served.
        """
        with self._cond:
            if release:
                self._active -= 1
            index = conn_id - 1
            record = replace(
                self._records[index], end=end, reason=reason, ended_at=time.monotonic()
            )
            self._records[index] = record
            self._cond.notify_all()
        if self._on_event is not None:
            self._on_event(record)

    def _record_execution(self, conn_id: int, request: _Request, body_bytes: int) -> None:
        target = urlsplit(request.target)
        key = request.headers.get("idempotency-key", request.headers.get("x-idempotency-key"))
        execution = Execution(
            connection_id=conn_id,
            method=request.method,
            path=target.path,
            target=request.target,
            idempotency_key=key,
            body_bytes=body_bytes,
            at=time.monotonic(),
        )
        with self._cond:
            self._executions.append(execution)
            index = conn_id - 1
            self._records[index] = replace(
                self._records[index], requests=self._records[index].requests + 1
            )
            self._cond.notify_all()
        if self._on_event is not None:
            self._on_event(execution)

    def _record_received(self) -> None:
        with self._cond:
            self._received_unexecuted += 1
            self._cond.notify_all()

    def _record_closing(self, conn_id: int) -> None:
        with self._cond:
            index = conn_id - 1
            self._records[index] = replace(self._records[index], closing_since=time.monotonic())
            self._cond.notify_all()

    def _dropped(self, conn_id: int) -> bool:
        with self._cond:
            return self._records[conn_id - 1].closing_since is not None

    # -- accounting (public) ---------------------------------------------------------

    @property
    def active_connections(self) -> int:
        """Connections being served now (at most ``max_connections``)."""
        with self._cond:
            return self._active

    @property
    def connections(self) -> tuple[ConnectionRecord, ...]:
        """Every connection accepted so far, in order (``connections[0].id == 1``)."""
        with self._cond:
            return tuple(self._records)

    @property
    def executed(self) -> tuple[Execution, ...]:
        """Every request executed so far, in order."""
        with self._cond:
            return tuple(self._executions)

    @property
    def received_unexecuted(self) -> int:
        """Requests read in full but deliberately not executed
        ([`BlackHole`][rstsafe.testing.BlackHole])."""
        with self._cond:
            return self._received_unexecuted

    def executions(
        self,
        method: str | None = None,
        path: str | None = None,
        idempotency_key: str | None = None,
    ) -> int:
        """Count executed requests matching every filter given (``None`` matches all)."""
        with self._cond:
            return sum(
                1
                for e in self._executions
                if (method is None or e.method == method.upper())
                and (path is None or e.path == path)
                and (idempotency_key is None or e.idempotency_key == idempotency_key)
            )

    def ends(self) -> tuple[ConnectionEnd, ...]:
        """How each connection ended so far, in order (``OPEN`` for those still open)."""
        with self._cond:
            return tuple(r.end for r in self._records)

    def wait_until(
        self, predicate: Callable[[MisbehavingServer], bool], timeout: float = 10.0
    ) -> bool:
        """Wait until ``predicate(server)`` is true; return False if ``timeout`` passes first.

        The predicate is re-evaluated whenever the server records something, so
        tests wait for a condition instead of sleeping.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if predicate(self):
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    def __repr__(self) -> str:
        state = "running" if self._started and not self._stopped else "stopped"
        return f"MisbehavingServer({self.behaviour!r}, url={self.url!r}, {state})"
