"""rstsafe.httpx's network back ends: httpcore's public extension point, wrapped.

The transports build their httpcore pool with ``network_backend=`` one of these. They
wrap httpcore's own back ends (``SyncBackend``; ``AnyIOBackend`` or ``TrioBackend``,
chosen per call as httpcore's default does) and their streams:

* count the bytes of each attempt into the connection's
  ``rstsafe._core.attempts.ConnectionLife`` (what turns "maybe sent" into
  "provably not sent");
* answer httpcore's ``get_extra_info("is_readable")`` with rstsafe's expiry rules first:
  ``HTTP11Connection.has_expired()`` is "idle and readable", and the pool asks it of
  every connection before handing one out and closes the expired ones, so rstsafe's TTL
  is enforced through httpcore's own pool hygiene;
* keep the pool's ``max_connections`` a limit on open *sockets*: httpcore removes an
  expired connection from its list under its lock but closes it after releasing it, one
  connection at a time, while other requests may already be connecting in its place
  (with 1,000 tasks, 20 connections and a server dropping them, 22 to 31 sockets were
  open at once). A connect waits until fewer than ``max_connections`` sockets of this
  back end are open: closing comes before opening;
* keep the origin's *witness* (``OriginKeepAlive.offer_witness``): when the pool closes
  a connection rstsafe expired while it was still open, its socket may stay open,
  unused, to be looked at by the next requests (seen open longer, it proves the server
  keeps idle connections longer; closed, it bounds the server's timeout). It counts as
  an open socket: a connect waiting for a place closes it first.
"""

from __future__ import annotations

import select
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, cast

import anyio
import httpcore

from rstsafe._compat.httpx import POLLED_STREAMS
from rstsafe._core.keepalive import OriginKeepAlive
from rstsafe.httpx._state import _Shared, _Tracker

try:  # as httpcore: sniffio says whether trio runs; without it, asyncio is assumed
    import sniffio
except ImportError:  # pragma: no cover - anyio and trio both bring sniffio
    sniffio = None  # type: ignore[assignment]

# How long a connect waiting for a socket to close sleeps between looks when no close
# wakes it (a socket closed behind the back end's back, e.g. collected unclosed).
_GATE_POLL = 0.05


def _socket_readable(sock: Any) -> bool:
    """Whether ``sock`` is readable, answered as httpcore's own streams answer it.

    A zero-timeout ``poll`` for input (data, end of stream, an error); a closed socket
    counts as readable (its next read is the terminating ``b""``).
    """
    fd: int = sock.fileno()
    if fd < 0:
        return True
    poll = select.poll()  # one per call, as httpcore: a poll object is not thread-safe
    poll.register(fd, select.POLLIN)
    return bool(poll.poll(0))


def _polled_socket(inner: object) -> Any:
    """The raw socket whose readability is ``inner``'s ``is_readable`` answer, or None.

    httpcore's anyio and sync streams answer ``get_extra_info("is_readable")`` by polling
    the raw socket they also give as ``get_extra_info("socket")``. The pool asks every
    idle connection on every assignment, and the anyio stream gets to that socket
    through anyio's typed-attribute lookup (a dict of callbacks built per call): rstsafe
    polls the same socket directly. Only for those exact classes; any other stream
    (trio's, a custom back end's) is asked itself.
    """
    if type(inner) not in POLLED_STREAMS or not hasattr(select, "poll"):
        return None
    sock = cast("Any", inner).get_extra_info("socket")
    if sock is None or not callable(getattr(sock, "fileno", None)):
        return None
    return sock


class _TrackedStream:
    """What the sync and async stream wrappers share: the tracker and the expiry hook."""

    def __init__(self, inner: Any, tracker: _Tracker, gate: _Gate) -> None:
        self._inner = inner
        self._tracker = tracker
        self._gate = gate
        self._polled_socket = _polled_socket(inner)

    def get_extra_info(self, info: str) -> Any:
        """httpcore's pool expires idle connections that are readable: so are rstsafe's."""
        if info == "is_readable":
            # _Tracker.expired's fast path, inlined: the pool asks every idle connection
            # on every request.
            tracker = self._tracker
            shared = tracker.shared
            if (
                not (
                    tracker.epoch == shared.epoch
                    and tracker.stopped is None
                    and shared.now() < tracker.recheck_at
                )
                and tracker.expired()
            ):
                if tracker.ruled_out:
                    tracker.checked_idle(is_open=not self._readable())
                # httpcore's pool closes every connection that answers True (its only
                # caller, through has_expired()): no request may start on it now.
                tracker.pool_closing = True
                return True
            sock = self._polled_socket
            if sock is not None:
                readable = _socket_readable(sock)
            else:
                readable = bool(self._inner.get_extra_info(info))
            if readable:
                tracker.checked_idle(is_open=False)  # closed by the server while idle
                tracker.pool_closing = True
            return readable
        return self._inner.get_extra_info(info)

    def _readable(self) -> bool:
        sock = self._polled_socket
        if sock is not None:
            return _socket_readable(sock)
        return bool(self._inner.get_extra_info("is_readable"))

    def _kept_as_witness(self, close: Callable[[], None]) -> bool:
        """Offer this connection, being closed by the pool, as its origin's witness.

        Only a connection rstsafe expired for its idle time and found still open
        (``witness_candidate``), nothing readable now; not one retired for its request
        count or its lifetime (the user or the server asked for those to go). True:
        kept; ``close`` closes it when the witness is released (seen closed, the
        transport closed, a connect needing its place).
        """
        tracker = self._tracker
        tracker.witness_candidate = False
        life = tracker.life
        if not life.requests_served or self._readable():
            return False
        now = tracker.shared.now()
        if (
            tracker.keepalive.expiry_reason(
                created_at=life.created_at,
                last_used_at=now,  # as if just used: only what is not idle time remains
                requests_served=life.requests_served,
                now=now,
                requests_remaining=life.requests_remaining,
                ttl_draw=0.0,
                lifetime_draw=0.0,
            )
            is not None
        ):
            return False  # retired for its request count or its age: closed, as asked
        gate = self._gate

        def release() -> None:
            gate.witnesses.pop(tracker, None)
            close()

        kept = tracker.keepalive.offer_witness(
            self, last_used_at=life.last_used_at, created_at=life.created_at, close=release
        )
        if kept:
            gate.witnesses[tracker] = tracker.keepalive
        return kept


def _socket_closed(sock: Any) -> bool:
    """True when ``sock`` (a raw socket from ``get_extra_info("socket")``) is closed."""
    fileno = getattr(sock, "fileno", None)
    return callable(fileno) and fileno() == -1


class _Gate:
    """The sockets one back end has open or is opening, held to the pool's ``max_connections``.

    httpcore counts *connections*; a connection it dropped from its list may still have
    an open socket for a while (see the module docstring). A connect enters the gate
    first and waits while ``max_connections`` sockets are open or opening; every close
    through the streams leaves it and wakes the waiters. A socket closed behind the
    streams' back (a connection collected unclosed, a failed TLS handshake httpcore
    closed itself) is noticed by its ``fileno()`` of -1.

    The wait is bounded by the connect timeout (then ``httpcore.ConnectTimeout``, which
    httpx maps to its own). Sync waiters wait on a condition; async ones on anyio events
    set by the close, with a short poll as a backstop.
    """

    __slots__ = (
        "_condition",
        "_limit",
        "_opening",
        "_sockets",
        "_waiters",
        "pending_closes",
        "witnesses",
    )

    def __init__(self, limit: int | None) -> None:
        self._limit = limit
        self._sockets: dict[_Tracker, Any] = {}  # connection -> its raw socket (or None)
        self._opening = 0
        self._condition = threading.Condition()
        self._waiters: list[anyio.Event] = []
        # Witnesses held for this back end's connections (their origins' states), and
        # async streams released as witnesses, to close at the next await.
        self.witnesses: dict[_Tracker, OriginKeepAlive] = {}
        self.pending_closes: list[tuple[_Tracker, Any]] = []

    @property
    def open_sockets(self) -> int:
        """Sockets open or being opened now (for tests and introspection)."""
        with self._condition:
            self._prune()
            return len(self._sockets) + self._opening

    def _prune(self) -> None:
        for tracker, sock in list(self._sockets.items()):
            if sock is not None and _socket_closed(sock):
                del self._sockets[tracker]

    def _take(self) -> bool:
        """Reserve a place for one connect if there is one (under the condition's lock)."""
        assert self._limit is not None
        if len(self._sockets) + self._opening >= self._limit:
            self._prune()
            if len(self._sockets) + self._opening >= self._limit:
                return False
        self._opening += 1
        return True

    def enter(self, timeout: float | None) -> None:
        """Wait (this thread) until a socket may be opened; reserve its place."""
        if self._limit is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while not self._take():
                if self.witnesses:
                    self.release_witnesses()  # sync: closed now
                    continue
                wait = (
                    _GATE_POLL if deadline is None else min(_GATE_POLL, deadline - time.monotonic())
                )
                if wait <= 0:
                    raise _gate_timeout(self._limit)
                self._condition.wait(wait)

    async def aenter(self, timeout: float | None) -> None:
        """Wait (this task) until a socket may be opened; reserve its place."""
        if self._limit is None:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._condition:
                if self._take():
                    return
            if self.witnesses or self.pending_closes:
                self.release_witnesses()
                await self.aclose_pending()
                continue
            wait = _GATE_POLL if deadline is None else min(_GATE_POLL, deadline - time.monotonic())
            if wait <= 0:
                raise _gate_timeout(self._limit)
            event = anyio.Event()
            self._waiters.append(event)
            with anyio.move_on_after(wait):
                await event.wait()

    def opened(self, tracker: _Tracker, sock: Any) -> None:
        """The reserved connect succeeded: count its socket until it closes."""
        if self._limit is None:
            return
        with self._condition:
            self._opening -= 1
            self._sockets[tracker] = sock

    def failed(self) -> None:
        """The reserved connect failed: free its place."""
        if self._limit is None:
            return
        with self._condition:
            self._opening -= 1
            self._wake()

    def moved(self, tracker: _Tracker, sock: Any) -> None:
        """The connection's stream was wrapped (TLS): its raw socket may be a new object."""
        if self._limit is None:
            return
        with self._condition:
            if tracker in self._sockets:
                self._sockets[tracker] = sock

    def closed(self, tracker: _Tracker) -> None:
        """The connection's socket was closed: wake a waiting connect."""
        if self._limit is None:
            return
        with self._condition:
            if self._sockets.pop(tracker, False) is not False:
                self._wake()

    def release_witnesses(self) -> None:
        """Release every witness held for this back end's connections (closing them)."""
        for state in list(self.witnesses.values()):
            state.release_witness()
        self.witnesses.clear()

    def defer_close(self, tracker: _Tracker, stream: Any) -> None:
        """An async stream released as a witness: closed at the next ``aclose_pending``."""
        self.pending_closes.append((tracker, stream))

    async def aclose_pending(self) -> None:
        """Close the async streams released as witnesses since the last call."""
        while self.pending_closes:
            tracker, stream = self.pending_closes.pop()
            try:
                await stream.aclose()
            finally:
                self.closed(tracker)

    def _wake(self) -> None:
        self._condition.notify_all()
        waiters, self._waiters = self._waiters, []
        for event in waiters:
            event.set()


def _gate_timeout(limit: int) -> httpcore.ConnectTimeout:
    return httpcore.ConnectTimeout(
        f"rstsafe: connect timed out waiting for one of the {limit} open sockets"
        " (max_connections) to close"
    )


class _WrappingBackend:
    """What the sync and async network back ends share: the state and the gate."""

    def __init__(self, inner: Any, shared: _Shared, max_connections: int | None) -> None:
        self._inner = inner
        self._shared = shared
        self._gate = _Gate(max_connections)

    @property
    def open_sockets(self) -> int:
        """Sockets this back end has open or is opening now."""
        return self._gate.open_sockets

    @property
    def pending_closes(self) -> bool:
        """Whether async streams released as witnesses wait for ``aclose_pending``."""
        return bool(self._gate.pending_closes)

    def release_witnesses(self) -> None:
        """Release the witnesses of this back end's connections (the transport closes)."""
        self._gate.release_witnesses()

    async def aclose_pending(self) -> None:
        """Close the async streams released as witnesses."""
        await self._gate.aclose_pending()


# ---------------------------------------------------------------------------------------
# Sync.


class _Stream(_TrackedStream, httpcore.NetworkStream):
    _inner: httpcore.NetworkStream

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = self._inner.read(max_bytes, timeout)
        self._tracker.life.bytes_received += len(data)
        return data

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # h11's end of a Content-Length body: nothing to send or count
            return
        self._tracker.wrote(len(buffer))
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        if self._tracker.witness_candidate and self._kept_as_witness(self._close_now):
            return
        self._close_now()

    def _close_now(self) -> None:
        try:
            self._inner.close()
        finally:
            self._gate.closed(self._tracker)

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        try:
            inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            self._gate.closed(self._tracker)  # httpcore's stream closed itself
            raise
        self._gate.moved(self._tracker, inner.get_extra_info("socket"))
        self._tracker.tls_started(inner.get_extra_info("ssl_object"))
        return _Stream(inner, self._tracker, self._gate)


class _Backend(_WrappingBackend, httpcore.NetworkBackend):
    """Wraps ``httpcore.SyncBackend`` (or the back end given)."""

    _inner: httpcore.NetworkBackend

    def __init__(
        self,
        shared: _Shared,
        max_connections: int | None,
        inner: httpcore.NetworkBackend | None = None,
    ) -> None:
        super().__init__(
            inner if inner is not None else httpcore.SyncBackend(), shared, max_connections
        )

    def _opened(self, stream: httpcore.NetworkStream, host: str, port: int) -> _Stream:
        tracker = self._shared.track(host, port)
        self._gate.opened(tracker, stream.get_extra_info("socket"))
        return _Stream(stream, tracker, self._gate)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self._gate.enter(timeout)
        try:
            stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        except BaseException:
            self._gate.failed()
            raise
        return self._opened(stream, host, port)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        self._gate.enter(timeout)
        try:
            stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        except BaseException:
            self._gate.failed()
            raise
        return self._opened(stream, path, 0)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


# ---------------------------------------------------------------------------------------
# Async (asyncio and trio).


class _AsyncStream(_TrackedStream, httpcore.AsyncNetworkStream):
    _inner: httpcore.AsyncNetworkStream

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._inner.read(max_bytes, timeout)
        self._tracker.life.bytes_received += len(data)
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if not buffer:  # h11's end of a Content-Length body: nothing to send or count
            return
        self._tracker.wrote(len(buffer))
        slices = self._tracker.slices(buffer)
        if slices is None:
            await self._inner.write(buffer, timeout)
            return
        raw_socket = self._inner.get_extra_info("socket")
        for index, piece in enumerate(slices):
            if (
                index
                and self._inner.get_extra_info("is_readable")
                and self._tracker.answered_early(raw_socket)
            ):
                return
            try:
                await self._inner.write(piece, timeout)
            except httpcore.WriteError:
                # httpcore would swallow it and read the response anyway; returning
                # instead lets it finish iterating the request body (no abandoned
                # async generator), and the connection is never reused.
                if self._tracker.answered_early(raw_socket):
                    return
                raise

    async def aclose(self) -> None:
        if self._tracker.witness_candidate and self._kept_as_witness(self._defer_close):
            return
        try:
            await self._inner.aclose()
        finally:
            self._gate.closed(self._tracker)

    def _defer_close(self) -> None:
        # Released from sync code (OriginKeepAlive.check_witness): closed at the next
        # await that looks (AsyncTransport.handle_async_request and aclose, a connect
        # waiting for a place).
        self._gate.defer_close(self._tracker, self._inner)

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        except BaseException:
            self._gate.closed(self._tracker)  # httpcore's stream closed itself
            raise
        self._gate.moved(self._tracker, inner.get_extra_info("socket"))
        self._tracker.tls_started(inner.get_extra_info("ssl_object"))
        return _AsyncStream(inner, self._tracker, self._gate)


class _AsyncBackend(_WrappingBackend, httpcore.AsyncNetworkBackend):
    """Wraps httpcore's ``TrioBackend`` under trio, its ``AnyIOBackend`` otherwise.

    Chosen on first use with sniffio, as httpcore's default back end chooses (its
    ``AutoBackend`` is private); or the back end given.
    """

    _inner: httpcore.AsyncNetworkBackend | None

    def __init__(
        self,
        shared: _Shared,
        max_connections: int | None,
        inner: httpcore.AsyncNetworkBackend | None = None,
    ) -> None:
        super().__init__(inner, shared, max_connections)

    def _backend(self) -> httpcore.AsyncNetworkBackend:
        inner = self._inner
        if inner is None:
            library = sniffio.current_async_library() if sniffio is not None else "asyncio"
            inner = self._inner = (
                httpcore.TrioBackend() if library == "trio" else httpcore.AnyIOBackend()
            )
        return inner

    def _opened(self, stream: httpcore.AsyncNetworkStream, host: str, port: int) -> _AsyncStream:
        tracker = self._shared.track(host, port)
        self._gate.opened(tracker, stream.get_extra_info("socket"))
        return _AsyncStream(stream, tracker, self._gate)

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        backend = self._backend()
        await self._gate.aenter(timeout)
        try:
            stream = await backend.connect_tcp(host, port, timeout, local_address, socket_options)
        except BaseException:
            self._gate.failed()
            raise
        return self._opened(stream, host, port)

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        backend = self._backend()
        await self._gate.aenter(timeout)
        try:
            stream = await backend.connect_unix_socket(path, timeout, socket_options)
        except BaseException:
            self._gate.failed()
            raise
        return self._opened(stream, path, 0)

    async def sleep(self, seconds: float) -> None:
        await self._backend().sleep(seconds)
