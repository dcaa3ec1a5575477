"""The bookkeeping every adapter driver shares: one connection's life, one request's attempts.

An adapter (urllib3/requests, httpx sync and async) owns the I/O; everything it has
to *decide* goes through the two objects here, so the four drivers are short loops
around the same code:

* :class:`ConnectionLife` is attached to each pooled connection. It knows when the
  connection was opened and last finished a response, how many requests it served,
  and counts the bytes of the current attempt, which is what turns "maybe sent" into
  "provably not sent".
* :class:`RequestAttempts` is created per request. After each attempt it classifies
  the failure, tells the origin's keep-alive state what was learned, asks the retry
  policy what to do, and records the attempt; when the driver gives up it builds the
  error that carries every attempt.

A driver looks like this (the async one awaits instead)::

    attempts = RequestAttempts(policy=policy, replay=replay, keepalive=state)
    while True:
        try:
            response = send()  # the adapter's I/O, on a pooled or fresh connection
        except Exception as exc:
            decision = attempts.failed(exc, life.facts())
            if not decision.retry:
                raise attempts.error(...) from exc
            sleep(decision.delay)
            continue
        ...
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from rstsafe._core.classify import ConnectionFacts, Failure, Origin, classify
from rstsafe._core.clock import Clock, MonotonicClock
from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError, error_for
from rstsafe._core.idempotency import Replayability
from rstsafe._core.keepalive import OriginKeepAlive, parse_keep_alive
from rstsafe._core.retry import RetryAction, RetryDecision, RetryHistory, RetryPolicy

__all__ = ("ConnectionLife", "RequestAttempts")


class ConnectionLife:
    """The life of one pooled connection, as the keep-alive and retry rules need it.

    Not thread safe by itself: a connection is used by one request at a time, and the
    pool hands it over under its own lock.

    Attributes:
        origin: Where the connection goes.
        created_at: When it was established (the clock's seconds).
        last_used_at: When its last response was read completely (``created_at`` before).
        requests_served: Requests it completed.
        requests_remaining: The ``max=`` of the last ``Keep-Alive`` header, if any.
        bytes_sent: Bytes written in the current attempt.
        bytes_received: Bytes read in the current attempt.
    """

    __slots__ = (
        "_attempt_idle",
        "_attempt_reused",
        "_attempt_served",
        "_attempt_started",
        "_clock",
        "_drawn_for",
        "_lifetime_draw",
        "_ttl_draw",
        "bytes_received",
        "bytes_sent",
        "created_at",
        "last_used_at",
        "origin",
        "requests_remaining",
        "requests_served",
    )

    def __init__(self, origin: Origin | None = None, *, clock: Clock | None = None) -> None:
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self.origin = origin
        self.created_at = self.last_used_at = self._clock.now()
        self.requests_served = 0
        self.requests_remaining: int | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self._attempt_started: float | None = None
        self._attempt_reused = False
        self._attempt_idle = 0.0
        self._attempt_served = 0
        # The lease: jitter draws for the idle TTL (once per idle period, i.e. per value
        # of last_used_at) and for the max lifetime (once per connection), so that one
        # connection checked many times at one instant gets one answer.
        self._drawn_for: float | None = None
        self._ttl_draw = 0.0
        self._lifetime_draw: float | None = None

    def idle_seconds(self) -> float:
        """Seconds since the connection last finished a response (or was opened)."""
        return max(0.0, self._clock.now() - self.last_used_at)

    def expiry_reason(
        self,
        keepalive: OriginKeepAlive,
        *,
        probe: bool | Callable[[], bool] = False,
        retryable: bool | Callable[[], bool] | None = None,
    ) -> str | None:
        """Why this idle connection must not be reused now, or None (see ``OriginKeepAlive``).

        The connection's lease: its jitter is drawn once per idle period (when it was
        returned idle, on the first check after) and once per life for the max lifetime,
        so the answer changes only with time and with what the origin learned.

        Args:
            keepalive: The origin's state.
            probe: The request may reuse it past the TTL (see
                ``OriginKeepAlive.probe_limit``).
            retryable: Whether the request would be retried at once if it turned out
                stale; False applies the safe-send rule (``OriginKeepAlive.safe_idle``),
                None does not.
        """
        if self._drawn_for != self.last_used_at:
            rng = keepalive.rng
            self._drawn_for = self.last_used_at
            self._ttl_draw = rng.random()
            if self._lifetime_draw is None:
                self._lifetime_draw = rng.random()
        return keepalive.expiry_reason(
            created_at=self.created_at,
            last_used_at=self.last_used_at,
            requests_served=self.requests_served,
            now=self._clock.now(),
            requests_remaining=self.requests_remaining,
            probe=probe,
            retryable=retryable,
            ttl_draw=self._ttl_draw,
            lifetime_draw=self._lifetime_draw,
        )

    def report_idle_check(self, keepalive: OriginKeepAlive, *, is_open: bool) -> None:
        """Report a liveness check of this idle connection: still open, or closed by the server.

        The one report every adapter makes of an idle connection it looked at (or saw
        closed), with everything the origin's learning reads: the idle time, and for a
        close the connection's age and request count (a restart burst and a request limit
        are told apart from an idle timeout by them). Nothing for a connection that never
        served a request: its idle time says nothing about the server's timeout.
        """
        if not self.requests_served:
            return
        now = self._clock.now()
        idle = max(0.0, now - self.last_used_at)
        if is_open:
            keepalive.observe_open(idle)
        else:
            keepalive.observe_closed_idle(
                idle,
                age_seconds=max(0.0, now - self.created_at),
                requests_served=self.requests_served,
            )

    def begin_attempt(self) -> None:
        """Mark the start of a request on this connection; resets the byte counters."""
        # rstsafe.urllib3._pools.HTTPConnection.request inlines this: change both together.
        now = self._clock.now()
        self._attempt_started = now
        self._attempt_reused = self.requests_served > 0
        self._attempt_idle = max(0.0, now - self.last_used_at)
        self._attempt_served = self.requests_served
        self.bytes_sent = 0
        self.bytes_received = 0

    def finish_request(self, keep_alive: str | bytes | None = None) -> None:
        """Record a response read completely, with its ``Keep-Alive`` header if any."""
        # rstsafe.urllib3._pools.HTTPConnectionPool._put_conn inlines the header-less case.
        self.requests_served += 1
        self.last_used_at = self._clock.now()
        if keep_alive is not None:
            parsed = parse_keep_alive(keep_alive)
            if parsed.max is not None:
                self.requests_remaining = parsed.max

    def facts(self) -> ConnectionFacts:
        """The facts of the current (or last) attempt, for classification and learning."""
        if self._attempt_started is None:
            # No request began on it (the connect itself failed): it was never idle and
            # has no age worth reporting, and nothing of the request was written.
            return ConnectionFacts(
                origin=self.origin,
                reused=self.requests_served > 0,
                requests_served=self.requests_served,
                bytes_sent=self.bytes_sent,
                bytes_received=self.bytes_received,
            )
        return ConnectionFacts(
            origin=self.origin,
            reused=self._attempt_reused,
            idle_seconds=self._attempt_idle,
            requests_served=self._attempt_served,
            age_seconds=max(0.0, self._attempt_started - self.created_at),
            bytes_sent=self.bytes_sent,
            bytes_received=self.bytes_received,
        )

    def __repr__(self) -> str:
        return (
            f"ConnectionLife(origin={self.origin!r}, requests_served={self.requests_served}, "
            f"idle={self.idle_seconds():.2f}s)"
        )


class RequestAttempts:
    """The attempts of one request: classify, learn, decide, record; build the final error.

    Args:
        policy: The retry policy.
        replay: Whether the request may be sent again
            ([`rstsafe.replayability`][rstsafe.replayability]).
        keepalive: The origin's keep-alive state, taught by every attempt; None to skip.
        rng: Random generator for backoff jitter (seed it in tests).
        clock: Monotonic clock for the policy's ``timeout`` (a ManualClock in tests).
        started_at: When the first attempt started, on ``clock``; default: now. A driver
            that creates this object lazily, after the first failure, passes the time it
            noted before sending.
    """

    __slots__ = (
        "_clock",
        "_keepalive",
        "_policy",
        "_replay",
        "_rng",
        "_started_at",
        "history",
        "last_failure",
    )

    def __init__(
        self,
        *,
        policy: RetryPolicy,
        replay: Replayability,
        keepalive: OriginKeepAlive | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        started_at: float | None = None,
    ) -> None:
        self._policy = policy
        self._replay = replay
        self._keepalive = keepalive
        self._rng = rng
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._started_at = started_at if started_at is not None else self._clock.now()
        self.history = RetryHistory()
        self.last_failure: Failure | None = None

    def elapsed(self) -> float:
        """Seconds since the first attempt started (what ``RetryPolicy.timeout`` bounds)."""
        return max(0.0, self._clock.now() - self._started_at)

    @property
    def replay(self) -> Replayability:
        """The request's replayability."""
        return self._replay

    def failed(
        self, exc: BaseException, facts: ConnectionFacts | None = None, *, learn: bool = True
    ) -> RetryDecision:
        """Classify a failed attempt, learn from it, and decide what to do next.

        ``learn=False`` when the adapter has already reported what this failure shows
        (a liveness check that found the connection closed), so it is not counted twice.
        """
        failure = classify(exc, facts=facts)
        if learn and self._keepalive is not None and facts is not None:
            self._keepalive.observe_attempt(facts, failure)
        decision = self._policy.decide(
            failure, self._replay, self.history, rng=self._rng, elapsed=self.elapsed()
        )
        decision = self._within_budget(decision)
        self.history = self.history.record(decision, failure=failure)
        self.last_failure = failure
        return decision

    def _within_budget(self, decision: RetryDecision) -> RetryDecision:
        """Draw a retry from the origin's budget; give up when it is exhausted.

        Exempt: the first immediate retry after a stale reused connection (see
        ``rstsafe._core.budget``).
        """
        budget = self._policy.budget
        if budget is None or self._keepalive is None or not decision.retry:
            return decision
        if decision.action is RetryAction.RETRY_NOW and self.history.stale_retries_used == 0:
            return decision
        state = self._keepalive.retry_budget
        if state.try_withdraw(budget, self._keepalive.clock.now()):
            return decision
        return RetryDecision(
            action=RetryAction.GIVE_UP,
            reason=(
                f"{self._replay.method} not retried: the origin's retry budget is exhausted"
                f" ({budget.ratio:.0%} of requests + {budget.min_per_second:g}/s"
                f" over {budget.window:g} s)"
            ),
        )

    def succeeded(
        self,
        facts: ConnectionFacts | None = None,
        *,
        status: int | None = None,
        keep_alive: str | bytes | None = None,
        retry_after: str | bytes | None = None,
    ) -> RetryDecision | None:
        """Learn from an attempt that got a response; return a decision to resend it, or None.

        A status in the policy's ``retry_statuses`` (429, 503, ...) may be retried when
        the request is replayable; the caller then discards the response and follows
        the decision. Any other response is the answer (None).
        """
        if self._keepalive is not None:
            if facts is not None:
                self._keepalive.observe_attempt(facts)
            if keep_alive is not None:
                served = None if facts is None else (facts.requests_served or 0) + 1
                self._keepalive.observe_header(keep_alive, requests_served=served)
        if status is None or status not in self._policy.retry_statuses:
            return None
        decision = self._policy.decide_status(
            status,
            self._replay,
            self.history,
            retry_after=retry_after,
            rng=self._rng,
            elapsed=self.elapsed(),
        )
        decision = self._within_budget(decision)
        if not decision.retry:
            return None
        self.history = self.history.record(decision, status=status)
        return decision

    def error(
        self,
        *,
        not_sent_cls: type[RstsafeError] = RequestNotSentError,
        maybe_sent_cls: type[RstsafeError] = RequestMaybeSentError,
        **kwargs: Any,
    ) -> RstsafeError:
        """The error to raise after the last failed attempt (``raise ... from exc``).

        Adapters pass their subclasses that also inherit from the host library's
        exception (``requests.ConnectionError``, ``httpx.TransportError``), and the
        keyword arguments those need (``request=``).
        """
        if self.last_failure is None:
            raise RuntimeError("RequestAttempts.error() called before any failed attempt")
        keepalive = self._keepalive.describe() if self._keepalive is not None else None
        return error_for(
            self.last_failure,
            history=self.history,
            keepalive=keepalive,
            not_sent_cls=not_sent_cls,
            maybe_sent_cls=maybe_sent_cls,
            **kwargs,
        )
