"""Retry decisions: retry now, retry after a delay, or give up.

One pure decision core for sync and async drivers: :meth:`RetryPolicy.decide` (for a
failed attempt) and :meth:`RetryPolicy.decide_status` (for a 429/503 response) take a
:class:`~rstsafe.Failure`, the request's :class:`~rstsafe.core.Replayability` and the
:class:`RetryHistory` so far, and return a :class:`RetryDecision`. The driver loop is
the adapter's: send, classify, decide, record, sleep or raise.

The rules, in order:

1. A failure kind outside ``retry_on`` (TLS, protocol errors, unknown) is not retried.
2. A body that cannot be sent again (generator, consumed stream) is never resent.
3. A request that may have reached the server is resent only if it is idempotent
   (method or idempotency key). A non-idempotent request that may have been sent is
   never retried; when provably nothing was sent, any method may be.
4. A stale *reused* connection (reset, closed or broken pipe before any response byte)
   is retried at once on a fresh connection, up to ``max_stale_retries`` times, not
   charged to ``retries``: it says nothing about the server's health (Go's
   ``shouldRetryRequest``, aiohttp's one retry).
5. Anything else retryable waits an exponential backoff (tenacity's
   ``wait_exponential`` with a cap, shortened by jitter) and is charged to ``retries``.

Like urllib3's ``Retry``, policies and histories are immutable: ``record()`` returns a
new history, so one policy can be shared by every request of every thread.
"""

from __future__ import annotations

import dataclasses
import email.utils
import enum
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from rstsafe._core.budget import DEFAULT_RETRY_BUDGET, RetryBudget
from rstsafe._core.classify import _STALE_KINDS, Failure, FailureKind
from rstsafe._core.clock import jittered
from rstsafe._core.idempotency import DEFAULT_IDEMPOTENCY_RULES, HeadersLike, IdempotencyRules

if TYPE_CHECKING:
    import tenacity
    from tenacity.wait import wait_base

    from rstsafe._core.idempotency import Replayability

__all__ = (
    "DEFAULT_RETRY_KINDS",
    "Attempt",
    "RetryAction",
    "RetryDecision",
    "RetryHistory",
    "RetryPolicy",
    "parse_retry_after",
)

DEFAULT_RETRY_KINDS = frozenset(
    {
        FailureKind.RESET,
        FailureKind.CLOSED,
        FailureKind.REFUSED,
        FailureKind.BROKEN_PIPE,
        FailureKind.CONNECT_TIMEOUT,
        FailureKind.CONNECT_ERROR,
        FailureKind.NAME_RESOLUTION,
        FailureKind.UNREACHABLE,
        FailureKind.READ_TIMEOUT,
        FailureKind.WRITE_TIMEOUT,
        FailureKind.TIMEOUT,
        FailureKind.TRUNCATED_BODY,
        FailureKind.NETWORK_ERROR,
    }
)
"""Failure kinds retried by default: transient network failures. Not retried: TLS
(certificates do not fix themselves), protocol errors, pool timeouts, unknown."""


class RetryAction(enum.Enum):
    """What to do after a failed attempt."""

    RETRY_NOW = "retry now on a fresh connection"
    """Resend immediately on a newly opened connection (stale reused connection)."""
    RETRY_AFTER = "retry after a delay"
    """Resend after ``RetryDecision.delay`` seconds."""
    GIVE_UP = "give up"
    """Raise; ``RetryDecision.reason`` says why."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryDecision:
    """The decision for one failed attempt.

    Attributes:
        action: Retry now, retry after a delay, or give up.
        delay: Seconds to wait before the next attempt (0 unless ``RETRY_AFTER``).
        reason: Why, phrased for a person (used in error messages).
    """

    action: RetryAction
    delay: float = 0.0
    reason: str = ""

    @property
    def retry(self) -> bool:
        """True for ``RETRY_NOW`` and ``RETRY_AFTER``."""
        return self.action is not RetryAction.GIVE_UP

    @property
    def fresh_connection(self) -> bool:
        """True when the next attempt must use a newly opened connection."""
        return self.action is RetryAction.RETRY_NOW


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Attempt:
    """One failed attempt and the decision taken.

    Attributes:
        decision: What was decided after it.
        failure: Its classification, for a transport failure.
        status: The HTTP status, for a retried response (429, 503).
    """

    decision: RetryDecision
    failure: Failure | None = None
    status: int | None = None


@dataclasses.dataclass(frozen=True, slots=True)
class RetryHistory:
    """Every failed attempt of one request, in order (immutable, like urllib3's history).

    Attributes:
        attempts: The attempts so far.
    """

    attempts: tuple[Attempt, ...] = ()

    def record(
        self,
        decision: RetryDecision,
        *,
        failure: Failure | None = None,
        status: int | None = None,
    ) -> RetryHistory:
        """Return a new history with one more attempt."""
        attempt = Attempt(decision=decision, failure=failure, status=status)
        return RetryHistory((*self.attempts, attempt))

    @property
    def retries_used(self) -> int:
        """Retries charged to ``RetryPolicy.retries`` (``RETRY_AFTER`` decisions)."""
        return sum(a.decision.action is RetryAction.RETRY_AFTER for a in self.attempts)

    @property
    def stale_retries_used(self) -> int:
        """Immediate retries after stale connections (``RETRY_NOW`` decisions)."""
        return sum(a.decision.action is RetryAction.RETRY_NOW for a in self.attempts)

    @property
    def last(self) -> Attempt | None:
        """The most recent attempt, if any."""
        return self.attempts[-1] if self.attempts else None

    def __len__(self) -> int:
        return len(self.attempts)


_EMPTY_HISTORY = RetryHistory()
_DEFAULT_RNG = random.Random()


def parse_retry_after(value: str | bytes | None, *, now: float) -> float | None:
    """Parse a ``Retry-After`` header into seconds from ``now``. Never raises.

    Accepts delta-seconds (``120``) and an HTTP-date (``Fri, 31 Dec 1999 23:59:59 GMT``;
    RFC 9110 section 10.2.3). A date in the past gives 0.

    Args:
        value: The header value.
        now: The current wall-clock time as a Unix timestamp (inject it in tests).

    Returns:
        Seconds to wait (>= 0), or None when absent or malformed.
    """
    try:
        if value is None:
            return None
        text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
        text = text.strip()
        if not text or len(text) > 64:
            return None
        if text.isdigit() and text.isascii():
            return float(int(text))
        parsed = email.utils.parsedate_tz(text)
        if parsed is None:
            return None
        seconds = email.utils.mktime_tz(parsed) - now
        if not math.isfinite(seconds):
            return None
        return max(0.0, float(seconds))
    except Exception:  # a header from the network must never crash the client
        return None


def _int_at_least(name: str, value: int, minimum: int) -> None:
    """Check a count: TypeError for a non-int (or a bool), ValueError below ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _seconds(name: str, value: float) -> None:
    """Check a duration: TypeError for a non-number, ValueError if not finite and >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")


def _frozen(name: str, value: object, kind: type[Any]) -> frozenset[Any]:
    """A collection of ``kind`` as a frozenset; TypeError naming ``name`` otherwise."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (set, frozenset, list, tuple)):
        raise TypeError(
            f"{name} must be a set of {kind.__name__}, got {type(value).__name__} {value!r}"
        )
    for item in value:
        if isinstance(item, bool) or not isinstance(item, kind):
            raise TypeError(
                f"{name} must be a set of {kind.__name__}, got {type(item).__name__} {item!r}"
            )
    return frozenset(value)


# Statuses that may be retried: a 4xx or 5xx asks the client to come back (429, 503,
# 408, 502, 504). A 1xx is interim, a 2xx a success, a 3xx a redirect the host
# library follows; resending any of them is a mistake, so they are rejected.
_RETRYABLE_STATUS_RANGE = range(400, 600)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryPolicy:
    """When and how to resend a request (frozen; share it freely).

    Attributes:
        retries: Retries after backoff allowed per request (urllib3's default is 3).
        max_stale_retries: Immediate retries on a fresh connection after a stale reused
            one, not charged to ``retries``. 2 covers a pool holding several connections
            that the server closed at once.
        wait_initial: First backoff in seconds (stamina: 0.1).
        wait_max: Cap on one backoff in seconds (stamina: 5).
        wait_exp_base: Growth factor between backoffs.
        jitter: Fraction (0 to <1) by which each backoff is randomly shortened.
        retry_on: Failure kinds that may be retried (default ``DEFAULT_RETRY_KINDS``).
        retry_statuses: Response statuses to retry, e.g. ``frozenset({429, 503})``.
            Empty by default: status retries are off.
        max_retry_after: Longest ``Retry-After`` honoured, in seconds; a longer one gives up.
        timeout: Give up when the time since the first attempt plus the next delay would
            exceed this many seconds (stamina's ``timeout``); None for no limit. Needs the
            driver to pass ``elapsed``.
        rules: Which requests are idempotent (used by the tenacity helpers).
        budget: The per-origin retry budget every retry but the first immediate retry
            after a stale reused connection draws from
            ([`rstsafe.RetryBudget`][rstsafe.RetryBudget]:
            20 % of requests plus 10 per second, over 10 s); None for no budget. Applied
            by the adapters' drivers, which keep one budget state per origin.
    """

    retries: int = 3
    max_stale_retries: int = 2
    wait_initial: float = 0.1
    wait_max: float = 5.0
    wait_exp_base: float = 2.0
    jitter: float = 0.5
    retry_on: frozenset[FailureKind] = DEFAULT_RETRY_KINDS
    retry_statuses: frozenset[int] = frozenset()
    max_retry_after: float = 60.0
    timeout: float | None = None
    rules: IdempotencyRules = DEFAULT_IDEMPOTENCY_RULES
    budget: RetryBudget | None = DEFAULT_RETRY_BUDGET

    def __post_init__(self) -> None:
        if self.budget is not None and not isinstance(self.budget, RetryBudget):
            raise TypeError(
                f"budget must be a rstsafe.RetryBudget or None, got {type(self.budget).__name__}"
            )
        if not isinstance(self.rules, IdempotencyRules):
            raise TypeError(
                f"rules must be a rstsafe.IdempotencyRules, got {type(self.rules).__name__}"
            )
        # 0 retries: no retry after backoff (immediate stale retries still apply);
        # 0 stale retries: a stale reused connection is not retried at once.
        _int_at_least("retries", self.retries, 0)
        _int_at_least("max_stale_retries", self.max_stale_retries, 0)
        # Zero waits mean what they say: retry without waiting (as in a test suite).
        _seconds("wait_initial", self.wait_initial)
        _seconds("wait_max", self.wait_max)
        # 0: a response that asks for any wait (Retry-After > 0) is not retried.
        _seconds("max_retry_after", self.max_retry_after)
        if self.timeout is not None:
            # 0: no retry once any time has passed since the first attempt.
            _seconds("timeout", self.timeout)
        _seconds("wait_exp_base", self.wait_exp_base)
        if not self.wait_exp_base >= 1:
            raise ValueError(f"wait_exp_base must be >= 1, got {self.wait_exp_base!r}")
        _seconds("jitter", self.jitter)
        if not self.jitter < 1.0:
            raise ValueError(f"jitter must be in [0, 1), got {self.jitter!r}")
        object.__setattr__(self, "retry_on", _frozen("retry_on", self.retry_on, FailureKind))
        statuses = _frozen("retry_statuses", self.retry_statuses, int)
        for status in sorted(statuses):
            if status not in _RETRYABLE_STATUS_RANGE:
                raise ValueError(
                    f"retry_statuses must be 4xx or 5xx statuses (429, 503, ...), got {status!r}"
                )
        object.__setattr__(self, "retry_statuses", statuses)

    # -- backoff ---------------------------------------------------------------------

    def wait_strategy(self) -> wait_base:
        """The tenacity wait strategy behind the backoff, before jitter."""
        import tenacity  # here, not at the top: only its helpers load tenacity

        return tenacity.wait_exponential(
            multiplier=self.wait_initial, max=self.wait_max, exp_base=self.wait_exp_base
        )

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``retry_number`` (1 for the first retry).

        ``wait_initial * wait_exp_base ** (retry_number - 1)``, capped at ``wait_max``
        (tenacity's ``wait_exponential``), then shortened by up to ``jitter``.
        """
        _int_at_least("retry_number", retry_number, 1)
        try:
            delay = self.wait_initial * self.wait_exp_base ** (retry_number - 1)
        except OverflowError:
            delay = self.wait_max
        delay = max(0.0, min(delay, self.wait_max))
        return jittered(delay, self.jitter, rng if rng is not None else _DEFAULT_RNG)

    # -- decisions -------------------------------------------------------------------

    def is_safe_to_retry(self, failure: Failure, replay: Replayability) -> bool:
        """True when resending is allowed at all (ignoring budgets): see rules 1 to 3."""
        return self._refusal(failure, replay) is None

    def _refusal(self, failure: Failure, replay: Replayability) -> str | None:
        method = replay.method
        if failure.kind not in self.retry_on:
            return f"{method} not retried: a {failure.kind.value} is not a transient failure"
        if not replay.body_replayable:
            return f"{method} not retried: {replay.reason}"
        if not failure.not_sent and not replay.idempotent:
            return f"{method} not retried: not idempotent and the request may have been sent"
        return None

    def may_probe(self, replay: Replayability) -> bool:
        """True when a stale failure of this request would be retried at once, transparently.

        Such a request may reuse a connection idle past the TTL to find out whether the
        server keeps connections longer (``OriginKeepAlive.probe_limit``): failing
        costs it one immediate retry on a fresh connection, nothing the caller sees.
        """
        return (
            replay.replayable
            and self.max_stale_retries > 0
            and _STALE_KINDS.issubset(self.retry_on)
        )

    @staticmethod
    def is_stale(failure: Failure) -> bool:
        """True for a reused connection that the server had closed (``Failure.stale``)."""
        return failure.stale

    def decide(
        self,
        failure: Failure,
        replay: Replayability,
        history: RetryHistory = _EMPTY_HISTORY,
        *,
        rng: random.Random | None = None,
        elapsed: float | None = None,
    ) -> RetryDecision:
        """Decide what to do after a failed attempt.

        Args:
            failure: The classified failure (see [`rstsafe.classify`][rstsafe.classify]).
            replay: Whether the request may be sent again (see
                [`rstsafe.replayability`][rstsafe.replayability]).
            history: The attempts before this one.
            rng: Random generator for backoff jitter (seed it in tests).
            elapsed: Seconds since the first attempt started, for ``timeout``.

        Returns:
            ``RETRY_NOW`` (stale reused connection, within ``max_stale_retries``),
            ``RETRY_AFTER`` with a backoff (within ``retries``), or ``GIVE_UP``.
        """
        refusal = self._refusal(failure, replay)
        if refusal is not None:
            return RetryDecision(action=RetryAction.GIVE_UP, reason=refusal)
        method = replay.method
        if self.is_stale(failure) and history.stale_retries_used < self.max_stale_retries:
            idle = failure.facts.idle_seconds
            idle_text = f" after {idle:.2f} s idle" if idle is not None else ""
            decision = RetryDecision(
                action=RetryAction.RETRY_NOW,
                reason=(
                    f"{method} retried at once on a fresh connection: the reused connection"
                    f" was stale{idle_text}"
                ),
            )
            return self._within_timeout(method, decision, elapsed)
        return self._within_timeout(method, self._backoff_decision(method, history, rng), elapsed)

    def _within_timeout(
        self, method: str, decision: RetryDecision, elapsed: float | None
    ) -> RetryDecision:
        if (
            self.timeout is None
            or elapsed is None
            or not decision.retry
            or elapsed + decision.delay <= self.timeout
        ):
            return decision
        return RetryDecision(
            action=RetryAction.GIVE_UP,
            reason=(
                f"{method} not retried: {elapsed:.2f} s elapsed + {decision.delay:.2f} s"
                f" delay exceeds timeout {self.timeout:g} s"
            ),
        )

    def step(
        self,
        failure: Failure,
        replay: Replayability,
        history: RetryHistory = _EMPTY_HISTORY,
        *,
        rng: random.Random | None = None,
        elapsed: float | None = None,
    ) -> tuple[RetryDecision, RetryHistory]:
        """`decide`, then record the attempt: the one call a driver loop needs.

        Returns:
            The decision and the new history (which includes this attempt).
        """
        decision = self.decide(failure, replay, history, rng=rng, elapsed=elapsed)
        return decision, history.record(decision, failure=failure)

    def _exhausted(self, method: str, used: int) -> RetryDecision:
        return RetryDecision(
            action=RetryAction.GIVE_UP,
            reason=f"{method} not retried again: retries exhausted ({used} of {self.retries} used)",
        )

    def _backoff_decision(
        self, method: str, history: RetryHistory, rng: random.Random | None
    ) -> RetryDecision:
        used = history.retries_used
        if used >= self.retries:
            return self._exhausted(method, used)
        delay = self.backoff(used + 1, rng)
        return RetryDecision(
            action=RetryAction.RETRY_AFTER,
            delay=delay,
            reason=f"{method} retried after {delay:.2f} s (retry {used + 1} of {self.retries})",
        )

    def decide_status(
        self,
        status: int,
        replay: Replayability,
        history: RetryHistory = _EMPTY_HISTORY,
        *,
        retry_after: str | bytes | None = None,
        now: float | None = None,
        rng: random.Random | None = None,
        elapsed: float | None = None,
    ) -> RetryDecision:
        """Decide whether to resend after a response with ``status`` (e.g. 429, 503).

        The server received the request, so the request must be replayable. A
        ``Retry-After`` header (seconds or HTTP-date) sets the delay; one longer than
        ``max_retry_after`` gives up. Without it, the backoff applies. Either way the
        retry is charged to ``retries``.

        Args:
            status: The response status.
            replay: Whether the request may be sent again.
            history: The attempts before this one.
            retry_after: The response's ``Retry-After`` header, if any.
            now: Wall-clock Unix time for HTTP-dates (default ``time.time()``).
            rng: Random generator for backoff jitter.
            elapsed: Seconds since the first attempt started, for ``timeout``.

        Returns:
            ``RETRY_AFTER`` or ``GIVE_UP``.
        """
        method = replay.method
        if status not in self.retry_statuses:
            return RetryDecision(
                action=RetryAction.GIVE_UP,
                reason=f"{method} not retried: status {status} is not in retry_statuses",
            )
        if not replay.replayable:
            return RetryDecision(
                action=RetryAction.GIVE_UP, reason=f"{method} not retried: {replay.reason}"
            )
        used = history.retries_used
        if used >= self.retries:
            return self._exhausted(method, used)
        wall = now if now is not None else time.time()
        delay = parse_retry_after(retry_after, now=wall)
        if delay is None:
            return self._within_timeout(
                method, self._backoff_decision(method, history, rng), elapsed
            )
        if delay > self.max_retry_after:
            return RetryDecision(
                action=RetryAction.GIVE_UP,
                reason=(
                    f"{method} not retried: Retry-After {delay:g} s exceeds"
                    f" max_retry_after {self.max_retry_after:g} s"
                ),
            )
        decision = RetryDecision(
            action=RetryAction.RETRY_AFTER,
            delay=delay,
            reason=f"{method} retried after Retry-After {delay:g} s (status {status})",
        )
        return self._within_timeout(method, decision, elapsed)

    # -- tenacity building blocks ----------------------------------------------------

    def tenacity_wait(self, rng: random.Random | None = None) -> wait_base:
        """A tenacity wait strategy giving this policy's jittered backoff."""
        from rstsafe._core.retry_tenacity import policy_wait

        return policy_wait(self, rng)

    def retrying(
        self,
        *,
        method: str,
        headers: HeadersLike | None = None,
        body: object = None,
        sleep: Callable[[float], None] | None = None,
        rng: random.Random | None = None,
    ) -> tenacity.Retrying:
        """A `tenacity.Retrying` that retries only what is safe for this request.

        Stops after ``retries + 1`` attempts (or once ``timeout`` has passed), waits this
        policy's backoff, retries only failures [`retry_if_safe`][rstsafe.retry_if_safe] allows, and
        re-raises the last exception.
        Stale-connection retries are not special here: user code cannot choose a fresh
        connection, so every retry is charged.

        Example:
            ```python
            for attempt in policy.retrying(method="GET"):
                with attempt:
                    response = session.get(url)
            ```
        """
        from rstsafe._core.retry_tenacity import retrying

        return retrying(self, method=method, headers=headers, body=body, sleep=sleep, rng=rng)

    def async_retrying(
        self,
        *,
        method: str,
        headers: HeadersLike | None = None,
        body: object = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        rng: random.Random | None = None,
    ) -> tenacity.AsyncRetrying:
        """The async twin of `retrying` (`tenacity.AsyncRetrying`)."""
        from rstsafe._core.retry_tenacity import async_retrying

        return async_retrying(self, method=method, headers=headers, body=body, sleep=sleep, rng=rng)
