"""urllib3 that survives resets: connection, pool and pool-manager subclasses.

Everything goes through urllib3's own extension points, no copies of its code:

* :class:`HTTPConnection` / :class:`HTTPSConnection` (``ConnectionCls``) carry a
  :class:`~rstsafe._core.attempts.ConnectionLife`: a new one per socket (``connect``), the
  request bytes counted in ``send`` (http.client and urllib3 2.x write everything
  through it), the response head in ``getresponse``. ``is_connected`` also answers
  False for a connection past its idle TTL, max lifetime or max requests, which is how
  urllib3's ``_get_conn`` is told to close it and open a fresh one.
* :class:`HTTPConnectionPool` / :class:`HTTPSConnectionPool` leave urllib3's ``urlopen``
  and its ``Retry`` alone: every retry, backoff, redirect and error there is urllib3's, as
  the caller configured it. rstsafe acts in ``_make_request`` only, where one request meets
  one connection: a stale *reused* connection (reset or closed before any response byte)
  is retried at once on a fresh socket of the same connection object, when that is safe,
  up to ``RetryPolicy.max_stale_retries`` times; urllib3 never sees that failure.
  ``_put_conn`` finishes a connection's request when the response is released.
* :class:`PoolManager` / :class:`ProxyManager` build those pools
  (``pool_classes_by_scheme``) and share one keep-alive registry and one retry policy.

Errors (docs/contract.md): a failure rstsafe did not act on is urllib3's own, unchanged.
When rstsafe did retry a stale connection and the request still failed, urllib3's
``MaxRetryError`` becomes :class:`NotSentMaxRetryError` / :class:`MaybeSentMaxRetryError`
and its ``ProtocolError`` :class:`NotSentProtocolError` / :class:`MaybeSentProtocolError`:
subclasses of exactly what urllib3 raised, with urllib3's ``args`` (and ``pool``, ``url``,
``reason``), that are also :class:`~rstsafe.RequestNotSentError` /
:class:`~rstsafe.RequestMaybeSentError` carrying the facts. Any other class is raised as
urllib3 raised it.

Private urllib3 names used here are all listed in :mod:`rstsafe._compat.urllib3`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import urllib3
import urllib3.connection
import urllib3.connectionpool
from urllib3.exceptions import MaxRetryError, ProtocolError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry
from urllib3.util.wait import wait_for_read

from rstsafe._compat.urllib3 import DEFAULT_TIMEOUT
from rstsafe._core.attempts import ConnectionLife, RequestAttempts
from rstsafe._core.classify import Delivery, Origin
from rstsafe._core.clock import Clock
from rstsafe._core.errors import (
    RequestMaybeSentError,
    RequestNotSentError,
    RstsafeError,
    describe_failure,
)
from rstsafe._core.idempotency import (
    NO_BODY,
    BodyKind,
    describe_body,
    replayability,
    rewind_body,
)
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry, OriginKeepAlive
from rstsafe._core.retry import RetryAction, RetryPolicy

if TYPE_CHECKING:
    from urllib3._base_connection import BaseHTTPConnection

    from rstsafe._compat.urllib3 import DefaultTimeoutType

__all__ = (
    "HTTPConnection",
    "HTTPConnectionPool",
    "HTTPSConnection",
    "HTTPSConnectionPool",
    "MaybeSentMaxRetryError",
    "MaybeSentProtocolError",
    "NotSentMaxRetryError",
    "NotSentProtocolError",
    "PoolManager",
    "ProxyManager",
    "proxy_from_url",
)

log = logging.getLogger("rstsafe.urllib3")


class _Monotonic:
    """:class:`rstsafe._core.clock.MonotonicClock` without the Python frame per reading.

    ``now`` is ``time.monotonic`` itself; connections read the clock a few times per
    request, and on a loopback keep-alive connection each frame is measurable.
    """

    __slots__ = ()
    now = staticmethod(time.monotonic)


_CLOCK: Clock = _Monotonic()

# A first write of at most this many bytes on a connection is all or nothing: Linux
# copies a blocking send() into the socket buffer in one go when it fits, and checks
# for a pending error (the peer's RST) only before copying. The smallest send buffer
# a TCP socket starts with is tcp_wmem[1] (16 KiB by default; tcp_wmem[0], 4 KiB, is
# the floor under memory pressure), so 4 KiB always fits an idle connection's buffer:
# a failed first write of a request head this size sent nothing. A bigger or later
# write that fails may have sent part of its data, so it counts as sent.
_ATOMIC_FIRST_WRITE = 4096

# A response head is at least "HTTP/1.1 200\r\n\r\n" (16 bytes). Reads go through
# http.client's buffered file, so instead of counting them this lower bound is recorded
# once the head is parsed: the count only has to prove "some response arrived", which
# tells a stale connection (nothing came back) from a truncated response.
_MIN_HEAD = 16


def _data_length(data: object) -> int | None:
    if isinstance(data, bytes | bytearray):
        return len(data)
    if isinstance(data, memoryview):
        return data.nbytes
    return None  # a file or an iterable: http.client reads it in blocks


# How long the pool trusts its quick bounds (see _PoolShared.surely_alive) before asking
# the origin's keep-alive state again. Failures in the pool refresh them at once; a TTL
# shortened by another pool of the same origin reaches this one within this delay.
_BOUNDS_REFRESH = 0.25


class _PoolShared:
    """What a pool's connections need from it, without a reference cycle back to the pool.

    urllib3 closes a pool's idle connections when the pool is garbage collected
    (``weakref.finalize``); connections pointing at their pool would delay that to the
    cycle collector and leak sockets meanwhile.

    It also keeps quick, conservative bounds so that the common case (a connection used
    a moment ago) skips the full expiry check: jitter only ever *shortens* a TTL or a
    lifetime, so a connection idle for less than ``TTL * (1 - jitter)`` and younger than
    ``max_lifetime * (1 - jitter)`` is certainly not expired; anything else gets the full
    check (:meth:`rstsafe.core.OriginKeepAlive.expiry_reason`).
    """

    __slots__ = (
        "bounds_until",
        "count_limited",
        "last_header",
        "local",
        "lock",
        "ok_idle",
        "quick_age",
        "quick_idle",
        "state",
        "watermark",
    )

    def __init__(self, state: OriginKeepAlive, local: _PoolLocal) -> None:
        self.state = state
        self.local = local
        self.lock = threading.Lock()
        # Idle connections last used at or before this time are discarded when taken.
        self.watermark = -math.inf
        self.bounds_until = -math.inf
        self.quick_idle = 0.0
        self.quick_age = 0.0
        self.count_limited = True
        self.last_header: str | None = None
        # Largest idle already reported as a successful reuse (reporting less teaches
        # nothing); reset with the bounds.
        self.ok_idle = -1.0

    def discard_idle(self, last_used_at: float) -> None:
        with self.lock:
            self.watermark = max(self.watermark, last_used_at)
        self.refresh_soon()

    def refresh_soon(self) -> None:
        self.bounds_until = -math.inf

    def surely_alive(self, life: ConnectionLife, now: float) -> bool:
        """True when ``life`` is certainly within every limit (no full check needed)."""
        if now >= self.bounds_until:
            config = self.state.config
            keep = 1.0 - config.jitter
            # Below the safe idle too: past it, a request that could not be retried
            # needs the full check (OriginKeepAlive.safe_idle).
            self.quick_idle = self.state.safe_idle() * keep
            lifetime = config.max_lifetime
            self.quick_age = math.inf if lifetime is None else lifetime * keep
            self.count_limited = (
                config.max_requests is not None
                or self.state.header_max_requests is not None
                or self.state.learned_max_requests is not None
            )
            self.ok_idle = -1.0
            self.bounds_until = now + _BOUNDS_REFRESH
        return (
            now - life.last_used_at < self.quick_idle
            and now - life.created_at < self.quick_age
            and not self.count_limited
            and life.requests_remaining is None
        )

    def may_probe(self) -> bool:
        """True when this thread's request may reuse a connection past the TTL (a probe).

        Only requests that a stale connection costs nothing but an immediate retry
        (:meth:`rstsafe.RetryPolicy.may_probe`), and never the retry itself.
        """
        request = self.local.request
        if request is None:
            return False
        return bool(request.policy.may_probe(request.replay()))

    def retryable(self) -> bool:
        """Whether a stale failure of this thread's request would be retried at once.

        False puts the request under the safe-send rule (``OriginKeepAlive.safe_idle``);
        a connection taken outside rstsafe's ``urlopen`` is not restricted.
        """
        request = self.local.request
        if request is None:
            return True
        return bool(request.policy.may_probe(request.replay()))

    def checked_idle(self, life: ConnectionLife, *, is_open: bool) -> None:
        """Learn from a liveness check of an idle connection: still open, or closed."""
        if not life.requests_served:
            return  # never used: its idle time says nothing about the server's timeout
        life.report_idle_check(self.state, is_open=is_open)
        if not is_open:
            self.refresh_soon()

    def reused_ok(self, idle: float) -> None:
        """Teach the origin that a reuse after ``idle`` seconds worked (if it is news)."""
        if idle > self.ok_idle:
            self.ok_idle = idle
            self.state.observe_reused_ok(idle)


class HTTPConnection(urllib3.connection.HTTPConnection):
    """urllib3's ``HTTPConnection`` that knows its life: age, idleness, requests, bytes.

    The pool binds it to the origin's keep-alive state (`bind`). Use it through
    [`HTTPConnectionPool`][rstsafe.urllib3.HTTPConnectionPool]; on its own it behaves exactly as
    urllib3's.
    """

    _rstsafe_life: ConnectionLife
    _rstsafe_shared: _PoolShared | None
    _rstsafe_in_flight: bool
    _rstsafe_keep_alive: str | None

    # The base class's methods, called directly: a super() call per request and method
    # is measurable on a loopback keep-alive connection. HTTPSConnection sets its own.
    _base_request = staticmethod(urllib3.connection.HTTPConnection.request)
    _base_send = staticmethod(urllib3.connection.HTTPConnection.send)
    _base_getresponse = staticmethod(urllib3.connection.HTTPConnection.getresponse)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Create the connection; every argument goes to urllib3's ``HTTPConnection``."""
        super().__init__(*args, **kwargs)
        self._rstsafe_origin: Origin | None = None
        self._rstsafe_life = ConnectionLife(clock=_CLOCK)
        self._rstsafe_shared = None
        self._rstsafe_in_flight = False
        self._rstsafe_keep_alive = None
        self._rstsafe_reused = False
        self._rstsafe_idle = 0.0

    def bind(self, origin: Origin, shared: _PoolShared) -> None:
        """Attach the connection to its pool's origin and keep-alive state."""
        self._rstsafe_origin = origin
        self._rstsafe_shared = shared
        self._rstsafe_life = ConnectionLife(origin, clock=_CLOCK)

    @property
    def life(self) -> ConnectionLife:
        """The life of the current (or last) socket of this connection."""
        return self._rstsafe_life

    def connect(self) -> None:
        """Open a new socket; its life starts now (fresh connection, nothing served)."""
        self._rstsafe_life = ConnectionLife(self._rstsafe_origin, clock=_CLOCK)
        self._rstsafe_keep_alive = None
        super().connect()

    @property
    def is_connected(self) -> bool:
        """False when the socket is gone, the server closed it, or rstsafe expired it.

        urllib3's ``_get_conn`` closes a pooled connection for which this is False and
        reconnects it, so the idle TTL, the max lifetime, the max requests and the
        pool's discard watermark are all enforced when a connection is taken.
        """
        if self.sock is None:
            return False
        shared = self._rstsafe_shared
        if shared is not None and not self._rstsafe_in_flight:
            life = self._rstsafe_life
            now = time.monotonic()
            if (
                # shared.surely_alive(), inline while its bounds are fresh (the usual case)
                now < shared.bounds_until
                and now - life.last_used_at < shared.quick_idle
                and now - life.created_at < shared.quick_age
                and not shared.count_limited
                and life.requests_remaining is None
            ) or shared.surely_alive(life, now):
                if not wait_for_read(self.sock, timeout=0.0):  # urllib3's own check
                    return True
                shared.checked_idle(life, is_open=False)  # closed by the server
                return False
            if life.last_used_at <= shared.watermark and life.requests_served:
                log.debug("discarding %r: idle since before a stale connection failed", life)
                return False
            reason = life.expiry_reason(
                shared.state, probe=shared.may_probe, retryable=shared.retryable
            )
            if wait_for_read(self.sock, timeout=0.0):  # urllib3's own check
                shared.checked_idle(life, is_open=False)  # closed by the server
                return False
            if reason is not None:
                shared.checked_idle(life, is_open=True)
                log.debug("discarding connection to %s: %s", self._rstsafe_origin, reason)
                self._offer_witness(shared.state, life)
                return False
            return True
        return not wait_for_read(self.sock, timeout=0.0)  # urllib3's own check

    def _offer_witness(self, state: OriginKeepAlive, life: ConnectionLife) -> None:
        """Hand the open socket of a connection being discarded to the origin's witness.

        When taken, the socket is detached: urllib3 closes this connection object and
        connects it again, and the socket stays open, unused, until the witness is
        released (``OriginKeepAlive.check_witness``).
        """
        sock = self.sock
        if sock is None or not life.requests_served:
            return
        if state.offer_witness(
            sock, last_used_at=life.last_used_at, created_at=life.created_at, close=sock.close
        ):
            self.sock = None

    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        *,
        chunked: bool = False,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
    ) -> None:
        """Send a request (urllib3's ``request``), counting its bytes as one attempt."""
        if self.sock is None:
            # What http.client's first send() would do, done here so that the attempt
            # below starts on the new socket's life.
            self.connect()
        life = self._rstsafe_life
        self._rstsafe_in_flight = True
        # life.begin_attempt(), inline (once per request): the life's clock is
        # time.monotonic (_CLOCK).
        now = time.monotonic()
        served = life.requests_served
        life._attempt_started = now
        life._attempt_reused = self._rstsafe_reused = served > 0
        life._attempt_idle = self._rstsafe_idle = max(0.0, now - life.last_used_at)
        life._attempt_served = served
        life.bytes_sent = life.bytes_received = 0
        self._base_request(
            self,
            method,
            url,
            body,
            headers,
            chunked=chunked,
            preload_content=preload_content,
            decode_content=decode_content,
            enforce_content_length=enforce_content_length,
        )

    def send(self, data: Any) -> None:
        """Write ``data`` (http.client's ``send``) and count it as sent."""
        life = self._rstsafe_life
        if isinstance(data, bytes):  # the usual case, inline
            length: int | None = len(data)
        else:
            length = _data_length(data)
        try:
            self._base_send(self, data)
        except BaseException:
            if length is None or life.bytes_sent or length > _ATOMIC_FIRST_WRITE:
                life.bytes_sent += length or 1  # part of it may have left
            raise
        life.bytes_sent += length if length is not None else 1

    def getresponse(self) -> urllib3.response.HTTPResponse:  # type: ignore[override]
        """Read the response head; learn from it (reuse survived, ``Keep-Alive`` header)."""
        response = self._base_getresponse(self)
        self._rstsafe_life.bytes_received += _MIN_HEAD
        headers = response.headers
        # ``in`` first: a missing key makes HTTPHeaderDict.get() raise and catch KeyError.
        keep_alive = headers.get("keep-alive") if "keep-alive" in headers else None
        self._rstsafe_keep_alive = keep_alive
        shared = self._rstsafe_shared
        if shared is not None:
            # Learned here, by the thread that owns the connection, before the response
            # releases it to the pool (and to other threads).
            if self._rstsafe_reused and self._rstsafe_idle > shared.ok_idle:
                shared.reused_ok(self._rstsafe_idle)
            if keep_alive is not None:
                served = self._rstsafe_life.requests_served + 1
                shared.state.observe_header(keep_alive, requests_served=served)
                if keep_alive != shared.last_header:
                    shared.last_header = keep_alive
                    shared.refresh_soon()
        return response


class HTTPSConnection(HTTPConnection, urllib3.connection.HTTPSConnection):
    """urllib3's ``HTTPSConnection`` with the life of
    [`HTTPConnection`][rstsafe.urllib3.HTTPConnection]."""

    _base_request = staticmethod(urllib3.connection.HTTPSConnection.request)
    _base_send = staticmethod(urllib3.connection.HTTPSConnection.send)
    _base_getresponse = staticmethod(urllib3.connection.HTTPSConnection.getresponse)


class _HostError(RstsafeError):
    _unpicklable = ("pool",)  # as urllib3's own __reduce__: a pool does not pickle


class NotSentMaxRetryError(RequestNotSentError, _HostError, MaxRetryError):
    """rstsafe retried a stale connection, urllib3 then gave up; provably nothing was sent.

    Exactly urllib3's ``MaxRetryError`` (``pool``, ``url``, ``reason`` and ``args`` as
    urllib3 set them) and a [`rstsafe.RequestNotSentError`][rstsafe.RequestNotSentError]
    (``failure``,
    ``history``, ``delivery``, ``attempts``, ``reused``, ``idle_seconds``). Built as
    ``NotSentMaxRetryError(message, failure=..., history=..., host_args=(pool, url,
    reason))``.
    """


class MaybeSentMaxRetryError(RequestMaybeSentError, _HostError, MaxRetryError):
    """rstsafe retried a stale connection, urllib3 then gave up; the server may have it.

    urllib3's ``MaxRetryError`` and a
    [`rstsafe.RequestMaybeSentError`][rstsafe.RequestMaybeSentError] carrying the
    facts (see [`NotSentMaxRetryError`][rstsafe.urllib3.NotSentMaxRetryError]).
    """


class NotSentProtocolError(RequestNotSentError, _HostError, ProtocolError):
    """rstsafe retried a stale connection, the retry failed too; provably nothing was sent.

    urllib3's ``ProtocolError`` (what urllib3 raises with ``retries=False`` or
    ``Retry(read=False)``, ``args`` as urllib3 set them) with the facts.
    """


class MaybeSentProtocolError(RequestMaybeSentError, _HostError, ProtocolError):
    """rstsafe retried a stale connection, the retry failed too; the server may have it.

    urllib3's ``ProtocolError`` with the facts (see
    [`NotSentProtocolError`][rstsafe.urllib3.NotSentProtocolError]).
    """


def _acted_error(
    exc: BaseException, attempts: RequestAttempts, keepalive: OriginKeepAlive
) -> RstsafeError | None:
    """urllib3's ``exc`` as rstsafe's subclass with the facts, or None to raise it as is.

    Only for a request on which rstsafe acted (retried a stale connection): the class is
    chosen by whether *every* attempt provably sent nothing.
    """
    history = attempts.history
    failure = attempts.last_failure
    if failure is None or not any(
        a.decision.action is RetryAction.RETRY_NOW for a in history.attempts
    ):
        return None
    not_sent = all(a.failure is None or a.failure.not_sent for a in history.attempts)
    if not not_sent and failure.not_sent:
        failure = dataclasses.replace(failure, delivery=Delivery.MAYBE_SENT)
    cls: type[RstsafeError]
    host_args: tuple[Any, ...]
    if type(exc) is MaxRetryError:
        cls = NotSentMaxRetryError if not_sent else MaybeSentMaxRetryError
        host_args = (exc.pool, exc.url, exc.reason)
    elif type(exc) is ProtocolError:
        cls = NotSentProtocolError if not_sent else MaybeSentProtocolError
        host_args = exc.args
    else:
        return None
    message = describe_failure(failure, history=history, keepalive=keepalive.describe())
    return cls(message, failure=failure, history=history, host_args=host_args)


class _Request:
    """The request a pool's thread is sending: for stale retries and probe decisions."""

    __slots__ = ("attempts", "body", "body_info", "headers", "method", "policy", "started_at")

    def __init__(
        self, method: str, headers: Any, body: Any, policy: RetryPolicy, started_at: float
    ) -> None:
        self.method = method
        self.headers = headers
        self.body = body
        # Now, before the first attempt: a file's start position.
        self.body_info = NO_BODY if body is None else describe_body(body)
        self.policy = policy
        self.started_at = started_at
        self.attempts: RequestAttempts | None = None  # made at the first failure

    def replay(self) -> Any:
        return replayability(self.method, self.headers, self.body_info, rules=self.policy.rules)


class _PoolLocal(threading.local):
    """Per thread: the request being sent through this pool (None outside ``urlopen``).

    A class-level default, so that a thread reading it before it set it finds it without
    an ``AttributeError`` raised and caught on every request.
    """

    request: _Request | None = None


def _stale_only(policy: RetryPolicy) -> RetryPolicy:
    """The policy as the urllib3 adapters apply it: immediate stale retries only.

    Every other retry is the host's (urllib3's ``Retry``): ``retries`` and the backoff are
    not used here (docs/contract.md). Status retries would be a second, hidden
    ``status_forcelist``, so a policy with ``retry_statuses`` is refused.
    """
    if policy.retry_statuses:
        raise ValueError(
            "retry: retry_statuses is not used by rstsafe.urllib3 / rstsafe.requests; "
            "status retries are urllib3's: pass Retry(status_forcelist=...) as retries="
        )
    if policy.retries == 0:
        return policy
    return dataclasses.replace(policy, retries=0)


class HTTPConnectionPool(urllib3.HTTPConnectionPool):
    """urllib3's ``HTTPConnectionPool`` with rstsafe's keep-alive rules and stale retries.

    Args:
        host: As for urllib3.
        port: As for urllib3.
        *args: Passed to urllib3's pool.
        retry: rstsafe's retry policy (default ``RetryPolicy()``). Only its stale-retry
            part applies (``max_stale_retries``, ``retry_on``, ``rules``, ``timeout``):
            urllib3's ``retries`` decides every other retry, exactly as in urllib3.
            ``retry_statuses`` is refused (use urllib3's ``Retry(status_forcelist=...)``).
        keepalive: Keep-alive configuration, when no ``keepalive_registry`` is given.
        keepalive_registry: Per-origin keep-alive state shared with other pools.
        **kwargs: Passed to urllib3's pool (and its connections).

    Raises:
        ValueError: ``retry`` has ``retry_statuses``, or both ``keepalive`` and
            ``keepalive_registry`` were given.

    Attributes:
        retry_policy: rstsafe's retry policy, as given.
        keepalive_registry: The keep-alive states, per origin.
        origin: Scheme, host and port of the pool's connections.
        keepalive_state: The origin's keep-alive state (TTL source, learned bounds).
    """

    ConnectionCls = HTTPConnection

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *args: Any,
        retry: RetryPolicy | None = None,
        keepalive: KeepAlive | None = None,
        keepalive_registry: KeepAliveRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a rstsafe.RetryPolicy, got {retry!r}")
        policy = retry if retry is not None else RetryPolicy()
        stale_policy = _stale_only(policy)
        if keepalive_registry is None:
            keepalive_registry = KeepAliveRegistry(keepalive)
        elif keepalive is not None and keepalive != keepalive_registry.config:
            raise ValueError("keepalive: give either keepalive or keepalive_registry, not both")
        super().__init__(host, port, *args, **kwargs)
        self.retry_policy = policy
        self._rstsafe_policy = stale_policy
        self.keepalive_registry = keepalive_registry
        default_port = urllib3.connectionpool.port_by_scheme.get(self.scheme, 80)
        self.origin = Origin(self.scheme, (self.host or "").lower(), self.port or default_port)
        self.keepalive_state = keepalive_registry.for_origin(self.origin)
        # A witness socket (OriginKeepAlive.offer_witness) is closed with the pool, or
        # when the pool is garbage collected, as urllib3 closes its idle connections.
        weakref.finalize(self, self.keepalive_state.release_witness)
        self._rstsafe_local = _PoolLocal()
        self._rstsafe_shared = _PoolShared(self.keepalive_state, self._rstsafe_local)

    # -- urllib3 extension points (rstsafe._compat.urllib3.OVERRIDDEN) -----------------

    def _new_conn(self) -> BaseHTTPConnection:
        conn = super()._new_conn()
        if isinstance(conn, HTTPConnection):
            conn.bind(self.origin, self._rstsafe_shared)
        return conn

    def _put_conn(self, conn: BaseHTTPConnection | None) -> None:
        if isinstance(conn, HTTPConnection) and conn._rstsafe_in_flight:
            # The response was read completely (or released): the request is finished.
            conn._rstsafe_in_flight = False
            if conn.sock is not None:
                keep_alive = conn._rstsafe_keep_alive
                life = conn._rstsafe_life
                if keep_alive is None:
                    # life.finish_request(None), inline: the life's clock is
                    # time.monotonic (_CLOCK).
                    life.requests_served += 1
                    life.last_used_at = time.monotonic()
                else:
                    life.finish_request(keep_alive)
        super()._put_conn(conn)

    def _make_request(  # noqa: PLR0917 - urllib3's signature
        self,
        conn: BaseHTTPConnection,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        retries: Retry | None = None,
        timeout: Any = DEFAULT_TIMEOUT,
        chunked: bool = False,
        response_conn: BaseHTTPConnection | None = None,
        preload_content: bool = True,
        decode_content: bool = True,
        enforce_content_length: bool = True,
    ) -> BaseHTTPResponse:
        """urllib3's ``_make_request``; a stale reused connection is retried at once.

        The retry runs on a fresh socket of the same connection object (closed, then
        connected again, through the proxy tunnel if any), so urllib3's ``urlopen``
        around it is unchanged: it sees a response, or the failure rstsafe did not act on.
        """
        while True:
            try:
                return super()._make_request(
                    conn,
                    method,
                    url,
                    body,
                    headers,
                    retries,
                    timeout,
                    chunked,
                    response_conn,
                    preload_content,
                    decode_content,
                    enforce_content_length,
                )
            except Exception as exc:
                request = self._rstsafe_local.request
                if request is None or not isinstance(conn, HTTPConnection):
                    raise  # not sent through our urlopen: nothing to decide
                if not self._stale_retry(request, conn, exc):
                    raise
                log.debug("retrying %s %s at once on a fresh connection", method, url)
                conn.close()
                if request.body_info.kind is BodyKind.SEEKABLE:
                    rewind_body(body, request.body_info)

    def _stale_retry(self, request: _Request, conn: HTTPConnection, exc: Exception) -> bool:
        """Learn from a failed attempt; True when rstsafe retries it (stale, and safe)."""
        attempts = request.attempts
        if attempts is None:
            attempts = request.attempts = RequestAttempts(
                policy=self._rstsafe_policy,
                replay=request.replay(),
                keepalive=self.keepalive_state,
                clock=_CLOCK,
                started_at=request.started_at,
            )
        life = conn.life
        decision = attempts.failed(exc, life.facts())
        failure = attempts.last_failure
        self._rstsafe_shared.refresh_soon()
        if failure is not None and failure.stale:
            self.discard_idle(life.last_used_at)
        return decision.action is RetryAction.RETRY_NOW

    def close(self) -> None:
        """Close the pool (urllib3's ``close``) and the origin's witness, if any."""
        super().close()
        self.keepalive_state.release_witness()

    def discard_idle(self, last_used_at: float) -> None:
        """Discard (when next taken) every idle connection last used at or before this time.

        Called when a reused connection turned out stale: any connection idle at least
        as long is likely stale too, and retrying on each in turn would burn retries.
        """
        self._rstsafe_shared.discard_idle(last_used_at)

    def urlopen(  # type: ignore[override]  # noqa: PLR0917 - urllib3's signature
        self,
        method: str,
        url: str,
        body: Any = None,
        headers: Any = None,
        retries: Retry | bool | int | None = None,
        redirect: bool = True,
        assert_same_host: bool = True,
        timeout: DefaultTimeoutType | float | urllib3.Timeout | None = DEFAULT_TIMEOUT,
        pool_timeout: int | None = None,
        release_conn: bool | None = None,
        chunked: bool = False,
        body_pos: Any = None,
        preload_content: bool = True,
        decode_content: bool = True,
        **response_kw: Any,
    ) -> BaseHTTPResponse:
        """urllib3's ``urlopen``, unchanged except for stale reused connections.

        Arguments, retries and errors are urllib3's. A request that met a stale reused
        connection is retried at once on a fresh one when that is safe (any method when
        nothing was sent, else idempotent with a replayable body), and idle connections
        at least as old are discarded.

        Raises:
            NotSentMaxRetryError: urllib3's ``MaxRetryError`` after rstsafe retried a
                stale connection; nothing reached the server.
            MaybeSentMaxRetryError: The same; the server may have received the request.
            NotSentProtocolError: urllib3's ``ProtocolError`` after a stale retry (with
                ``retries=False`` or ``Retry(read=False)``); nothing was sent.
            MaybeSentProtocolError: The same; the server may have received it.
        """
        local = self._rstsafe_local
        # urllib3 calls urlopen again for its own retries and redirects: the outer call's
        # request stays the one whose stale retries are counted and reported.
        outer = local.request
        request = outer
        if request is None:
            request = _Request(
                method,
                headers if headers is not None else self.headers,
                body,
                self._rstsafe_policy,
                time.monotonic(),
            )
            local.request = request
            state = self.keepalive_state
            state.note_request()  # the retry budget's deposit
            state.check_witness(_socket_is_open)
        try:
            return super().urlopen(
                method,
                url,
                body,
                headers,
                retries,
                redirect,
                assert_same_host,
                timeout=timeout,
                pool_timeout=pool_timeout,
                release_conn=release_conn,
                chunked=chunked,
                body_pos=body_pos,
                preload_content=preload_content,
                decode_content=decode_content,
                **response_kw,
            )
        except Exception as exc:
            if outer is not None or request.attempts is None:
                raise
            error = _acted_error(exc, request.attempts, self.keepalive_state)
            if error is None:
                raise
            raise error from exc
        finally:
            local.request = outer


def _socket_is_open(sock: object) -> bool:
    """Whether a witness socket is still open: nothing readable (no FIN, no data)."""
    return not wait_for_read(sock, timeout=0.0)  # type: ignore[arg-type]


# mypy sees two _new_conn signatures; at run time ours calls the HTTPS pool's (the MRO).
class HTTPSConnectionPool(HTTPConnectionPool, urllib3.HTTPSConnectionPool):  # type: ignore[misc]
    """urllib3's ``HTTPSConnectionPool`` with rstsafe's rules (see
    [`HTTPConnectionPool`][rstsafe.urllib3.HTTPConnectionPool])."""

    ConnectionCls = HTTPSConnection


_POOL_CLASSES: dict[str, type[urllib3.HTTPConnectionPool]] = {
    "http": HTTPConnectionPool,
    "https": HTTPSConnectionPool,
}


def _socket_options() -> list[Any]:
    # Imported here, not at the top: the socket helpers load at the first manager, so
    # that ``import rstsafe.urllib3`` stays cheap (issue 15).
    from rstsafe.sockets._helpers import urllib3_socket_options

    return urllib3_socket_options()


class _Manager(urllib3.PoolManager):
    """What :class:`PoolManager` and :class:`ProxyManager` share."""

    _default_socket_options: Callable[[], list[Any]] = staticmethod(_socket_options)

    def __init__(
        self,
        *args: Any,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        keepalive_registry: KeepAliveRegistry | None = None,
        **connection_pool_kw: Any,
    ) -> None:
        if keepalive_registry is None:
            keepalive_registry = KeepAliveRegistry(keepalive)
        elif keepalive is not None and keepalive != keepalive_registry.config:
            raise ValueError("keepalive: give either keepalive or keepalive_registry, not both")
        self.keepalive_registry = keepalive_registry
        self.retry_policy = retry if retry is not None else RetryPolicy()
        _stale_only(self.retry_policy)  # refuse retry_statuses here, not at the first pool
        # Default options go to new pools directly (_new_pool), not into
        # connection_pool_kw: that would put them into every request's pool key.
        self._rstsafe_socket_options: list[Any] | None = None
        if "socket_options" not in connection_pool_kw:
            self._rstsafe_socket_options = type(self)._default_socket_options()
        super().__init__(*args, **connection_pool_kw)
        self.pool_classes_by_scheme = _POOL_CLASSES

    def _new_pool(
        self,
        scheme: str,
        host: str,
        port: int,
        request_context: dict[str, Any] | None = None,
    ) -> urllib3.HTTPConnectionPool:
        context = dict(self.connection_pool_kw if request_context is None else request_context)
        if self._rstsafe_socket_options is not None:
            context.setdefault("socket_options", self._rstsafe_socket_options)
        if issubclass(self.pool_classes_by_scheme[scheme], HTTPConnectionPool):
            context.setdefault("keepalive_registry", self.keepalive_registry)
            context.setdefault("retry", self.retry_policy)
        request_context = context
        return super()._new_pool(scheme, host, port, request_context)


class PoolManager(_Manager):
    """urllib3's ``PoolManager`` whose pools survive resets; configured in one place.

    Example:
        ```python
        http = rstsafe.urllib3.PoolManager(keepalive=KeepAlive(server_keepalive=5))
        ```

    Args:
        num_pools: As for urllib3.
        headers: As for urllib3.
        keepalive: Keep-alive configuration (idle TTL, lifetime, requests per connection).
        retry: rstsafe's retry policy; only its stale-retry part applies (see
            [`HTTPConnectionPool`][rstsafe.urllib3.HTTPConnectionPool]); urllib3's ``retries``
            decides every other retry.
        keepalive_registry: Per-origin keep-alive state to share (instead of ``keepalive``).
        **connection_pool_kw: As for urllib3. ``socket_options`` defaults to urllib3's
            defaults plus TCP keepalive
            ([`rstsafe.sockets.urllib3_socket_options`][rstsafe.sockets.urllib3_socket_options]).

    Attributes:
        retry_policy: rstsafe's retry policy, shared by every pool.
        keepalive_registry: The keep-alive state of every origin, shared by every pool.
    """

    def __init__(
        self,
        num_pools: int = 10,
        headers: Any = None,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        keepalive_registry: KeepAliveRegistry | None = None,
        **connection_pool_kw: Any,
    ) -> None:
        super().__init__(
            num_pools,
            headers,
            keepalive=keepalive,
            retry=retry,
            keepalive_registry=keepalive_registry,
            **connection_pool_kw,
        )


def _proxy_socket_options() -> list[Any]:
    # urllib3 keeps Nagle's algorithm on for proxies (empty default options); add only
    # the keepalive options.
    from rstsafe.sockets._helpers import keepalive_options

    return [(level, name, value) for level, name, value in keepalive_options()]


class ProxyManager(_Manager, urllib3.ProxyManager):
    """urllib3's ``ProxyManager`` with rstsafe's pools (arguments as
    [`PoolManager`][rstsafe.urllib3.PoolManager]).

    The keep-alive state is per connection endpoint: the proxy for plain HTTP, the
    target for HTTPS through a tunnel.
    """

    _default_socket_options = staticmethod(_proxy_socket_options)

    def __init__(
        self,
        proxy_url: str,
        num_pools: int = 10,
        headers: Any = None,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        keepalive_registry: KeepAliveRegistry | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            proxy_url,
            num_pools,
            headers,
            keepalive=keepalive,
            retry=retry,
            keepalive_registry=keepalive_registry,
            **kwargs,
        )


def proxy_from_url(url: str, **kwargs: Any) -> ProxyManager:
    """``urllib3.proxy_from_url`` returning a rstsafe
    [`ProxyManager`][rstsafe.urllib3.ProxyManager]."""
    return ProxyManager(url, **kwargs)
