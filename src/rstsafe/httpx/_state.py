"""rstsafe.httpx's per-transport, per-connection and per-attempt state (no I/O).

* ``_Shared``: what every connection and request of one transport shares: the
  per-origin keep-alive states, the retry policy, the stale cutoffs.
* ``_Attempt``: one attempt of one request, set in a context variable by the
  transport before it calls httpcore; the first write of the attempt binds it to the
  connection it went to. Context variables are per thread and per task, so this works
  for threads (sync) and for asyncio and trio tasks alike.
* ``_Tracker``: one connection's ``rstsafe._core.attempts.ConnectionLife``
  and the expiry check the stream answers httpcore's ``is_readable`` with.
"""

from __future__ import annotations

import contextvars
import os
import socket
from collections.abc import Callable, Iterator
from typing import Any

import httpx

from rstsafe._core.attempts import ConnectionLife
from rstsafe._core.classify import Origin
from rstsafe._core.clock import Clock
from rstsafe._core.idempotency import BodyInfo, BodyKind, replayability
from rstsafe._core.keepalive import KeepAlive, OriginKeepAlive
from rstsafe._core.retry import RetryPolicy
from rstsafe._core.shared import MAX_CACHED_ORIGINS, ClientShared, origin_for

# Large request writes (async back ends) go out in slices of this size, with a look
# for an early error response (413, 401 ...) between slices. anyio's asyncio transport
# does not read while a send waits for the buffer to drain, and a reset arriving then
# closes it with the response unread: plain httpx on asyncio loses such a 413. When the
# server has answered with an error status, the rest of the upload is dropped (the
# connection is never reused) and httpcore reads the response. A reset that arrives
# within the same drain wait as the response still loses it (anyio's transport is out
# of reach); a server that lingers after answering, as nginx does, leaves time to see it.
_UPLOAD_SLICE = 256 * 1024


# ---------------------------------------------------------------------------------------
# Per-connection and per-attempt state (no I/O).


class _Shared(ClientShared):
    """What every connection and request of one transport shares."""

    __slots__ = ("h2_prior_knowledge", "origins")

    def __init__(
        self,
        keepalive: KeepAlive | None,
        retry: RetryPolicy,
        *,
        h2_prior_knowledge: bool,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(keepalive, retry, clock)
        self.h2_prior_knowledge = h2_prior_knowledge
        self.origins: dict[tuple[bytes, bytes], Origin] = {}

    def origin_of(self, url: httpx.URL) -> Origin:
        """The origin of a request URL (cached by scheme and netloc)."""
        key = (url.raw_scheme, url.netloc)
        origin = self.origins.get(key)
        if origin is None:
            if len(self.origins) >= MAX_CACHED_ORIGINS:  # a crawler: stay bounded
                self.origins.clear()
            origin = self.origins[key] = origin_for(url.scheme, url.host, url.port)
        return origin

    def track(self, host: str, port: int) -> _Tracker:
        """The tracker of a connection being opened now (in the context of an attempt)."""
        attempt = _CURRENT.get()
        origin = attempt.origin if attempt is not None else Origin("http", host.lower(), int(port))
        return _Tracker(self, origin)


def witness_is_open(stream: Any) -> bool:
    """``OriginKeepAlive.check_witness``'s question of a witness (a ``_network`` stream):
    still open, nothing readable (no FIN, no data)?"""
    return not stream._readable()


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
        "pool_closing",
        "probe_for",
        "recheck_at",
        "ruled_out",
        "safe_until",
        "server_closed",
        "shared",
        "stopped",
        "tls",
        "witness_candidate",
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
        # Until ``safe_until`` a request that could not be retried may use it too (safe
        # send: OriginKeepAlive.safe_idle); set with ``recheck_at``.
        self.safe_until = float("-inf")
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
        # A liveness check found it closed by the server (FIN or RST) while idle: the
        # pool closes it, but a request it had already assigned to it may still start.
        self.server_closed = False
        # httpcore's pool was told this idle connection has expired (readable, or past
        # rstsafe's rules): it removes it and closes it, but a request it had already
        # assigned to it may still start before the close.
        self.pool_closing = False
        # A liveness check found it idle past rstsafe's rules and still open: when the
        # pool closes it, its socket may become the origin's witness
        # (OriginKeepAlive.offer_witness) instead.
        self.witness_candidate = False

    def wrote(self, size: int) -> None:
        """Count bytes about to be written; the first write of an attempt binds it here."""
        attempt = _CURRENT.get()
        if attempt is not None and attempt.tracker is None:
            if self.pool_closing or self.server_closed:
                # httpcore assigns a queued request to an idle connection, then (another
                # task's pass) finds it expired (closed by the server, or past rstsafe's
                # rules: a TTL, a request limit) and closes it, awaiting other closes
                # first: the request may start meanwhile, write, and have its read cut by
                # that close (trio's "already closed", anyio's ClosedResourceError: a
                # ReadError that tells nothing). Nothing is written: httpcore closes it
                # and assigns another connection.
                import httpcore  # loaded by then (the pool runs); not at import

                why = (
                    "the server closed this connection while it was idle"
                    if self.server_closed
                    else "the pool is closing this expired connection"
                )
                raise httpcore.ConnectionNotAvailable(
                    f"rstsafe: {why}; this request goes on another connection"
                )
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
                    import httpcore  # loaded by then (the pool runs); not at import

                    raise httpcore.ConnectionNotAvailable(
                        "rstsafe: connection idle past its TTL, kept for a request that"
                        " may probe; this request goes on another connection"
                    )
            if (
                life.requests_served
                and not self.multiplexed
                and self.shared.now() >= self.safe_until
                and not attempt.may_probe(self.shared.policy)
            ):
                reason = life.expiry_reason(self.keepalive, retryable=False)
                if reason is not None:
                    # Safe send: this request could not be retried if the connection
                    # turned out stale, and its idle is past what is proven kept. Nothing
                    # is written: httpcore closes it and assigns another (a fresh one).
                    self.recheck_at = float("-inf")
                    self.checked_idle(is_open=True)
                    import httpcore  # loaded by then (the pool runs); not at import

                    raise httpcore.ConnectionNotAvailable(
                        f"rstsafe: {reason}; this request goes on a fresh connection"
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
        self.safe_until = life.last_used_at + self.keepalive.safe_idle() * keep
        self.epoch, self.recheck_at = epoch, recheck
        return False

    def checked_idle(self, *, is_open: bool) -> None:
        """Learn from a liveness check of this idle connection: still open, or closed."""
        life = self.life
        if self.multiplexed:
            return
        if not is_open:
            self.server_closed = True
        if not life.requests_served:
            return
        life.report_idle_check(self.keepalive, is_open=is_open)
        if is_open:
            self.witness_candidate = True
        else:
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
                    or self.keepalive.learned_max_requests is not None
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


def _body_info(stream: object) -> BodyInfo:
    # httpx builds a ByteStream for content=bytes/str, data=, json= and no body at all:
    # it yields the same bytes every time. Generators, async iterators, files and
    # multipart streams are read once as far as rstsafe can prove.
    if isinstance(stream, httpx.ByteStream):
        return BodyInfo(kind=BodyKind.BYTES)
    return BodyInfo(kind=BodyKind.STREAM)
