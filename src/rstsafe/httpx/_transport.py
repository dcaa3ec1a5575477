"""rstsafe for httpx: transports and clients that survive "Connection reset by peer".

How it hooks into httpx and httpcore, without copying their code:

* :class:`Transport` wraps an :class:`httpx.HTTPTransport` (and :class:`AsyncTransport`
  an :class:`httpx.AsyncHTTPTransport`), so request building, TLS, HTTP/2, proxies and
  httpx's exception mapping stay httpx's own.
* The inner transport's httpcore pool gets an ``httpcore.NetworkBackend`` (the public
  extension point of httpcore) that wraps the default one. Its streams count the bytes
  of each attempt into a :class:`~rstsafe._core.attempts.ConnectionLife`, which is what
  turns "maybe sent" into "provably not sent".
* Idle TTL, max lifetime and max requests are enforced through httpcore's own pool
  hygiene: ``HTTP11Connection.has_expired()`` is "idle and
  ``get_extra_info("is_readable")``", and the pool asks it of every connection before
  it hands one out, closing the expired ones. The wrapped stream answers True when the
  socket is readable (the server closed it) *or* rstsafe's per-origin rules say the
  connection is too old. httpcore's own ``keepalive_expiry`` is turned off for HTTP/1.1
  pools so rstsafe's TTL (configured, ``Keep-Alive`` header, or learned) rules alone.
* The transport sets a context variable (one small record per attempt) before calling
  the inner transport; the first write of an attempt binds that record to the
  connection it went to. Context variables are per thread and per task, so this works
  for threads (sync) and for asyncio and trio tasks alike.

The sync and async transports are short loops around :class:`_RequestDriver`, which
holds every decision (through :class:`~rstsafe._core.attempts.RequestAttempts`).

The one private attribute touched: httpx does not let a caller pass
``network_backend=`` to ``HTTPTransport``, so the backend is swapped on the pool it
built (``transport._pool._network_backend``, httpcore's documented constructor
argument, stored under that name by ``ConnectionPool``, ``HTTPProxy`` and
``SOCKSProxy`` alike). A missing attribute fails loudly at construction. httpcore's own
stream classes (``AnyIOStream``, ``SyncStream``) are imported from its private modules
only to recognise them: their ``is_readable`` is a poll of the raw socket, which the
wrapped stream does itself (the anyio stream builds anyio's attribute table on every
call, and the pool asks every idle connection on every assignment). Should they move,
every stream is simply asked.

HTTP/2 (with ``h2`` installed): streams of many requests share one connection, and
httpcore writes whatever frames are pending from whichever task holds the write lock,
so bytes cannot be attributed to one request. On a multiplexed connection rstsafe
therefore reports ``bytes_sent`` and ``bytes_received`` as unknown: failures are
classified from the exception alone (never "provably not sent" from a byte count), so
retries are coarser but never unsafe. httpcore's HTTP/2 connections do not consult the
stream for expiry, so their idle TTL is httpcore's ``keepalive_expiry``, which rstsafe
sets to its configured (or default) TTL when HTTP/2 is enabled.
"""

from __future__ import annotations

import contextvars
import dataclasses
import os
import select
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any, cast

import anyio
import httpcore
import httpx

from rstsafe._core.attempts import ConnectionLife, RequestAttempts
from rstsafe._core.classify import ConnectionFacts, Origin
from rstsafe._core.clock import Clock, MonotonicClock
from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError
from rstsafe._core.idempotency import BodyInfo, BodyKind, replayability
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry, OriginKeepAlive
from rstsafe._core.retry import RetryDecision, RetryPolicy
from rstsafe.sockets._helpers import SocketOption, httpx_socket_options

try:  # httpcore's own stream classes, only to recognise them (see _polled_socket)
    from httpcore._backends.anyio import AnyIOStream as _AnyIOStream
    from httpcore._backends.sync import SyncStream as _SyncStream
except ImportError:  # pragma: no cover - a future httpcore: always ask the stream
    _POLLED_STREAMS: frozenset[type] = frozenset()
else:
    _POLLED_STREAMS = frozenset({_AnyIOStream, _SyncStream})

__all__ = ("AsyncClient", "AsyncTransport", "Client", "Transport", "error_classes")

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# Large request writes (async back ends) go out in slices of this size, with a look
# for an early error response (413, 401 ...) between slices. anyio's asyncio transport
# does not read while a send waits for the buffer to drain, and a reset arriving then
# closes it with the response unread: plain httpx on asyncio loses such a 413. When the
# server has answered with an error status, the rest of the upload is dropped (the
# connection is never reused) and httpcore reads the response. A reset that arrives
# within the same drain wait as the response still loses it (anyio's transport is out
# of reach); a server that lingers after answering, as nginx does, leaves time to see it.
_UPLOAD_SLICE = 256 * 1024

# Entries kept in the transport's per-origin caches before they are cleared.
_MAX_CACHED_ORIGINS = 4096

# httpx's own default (httpx.DEFAULT_LIMITS is not exported in every version).
_DEFAULT_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20)

# ---------------------------------------------------------------------------------------
# Per-connection and per-attempt state (no I/O).


class _Shared:
    """What every connection and request of one transport shares."""

    __slots__ = (
        "clock",
        "epoch",
        "h2_prior_knowledge",
        "last_header",
        "now",
        "ok_idle",
        "origins",
        "policy",
        "registry",
        "stale_before",
        "states",
    )

    def __init__(
        self,
        keepalive: KeepAlive | None,
        retry: RetryPolicy | None,
        *,
        h2_prior_knowledge: bool,
        clock: Clock | None = None,
    ) -> None:
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        # The pool asks every idle connection on every request: call the C function
        # directly for the real clock.
        self.now: Callable[[], float] = (
            time.monotonic if isinstance(self.clock, MonotonicClock) else self.clock.now
        )
        self.registry = KeepAliveRegistry(keepalive, clock=self.clock)
        self.policy = retry if retry is not None else RetryPolicy()
        self.h2_prior_knowledge = h2_prior_knowledge
        # Per origin: idle connections last used at or before this time are expired
        # (set when a reused connection turned out stale; see expire_idle).
        self.stale_before: dict[Origin, float] = {}
        # Bumped whenever what decides expiry may have shortened (a stale connection, a
        # new Keep-Alive header): connections then re-run the full check.
        self.epoch = 0
        self.last_header: dict[Origin, str] = {}
        # Per origin: (epoch, the longest idle after which a reuse was reported to the
        # keep-alive state). A shorter one teaches it nothing until the epoch changes.
        self.ok_idle: dict[Origin, tuple[int, float]] = {}
        # A lock-free cache of the registry's states (dict reads are atomic).
        self.states: dict[Origin, OriginKeepAlive] = {}
        self.origins: dict[tuple[bytes, bytes], Origin] = {}

    def origin_of(self, url: httpx.URL) -> Origin:
        """The origin of a request URL (cached by scheme and netloc)."""
        key = (url.raw_scheme, url.netloc)
        origin = self.origins.get(key)
        if origin is None:
            if len(self.origins) >= _MAX_CACHED_ORIGINS:  # a crawler: stay bounded
                self.origins.clear()
            origin = self.origins[key] = _origin_of(url)
        return origin

    def state(self, origin: Origin) -> OriginKeepAlive:
        """The keep-alive state of ``origin``."""
        state = self.states.get(origin)
        if state is None:
            if len(self.states) >= _MAX_CACHED_ORIGINS:
                self.states.clear()
                self.ok_idle.clear()
            state = self.states[origin] = self.registry.for_origin(origin)
        return state

    def reused_ok(self, origin: Origin, idle: float) -> None:
        """A reused connection answered after ``idle`` seconds: teach the origin's state.

        The state keeps the largest such idle (a lower bound on the server's timeout),
        so reporting a smaller one is skipped, unless something changed since (a stale
        connection, a new header: the epoch), when the state may have dropped it.
        """
        epoch = self.epoch
        seen = self.ok_idle.get(origin)
        if seen is None or seen[0] != epoch or idle > seen[1]:
            self.state(origin).observe_reused_ok(idle)
            self.ok_idle[origin] = (epoch, idle)

    def saw_header(self, origin: Origin, keep_alive: str) -> None:
        """A response carried ``Keep-Alive``; a new value may change the TTL."""
        if self.last_header.get(origin) != keep_alive:
            self.last_header[origin] = keep_alive
            self.epoch += 1

    def expire_idle(self, origin: Origin | None, last_used_at: float) -> None:
        """Expire every idle connection to ``origin`` idle at least since ``last_used_at``.

        A connection found stale after ``t`` seconds idle says the server closes
        connections idle that long: every other connection to the origin idle as long
        is closed by the pool too, instead of being tried (and failing) one by one.
        """
        if origin is None:
            return
        # A lost update between two threads only keeps the smaller cutoff: harmless.
        if last_used_at > self.stale_before.get(origin, float("-inf")):
            self.stale_before[origin] = last_used_at
        self.epoch += 1

    def track(self, host: str, port: int) -> _Tracker:
        """The tracker of a connection being opened now (in the context of an attempt)."""
        attempt = _CURRENT.get()
        origin = attempt.origin if attempt is not None else Origin("http", host.lower(), int(port))
        return _Tracker(self, origin)


class _Attempt:
    """One attempt of one request: its origin and, after the first write, its connection.

    The request is kept to decide, only for large uploads, whether an early response
    may stop the upload (not for requests sending ``Expect:``, whose interim response
    must not).
    """

    __slots__ = ("_may_probe", "idle", "origin", "request", "reused", "tracker")

    def __init__(self, origin: Origin, request: httpx.Request | None = None) -> None:
        self.origin = origin
        self.request = request
        self.tracker: _Tracker | None = None
        self.reused = False  # set with ``idle`` when bound (see _Tracker.wrote)
        self.idle = 0.0
        self._may_probe: bool | None = None

    def may_probe(self, policy: RetryPolicy) -> bool:
        """True when a stale connection would cost this attempt only an immediate retry.

        Such an attempt may reuse a connection past the TTL (a probe; see
        ``OriginKeepAlive.probe_limit``). Worked out on first need: most requests find
        a connection within its TTL and never ask.
        """
        answer = self._may_probe
        if answer is None:
            request = self.request
            answer = self._may_probe = request is not None and policy.may_probe(
                replayability(
                    request.method,
                    request.headers.raw,
                    _body_info(request.stream),
                    rules=policy.rules,
                )
            )
        return answer

    def watch_early_response(self) -> bool:
        """True unless the request sends ``Expect:``."""
        return self.request is not None and "expect" not in self.request.headers


_CURRENT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "rstsafe_httpx_attempt", default=None
)


class _Tracker:
    """One connection: its life, its origin's keep-alive state, whether it multiplexes."""

    __slots__ = (
        "epoch",
        "keepalive",
        "life",
        "multiplexed",
        "probe_for",
        "recheck_at",
        "ruled_out",
        "shared",
        "stopped",
        "tls",
    )

    def __init__(self, shared: _Shared, origin: Origin) -> None:
        self.shared = shared
        self.life = ConnectionLife(origin, clock=shared.clock)
        self.keepalive: OriginKeepAlive = shared.state(origin)
        # Until ``recheck_at`` (and while ``epoch`` matches the shared one) the full
        # expiry check is known to pass: the pool asks every connection on every
        # request, so the common case must be a comparison.
        self.epoch = -1
        self.recheck_at = float("-inf")
        self.multiplexed = shared.h2_prior_knowledge
        self.tls = False
        # The attempt whose upload was stopped by an early response; the connection
        # is then never reused (httpcore believes the body was sent in full).
        self.stopped: _Attempt | None = None
        # The attempt for which the last check let this connection through past its
        # TTL, as a probe; any other attempt must not send on it (see wrote()).
        self.probe_for: _Attempt | None = None
        # The last check expired it by rstsafe's rules (TTL, lifetime, requests), as
        # opposed to a stale cutoff or a stopped upload.
        self.ruled_out = False

    def wrote(self, size: int) -> None:
        """Count bytes about to be written; the first write of an attempt binds it here."""
        attempt = _CURRENT.get()
        if attempt is not None and attempt.tracker is None:
            life = self.life
            probe_for = self.probe_for
            if probe_for is not None:
                self.probe_for = None
                if probe_for is not attempt and life.expiry_reason(self.keepalive) is not None:
                    # Let through past its TTL as a probe while the pool was assigning
                    # connections for another request (httpcore assigns every queued
                    # request in one pass); this one must not risk it. Nothing is
                    # written: httpcore closes the connection and assigns another.
                    self.recheck_at = float("-inf")
                    raise httpcore.ConnectionNotAvailable(
                        "rstsafe: connection idle past its TTL, kept for a request that"
                        " may probe; this request goes on another connection"
                    )
            attempt.tracker = self
            attempt.reused = life.requests_served > 0
            attempt.idle = life.idle_seconds()
            life.begin_attempt()
        # Counted before the write: a write that fails may still have sent part of it.
        self.life.bytes_sent += size

    def expired(self) -> bool:
        """True when rstsafe's rules say this idle connection must not be reused."""
        shared = self.shared
        if self.epoch == shared.epoch and self.stopped is None and shared.now() < self.recheck_at:
            return False
        self.ruled_out = False
        if self.stopped is not None:
            return True
        epoch = shared.epoch
        life = self.life
        cutoff = shared.stale_before.get(life.origin) if life.origin is not None else None
        if cutoff is not None and life.last_used_at <= cutoff:
            return True
        attempt = _CURRENT.get()
        probing = False

        def may_probe() -> bool:
            nonlocal probing
            # Not for a retry (attempt.tracker set): those go on fresh connections.
            probing = (
                attempt is not None and attempt.tracker is None and attempt.may_probe(shared.policy)
            )
            return probing

        if life.expiry_reason(self.keepalive, probe=may_probe) is not None:
            self.ruled_out = True
            return True
        if probing:  # past the TTL: only this attempt may use it
            self.probe_for = attempt
            return False
        self.probe_for = None
        # The earliest moment the check could fail with the same inputs: the TTL and
        # lifetime at their most jittered (jitter only shortens).
        config = self.keepalive.config
        keep = 1.0 - config.jitter
        recheck = life.last_used_at + self.keepalive.idle_ttl().before_jitter * keep
        if config.max_lifetime is not None:
            recheck = min(recheck, life.created_at + config.max_lifetime * keep)
        self.epoch, self.recheck_at = epoch, recheck
        return False

    def checked_idle(self, *, is_open: bool) -> None:
        """Learn from a liveness check of this idle connection: still open, or closed."""
        life = self.life
        if not life.requests_served or self.multiplexed:
            return
        if is_open:
            self.keepalive.observe_open(life.idle_seconds())
        else:
            self.keepalive.observe_closed_idle(life.idle_seconds())
            self.shared.epoch += 1  # the learned TTL may have shortened

    def slices(self, buffer: bytes) -> Iterator[bytes] | None:
        """Slices to write ``buffer`` in, checking for an early response between them.

        None (write it whole) for small writes, TLS (unread session tickets make the raw
        socket readable), HTTP/2, and requests sending ``Expect:``.
        """
        if self.stopped is not None and self.stopped is _CURRENT.get():
            return iter(())  # the upload was stopped: drop the rest of the request
        if len(buffer) <= _UPLOAD_SLICE or self.tls or self.multiplexed:
            return None
        attempt = _CURRENT.get()
        if attempt is None or not attempt.watch_early_response():
            return None
        return (buffer[i : i + _UPLOAD_SLICE] for i in range(0, len(buffer), _UPLOAD_SLICE))

    def answered_early(self, raw_socket: object) -> bool:
        """True when the server sent an error status while the request is uploading.

        Peeks (``MSG_PEEK``, on a duplicate of the descriptor) at what is readable: an
        ``HTTP/1.x 4xx/5xx`` status line, or a closed or reset connection, stops the
        upload. A 1xx or 2xx (a full-duplex server) does not. On True the attempt is
        marked stopped.
        """
        fileno = getattr(raw_socket, "fileno", None)
        if not callable(fileno):
            return False
        try:
            with socket.socket(fileno=os.dup(fileno())) as peek:
                head = peek.recv(16, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return False
        except OSError:
            head = b""  # reset: the upload is over either way
        if head and not _error_status(head):
            return False
        self.stopped = _CURRENT.get()
        return True

    def tls_started(self, ssl_object: object) -> None:
        """Note the TLS session, and whether ALPN chose HTTP/2 (multiplexed)."""
        self.tls = True
        # httpcore's sync back end gives the C-level ``_ssl._SSLSocket``, the anyio one
        # an ``ssl.SSLObject``: both have ``selected_alpn_protocol()``.
        selected = getattr(ssl_object, "selected_alpn_protocol", None)
        if callable(selected) and selected() == "h2":
            self.multiplexed = True

    def finisher(self, keep_alive: str | None) -> Callable[[], None]:
        """A callable recording a response read completely (once)."""
        done = False

        def finish() -> None:
            nonlocal done
            if not done:
                done = True
                life = self.life
                life.finish_request(keep_alive)
                # A later last_used_at only moves the TTL's expiry later, so the cached
                # recheck time stays safe; a request limit (configured or announced)
                # can expire the connection now: check in full.
                if (
                    self.keepalive.config.max_requests is not None
                    or life.requests_remaining is not None
                    or keep_alive is not None
                ):
                    self.recheck_at = float("-inf")

        return finish


def _error_status(head: bytes) -> bool:
    """True for the start of an ``HTTP/1.x`` response with a 4xx or 5xx status."""
    code = head[9:12]
    return head.startswith(b"HTTP/1.") and code.isdigit() and len(code) == 3 and code >= b"400"


def _keep_alive_header(raw: list[tuple[bytes, bytes]]) -> str | None:
    """The ``Keep-Alive`` response header (latin-1), joined if repeated; None if absent."""
    values = [v for k, v in raw if len(k) == 10 and k.lower() == b"keep-alive"]
    return b", ".join(values).decode("latin-1") if values else None


def _origin_of(url: httpx.URL) -> Origin:
    scheme = url.scheme.lower()
    port = url.port if url.port is not None else _DEFAULT_PORTS.get(scheme, 0)
    return Origin(scheme, url.host.lower(), port)


def _body_info(stream: object) -> BodyInfo:
    # httpx builds a ByteStream for content=bytes/str, data=, json= and no body at all:
    # it yields the same bytes every time. Generators, async iterators, files and
    # multipart streams are read once as far as rstsafe can prove.
    if isinstance(stream, httpx.ByteStream):
        return BodyInfo(kind=BodyKind.BYTES)
    return BodyInfo(kind=BodyKind.STREAM)


_ERROR_CLASSES: dict[type[httpx.TransportError], tuple[type[RstsafeError], type[RstsafeError]]] = {}


def error_classes(
    base: type[httpx.TransportError],
) -> tuple[type[RstsafeError], type[RstsafeError]]:
    """The ``(not sent, maybe sent)`` error classes rstsafe raises for an httpx error class.

    For ``httpx.ReadError`` they are ``NotSentReadError(RequestNotSentError,
    httpx.ReadError)`` and ``MaybeSentReadError(RequestMaybeSentError, httpx.ReadError)``:
    existing ``except httpx.ReadError`` (or ``httpx.TransportError``) clauses keep
    working, and ``except rstsafe.RequestNotSentError`` sees the rstsafe facts. Created
    once per httpx class and cached, so ``isinstance`` checks against them are stable.
    """
    # An rstsafe class given back (nested transports): use the httpx class under it.
    while issubclass(base, RstsafeError):
        base = next(
            c
            for c in base.__mro__[1:]
            if issubclass(c, httpx.TransportError) and not issubclass(c, RstsafeError)
        )
    pair = _ERROR_CLASSES.get(base)
    if pair is None:
        name = base.__name__
        doc = f"rstsafe gave up on a request; httpx raised {name}."
        not_sent = type(
            f"NotSent{name}",
            (RequestNotSentError, base),
            {"__module__": "rstsafe.httpx", "__doc__": doc + " Nothing reached the server."},
        )
        maybe_sent = type(
            f"MaybeSent{name}",
            (RequestMaybeSentError, base),
            {"__module__": "rstsafe.httpx", "__doc__": doc + " The server may have got it."},
        )
        pair = (cast("type[RstsafeError]", not_sent), cast("type[RstsafeError]", maybe_sent))
        _ERROR_CLASSES[base] = pair
    return pair


class _RequestDriver:
    """One request's attempts: everything the sync and async loops decide, without I/O."""

    __slots__ = ("_attempt", "_lazy_attempts", "_origin", "_request", "_shared", "_started_at")

    def __init__(self, request: httpx.Request, shared: _Shared) -> None:
        self._request = request
        self._shared = shared
        self._started_at = shared.now()  # RetryPolicy.timeout counts from here
        self._origin = shared.origin_of(request.url)
        self._attempt = _Attempt(self._origin)
        self._lazy_attempts: RequestAttempts | None = None

    @property
    def _attempts(self) -> RequestAttempts:
        """The request's attempts, built on first need (a failure, a retryable status)."""
        attempts = self._lazy_attempts
        if attempts is None:
            request, policy = self._request, self._shared.policy
            replay = replayability(
                request.method, request.headers.raw, _body_info(request.stream), rules=policy.rules
            )
            attempts = self._lazy_attempts = RequestAttempts(
                policy=policy,
                replay=replay,
                keepalive=self._shared.state(self._origin),
                clock=self._shared.clock,
                started_at=self._started_at,
            )
        return attempts

    def begin(self) -> contextvars.Token[_Attempt | None]:
        """Start an attempt: the streams bind to it on its first write."""
        self._attempt = _Attempt(self._origin, self._request)
        return _CURRENT.set(self._attempt)

    @staticmethod
    def end(token: contextvars.Token[_Attempt | None]) -> None:
        """End the attempt started by :meth:`begin`."""
        _CURRENT.reset(token)

    def facts(self) -> ConnectionFacts:
        """The facts of the current attempt."""
        tracker = self._attempt.tracker
        if tracker is None:
            # Nothing written on any connection: a connect or pool failure (the
            # exception says so), or an HTTP/2 request whose frames another task wrote.
            return ConnectionFacts(origin=self._origin)
        facts = tracker.life.facts()
        if tracker.multiplexed:
            facts = dataclasses.replace(facts, bytes_sent=None, bytes_received=None)
        return facts

    def failed(self, exc: httpx.TransportError) -> RetryDecision:
        """Learn from a failed attempt; return the decision, or raise the rstsafe error."""
        decision = self._attempts.failed(exc, self.facts())
        failure = self._attempts.last_failure
        if failure is not None and failure.stale:
            self._shared.epoch += 1  # the learned TTL may have shortened
        if not decision.retry:
            not_sent, maybe_sent = error_classes(type(exc))
            raise self._attempts.error(
                not_sent_cls=not_sent, maybe_sent_cls=maybe_sent, request=self._request
            ) from exc
        tracker = self._attempt.tracker
        if decision.fresh_connection and tracker is not None:
            self._shared.expire_idle(tracker.life.origin, tracker.life.last_used_at)
        return decision

    def responded(self, response: httpx.Response) -> RetryDecision | None:
        """Learn from a response; a decision to resend it (429/503 policy) or None."""
        keep_alive = _keep_alive_header(response.headers.raw)
        status = response.status_code
        attempt, shared = self._attempt, self._shared
        decision: RetryDecision | None = None
        if keep_alive is None and status not in shared.policy.retry_statuses:
            # The common case, kept cheap: all there is to learn is a successful reuse.
            if attempt.reused and not (attempt.tracker and attempt.tracker.multiplexed):
                shared.reused_ok(self._origin, attempt.idle)
        else:
            decision = self._attempts.succeeded(
                self.facts(),
                status=status,
                keep_alive=keep_alive,
                retry_after=response.headers.get("retry-after"),
            )
            if keep_alive is not None:  # after the state learned it
                shared.saw_header(self._origin, keep_alive)
        tracker = attempt.tracker
        if decision is None and tracker is not None:
            finish = tracker.finisher(keep_alive)
            if isinstance(response.stream, httpx.SyncByteStream):
                response.stream = _ResponseStream(response.stream, finish)
            else:
                response.stream = _AsyncResponseStream(response.stream, finish)
        return decision


# ---------------------------------------------------------------------------------------
# Configuration shared by both transports.


def _inner_limits(limits: httpx.Limits, keepalive: KeepAlive, http2: bool) -> httpx.Limits:
    """The inner pool's limits: rstsafe's TTL replaces httpcore's keepalive_expiry.

    HTTP/2 connections never consult the stream for expiry, so with HTTP/2 enabled
    httpcore's timer stays on, set to rstsafe's configured (or default) TTL.
    """
    expiry: float | None = None
    if http2:
        server = keepalive.server_keepalive
        expiry = keepalive.ttl_below(server) if server is not None else keepalive.default_idle_ttl
    return httpx.Limits(
        max_connections=limits.max_connections,
        max_keepalive_connections=limits.max_keepalive_connections,
        keepalive_expiry=expiry,
    )


def _install_backend(inner: object, wrap: Callable[[Any], Any]) -> None:
    pool = getattr(inner, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if pool is None or backend is None:  # pragma: no cover - a future httpx/httpcore
        raise RuntimeError(
            "rstsafe.httpx needs httpx's HTTPTransport._pool._network_backend "
            "(httpx 0.27/0.28 with httpcore 1.x); this httpx has none"
        )
    pool._network_backend = wrap(backend)


class _TransportBase:
    """Construction and introspection shared by :class:`Transport` and :class:`AsyncTransport`.

    Subclasses name the httpx transport they wrap and the network backend wrapper.
    """

    _inner_class: Callable[..., Any]
    _backend_class: Callable[[Any, _Shared], Any]

    def __init__(
        self,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        verify: ssl.SSLContext | str | bool = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        proxy: Any = None,
        uds: str | None = None,
        local_address: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Build the inner httpx transport and put rstsafe's network backend under it.

        See :class:`Transport` for the arguments.
        """
        config = keepalive if keepalive is not None else KeepAlive()
        shared = _Shared(config, retry, h2_prior_knowledge=http2 and not http1, clock=clock)
        self._shared = shared
        self._inner = self._inner_class(
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=_inner_limits(limits, config, http2),
            proxy=proxy,
            uds=uds,
            local_address=local_address,
            retries=0,  # connect failures are rstsafe's to retry, with backoff
            socket_options=httpx_socket_options(socket_options),
        )
        _install_backend(self._inner, lambda inner: self._backend_class(inner, shared))

    @property
    def keepalive_registry(self) -> KeepAliveRegistry:
        """The per-origin keep-alive states (header seen, what was learned)."""
        return self._shared.registry

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy."""
        return self._shared.policy


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
    if type(inner) not in _POLLED_STREAMS or not hasattr(select, "poll"):
        return None
    sock = cast("Any", inner).get_extra_info("socket")
    if sock is None or not callable(getattr(sock, "fileno", None)):
        return None
    return sock


class _TrackedStream:
    """What the sync and async stream wrappers share: the tracker and the expiry hook."""

    def __init__(self, inner: Any, tracker: _Tracker) -> None:
        self._inner = inner
        self._tracker = tracker
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
                return True
            sock = self._polled_socket
            if sock is not None:
                readable = _socket_readable(sock)
            else:
                readable = bool(self._inner.get_extra_info(info))
            if readable:
                tracker.checked_idle(is_open=False)  # closed by the server while idle
            return readable
        return self._inner.get_extra_info(info)

    def _readable(self) -> bool:
        sock = self._polled_socket
        if sock is not None:
            return _socket_readable(sock)
        return bool(self._inner.get_extra_info("is_readable"))


class _WrappingBackend:
    """What the sync and async network back ends share: the inner back end and the state."""

    def __init__(self, inner: Any, shared: _Shared) -> None:
        self._inner = inner
        self._shared = shared


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
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, timeout)
        self._tracker.tls_started(inner.get_extra_info("ssl_object"))
        return _Stream(inner, self._tracker)


class _Backend(_WrappingBackend, httpcore.NetworkBackend):
    _inner: httpcore.NetworkBackend

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _Stream(stream, self._shared.track(host, port))

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_unix_socket(path, timeout, socket_options)
        return _Stream(stream, self._shared.track(path, 0))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _ResponseStream(httpx.SyncByteStream):
    __slots__ = ("_finish", "_inner")

    def __init__(self, inner: httpx.SyncByteStream, finish: Callable[[], None]) -> None:
        self._inner = inner
        self._finish = finish

    def __iter__(self) -> Iterator[bytes]:
        yield from self._inner
        self._finish()  # read to the end: the connection goes back to the pool

    def close(self) -> None:
        self._inner.close()


class Transport(_TransportBase, httpx.BaseTransport):
    """An httpx transport that survives connection resets (for ``httpx.Client``).

    Wraps an `httpx.HTTPTransport` built from the same arguments, so TLS,
    HTTP/2, proxies and limits work as in httpx. On top of it:

    * idle connections are closed before the server's keep-alive runs out (per-origin
      TTL: ``KeepAlive.server_keepalive``, the ``Keep-Alive`` header, or learned from
      observed closes), and after ``max_lifetime`` or ``max_requests``;
    * a request that failed on a stale reused connection is resent at once on a fresh
      one when that is safe, other transient failures after a backoff;
    * a request that may have reached the server is resent only when idempotent (method
      or ``Idempotency-Key``) and its body is bytes; streamed bodies are never resent;
    * when it gives up it raises a subclass of the httpx error (``httpx.ReadError``,
      ``httpx.RemoteProtocolError`` ...) that is also a
      [`rstsafe.RequestNotSentError`][rstsafe.RequestNotSentError] or
      [`rstsafe.RequestMaybeSentError`][rstsafe.RequestMaybeSentError]
      carrying the connection facts and every attempt.

    Example:
        ```python
        transport = rstsafe.httpx.Transport(keepalive=KeepAlive(server_keepalive=75))
        client = httpx.Client(transport=transport)
        ```

    Args:
        keepalive: Idle TTL, lifetime and learning (default ``KeepAlive()``).
        retry: When to resend (default ``RetryPolicy()``).
        socket_options: Socket options for new connections; default TCP keepalive
            ([`rstsafe.keepalive_options`][rstsafe.keepalive_options]); ``[]`` for none. TCP_NODELAY
            is kept.
        verify: As ``httpx.HTTPTransport``.
        cert: As ``httpx.HTTPTransport``.
        trust_env: As ``httpx.HTTPTransport``.
        http1: As ``httpx.HTTPTransport``.
        http2: As ``httpx.HTTPTransport`` (needs ``h2``).
        limits: Pool limits; ``keepalive_expiry`` is replaced by rstsafe's TTL.
        proxy: As ``httpx.HTTPTransport``.
        uds: As ``httpx.HTTPTransport``.
        local_address: As ``httpx.HTTPTransport``.
        clock: Monotonic clock (tests).
    """

    _inner: httpx.HTTPTransport
    _inner_class = httpx.HTTPTransport
    _backend_class = _Backend

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request, resending it when that is safe (see the class docstring)."""
        driver = _RequestDriver(request, self._shared)
        while True:
            token = driver.begin()
            try:
                response = self._inner.handle_request(request)
            except httpx.TransportError as exc:
                decision = driver.failed(exc)
            else:
                status_retry = driver.responded(response)
                if status_retry is None:
                    return response
                response.close()
                decision = status_retry
            finally:
                driver.end(token)
            if decision.delay:
                time.sleep(decision.delay)

    def close(self) -> None:
        """Close every pooled connection."""
        self._inner.close()


# ---------------------------------------------------------------------------------------
# Async (asyncio and trio, through httpcore's AutoBackend and anyio).


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
        await self._inner.aclose()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        inner = await self._inner.start_tls(ssl_context, server_hostname, timeout)
        self._tracker.tls_started(inner.get_extra_info("ssl_object"))
        return _AsyncStream(inner, self._tracker)


class _AsyncBackend(_WrappingBackend, httpcore.AsyncNetworkBackend):
    _inner: httpcore.AsyncNetworkBackend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _AsyncStream(stream, self._shared.track(host, port))

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(path, timeout, socket_options)
        return _AsyncStream(stream, self._shared.track(path, 0))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _AsyncResponseStream(httpx.AsyncByteStream):
    """The response body; reading it to the end records the request as finished.

    An iterator class rather than an async generator: asyncio and trio track every
    async generator (finalizer hooks), a cost paid on every response.
    """

    __slots__ = ("_finish", "_inner", "_parts")

    def __init__(self, inner: httpx.AsyncByteStream, finish: Callable[[], None]) -> None:
        self._inner = inner
        self._finish = finish
        self._parts: AsyncIterator[bytes] | None = None

    def __aiter__(self) -> AsyncIterator[bytes]:
        self._parts = self._inner.__aiter__()
        return self

    async def __anext__(self) -> bytes:
        assert self._parts is not None
        try:
            return await self._parts.__anext__()
        except StopAsyncIteration:
            self._finish()  # read to the end: the connection goes back to the pool
            raise

    async def aclose(self) -> None:
        await self._inner.aclose()


class AsyncTransport(_TransportBase, httpx.AsyncBaseTransport):
    """The async twin of [`Transport`][rstsafe.httpx.Transport], for ``httpx.AsyncClient`` on
    asyncio or trio.

    Same arguments and behaviour as [`Transport`][rstsafe.httpx.Transport]; backoff sleeps with
    `anyio.sleep`, so it runs wherever httpx runs.
    """

    _inner: httpx.AsyncHTTPTransport
    _inner_class = httpx.AsyncHTTPTransport
    _backend_class = _AsyncBackend

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send the request, resending it when that is safe (see
        [`Transport`][rstsafe.httpx.Transport])."""
        driver = _RequestDriver(request, self._shared)
        while True:
            token = driver.begin()
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError as exc:
                decision = driver.failed(exc)
            else:
                status_retry = driver.responded(response)
                if status_retry is None:
                    return response
                await response.aclose()
                decision = status_retry
            finally:
                driver.end(token)
            if decision.delay:
                await anyio.sleep(decision.delay)

    async def aclose(self) -> None:
        """Close every pooled connection."""
        await self._inner.aclose()


# ---------------------------------------------------------------------------------------
# Ready clients.


class _ClientMixin:
    """Builds every transport an httpx client makes for itself as an rstsafe transport.

    ``httpx.Client.__init__`` calls ``_init_transport`` for its default transport and
    ``_init_proxy_transport`` for each proxy (given, or from the environment with
    ``trust_env``), passing ``verify``, ``cert``, ``http1``, ``http2``, ``limits`` and
    ``trust_env``; overriding those two keeps httpx's own argument handling.
    """

    _transport_class: type[_TransportBase]
    _rstsafe: dict[str, Any]

    def __init__(
        self,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        **kwargs: Any,
    ) -> None:
        """Take rstsafe's settings; pass everything else to the httpx client."""
        self._rstsafe = {
            "keepalive": keepalive,
            "retry": retry,
            "socket_options": None if socket_options is None else list(socket_options),
        }
        super().__init__(**kwargs)

    def _init_transport(  # noqa: PLR0917 - httpx's signature, called positionally
        self,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
        transport: Any = None,
    ) -> Any:
        if transport is not None:
            return transport  # given by the caller: used as is, as httpx does
        return self._init_proxy_transport(None, verify, cert, trust_env, http1, http2, limits)

    def _init_proxy_transport(  # noqa: PLR0917 - httpx's signature
        self,
        proxy: Any,
        verify: Any = True,
        cert: Any = None,
        trust_env: bool = True,
        http1: bool = True,
        http2: bool = False,
        limits: httpx.Limits = _DEFAULT_LIMITS,
    ) -> Any:
        return self._transport_class(
            proxy=proxy,
            verify=verify,
            cert=cert,
            trust_env=trust_env,
            http1=http1,
            http2=http2,
            limits=limits,
            **self._rstsafe,
        )


class Client(_ClientMixin, httpx.Client):
    """An ``httpx.Client`` whose transports are rstsafe [`Transport`][rstsafe.httpx.Transport]
    objects.

    Takes every ``httpx.Client`` argument. The transports httpx builds itself (the
    default one and one per proxy, including proxies from the environment) are rstsafe
    transports, configured here in one place, with ``verify``, ``cert``, ``http1``,
    ``http2``, ``limits`` and ``trust_env`` passed through as httpx does. A
    ``transport=`` or ``mounts=`` you give is used as is.

    Args:
        keepalive: Idle TTL, lifetime and learning (default ``KeepAlive()``).
        retry: When to resend (default ``RetryPolicy()``).
        socket_options: Socket options for new connections (default TCP keepalive).
        **kwargs: Everything ``httpx.Client`` takes.
    """

    _transport_class = Transport


class AsyncClient(_ClientMixin, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose transports are rstsafe
    [`AsyncTransport`][rstsafe.httpx.AsyncTransport] objects.

    The async twin of [`Client`][rstsafe.httpx.Client] (asyncio and trio); same arguments.
    """

    _transport_class = AsyncTransport
