"""rstsafe for httpx: transports that keep httpx's contract and survive stale connections.

``Transport`` *is* an ``httpx.HTTPTransport`` (and ``AsyncTransport`` an
``httpx.AsyncHTTPTransport``): same constructor arguments, same ``_pool`` (the httpcore
pool httpx would build, for every proxy kind httpx supports), same request building,
TLS, HTTP/2 and exception mapping, because those are httpx's own methods. rstsafe adds
exactly two things:

1. an idle expiry: the pool is built with rstsafe's network back end
   (``rstsafe.httpx._network``), whose streams answer httpcore's expiry question with
   rstsafe's per-origin TTL (configured, ``Keep-Alive`` header, or learned), lifetime and
   request limits;
2. the immediate resend of a request that met a stale *reused* connection (reset or
   closed before any response byte), on a fresh connection, when that is safe: any
   method when provably nothing was sent; otherwise an idempotent method or an
   ``Idempotency-Key``, with a replayable body; at most ``RetryPolicy.max_stale_retries``
   times.

Everything else is httpx's. Its ``retries=`` (httpcore's connect retries) decides every
other retry; rstsafe's backoff retries (``RetryPolicy.retries``, ``retry_statuses``) are
refused at construction. A failure rstsafe does not act on passes through unchanged:
the very exception httpx raised. When rstsafe acted (a stale reused connection, or an
earlier attempt it resent), it raises a subclass of the exact httpx class
(``rstsafe.httpx.MaybeSentReadError`` ...) with httpx's ``args`` and the facts. Read
timeouts are never retried.

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
from collections.abc import AsyncIterator, Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx

from rstsafe._compat.httpx import build_pool, transport_arguments
from rstsafe._core.attempts import RequestAttempts
from rstsafe._core.classify import ConnectionFacts
from rstsafe._core.clock import Clock
from rstsafe._core.idempotency import replayability
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry
from rstsafe._core.retry import RetryAction, RetryPolicy
from rstsafe.httpx._errors import error_pair
from rstsafe.httpx._state import (
    _CURRENT,
    _Attempt,
    _body_info,
    _keep_alive_header,
    _Shared,
    witness_is_open,
)

if TYPE_CHECKING:
    from rstsafe.httpx._network import _AsyncBackend, _Backend

__all__ = ("AsyncTransport", "Transport", "checked_retry_policy")

# The host classes, captured at import: a test harness may swap httpx.HTTPTransport
# for this module's Transport afterwards.
_HTTPTransport = httpx.HTTPTransport
_AsyncHTTPTransport = httpx.AsyncHTTPTransport

# What rstsafe.httpx resends by default: stale reused connections only (2 in a row).
_DEFAULT_POLICY = RetryPolicy(retries=0)


def checked_retry_policy(retry: object) -> RetryPolicy:
    """The policy to use for ``retry=`` (None: the default); refuses backoff retries.

    Raises:
        TypeError: ``retry`` is not a ``rstsafe.RetryPolicy``.
        ValueError: ``retry.retries`` or ``retry.retry_statuses`` is set: those retries
            are httpx's to decide (``retries=``) or the caller's (tenacity).
    """
    if retry is None:
        return _DEFAULT_POLICY
    if not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry must be a rstsafe.RetryPolicy or None, got {type(retry).__name__}")
    elsewhere = (
        "rstsafe.httpx resends only a request that met a stale reused connection"
        " (retry.max_stale_retries); every other retry is httpx's: pass retries=N to the"
        " transport for connect retries, or wrap calls in tenacity with"
        " rstsafe.retry_if_safe"
    )
    if retry.retries:
        raise ValueError(f"retry.retries must be 0, got {retry.retries}: {elsewhere}")
    if retry.retry_statuses:
        statuses = sorted(retry.retry_statuses)
        raise ValueError(f"retry.retry_statuses must be empty, got {statuses}: {elsewhere}")
    return retry


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
        state = shared.state(self._origin)
        state.note_request()  # the retry budget's deposit
        state.check_witness(witness_is_open)  # seen open longer, or closed: learned

    @property
    def _attempts(self) -> RequestAttempts:
        """The request's attempts, built on first need (a failure, a Keep-Alive header)."""
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
        """End the attempt started by ``begin``."""
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

    def failed(self, exc: httpx.TransportError) -> bool:
        """Learn from a failed attempt: True to resend now on a fresh connection.

        False when rstsafe does not act on it: the caller re-raises ``exc`` unchanged.
        Raises rstsafe's error (a subclass of ``type(exc)``) when it acted and gives up.
        """
        attempts = self._attempts
        resent_before = len(attempts.history) > 0
        facts = self.facts()
        judged: Exception = exc
        learn = True
        tracker = self._attempt.tracker
        if (
            tracker is not None
            and tracker.server_closed
            and isinstance(exc, httpx.ReadError)
            and not facts.bytes_received
        ):
            # httpcore gave this request an idle connection that another task's pass then
            # found closed by the server (a liveness check) and closed, after this request
            # had written: its read fails on a socket closed under it (trio's "already
            # closed", anyio's ClosedResourceError), which says nothing by itself. The
            # server had closed the connection before answering: a stale connection, as
            # httpcore's "Server disconnected" would say. The check already taught the close.
            judged = httpx.RemoteProtocolError("Server disconnected without sending a response.")
            learn = False
        decision = attempts.failed(judged, facts, learn=learn)
        failure = attempts.last_failure
        assert failure is not None
        if failure.stale:
            self._shared.epoch += 1  # the learned TTL may have shortened
        elif not resent_before:
            return False  # not rstsafe's: httpx's own error, untouched
        if decision.action is RetryAction.RETRY_NOW:
            # Only when the close reads as an idle timeout or a restart: a close at a
            # request limit (or at idle ~0) says nothing of the idle peers, and expiring
            # them would waste every request they had left.
            if (
                tracker is not None
                and failure.stale
                and facts.idle_seconds is not None
                and tracker.keepalive.closes_idle_peers(
                    facts.idle_seconds, requests_served=facts.requests_served
                )
            ):
                self._shared.expire_idle(tracker.life.origin, tracker.life.last_used_at)
            return True
        # RETRY_AFTER cannot come from a policy with retries=0 (checked_retry_policy).
        pair = error_pair(exc)
        if pair is None:  # not one of httpx's classes (a custom transport under httpx?)
            return False
        not_sent, maybe_sent = pair
        error = attempts.error(
            not_sent_cls=not_sent, maybe_sent_cls=maybe_sent, request=self._request
        )
        error.args = exc.args  # httpx's args; str(error) is rstsafe's message
        raise error from exc

    def responded(self, response: httpx.Response) -> None:
        """Learn from a response (a successful reuse, a ``Keep-Alive`` header)."""
        keep_alive = _keep_alive_header(response.headers.raw)
        attempt, shared = self._attempt, self._shared
        if keep_alive is None:
            # The common case, kept cheap: all there is to learn is a successful reuse.
            if attempt.reused and not (attempt.tracker and attempt.tracker.multiplexed):
                shared.reused_ok(self._origin, attempt.idle)
        else:
            self._attempts.succeeded(self.facts(), keep_alive=keep_alive)
            shared.saw_header(self._origin, keep_alive)  # after the state learned it
        tracker = attempt.tracker
        if tracker is not None:
            finish = tracker.finisher(keep_alive)
            if isinstance(response.stream, httpx.SyncByteStream):
                response.stream = _ResponseStream(response.stream, finish)
            else:
                response.stream = _AsyncResponseStream(response.stream, finish)


def _inner_limits(limits: httpx.Limits, keepalive: KeepAlive, http2: bool) -> httpx.Limits:
    """The pool's limits: rstsafe's TTL replaces httpcore's keepalive_expiry.

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


class _TransportMixin:
    """Construction and introspection shared by ``Transport`` and ``AsyncTransport``."""

    _host_class: type[httpx.HTTPTransport] | type[httpx.AsyncHTTPTransport]
    #: Whether the async back end serves the pool (``rstsafe.httpx._network``, loaded
    #: with httpcore at the first transport built, as httpx loads httpcore).
    _is_async: bool
    _shared: _Shared
    _pool: Any
    _backend: _Backend | _AsyncBackend

    def _build(
        self,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        *,
        keepalive: KeepAlive | None,
        retry: RetryPolicy | None,
        clock: Clock | None,
    ) -> None:
        # The host's own signature decides what the arguments mean (and refuses unknown
        # ones with its TypeError).
        arguments = transport_arguments(self._host_class, args, kwargs)
        if keepalive is not None and not isinstance(keepalive, KeepAlive):
            raise TypeError(
                f"keepalive must be a rstsafe.KeepAlive or None, got {type(keepalive).__name__}"
            )
        config = keepalive if keepalive is not None else KeepAlive()
        policy = checked_retry_policy(retry)
        http1, http2 = bool(arguments["http1"]), bool(arguments["http2"])
        limits: httpx.Limits = arguments["limits"]
        shared = _Shared(config, policy, h2_prior_knowledge=http2 and not http1, clock=clock)
        self._shared = shared
        arguments["limits"] = _inner_limits(limits, config, http2)
        # Imported here: the first transport loads them, as httpx loads httpcore.
        from rstsafe.httpx import _network
        from rstsafe.sockets._helpers import httpx_socket_options

        arguments["socket_options"] = httpx_socket_options(arguments["socket_options"])

        backend_class: type[_Backend] | type[_AsyncBackend] = (
            _network._AsyncBackend if self._is_async else _network._Backend
        )
        backend = backend_class(shared, limits.max_connections)
        # httpx.HTTPTransport.__init__ only builds this pool; rstsafe builds the same one
        # with its network back end (httpx takes no network_backend=).
        self._pool = build_pool(is_async=self._is_async, network_backend=backend, **arguments)
        self._backend = backend

    @property
    def keepalive_registry(self) -> KeepAliveRegistry:
        """The per-origin keep-alive states (header seen, what was learned)."""
        return self._shared.registry

    @property
    def retry_policy(self) -> RetryPolicy:
        """The retry policy (its ``max_stale_retries`` and ``timeout`` apply)."""
        return self._shared.policy

    @property
    def open_sockets(self) -> int:
        """Sockets of this transport's pool open (or being opened) right now."""
        return self._backend.open_sockets


class Transport(_TransportMixin, httpx.HTTPTransport):
    """An ``httpx.HTTPTransport`` that survives stale keep-alive connections.

    Takes every argument of ``httpx.HTTPTransport`` (``verify``, ``cert``,
    ``trust_env``, ``http1``, ``http2``, ``limits``, ``proxy`` of every kind httpx
    supports, ``uds``, ``local_address``, ``retries``, ``socket_options``), positionally
    as the installed httpx orders them, and builds the same httpcore pool as
    ``_pool``. On top of httpx:

    * idle connections are closed before the server's keep-alive runs out (per-origin
      TTL: ``KeepAlive.server_keepalive``, the ``Keep-Alive`` header, or learned from
      observed closes), and after ``max_lifetime`` or ``max_requests``;
      ``limits.keepalive_expiry`` is replaced by that TTL;
    * a request that met a stale *reused* connection is resent at once on a fresh one
      when that is safe (any method when provably nothing was sent; otherwise
      idempotent or keyed, with a bytes body), at most ``retry.max_stale_retries``
      times; rstsafe then raises, if it gives up, a subclass of the httpx error
      (``rstsafe.httpx.MaybeSentReadError`` ...) carrying the facts;
    * every other failure is httpx's, raised unchanged; ``retries=`` is httpx's
      connect retries.

    ``socket_options=None`` (the default) means TCP keepalive probes
    (``rstsafe.keepalive_options``) after ``TCP_NODELAY``; ``[]`` for none.

    Example:
        ``transport = rstsafe.httpx.Transport(keepalive=KeepAlive(server_keepalive=75))``
        ``client = httpx.Client(transport=transport)``

    Args:
        *args: ``httpx.HTTPTransport``'s arguments.
        keepalive: Idle TTL, lifetime and learning (default ``KeepAlive()``).
        retry: ``max_stale_retries`` and ``timeout`` of the stale resend (default
            ``RetryPolicy(retries=0)``); ``retries`` and ``retry_statuses`` must be unset.
        clock: Monotonic clock (tests).
        **kwargs: ``httpx.HTTPTransport``'s arguments.
    """

    _host_class = _HTTPTransport
    _is_async = False

    def __init__(
        self,
        *args: Any,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        """Build httpx's pool with rstsafe's network back end (see the class docstring)."""
        # Not httpx.HTTPTransport.__init__: all it does is build the pool, built here.
        self._build(args, kwargs, keepalive=keepalive, retry=retry, clock=clock)

    def close(self) -> None:
        """httpx's ``close``, and the origins' witnesses (see ``_network``) closed too."""
        try:
            super().close()
        finally:
            self._backend.release_witnesses()

    def __exit__(self, *exc_info: Any) -> None:
        try:
            super().__exit__(*exc_info)
        finally:
            self._backend.release_witnesses()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's ``handle_request``, resending after a stale reused connection when safe."""
        driver = _RequestDriver(request, self._shared)
        while True:
            token = driver.begin()
            try:
                response = super().handle_request(request)
            except httpx.TransportError as exc:
                if not driver.failed(exc):
                    raise
            else:
                driver.responded(response)
                return response
            finally:
                driver.end(token)


class AsyncTransport(_TransportMixin, httpx.AsyncHTTPTransport):
    """The async twin of ``Transport``: an ``httpx.AsyncHTTPTransport``, asyncio or trio.

    Same arguments and behaviour as ``Transport``.
    """

    _host_class = _AsyncHTTPTransport
    _is_async = True

    def __init__(
        self,
        *args: Any,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        **kwargs: Any,
    ) -> None:
        """Build httpx's pool with rstsafe's network back end (see ``Transport``)."""
        # Not httpx.AsyncHTTPTransport.__init__: all it does is build the pool.
        self._build(args, kwargs, keepalive=keepalive, retry=retry, clock=clock)

    async def aclose(self) -> None:
        """httpx's ``aclose``, and the origins' witnesses (see ``_network``) closed too."""
        try:
            await super().aclose()
        finally:
            self._backend.release_witnesses()
            await self._backend.aclose_pending()

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await super().__aexit__(*exc_info)
        finally:
            self._backend.release_witnesses()
            await self._backend.aclose_pending()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """httpx's ``handle_async_request``, resending after a stale connection when safe."""
        driver = _RequestDriver(request, self._shared)
        if self._backend.pending_closes:  # witnesses released by the driver's look
            await self._backend.aclose_pending()
        while True:
            token = driver.begin()
            try:
                response = await super().handle_async_request(request)
            except httpx.TransportError as exc:
                if not driver.failed(exc):
                    raise
            else:
                driver.responded(response)
                return response
            finally:
                driver.end(token)
