"""rstsafe's aiohttp connector: per-origin idle expiry, lifetime, request limits, byte counts.

How it hooks into aiohttp (public extension points unless noted; the rest is in
:mod:`rstsafe._compat.aiohttp`):

* :class:`TCPConnector` subclasses ``aiohttp.TCPConnector`` and overrides ``connect()``.
  aiohttp's pool hands out a connection; if it is a reused one that rstsafe's rules say
  is too old (idle TTL below the server's keep-alive, max lifetime, max requests, or
  idle as long as one just found stale), rstsafe closes it (``Connection.close()``) and
  asks the pool again, so a request never goes out on it. aiohttp's own
  ``keepalive_timeout`` (15 s, one value for every server) stays an upper bound when you
  pass it; by default it is set to an hour, a backstop behind rstsafe's sweeper.
* A new connection's transport is replaced by :class:`_Tracked`, a proxy that counts the
  bytes written in the current attempt and carries the connection's
  :class:`~rstsafe._core.attempts.ConnectionLife` (touch point 1 of ``_compat``). aiohttp
  refuses a write, before the transport sees it, when the transport is closing: zero
  bytes counted at a failure proves the request never reached the kernel. This is what
  lets rstsafe resend even a POST after aiohttp's "Can not write request body".
* ``TCPConnector._release()`` (touch point 4) tells when a response is done with its
  connection (read to the end, or closed): the idle clock starts then. The public
  ``Connection.add_callback()`` tells the same, at six calls per request instead of one
  (``Connection._notify_release`` wraps every callback in a ``contextlib.suppress``).
* A connection the server closes while idle teaches the origin's keep-alive state an
  upper bound (``ResponseHandler.closed``, touch point 2, aiohttp >= 3.12).
* A sweeper closes idle connections past their expiry, once a second while there are
  any, so that connections a middlebox dropped silently do not stay open.

The request's own retry lives in the session's middleware (``_session.py``); it tells
the connector which attempt is connecting through a context variable.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
from collections.abc import Callable, Iterable
from typing import Any

import aiohttp
from aiohttp import payload
from aiohttp.client_reqrep import ClientRequest

from rstsafe._compat.aiohttp import closed_future, set_transport
from rstsafe._core.attempts import ConnectionLife
from rstsafe._core.classify import ConnectionFacts, Origin
from rstsafe._core.clock import Clock
from rstsafe._core.idempotency import NO_BODY, BodyInfo, BodyKind, replayability
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry
from rstsafe._core.retry import RetryPolicy
from rstsafe._core.shared import MAX_CACHED_ORIGINS, ClientShared, origin_for

__all__ = ("TCPConnector",)

# aiohttp's keepalive_timeout when none is given: rstsafe's per-origin TTL and sweeper
# decide, and aiohttp's own cleanup (which runs every keepalive_timeout seconds) is only
# a backstop. aiohttp's default is 15 s for every server; Go's 90 s and undici's 4 s are
# per-client values too. An hour is past any announced timeout seen in practice
# (nginx's default is 75 s, AWS NLB's idle limit 350 s).
_AIOHTTP_IDLE_CAP = 3600.0

# How often idle connections past their expiry are closed while any are pooled. The
# expiry itself is checked exactly when a connection is handed out; the sweep only
# frees sockets, so a second (aiohttp's own cleanup runs every keepalive_timeout) is
# fine-grained enough.
_SWEEP_PERIOD = 1.0


def check_keepalive(keepalive: object) -> KeepAlive:
    """``keepalive`` itself, or the default; TypeError naming the parameter otherwise."""
    if keepalive is None:
        return KeepAlive()
    if not isinstance(keepalive, KeepAlive):
        raise TypeError(f"keepalive must be a rstsafe.KeepAlive or None, got {keepalive!r}")
    return keepalive


def check_policy(retry: object) -> RetryPolicy:
    """The retry policy to apply; errors name the parameter and say what to do instead.

    rstsafe.aiohttp adds exactly the immediate retry of a request that met a stale
    reused connection; backoff retries (``retries``) and status retries
    (``retry_statuses``) stay the caller's, with tenacity and ``rstsafe.retry_if_safe``.
    """
    if retry is None:
        return RetryPolicy(retries=0)
    if not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a rstsafe.RetryPolicy or None, got {retry!r}")
    if retry.retries:
        raise ValueError(
            f"retry.retries must be 0 for rstsafe.aiohttp, got {retry.retries}: it applies"
            " only the immediate retry of a stale reused connection (max_stale_retries);"
            " for backoff retries wrap the call with tenacity and rstsafe.retry_if_safe"
            " (or RetryPolicy.async_retrying)"
        )
    if retry.retry_statuses:
        raise ValueError(
            f"retry.retry_statuses must be empty for rstsafe.aiohttp, got"
            f" {sorted(retry.retry_statuses)}: status retries are backoff retries; use"
            " tenacity with rstsafe.retry_if_safe"
        )
    return retry


def body_info(request: ClientRequest) -> BodyInfo:
    """Whether a request's body can be sent again.

    aiohttp turns ``data=bytes``/``str``, ``json=`` and url-encoded ``FormData`` into
    ``BytesPayload`` subclasses, which write the same bytes every time; a multipart
    ``FormData`` becomes a ``MultipartWriter``, replayable when all its parts are. Files
    (``IOBasePayload`` and its subclasses), async generators and stream readers are read
    once.
    """
    body = request.body
    if not body:
        return NO_BODY
    return BodyInfo(kind=BodyKind.BYTES if _replayable_payload(body) else BodyKind.STREAM)


def _replayable_payload(body: object) -> bool:
    if isinstance(body, payload.BytesPayload) and not isinstance(body, payload.StringIOPayload):
        return True
    if isinstance(body, aiohttp.MultipartWriter):
        return all(_replayable_payload(part[0]) for part in body)
    return isinstance(body, (bytes, bytearray))


class _Attempt:
    """One attempt of one request, and the connection it got (set by ``connect()``)."""

    __slots__ = ("_may_probe", "idle", "request", "retry", "served", "started", "tracked")

    def __init__(self, request: ClientRequest, retry: bool) -> None:
        self.request = request
        self.retry = retry  # a retry after a stale connection: no probing
        self.tracked: _Tracked | None = None
        self.served = 0  # requests the connection had served before this attempt
        self.idle = 0.0
        self.started = 0.0  # when it got its connection (set with ``tracked``)
        self._may_probe: bool | None = None

    def may_probe(self, policy: RetryPolicy) -> bool:
        """True when a stale connection would cost this attempt only an immediate retry."""
        answer = self._may_probe
        if answer is None:
            request = self.request
            answer = self._may_probe = not self.retry and policy.may_probe(
                replayability(
                    request.method, request.headers, body_info(request), rules=policy.rules
                )
            )
        return answer

    def facts(self, origin: Origin) -> ConnectionFacts:
        """The facts of this attempt (response bytes are not counted: unknown)."""
        tracked = self.tracked
        if tracked is None:  # failed before getting a connection
            return ConnectionFacts(origin=origin)
        life = tracked.life
        reused = self.served > 0
        return ConnectionFacts(
            origin=life.origin,
            reused=reused,
            idle_seconds=self.idle if reused else 0.0,
            requests_served=self.served,
            age_seconds=max(0.0, self.started - life.created_at),
            bytes_sent=life.bytes_sent,
            bytes_received=None,
        )


CURRENT_ATTEMPT: contextvars.ContextVar[_Attempt | None] = contextvars.ContextVar(
    "rstsafe_aiohttp_attempt", default=None
)


class Shared(ClientShared):
    """What every connection and request of one connector shares."""

    __slots__ = ("connections", "middleware", "origins", "sweep_handle", "sweeping")

    def __init__(self, keepalive: KeepAlive, policy: RetryPolicy, clock: Clock | None) -> None:
        super().__init__(keepalive, policy, clock)
        self.origins: dict[tuple[str, str | None, int | None], Origin] = {}
        # Every connection rstsafe tracks, by its protocol (what aiohttp's pool hands
        # back on release); the sweeper closes the idle ones past their expiry.
        self.connections: dict[Any, _Tracked] = {}
        self.sweep_handle: asyncio.TimerHandle | None = None
        self.sweeping = True
        self.middleware: Any = None  # the session middleware, built once (_session.py)

    def origin_of(self, url: Any) -> Origin:
        """The origin of a request URL (a ``yarl.URL``), cached."""
        key = (url.scheme, url.host, url.port)
        origin = self.origins.get(key)
        if origin is None:
            if len(self.origins) >= MAX_CACHED_ORIGINS:
                self.origins.clear()
            origin = self.origins[key] = origin_for(url.scheme, url.host, url.port)
        return origin

    def schedule_sweep(self) -> None:
        """Make sure idle connections past their expiry get closed (see ``sweep``)."""
        if self.sweep_handle is None and self.sweeping:
            self.sweep_handle = asyncio.get_running_loop().call_later(_SWEEP_PERIOD, self.sweep)

    def sweep(self) -> None:
        """Close idle connections that no request may use any more."""
        self.sweep_handle = None
        connections = self.connections
        for protocol, tracked in list(connections.items()):
            if tracked.closed_locally or tracked.inner.is_closing():
                del connections[protocol]
            elif not tracked.in_use and tracked.expiry_reason(probe=True) is not None:
                del connections[protocol]
                tracked.close_expired()
        if connections:
            self.schedule_sweep()

    def stop(self) -> None:
        """Stop sweeping (the connector is closing)."""
        self.sweeping = False
        if self.sweep_handle is not None:
            self.sweep_handle.cancel()
            self.sweep_handle = None
        self.connections.clear()


class _Tracked:
    """A connection's transport, counting the bytes written, with the connection's life.

    Only ``write``/``writelines`` do anything besides delegating: they add to
    ``life.bytes_sent`` before the write (a write that fails may still have sent part of
    it). ``close``/``abort`` mark the connection as closed by the client, so that its
    loss teaches nothing about the server. Methods aiohttp calls on every request are
    the real transport's bound methods, stored on the instance; anything else is
    delegated by ``__getattr__``.
    """

    __slots__ = (
        # Attributes may be set on it as on asyncio's transports (which have a
        # __dict__): mock.patch.object(conn.transport, "write", ...) in a test.
        "__dict__",
        "closed_locally",
        "epoch",
        "get_extra_info",
        "get_write_buffer_size",
        "in_use",
        "inner",
        "is_closing",
        "is_reading",
        "keepalive",
        "life",
        "pause_reading",
        "protocol",
        "recheck_at",
        "resume_reading",
        "shared",
    )

    def __init__(self, inner: Any, shared: Shared, origin: Origin, protocol: Any) -> None:
        self.inner = inner
        # The transport methods aiohttp calls on every request, bound to the real
        # transport: no proxy frame in between.
        self.is_closing = inner.is_closing
        self.get_extra_info = inner.get_extra_info
        self.pause_reading = inner.pause_reading
        self.resume_reading = inner.resume_reading
        self.is_reading = inner.is_reading
        self.get_write_buffer_size = inner.get_write_buffer_size
        self.shared = shared
        self.protocol = protocol
        self.life = ConnectionLife(origin, clock=shared.clock)
        self.keepalive = shared.state(origin)
        self.in_use = True
        self.closed_locally = False
        # Until ``recheck_at`` (and while ``epoch`` matches the shared one) the full
        # expiry check is known to pass: the common case is one comparison.
        self.epoch = -1
        self.recheck_at = -math.inf

    # -- the transport ---------------------------------------------------------------

    def write(self, data: Any) -> None:
        self.life.bytes_sent += len(data)
        self.inner.write(data)

    def writelines(self, chunks: Iterable[Any]) -> None:
        chunks = list(chunks)
        self.life.bytes_sent += sum(len(chunk) for chunk in chunks)
        self.inner.writelines(chunks)

    def close(self) -> None:
        self.closed_locally = True
        self.inner.close()

    def abort(self) -> None:
        self.closed_locally = True
        self.inner.abort()

    def __getattr__(self, name: str) -> Any:  # the rest of the transport interface
        return getattr(self.inner, name)

    def __repr__(self) -> str:
        return f"<rstsafe tracked {self.inner!r} {self.life!r}>"

    # -- the connection's life -------------------------------------------------------

    def expiry_reason(
        self,
        *,
        probe: bool | Callable[[], bool] = False,
        retryable: bool | Callable[[], bool] | None = None,
    ) -> str | None:
        """Why this idle connection must not be reused now, or None (``retryable``: see
        ``ConnectionLife.expiry_reason``)."""
        life = self.life
        cutoff = self.shared.stale_before.get(life.origin) if life.origin is not None else None
        if cutoff is not None and life.last_used_at <= cutoff:
            return "idle as long as a connection to the same origin found stale"
        return life.expiry_reason(self.keepalive, probe=probe, retryable=retryable)

    def expired(self, attempt: _Attempt | None) -> bool:
        """True when this pooled connection must be closed instead of used by ``attempt``."""
        shared = self.shared
        if self.epoch == shared.epoch and shared.now() < self.recheck_at:
            return False
        epoch = shared.epoch
        policy = shared.policy

        def may_probe() -> bool:
            return attempt is not None and attempt.may_probe(policy)

        def retryable() -> bool:
            # A connection taken outside rstsafe's session is not restricted.
            return attempt is None or attempt.may_probe(policy)

        probing = False

        def probe() -> bool:
            nonlocal probing
            probing = may_probe()
            return probing

        if self.expiry_reason(probe=probe, retryable=retryable) is not None:
            return True
        if probing:  # past the TTL, let through for this one request: check again next time
            return False
        # The earliest moment the check could fail with the same inputs: the TTL and
        # lifetime at their most jittered (jitter only shortens).
        config = self.keepalive.config
        keep = 1.0 - config.jitter
        life = self.life
        # The safe idle (at most the TTL): past it, a request that could not be
        # retried needs the full check (OriginKeepAlive.safe_idle).
        recheck = life.last_used_at + self.keepalive.safe_idle() * keep
        if config.max_lifetime is not None:
            recheck = min(recheck, life.created_at + config.max_lifetime * keep)
        if (
            config.max_requests is not None
            or life.requests_remaining is not None
            or self.keepalive.learned_max_requests is not None
            or self.keepalive.header_max_requests is not None
        ):
            recheck = -math.inf  # a request limit: check in full every time
        self.epoch, self.recheck_at = epoch, recheck
        return False

    def close_expired(self) -> None:
        """Close this idle connection, expired by rstsafe's rules (still open: say so)."""
        self.in_use = False
        if not self.inner.is_closing() and self.life.requests_served:
            self.keepalive.observe_open(self.life.idle_seconds())
        self.protocol.close()

    def lost(self, future: asyncio.Future[None]) -> None:
        """The connection is gone; if the server closed it while idle, learn from it."""
        if not future.cancelled():
            future.exception()  # retrieved: an unclean close is not "never retrieved"
        self.shared.connections.pop(self.protocol, None)
        if self.closed_locally or self.in_use or not self.life.requests_served:
            return
        self.life.report_idle_check(self.keepalive, is_open=False)
        self.shared.epoch += 1  # the learned TTL may have shortened


# The connector rstsafe's extends, and its release, read once (see _session._Base).
_BaseConnector = aiohttp.TCPConnector
_base_connect = _BaseConnector.connect
_base_release = _BaseConnector._release


class TCPConnector(_BaseConnector):
    """An ``aiohttp.TCPConnector`` that gives idle connections up before the server does.

    Takes every ``aiohttp.TCPConnector`` argument, plus rstsafe's:

    * idle connections are closed before the server's keep-alive runs out, per origin
      (``KeepAlive.server_keepalive``, the ``Keep-Alive: timeout=N`` header, or learned
      from the closes observed), and after ``max_lifetime`` or ``max_requests``;
    * the bytes of every attempt are counted, so a session's middleware can prove that
      a failed request never reached the server.

    With [`rstsafe.aiohttp.ClientSession`][rstsafe.aiohttp.ClientSession] (which builds one of these
    when you
    pass no ``connector=``) requests that met a stale connection are also resent when
    safe, and the ``Keep-Alive`` header is read. Under a plain ``aiohttp.ClientSession``
    the connector still applies the TTL, lifetime and request limits, learning from
    closes only.

    Args:
        keepalive: Idle TTL, lifetime and learning (default ``KeepAlive()``).
        retry: Which stale-connection retries the session applies (default
            ``RetryPolicy(retries=0)``; ``retries`` must be 0).
        clock: Monotonic clock (tests).
        **kwargs: Everything ``aiohttp.TCPConnector`` takes. ``keepalive_timeout``, if
            you pass it, stays aiohttp's upper bound on idle time for every origin.
    """

    def __init__(
        self,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        """Validate rstsafe's settings; pass everything else to ``aiohttp.TCPConnector``."""
        config = check_keepalive(keepalive)
        policy = check_policy(retry)
        if not kwargs.get("force_close") and kwargs.get("keepalive_timeout") is None:
            kwargs["keepalive_timeout"] = _AIOHTTP_IDLE_CAP
        super().__init__(**kwargs)
        self._rstsafe = Shared(config, policy, clock)

    @property
    def keepalive_registry(self) -> KeepAliveRegistry:
        """The per-origin keep-alive states (header seen, what was learned)."""
        return self._rstsafe.registry

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy of sessions using this connector."""
        return self._rstsafe.policy

    async def connect(
        self, req: ClientRequest, traces: list[Any], timeout: aiohttp.ClientTimeout
    ) -> aiohttp.connector.Connection:
        """A connection from the pool, never one past rstsafe's expiry, or a new one."""
        shared = self._rstsafe
        attempt = CURRENT_ATTEMPT.get()
        while True:
            conn = await _base_connect(self, req, traces, timeout)
            protocol = conn.protocol
            if protocol is None:  # pragma: no cover - aiohttp always gives one
                return conn
            # Touch point 1 of rstsafe._compat.aiohttp (read directly: every reuse asks).
            current: Any = protocol.transport
            now = shared.now()
            if type(current) is _Tracked:
                tracked: _Tracked = current
                # _Tracked.expired()'s fast path, inlined: every reuse asks.
                if (tracked.epoch != shared.epoch or now >= tracked.recheck_at) and tracked.expired(
                    attempt
                ):
                    tracked.close_expired()
                    conn.close()
                    continue
                tracked.in_use = True
            elif current is None:  # pragma: no cover - lost between the pool and here
                return conn
            else:
                try:
                    origin = shared.origin_of(req.url)
                    tracked = _Tracked(current, shared, origin, protocol)
                except BaseException:
                    conn.close()  # not left open for the garbage collector to find
                    raise
                set_transport(protocol, tracked)
                shared.connections[protocol] = tracked
                if shared.sweep_handle is None:
                    shared.schedule_sweep()
                closed = closed_future(protocol)
                if closed is not None:
                    closed.add_done_callback(tracked.lost)
            life = tracked.life
            life.bytes_sent = 0  # a new attempt on this connection
            if attempt is not None:
                attempt.tracked = tracked
                attempt.started = now
                attempt.served = life.requests_served
                attempt.idle = now - life.last_used_at
            return conn

    def _release(self, key: Any, protocol: Any, *, should_close: bool = False) -> None:
        """A response is done with its connection (touch point 4): start its idle clock.

        Called by ``Connection.release()`` and ``Connection.close()``, before aiohttp
        pools or closes the connection.
        """
        tracked = self._rstsafe.connections.get(protocol)
        if tracked is not None and tracked.in_use:
            tracked.in_use = False
            life = tracked.life
            # ConnectionLife.finish_request(), the header-less case, inlined (the
            # Keep-Alive header's max= is applied by the session, which sees the response).
            life.requests_served += 1
            life.last_used_at = self._rstsafe.now()
        _base_release(self, key, protocol, should_close=should_close)

    def close(self, *args: Any, **kwargs: Any) -> Any:
        """Close every connection (as aiohttp does) and stop the sweeper."""
        self._rstsafe.stop()
        return super().close(*args, **kwargs)
