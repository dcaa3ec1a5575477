"""``rstsafe.Pool`` and ``rstsafe.AsyncPool``: connection pools for any TCP protocol.

For protocols other than HTTP (Redis, IM, custom RPC) the pool owns what the field guide asks of
anything that reuses connections: a heartbeat that validates a new connection before it is handed
out (C4, accept-queue overflow: the handshake completed but nobody will ever serve it), validation
of a connection that sat idle (C1, C3, C7), an idle TTL and a jittered maximum lifetime below the
limits of the servers and middleboxes in between (C3), and discarding a connection that failed in
use instead of handing it to the next caller.

Layout, after httpcore: one decision core, :class:`_PoolCore`, holds the state and makes every
decision, with no I/O and no locks. Its operations (borrow, release, maintain, close) are
generators that *yield* the I/O they need (connect, heartbeat, close, wait, sleep) and receive
the outcome. The two drivers, :class:`Pool` (threads) and :class:`AsyncPool` (asyncio), are short
loops that run a plan's steps under their own lock and perform the I/O outside it. The questions
"has this connection expired?" and "does it need validating?" are the pure functions
:func:`expiry_reason` and :func:`needs_validation`, tested with a ``ManualClock``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import inspect
import random
import socket
import threading
import types
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from dataclasses import dataclass
from typing import Generic, NoReturn, Protocol, TypeVar, Union, cast

from rstsafe._core.clock import Clock, MonotonicClock, jittered
from rstsafe._core.errors import RstsafeError, publish_errors
from rstsafe.sockets._helpers import graceful_close

__all__ = (
    "AsyncPool",
    "DiscardReason",
    "HeartbeatTimeoutError",
    "NoHealthyConnectionError",
    "Pool",
    "PoolClosedError",
    "PoolConfig",
    "PoolCounters",
    "PoolError",
    "PoolTimeoutError",
    "expiry_reason",
    "needs_validation",
)

T = TypeVar("T")
R = TypeVar("R")


# ---------------------------------------------------------------------------------------------
# Configuration, counters, errors
# ---------------------------------------------------------------------------------------------


def _check_seconds(name: str, value: float | None, *, allow_none: bool, allow_zero: bool) -> None:
    """TypeError naming ``name`` for a non-number, ValueError for a bad number."""
    if value is None:
        if not allow_none:
            raise TypeError(f"{name} must be a number of seconds, got None")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, got {type(value).__name__} {value!r}")
    if not (value >= 0.0 if allow_zero else value > 0.0) or value == float("inf"):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be finite and {bound} seconds, got {value!r}")


def _check_count(name: str, value: int) -> None:
    """TypeError naming ``name`` for a non-int (or a bool), ValueError below 1."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value!r}")


def _check_callable(name: str, value: object, *, allow_none: bool) -> None:
    if value is None and allow_none:
        return
    if not callable(value):
        expected = "a callable or None" if allow_none else "a callable"
        raise TypeError(f"{name} must be {expected}, got {type(value).__name__} {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolConfig:
    """How a [`Pool`][rstsafe.Pool] or [`AsyncPool`][rstsafe.AsyncPool] sizes, validates and retires
    connections.

    Durations are in seconds. Derive variants with `dataclasses.replace`.
    """

    # HikariCP: maximumPoolSize 10. redis-py's pool is unbounded, which hides leaks.
    max_size: int = 10
    # How long a borrow waits for a free slot before PoolTimeoutError. HikariCP's
    # connectionTimeout is 30 s; a network client wants to hear sooner.
    wait_timeout: float = 10.0
    # Retire a connection idle this long (None: never). Below the smallest common middlebox
    # idle limit (AWS ALB 60 s; Azure LB 4 min; AWS NAT gateway/NLB 350 s; mobile ~5 min) and
    # far below HikariCP's idleTimeout of 10 min, which assumes a database on the same LAN.
    # Set it below your server's own idle timeout too (Redis `timeout`, default 0 = never).
    idle_ttl: float | None = 55.0
    # Retire a connection this old (None: never), shortened by up to `lifetime_jitter` of
    # itself so that connections opened together do not expire together. HikariCP:
    # maxLifetime 30 min with 2.5 % jitter, "several seconds shorter than any infrastructure
    # imposed connection time limit".
    max_lifetime: float | None = 1800.0
    lifetime_jitter: float = 0.025
    # Run the heartbeat on every new connection before handing it out (C4: accept-queue
    # overflow leaves a connection that the client thinks is open but nobody serves).
    validate_new: bool = True
    # Run the heartbeat on a reused connection idle at least this long. HikariCP's
    # aliveBypassWindowMs is 500 ms: a connection used that recently is trusted.
    validate_after_idle: float = 0.5
    # How long a heartbeat may take. HikariCP: validationTimeout 5 s.
    heartbeat_timeout: float = 5.0
    # Heartbeat idle connections every this many seconds in the background (None: off).
    # HikariCP's keepaliveTime is off by default too; use it to keep middlebox state alive
    # (below the middlebox's idle limit) for long-lived protocol connections (C3).
    heartbeat_interval: float | None = None
    # Fresh connections that may fail (connect error or failed heartbeat) in one borrow before
    # NoHealthyConnectionError. Reused connections that fail validation do not count: the
    # borrow simply moves on, and there are at most max_size of them.
    max_connect_attempts: int = 3
    # Pause after the first failed fresh connection, doubled after each further one (jittered
    # down by up to half). An overflowing accept queue needs a moment to drain (C4).
    connect_backoff: float = 0.05
    # How long the default close waits for the peer's FIN (rstsafe.graceful_close).
    close_timeout: float = 1.0
    # Exceptions raised inside `with pool.connection()` that discard the connection instead of
    # returning it. OSError covers ConnectionResetError, BrokenPipeError, TimeoutError and
    # socket.timeout. Any BaseException that is not an Exception (KeyboardInterrupt,
    # cancellation) always discards: the protocol state is unknown.
    discard_on: tuple[type[BaseException], ...] = (OSError,)

    def __post_init__(self) -> None:
        _check_count("max_size", self.max_size)
        # Zero has a meaning where it is allowed: wait_timeout 0 fails a borrow at once when
        # no slot is free; validate_after_idle 0 validates every reuse; connect_backoff 0
        # retries a failed connect without pausing; close_timeout 0 does not wait for the
        # peer's FIN. An idle TTL, a lifetime, a heartbeat timeout or interval of 0 would
        # retire or check every connection at once: use None (where allowed) for "never".
        _check_seconds("wait_timeout", self.wait_timeout, allow_none=False, allow_zero=True)
        _check_seconds("idle_ttl", self.idle_ttl, allow_none=True, allow_zero=False)
        _check_seconds("max_lifetime", self.max_lifetime, allow_none=True, allow_zero=False)
        _check_seconds("lifetime_jitter", self.lifetime_jitter, allow_none=False, allow_zero=True)
        if not self.lifetime_jitter < 1.0:
            raise ValueError(f"lifetime_jitter must be in [0, 1), got {self.lifetime_jitter!r}")
        if not isinstance(self.validate_new, bool):
            raise TypeError(
                f"validate_new must be a bool, got {type(self.validate_new).__name__} "
                f"{self.validate_new!r}"
            )
        _check_seconds(
            "validate_after_idle", self.validate_after_idle, allow_none=False, allow_zero=True
        )
        _check_seconds(
            "heartbeat_timeout", self.heartbeat_timeout, allow_none=False, allow_zero=False
        )
        _check_seconds(
            "heartbeat_interval", self.heartbeat_interval, allow_none=True, allow_zero=False
        )
        _check_count("max_connect_attempts", self.max_connect_attempts)
        _check_seconds("connect_backoff", self.connect_backoff, allow_none=False, allow_zero=True)
        _check_seconds("close_timeout", self.close_timeout, allow_none=False, allow_zero=True)
        if not isinstance(self.discard_on, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.discard_on
        ):
            raise TypeError(
                f"discard_on must be a tuple of exception types, got {self.discard_on!r}"
            )


class DiscardReason(str, enum.Enum):
    """Why the pool closed a connection instead of reusing it."""

    IDLE_TTL = "idle_ttl"
    MAX_LIFETIME = "max_lifetime"
    #: The heartbeat failed when the connection was about to be handed out.
    FAILED_VALIDATION = "failed_validation"
    #: The background heartbeat of an idle connection failed.
    FAILED_HEARTBEAT = "failed_heartbeat"
    #: The ``with`` block raised a connection error (``PoolConfig.discard_on``).
    ERROR = "error"
    POOL_CLOSED = "pool_closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class PoolCounters:
    """A snapshot of a pool's counters (since it was made) and of its current size."""

    created: int
    reused: int
    validated: int
    failed_validation: int
    connect_failed: int
    heartbeats: int
    discarded: Mapping[DiscardReason, int]
    idle: int
    in_use: int

    @property
    def discarded_total(self) -> int:
        return sum(self.discarded.values())


class PoolError(RstsafeError):
    """Base class of the pool's own errors; nothing of the caller's work was sent."""


class PoolClosedError(PoolError):
    """The pool was closed."""


class PoolTimeoutError(PoolError):
    """Every connection stayed in use for ``wait_timeout`` seconds: the pool is exhausted."""


class HeartbeatTimeoutError(PoolError, TimeoutError):
    """A heartbeat took longer than ``PoolConfig.heartbeat_timeout``."""


class NoHealthyConnectionError(PoolError):
    """Every fresh connection of one borrow failed to connect or failed its heartbeat.

    ``failures`` holds each attempt's exception, oldest first; the last is also
    ``__cause__``.
    """

    def __init__(self, message: str, failures: tuple[Exception, ...]) -> None:
        super().__init__(message)
        self.failures = failures


# ---------------------------------------------------------------------------------------------
# Pure decisions
# ---------------------------------------------------------------------------------------------


def expiry_reason(
    *,
    now: float,
    created_at: float,
    last_used: float,
    lifetime: float | None,
    idle_ttl: float | None,
) -> DiscardReason | None:
    """Why a connection must be retired at ``now``, or None while it may still be used.

    ``lifetime`` is the connection's own (already jittered) maximum lifetime; ``last_used``
    is when it was last returned to the pool. Reaching a limit exactly counts as expired: a
    TTL is a promise to be gone *before* the other side's limit.
    """
    if lifetime is not None and now - created_at >= lifetime:
        return DiscardReason.MAX_LIFETIME
    if idle_ttl is not None and now - last_used >= idle_ttl:
        return DiscardReason.IDLE_TTL
    return None


def needs_validation(
    *,
    now: float,
    fresh: bool,
    last_checked: float,
    has_heartbeat: bool,
    config: PoolConfig,
) -> bool:
    """Whether the heartbeat must run before a connection is handed out.

    A fresh connection is validated when ``config.validate_new`` (C4). A reused one when it has
    been idle ``config.validate_after_idle`` seconds since it was last returned or validated:
    within that window (HikariCP's 500 ms) it is trusted, which keeps tight loops of
    borrow/return free of round trips. Without a heartbeat nothing is validated.
    """
    if not has_heartbeat:
        return False
    if fresh:
        return config.validate_new
    return now - last_checked >= config.validate_after_idle


# ---------------------------------------------------------------------------------------------
# The decision core
# ---------------------------------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _Entry(Generic[T]):
    conn: T
    created_at: float
    lifetime: float | None
    last_used: float
    last_checked: float


# What a plan asks its driver to do. The driver answers _Connect and _Validate with the value or
# a _Failure, and the others with None.
@dataclass(frozen=True, slots=True)
class _Connect:
    pass


@dataclass(frozen=True, slots=True)
class _Validate(Generic[T]):
    conn: T


@dataclass(frozen=True, slots=True)
class _Close(Generic[T]):
    conns: tuple[T, ...]


@dataclass(frozen=True, slots=True)
class _Wait:
    """Wait (lock released) until another plan frees a slot, or ``seconds`` pass."""

    seconds: float


@dataclass(frozen=True, slots=True)
class _Sleep:
    seconds: float


@dataclass(frozen=True, slots=True)
class _Failure:
    error: Exception


# typing.Union, not |: this alias is subscripted at run time (_Action[T]), on Python 3.10 too.
_Action = Union[_Connect, _Validate[T], _Close[T], _Wait, _Sleep]  # noqa: UP007
_Plan = Generator[_Action[T], object, R]


@dataclass(frozen=True, slots=True)
class _Done(Generic[R]):
    value: R


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _PoolCore(Generic[T]):
    """All of a pool's state and decisions; no I/O, no locks (the driver holds its own)."""

    def __init__(self, config: PoolConfig, clock: Clock, rng: random.Random, heartbeat: bool):
        self.config = config
        self.clock = clock
        self.rng = rng
        self.has_heartbeat = heartbeat
        self.idle: deque[_Entry[T]] = deque()
        self.busy = 0  # borrowed, being connected, or being heartbeaten in the background
        self.closed = False
        self.wakeup = False  # a slot or an idle connection became available
        self.created = 0
        self.reused = 0
        self.validated = 0
        self.failed_validation = 0
        self.connect_failed = 0
        self.heartbeats = 0
        self.discarded: dict[DiscardReason, int] = dict.fromkeys(DiscardReason, 0)

    def is_closed(self) -> bool:
        return self.closed

    def counters(self) -> PoolCounters:
        return PoolCounters(
            created=self.created,
            reused=self.reused,
            validated=self.validated,
            failed_validation=self.failed_validation,
            connect_failed=self.connect_failed,
            heartbeats=self.heartbeats,
            discarded=types.MappingProxyType(dict(self.discarded)),
            idle=len(self.idle),
            in_use=self.busy,
        )

    # -- bookkeeping -------------------------------------------------------------------------

    def _free_slot(self) -> None:
        self.busy -= 1
        self.wakeup = True

    def _discard(self, entry: _Entry[T], reason: DiscardReason) -> _Close[T]:
        """Count a busy entry as discarded and free its slot; the caller yields the close."""
        self._free_slot()
        self.discarded[reason] += 1
        return _Close((entry.conn,))

    def _evict_expired(self, now: float) -> _Close[T] | None:
        keep: deque[_Entry[T]] = deque()
        gone: list[T] = []
        for entry in self.idle:
            reason = expiry_reason(
                now=now,
                created_at=entry.created_at,
                last_used=entry.last_used,
                lifetime=entry.lifetime,
                idle_ttl=self.config.idle_ttl,
            )
            if reason is None:
                keep.append(entry)
            else:
                self.discarded[reason] += 1
                gone.append(entry.conn)
        if not gone:
            return None
        self.idle = keep
        self.wakeup = True
        return _Close(tuple(gone))

    def _new_entry(self, conn: T, now: float) -> _Entry[T]:
        lifetime = self.config.max_lifetime
        if lifetime is not None:
            lifetime = jittered(lifetime, self.config.lifetime_jitter, self.rng)
        self.created += 1
        return _Entry(conn, created_at=now, lifetime=lifetime, last_used=now, last_checked=now)

    def _give_up(self, failures: list[Exception]) -> NoHealthyConnectionError:
        lines = "; ".join(_describe(f) for f in failures)
        return NoHealthyConnectionError(
            f"{len(failures)} new connection(s) failed to connect or failed the heartbeat "
            f"(max_connect_attempts={self.config.max_connect_attempts}): {lines}",
            tuple(failures),
        )

    # -- plans -------------------------------------------------------------------------------

    def borrow(self) -> _Plan[T, _Entry[T]]:
        """Hand out a validated connection: an idle one, else a new one, else wait for one."""
        config = self.config
        deadline = self.clock.now() + config.wait_timeout
        fresh_failures: list[Exception] = []
        while True:
            if self.closed:
                raise PoolClosedError("the pool is closed")
            now = self.clock.now()
            expired = self._evict_expired(now)
            if expired is not None:
                yield expired
                continue
            if self.idle:
                entry = self.idle.pop()  # LIFO: keep the hot ones hot, let the rest expire
                self.busy += 1
                fresh = False
            elif len(self.idle) + self.busy < config.max_size:
                self.busy += 1
                try:
                    outcome = yield _Connect()
                except BaseException:
                    self._free_slot()
                    raise
                if isinstance(outcome, _Failure):
                    self._free_slot()
                    self.connect_failed += 1
                    yield from self._after_fresh_failure(fresh_failures, outcome.error, deadline)
                    continue
                entry = self._new_entry(cast("T", outcome), self.clock.now())
                fresh = True
            else:
                remaining = deadline - now
                if remaining <= 0.0:
                    raise PoolTimeoutError(
                        f"all {config.max_size} connections stayed in use for "
                        f"{config.wait_timeout:g} s (wait_timeout); raise max_size or return "
                        "connections sooner"
                    )
                yield _Wait(remaining)
                continue
            if needs_validation(
                now=now,
                fresh=fresh,
                last_checked=entry.last_checked,
                has_heartbeat=self.has_heartbeat,
                config=config,
            ):
                try:
                    outcome = yield _Validate(entry.conn)
                except BaseException:
                    self._discard(entry, DiscardReason.FAILED_VALIDATION)  # driver closes it
                    raise
                if isinstance(outcome, _Failure):
                    self.failed_validation += 1
                    yield self._discard(entry, DiscardReason.FAILED_VALIDATION)
                    if fresh:
                        yield from self._after_fresh_failure(
                            fresh_failures, outcome.error, deadline
                        )
                    continue
                self.validated += 1
                entry.last_checked = self.clock.now()
            if not fresh:
                self.reused += 1
            return entry

    def _after_fresh_failure(
        self, failures: list[Exception], error: Exception, deadline: float
    ) -> _Plan[T, None]:
        """Record a failed fresh connection; give up, or back off before the next one."""
        failures.append(error)
        if len(failures) >= self.config.max_connect_attempts:
            raise self._give_up(failures) from error
        remaining = deadline - self.clock.now()
        if remaining <= 0.0:  # the borrow's wait_timeout bounds the retries too
            raise self._give_up(failures) from error
        pause = jittered(self.config.connect_backoff * 2 ** (len(failures) - 1), 0.5, self.rng)
        if pause > 0.0:
            yield _Sleep(min(pause, remaining))

    def release(self, entry: _Entry[T], error: BaseException | None) -> _Plan[T, None]:
        """Take a connection back: keep it idle, or discard it (error, lifetime, pool closed)."""
        now = self.clock.now()
        if self.closed:
            reason: DiscardReason | None = DiscardReason.POOL_CLOSED
        elif error is not None:
            reason = DiscardReason.ERROR
        else:
            reason = expiry_reason(
                now=now,
                created_at=entry.created_at,
                last_used=now,
                lifetime=entry.lifetime,
                idle_ttl=None,
            )
        if reason is not None:
            yield self._discard(entry, reason)
            return
        entry.last_used = entry.last_checked = now
        self.idle.append(entry)
        self._free_slot()

    def maintain(self) -> _Plan[T, None]:
        """Retire expired idle connections; heartbeat those idle ``heartbeat_interval``."""
        if self.closed:
            return
        now = self.clock.now()
        expired = self._evict_expired(now)
        if expired is not None:
            yield expired
        interval = self.config.heartbeat_interval
        if interval is None or not self.has_heartbeat:
            return
        due = [e for e in self.idle if now - e.last_checked >= interval]
        for entry in due:
            self.idle.remove(entry)
        self.busy += len(due)  # out of reach of borrowers while their heartbeat runs
        for index, entry in enumerate(due):
            try:
                outcome = yield _Validate(entry.conn)
            except BaseException:
                self._discard(entry, DiscardReason.FAILED_HEARTBEAT)  # the driver closes it
                for unchecked in due[index + 1 :]:
                    self.idle.append(unchecked)
                    self._free_slot()
                raise
            if isinstance(outcome, _Failure):
                yield self._discard(entry, DiscardReason.FAILED_HEARTBEAT)
            elif self.is_closed():
                yield self._discard(entry, DiscardReason.POOL_CLOSED)
            else:
                self.heartbeats += 1
                entry.last_checked = self.clock.now()
                self.idle.append(entry)
                self._free_slot()

    def close(self) -> _Plan[T, None]:
        """Close the pool: idle connections now, borrowed ones when they come back."""
        self.closed = True
        self.wakeup = True
        conns = tuple(entry.conn for entry in self.idle)
        self.idle.clear()
        self.discarded[DiscardReason.POOL_CLOSED] += len(conns)
        if conns:
            yield _Close(conns)

    # -- stepping, for the drivers ---------------------------------------------------------

    def step(
        self, plan: _Plan[T, R], outcome: object, waiters: _Notifiable
    ) -> _Action[T] | _Done[R]:
        """Advance ``plan`` by one step (the driver holds its lock) and wake waiters if due."""
        try:
            return plan.send(outcome)
        except StopIteration as stop:
            return _Done(stop.value)
        finally:
            self._wake(waiters)

    def interrupt(self, plan: _Plan[T, R], error: BaseException, waiters: _Notifiable) -> NoReturn:
        """Tell ``plan`` its I/O was interrupted (an interrupt, a cancellation).

        The plan gives back what it holds, waiters are woken, and ``error`` propagates.
        """
        try:
            plan.throw(error)
        finally:
            self._wake(waiters)
        raise error  # pragma: no cover - the plans never swallow an interruption

    def _wake(self, waiters: _Notifiable) -> None:
        if self.wakeup:
            self.wakeup = False
            waiters.notify_all()


class _Notifiable(Protocol):
    def notify_all(self) -> None: ...


# ---------------------------------------------------------------------------------------------
# Defaults shared by the drivers
# ---------------------------------------------------------------------------------------------


def _close_default(conn: object, timeout: float) -> None:
    """Close ``conn``: a socket gracefully (FIN, never an RST for unread data), else ``close()``."""
    if isinstance(conn, socket.socket):
        graceful_close(conn, timeout=timeout)
        return
    close = getattr(conn, "close", None)
    if close is None:
        raise TypeError(f"cannot close a {type(conn).__name__}: pass close= to the pool")
    close()


async def _aclose_default(conn: object) -> None:
    """The async default: ``await conn.aclose()``, or ``close()`` then ``wait_closed()``."""
    aclose = getattr(conn, "aclose", None)
    if aclose is not None:
        await aclose()
        return
    if isinstance(conn, socket.socket):
        # Not waited for (timeout 0): what has arrived is drained, nothing blocks the loop.
        graceful_close(conn, timeout=0.0)
        return
    close = getattr(conn, "close", None)
    if close is None:
        raise TypeError(f"cannot close a {type(conn).__name__}: pass close= to the pool")
    closed = close()
    if inspect.isawaitable(closed):
        await closed
    wait_closed = getattr(conn, "wait_closed", None)  # asyncio.StreamWriter
    if wait_closed is not None:
        await wait_closed()


def _call_with_socket_timeout(conn: object, timeout: float, call: Callable[[], object]) -> None:
    """Run ``call`` with ``conn``'s timeout set to ``timeout`` when ``conn`` has one."""
    gettimeout = getattr(conn, "gettimeout", None)
    settimeout = getattr(conn, "settimeout", None)
    if gettimeout is None or settimeout is None:
        call()
        return
    previous = gettimeout()
    settimeout(timeout)
    try:
        call()
    finally:
        with contextlib.suppress(OSError):  # the heartbeat may have closed a broken socket
            settimeout(previous)


class _PoolBase(Generic[T]):
    """What both drivers share: the core, the counters, the defaults."""

    _core: _PoolCore[T]

    def _init_core(
        self,
        config: PoolConfig,
        clock: Clock | None,
        rng: random.Random | None,
        heartbeat: object,
    ) -> None:
        if not isinstance(config, PoolConfig):
            raise TypeError(f"config must be a rstsafe.PoolConfig, got {type(config).__name__}")
        if clock is not None and not callable(getattr(clock, "now", None)):
            raise TypeError(f"clock must have a now() method, got {type(clock).__name__}")
        if rng is not None and not isinstance(rng, random.Random):
            raise TypeError(f"rng must be a random.Random or None, got {type(rng).__name__}")
        self._core = _PoolCore(
            config,
            MonotonicClock() if clock is None else clock,
            random.Random() if rng is None else rng,
            heartbeat is not None,
        )

    @property
    def config(self) -> PoolConfig:
        return self._core.config

    @property
    def counters(self) -> PoolCounters:
        """A snapshot of the counters: created, reused, validated, discarded by reason, ..."""
        return self._core.counters()

    @property
    def closed(self) -> bool:
        return self._core.closed

    def _discard_error(self, exc: BaseException) -> BaseException | None:
        """The error that discards the connection, when ``exc`` raised in a block is one."""
        if isinstance(exc, self._core.config.discard_on) or not isinstance(exc, Exception):
            return exc
        return None

    def _late_by(self, started: float) -> float | None:
        elapsed = self._core.clock.now() - started
        return elapsed if elapsed > self._core.config.heartbeat_timeout else None

    def __repr__(self) -> str:
        c = self._core
        return (
            f"<{type(self).__name__} idle={len(c.idle)} in_use={c.busy} "
            f"max_size={c.config.max_size}{' closed' if c.closed else ''}>"
        )


# ---------------------------------------------------------------------------------------------
# The drivers
# ---------------------------------------------------------------------------------------------


class Pool(_PoolBase[T]):
    """A thread-safe pool of connections to one service, made by ``connect``.

    ``heartbeat(conn)`` must raise when ``conn`` is unusable (send PING, expect PONG); it runs
    on every new connection before it is handed out and on a reused one idle
    ``config.validate_after_idle`` seconds or more. When ``conn`` has ``settimeout`` (a socket)
    its timeout is ``config.heartbeat_timeout`` during the heartbeat; in any case a heartbeat
    that returns later than that counts as failed. ``close(conn)`` defaults to
    [`rstsafe.graceful_close`][rstsafe.graceful_close] for sockets and ``conn.close()`` otherwise.

    Use ``with pool.connection() as conn:``; close the pool with `close` or a ``with``.
    """

    def __init__(
        self,
        connect: Callable[[], T],
        *,
        heartbeat: Callable[[T], object] | None = None,
        close: Callable[[T], object] | None = None,
        config: PoolConfig = PoolConfig(),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        _check_callable("connect", connect, allow_none=False)
        _check_callable("heartbeat", heartbeat, allow_none=True)
        _check_callable("close", close, allow_none=True)
        self._init_core(config, clock, rng, heartbeat)
        self._connect, self._heartbeat, self._close = connect, heartbeat, close
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._maintainer: threading.Thread | None = None
        if config.heartbeat_interval is not None and heartbeat is not None:
            self._maintainer = threading.Thread(
                target=self._maintain, name="rstsafe-pool-heartbeat", daemon=True
            )
            self._maintainer.start()

    @contextlib.contextmanager
    def connection(self) -> Iterator[T]:
        """Borrow a validated connection for the block; discard it if the block fails."""
        entry = self._drive(self._core.borrow())
        error: BaseException | None = None
        try:
            yield entry.conn
        except BaseException as exc:
            error = self._discard_error(exc)
            raise
        finally:
            self._drive(self._core.release(entry, error))

    @property
    def counters(self) -> PoolCounters:
        """A consistent snapshot of the counters, taken under the pool's lock."""
        with self._cond:
            return self._core.counters()

    def close(self) -> None:
        """Stop the heartbeat thread and close every connection; safe to call twice."""
        self._stop.set()
        if self._maintainer is not None and self._maintainer is not threading.current_thread():
            self._maintainer.join()
        self._drive(self._core.close())

    def __enter__(self) -> Pool[T]:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _maintain(self) -> None:
        interval = self._core.config.heartbeat_interval
        assert interval is not None
        while not self._stop.wait(interval / 4):
            self._drive(self._core.maintain())

    def _drive(self, plan: _Plan[T, R]) -> R:
        outcome: object = None
        while True:
            with self._cond:
                action = self._core.step(plan, outcome, self._cond)
                if isinstance(action, _Wait):
                    self._cond.wait(action.seconds)
                    outcome = None
                    continue
            if isinstance(action, _Done):
                return action.value
            try:
                outcome = self._perform(action)
            except BaseException as exc:
                if isinstance(action, _Validate):
                    self._close_quietly(action.conn)
                with self._cond:
                    self._core.interrupt(plan, exc, self._cond)

    def _perform(self, action: _Action[T]) -> object:
        if isinstance(action, _Close):
            for conn in action.conns:
                self._close_quietly(conn)
            return None
        if isinstance(action, _Sleep):
            self._stop.wait(action.seconds)
            return None
        try:
            if isinstance(action, _Connect):
                return self._connect()
            assert isinstance(action, _Validate)
            assert self._heartbeat is not None
            heartbeat, conn = self._heartbeat, action.conn
            started = self._core.clock.now()
            _call_with_socket_timeout(
                conn, self._core.config.heartbeat_timeout, lambda: heartbeat(conn)
            )
            late = self._late_by(started)
            if late is not None:
                raise HeartbeatTimeoutError(f"heartbeat took {late:.3f} s")
        except Exception as exc:
            return _Failure(exc)
        return None

    def _close_quietly(self, conn: T) -> None:
        with contextlib.suppress(Exception):
            if self._close is not None:
                self._close(conn)
            else:
                _close_default(conn, self._core.config.close_timeout)


class _Wakeups:
    """asyncio borrowers waiting for a slot; ``notify_all`` is synchronous, unlike a Condition's."""

    def __init__(self) -> None:
        self._waiting: set[asyncio.Future[None]] = set()

    def notify_all(self) -> None:
        for future in self._waiting:
            if not future.done():
                future.set_result(None)
        self._waiting.clear()

    async def wait(self, timeout: float) -> None:
        """Return when notified or after ``timeout`` seconds, whichever comes first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.add(future)
        try:
            await asyncio.wait({future}, timeout=timeout)
        finally:
            self._waiting.discard(future)
            future.cancel()


class AsyncPool(_PoolBase[T]):
    """The asyncio twin of [`Pool`][rstsafe.Pool]: the same decisions, coroutines for the I/O.

    ``connect()``, ``heartbeat(conn)`` and ``close(conn)`` are coroutine functions; the
    heartbeat is cancelled after ``config.heartbeat_timeout``. The default close awaits
    ``conn.aclose()``, or calls ``conn.close()`` and awaits ``conn.wait_closed()`` if present
    (an ``asyncio.StreamWriter``); a socket is closed with
    [`rstsafe.graceful_close`][rstsafe.graceful_close]
    without waiting (``timeout=0``). Works under anyio's asyncio back end, not under trio.

    Use ``async with pool.connection() as conn:``; close with `aclose` or ``async with``.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[T]],
        *,
        heartbeat: Callable[[T], Awaitable[object]] | None = None,
        close: Callable[[T], Awaitable[object]] | None = None,
        config: PoolConfig = PoolConfig(),
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        _check_callable("connect", connect, allow_none=False)
        _check_callable("heartbeat", heartbeat, allow_none=True)
        _check_callable("close", close, allow_none=True)
        self._init_core(config, clock, rng, heartbeat)
        self._connect, self._heartbeat, self._close = connect, heartbeat, close
        self._wakeups = _Wakeups()
        self._maintainer: asyncio.Task[None] | None = None

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[T]:
        """Borrow a validated connection for the block; discard it if the block fails."""
        self._start_maintainer()
        entry = await self._drive(self._core.borrow())
        error: BaseException | None = None
        try:
            yield entry.conn
        except BaseException as exc:
            error = self._discard_error(exc)
            raise
        finally:
            await self._drive(self._core.release(entry, error))

    async def aclose(self) -> None:
        """Cancel the heartbeat task and close every connection; safe to call twice."""
        if self._maintainer is not None:
            self._maintainer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintainer
        await self._drive(self._core.close())

    async def __aenter__(self) -> AsyncPool[T]:
        self._start_maintainer()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _start_maintainer(self) -> None:
        config = self._core.config
        if (
            self._maintainer is None
            and config.heartbeat_interval is not None
            and self._heartbeat is not None
            and not self._core.closed
        ):
            self._maintainer = asyncio.get_running_loop().create_task(
                self._maintain(config.heartbeat_interval), name="rstsafe-pool-heartbeat"
            )

    async def _maintain(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval / 4)
            await self._drive(self._core.maintain())

    async def _drive(self, plan: _Plan[T, R]) -> R:
        # One event loop thread: a step (no await inside) is atomic without a lock, so the
        # only suspension points are the waits and the I/O, where the plan holds nothing or
        # is told (throw) about the interruption.
        outcome: object = None
        while True:
            action = self._core.step(plan, outcome, self._wakeups)
            outcome = None
            if isinstance(action, _Done):
                return action.value
            if isinstance(action, _Wait):
                await self._wakeups.wait(action.seconds)
                continue
            try:
                outcome = await self._perform(action)
            except BaseException as exc:
                if isinstance(action, _Validate):
                    await self._close_quietly(action.conn)
                self._core.interrupt(plan, exc, self._wakeups)

    async def _perform(self, action: _Action[T]) -> object:
        if isinstance(action, _Close):
            for conn in action.conns:
                await self._close_quietly(conn)
            return None
        if isinstance(action, _Sleep):
            await asyncio.sleep(action.seconds)
            return None
        try:
            if isinstance(action, _Connect):
                return await self._connect()
            assert isinstance(action, _Validate)
            assert self._heartbeat is not None
            timeout = self._core.config.heartbeat_timeout
            try:
                await asyncio.wait_for(self._heartbeat(action.conn), timeout)
            except asyncio.TimeoutError:
                raise HeartbeatTimeoutError(f"heartbeat took more than {timeout:g} s") from None
        except Exception as exc:
            return _Failure(exc)
        return None

    async def _close_quietly(self, conn: T) -> None:
        with contextlib.suppress(Exception):
            await (_aclose_default(conn) if self._close is None else self._close(conn))


# rstsafe.sockets exports these (lazily: pickle's lookup there imports this module).
publish_errors(
    "rstsafe.sockets",
    globals(),
    (
        "PoolError",
        "PoolClosedError",
        "PoolTimeoutError",
        "HeartbeatTimeoutError",
        "NoHealthyConnectionError",
    ),
)
