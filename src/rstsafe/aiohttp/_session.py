"""rstsafe's aiohttp session: the immediate, safe retry of a request that met a stale connection.

The contract with aiohttp: rstsafe adds exactly two things, the idle expiry (in
:class:`~rstsafe.aiohttp.TCPConnector`) and the immediate retry on a fresh connection of
a request that failed on a stale reused one (here, in a client middleware, aiohttp >=
3.12). Everything else is aiohttp's, its own retry included: aiohttp resends an
idempotent request once after ``ClientOSError`` or ``ServerDisconnectedError``, calling
the middlewares again with a new ``ClientRequest``. rstsafe's budget
(``RetryPolicy.max_stale_retries``) is kept per logical request across that retry, so a
GET is tried at most ``1 + max_stale_retries + 1`` times and a POST (which aiohttp never
resends) at most ``1 + max_stale_retries`` times, and only when provably nothing of it
was sent or it carries an idempotency key.

A failure rstsafe does not act on (a fresh connection refused, a timeout, a TLS error, a
body cut short after the headers) passes through unchanged. Where it acts (the request
met a stale reused connection, or was resent by rstsafe) it raises a subclass of the
exact aiohttp exception that is also a :class:`rstsafe.RequestNotSentError` or
:class:`rstsafe.RequestMaybeSentError` (see ``_errors.py``).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp.client_reqrep import ClientRequest, ClientResponse

from rstsafe._compat.aiohttp import HAS_MIDDLEWARES, SESSION_ATTRS, quiet_subclassing
from rstsafe._core.attempts import RequestAttempts
from rstsafe._core.errors import describe_failure
from rstsafe._core.idempotency import replayability
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry, parse_keep_alive
from rstsafe._core.retry import RetryPolicy
from rstsafe.aiohttp._connector import (
    CURRENT_ATTEMPT,
    Shared,
    TCPConnector,
    _Attempt,
    body_info,
)
from rstsafe.aiohttp._errors import build_error

__all__ = ("ClientSession",)

_Handler = Callable[[ClientRequest], Awaitable[ClientResponse]]


class _Logical:
    """One ``ClientSession._request`` call: one logical request, aiohttp's retry included."""

    __slots__ = ("attempts", "key")

    def __init__(self) -> None:
        self.key: tuple[str, object] | None = None
        self.attempts: RequestAttempts | None = None


_LOGICAL: contextvars.ContextVar[_Logical | None] = contextvars.ContextVar(
    "rstsafe_aiohttp_request", default=None
)


def _attempts_for(
    shared: Shared, request: ClientRequest, attempt: _Attempt, started_at: float
) -> RequestAttempts:
    """The attempts of this hop, shared with aiohttp's own retry of it (same method, URL)."""
    logical = _LOGICAL.get()
    key = (request.method, request.url)
    if logical is not None and logical.key == key and logical.attempts is not None:
        return logical.attempts
    policy = shared.policy
    attempts = RequestAttempts(
        policy=policy,
        replay=replayability(
            request.method, request.headers, body_info(request), rules=policy.rules
        ),
        keepalive=shared.state(attempt.origin),
        clock=shared.clock,
        started_at=started_at,
    )
    if logical is not None:
        logical.key, logical.attempts = key, attempts
    return attempts


def _middleware(shared: Shared) -> Callable[[ClientRequest, _Handler], Awaitable[ClientResponse]]:
    """The innermost client middleware: one request's attempts, retried when safe."""

    async def rstsafe_middleware(request: ClientRequest, handler: _Handler) -> ClientResponse:
        origin = shared.origin_of(request.url)
        started_at = shared.now()
        attempts: RequestAttempts | None = None
        retry = False
        while True:
            attempt = _Attempt(origin, request, retry=retry)
            token = CURRENT_ATTEMPT.set(attempt)
            try:
                response = await handler(request)
            except (aiohttp.ClientError, OSError) as exc:
                if attempts is None:
                    attempts = _attempts_for(shared, request, attempt, started_at)
                decision = attempts.failed(exc, attempt.facts())
                failure = attempts.last_failure
                assert failure is not None
                if failure.stale:
                    shared.epoch += 1  # the learned TTL may have shortened
                if not decision.retry:
                    if failure.stale or attempts.history.stale_retries_used:
                        message = describe_failure(
                            failure,
                            history=attempts.history,
                            keepalive=shared.state(origin).describe(),
                        )
                        error = build_error(exc, failure, attempts.history, message)
                        if error is not None:
                            raise error from exc
                    raise  # not rstsafe's to act on: aiohttp's exception, unchanged
                tracked = attempt.tracked
                if decision.fresh_connection and tracked is not None:
                    shared.expire_idle(origin, tracked.life.last_used_at)
                retry = True
                continue
            finally:
                CURRENT_ATTEMPT.reset(token)
            _responded(
                shared,
                request=request,
                attempt=attempt,
                response=response,
                attempts=attempts,
                started_at=started_at,
            )
            return response

    return rstsafe_middleware


def _middleware_of(shared: Shared) -> Any:
    """The connector's one middleware (every session on it shares its state)."""
    if shared.middleware is None:
        shared.middleware = _middleware(shared)
    return shared.middleware


def _responded(
    shared: Shared,
    *,
    request: ClientRequest,
    attempt: _Attempt,
    response: ClientResponse,
    attempts: RequestAttempts | None,
    started_at: float,
) -> None:
    """Learn from a response: a successful reuse, the ``Keep-Alive`` header."""
    tracked = attempt.tracked
    if tracked is None:
        return
    if attempt.reused:
        shared.reused_ok(attempt.origin, attempt.idle)
    keep_alive = response.headers.get("Keep-Alive")
    if keep_alive is None:
        return
    if attempts is None:
        attempts = _attempts_for(shared, request, attempt, started_at)
    attempts.succeeded(attempt.facts(), status=response.status, keep_alive=keep_alive)
    shared.saw_header(attempt.origin, keep_alive)
    announced = parse_keep_alive(keep_alive).max
    if announced is not None:
        tracked.life.requests_remaining = announced
        tracked.recheck_at = float("-inf")


with quiet_subclassing():

    class ClientSession(aiohttp.ClientSession):
        """An ``aiohttp.ClientSession`` that survives "Connection reset by peer".

        Takes every ``aiohttp.ClientSession`` argument, plus ``keepalive=`` and ``retry=``.
        Without ``connector=`` it builds a :class:`rstsafe.aiohttp.TCPConnector` (which
        closes idle connections before the server's keep-alive runs out, per origin:
        configured, announced by ``Keep-Alive: timeout=N``, or learned). On top of it,
        with aiohttp >= 3.12 (client middlewares), a request that failed on a stale
        reused connection is resent at once on a fresh one when that is safe: any method
        when provably nothing was sent, otherwise only idempotent methods or requests
        with an ``Idempotency-Key``, and only with a replayable body (bytes, str, JSON,
        form data; never an async generator or a file). A POST is never executed twice.

        Args:
            base_url: As ``aiohttp.ClientSession``.
            keepalive: Idle TTL, lifetime and learning (default ``KeepAlive()``); give
                it to the connector instead when you pass ``connector=``.
            retry: The stale-connection retries (default ``RetryPolicy(retries=0)``;
                ``retries`` must be 0: backoff retries stay yours, see
                ``rstsafe.retry_if_safe``).
            connector: A :class:`rstsafe.aiohttp.TCPConnector`, or None to build one.
            middlewares: Your middlewares; rstsafe's runs innermost, after them.
            **kwargs: Everything else ``aiohttp.ClientSession`` takes.
        """

        ATTRS = SESSION_ATTRS

        def __init__(
            self,
            base_url: Any = None,
            *,
            keepalive: KeepAlive | None = None,
            retry: RetryPolicy | None = None,
            connector: TCPConnector | None = None,
            middlewares: Sequence[Any] = (),
            **kwargs: Any,
        ) -> None:
            """Build (or check) the connector and add rstsafe's middleware."""
            if connector is None:
                connector_kwargs: dict[str, Any] = {}
                for name in ("loop", "ssl_shutdown_timeout"):
                    if name in kwargs:
                        connector_kwargs[name] = kwargs[name]
                connector = TCPConnector(keepalive=keepalive, retry=retry, **connector_kwargs)
            elif not isinstance(connector, TCPConnector):
                raise TypeError(
                    "connector must be a rstsafe.aiohttp.TCPConnector (or None), got"
                    f" {connector!r}: rstsafe's retries need its connection facts"
                )
            elif keepalive is not None or retry is not None:
                raise ValueError(
                    "keepalive and retry must be given to the TCPConnector passed as"
                    " connector=, not to the session"
                )
            self._rstsafe = connector._rstsafe
            if HAS_MIDDLEWARES:
                kwargs["middlewares"] = (*middlewares, _middleware_of(self._rstsafe))
            elif middlewares:  # pragma: no cover - aiohttp < 3.12 has no middlewares
                raise TypeError("middlewares need aiohttp >= 3.12")
            super().__init__(base_url, connector=connector, **kwargs)

        @property
        def keepalive_registry(self) -> KeepAliveRegistry:
            """The per-origin keep-alive states of the connector."""
            return self._rstsafe.registry

        @property
        def retry_policy(self) -> RetryPolicy:
            """The retry policy."""
            return self._rstsafe.policy

        async def _request(self, method: str, str_or_url: Any, **kwargs: Any) -> ClientResponse:
            # One logical request (touch point 1 of rstsafe._compat.aiohttp). A request
            # passing its own middlewares= replaces the session's: rstsafe's stays last.
            given = kwargs.get("middlewares")
            if given is not None and HAS_MIDDLEWARES:
                kwargs["middlewares"] = (*given, _middleware_of(self._rstsafe))
            token = _LOGICAL.set(_Logical())
            try:
                return await super()._request(method, str_or_url, **kwargs)
            finally:
                _LOGICAL.reset(token)
