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


# aiohttp's own retry (ClientSession._request): once, for these methods, after
# ClientOSError or ServerDisconnectedError (aiohttp.client.IDEMPOTENT_METHODS).
_AIOHTTP_RETRIES = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})

# When rstsafe gives up on a request that aiohttp will resend (see above), the
# request's attempts are carried to the middleware's next call in the same task, which
# is aiohttp's resend: rstsafe's budget holds across it. The next call takes the carry
# whatever it is; only the same method and URL continue it (a caller resending the
# same request at once continues it too, which only ever means fewer retries).
_CARRY: contextvars.ContextVar[tuple[str, object, RequestAttempts] | None] = contextvars.ContextVar(
    "rstsafe_aiohttp_carry", default=None
)


def _attempts_for(
    shared: Shared,
    request: ClientRequest,
    started_at: float,
    carry: tuple[str, object, RequestAttempts] | None,
) -> RequestAttempts:
    """The attempts of this request, continued from aiohttp's resend of it if any."""
    if carry is not None and carry[0] == request.method and carry[1] == request.url:
        return carry[2]
    policy = shared.policy
    return RequestAttempts(
        policy=policy,
        replay=replayability(
            request.method, request.headers, body_info(request), rules=policy.rules
        ),
        keepalive=shared.state(shared.origin_of(request.url)),
        clock=shared.clock,
        started_at=started_at,
    )


def _failed(
    shared: Shared,
    request: ClientRequest,
    attempt: _Attempt,
    attempts: RequestAttempts,
    exc: BaseException,
) -> bool:
    """Learn from a failed attempt; True to resend now, False to let ``exc`` through.

    Raises rstsafe's error instead when rstsafe acted on the request: it met a stale
    reused connection, or rstsafe resent it before.
    """
    origin = shared.origin_of(request.url)
    decision = attempts.failed(exc, attempt.facts(origin))
    failure = attempts.last_failure
    assert failure is not None
    if failure.stale:
        shared.epoch += 1  # the learned TTL may have shortened
    if decision.retry:
        tracked = attempt.tracked
        if decision.fresh_connection and tracked is not None:
            shared.expire_idle(origin, tracked.life.last_used_at)
        return True
    if not (failure.stale or attempts.history.stale_retries_used):
        return False  # not rstsafe's to act on: aiohttp's exception, unchanged
    message = describe_failure(
        failure, history=attempts.history, keepalive=shared.state(origin).describe()
    )
    error = build_error(exc, failure, attempts.history, message)
    if error is None:
        return False
    if request.method in _AIOHTTP_RETRIES and isinstance(
        error, (aiohttp.ClientOSError, aiohttp.ServerDisconnectedError)
    ):
        _CARRY.set((request.method, request.url, attempts))
    raise error from exc


def _saw_keep_alive(
    shared: Shared, request: ClientRequest, attempt: _Attempt, keep_alive: str, status: int
) -> None:
    """A response with ``Keep-Alive``: the origin's TTL and the connection's ``max=``."""
    tracked = attempt.tracked
    assert tracked is not None
    origin = tracked.life.origin
    assert origin is not None
    attempts = _attempts_for(shared, request, attempt.started or shared.now(), None)
    attempts.succeeded(attempt.facts(origin), status=status, keep_alive=keep_alive)
    shared.saw_header(origin, keep_alive)
    announced = parse_keep_alive(keep_alive).max
    if announced is not None:
        tracked.life.requests_remaining = announced
        tracked.recheck_at = float("-inf")


def _middleware(shared: Shared) -> Callable[[ClientRequest, _Handler], Awaitable[ClientResponse]]:
    """The innermost client middleware: one request's attempts, resent when safe."""
    ok_idle = shared.ok_idle

    async def rstsafe_middleware(request: ClientRequest, handler: _Handler) -> ClientResponse:
        carry = _CARRY.get()
        if carry is not None:
            _CARRY.set(None)
        attempts: RequestAttempts | None = None
        retry = False
        while True:
            attempt = _Attempt(request, retry)
            token = CURRENT_ATTEMPT.set(attempt)
            try:
                response = await handler(request)
            except (aiohttp.ClientError, OSError) as exc:
                if attempts is None:
                    attempts = _attempts_for(
                        shared, request, attempt.started or shared.now(), carry
                    )
                if not _failed(shared, request, attempt, attempts, exc):
                    raise
                retry = True
                continue
            finally:
                CURRENT_ATTEMPT.reset(token)
            tracked = attempt.tracked
            if tracked is not None:
                # The retry budget's deposit (OriginKeepAlive.note_request), into the
                # connection's origin state, timed when the attempt got its connection:
                # no clock read or origin lookup of its own.
                tracked.keepalive.retry_budget.deposit(attempt.started)
                if attempt.served:  # a reuse that worked: a lower bound (see Shared.reused_ok)
                    origin = tracked.life.origin
                    seen = ok_idle.get(origin)  # type: ignore[arg-type]
                    if seen is None or seen[0] != shared.epoch or attempt.idle > seen[1]:
                        shared.reused_ok(origin, attempt.idle)  # type: ignore[arg-type]
                keep_alive = response.headers.get("Keep-Alive")
                if keep_alive is not None:
                    _saw_keep_alive(shared, request, attempt, keep_alive, response.status)
            return response

    return rstsafe_middleware


def _middleware_of(shared: Shared) -> Any:
    """The connector's one middleware (every session on it shares its state)."""
    if shared.middleware is None:
        shared.middleware = _middleware(shared)
    return shared.middleware


def _with_ours(shared: Shared, kwargs: dict[str, Any]) -> dict[str, Any]:
    """A request's own ``middlewares=`` replaces the session's: keep rstsafe's, last."""
    given = kwargs.get("middlewares")
    if given is not None and HAS_MIDDLEWARES:
        kwargs["middlewares"] = (*given, _middleware_of(shared))
    return kwargs


# The class rstsafe's session extends, and its request methods, read once here: the
# overrides below call them directly (cheaper than super() on every request), and a name
# looked up on the aiohttp module at call time would be rstsafe's class itself wherever
# aiohttp.ClientSession is patched to it (the contract runs).
_Base = aiohttp.ClientSession
_base_request = _Base.request
_base_get = _Base.get
_base_options = _Base.options
_base_head = _Base.head
_base_post = _Base.post
_base_put = _Base.put
_base_patch = _Base.patch
_base_delete = _Base.delete

with quiet_subclassing():

    class ClientSession(_Base):
        """An ``aiohttp.ClientSession`` that survives "Connection reset by peer".

        Takes every ``aiohttp.ClientSession`` argument, plus ``keepalive=`` and ``retry=``.
        Without ``connector=`` it builds a
        [`rstsafe.aiohttp.TCPConnector`][rstsafe.aiohttp.TCPConnector] (which
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
            connector: A [`rstsafe.aiohttp.TCPConnector`][rstsafe.aiohttp.TCPConnector], or None to
                build one. Any other connector (``aiohttp.UnixConnector``, a
                ``BaseConnector`` of your own) makes a plain aiohttp session: no expiry, no
                retry.
            middlewares: Your middlewares; rstsafe's runs innermost, after them.
            **kwargs: Everything else ``aiohttp.ClientSession`` takes.
        """

        ATTRS = SESSION_ATTRS
        _rstsafe: Shared | None

        def __init__(
            self,
            base_url: Any = None,
            *,
            keepalive: KeepAlive | None = None,
            retry: RetryPolicy | None = None,
            connector: aiohttp.BaseConnector | None = None,
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
            elif keepalive is not None or retry is not None:
                raise ValueError(
                    "keepalive and retry must be given to the TCPConnector passed as"
                    " connector=, not to the session"
                )
            if not isinstance(connector, TCPConnector):
                # Another connector (aiohttp's UnixConnector, your own BaseConnector):
                # the session is aiohttp's, unchanged. rstsafe's expiry and retry live in
                # its connector, and the retry needs that connector's byte counts.
                self._rstsafe = None
                if middlewares:
                    kwargs["middlewares"] = middlewares
            else:
                self._rstsafe = connector._rstsafe
                if HAS_MIDDLEWARES:
                    kwargs["middlewares"] = (*middlewares, _middleware_of(self._rstsafe))
                elif middlewares:  # pragma: no cover - aiohttp < 3.12 has no middlewares
                    raise TypeError("middlewares need aiohttp >= 3.12")
            super().__init__(base_url, connector=connector, **kwargs)

        def _shared(self) -> Shared:
            shared = self._rstsafe
            if shared is None:
                raise AttributeError(
                    "this session's connector is not a rstsafe.aiohttp.TCPConnector: it has"
                    " no keep-alive registry or retry policy"
                )
            return shared

        @property
        def keepalive_registry(self) -> KeepAliveRegistry:
            """The per-origin keep-alive states of the connector."""
            return self._shared().registry

        @property
        def retry_policy(self) -> RetryPolicy:
            """The retry policy."""
            return self._shared().policy

        # A request passing its own middlewares= replaces the session's (aiohttp's rule):
        # these keep rstsafe's, last. Plain forwarding otherwise (no extra await layer),
        # to the base class's methods read at import (see _Base above).

        def request(self, method: str, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.request``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_request(self, method, url, **kwargs)

        def get(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.get``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_get(self, url, **kwargs)

        def options(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.options``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_options(self, url, **kwargs)

        def head(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.head``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_head(self, url, **kwargs)

        def post(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.post``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_post(self, url, **kwargs)

        def put(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.put``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_put(self, url, **kwargs)

        def patch(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.patch``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_patch(self, url, **kwargs)

        def delete(self, url: Any, **kwargs: Any) -> Any:
            """As ``aiohttp.ClientSession.delete``."""
            if "middlewares" in kwargs and self._rstsafe is not None:
                _with_ours(self._rstsafe, kwargs)
            return _base_delete(self, url, **kwargs)
