"""The shared driver bookkeeping: connection life and per-request attempts (no sockets)."""

from __future__ import annotations

import random

import pytest

from rstsafe import (
    Delivery,
    KeepAlive,
    RequestMaybeSentError,
    RequestNotSentError,
    RetryPolicy,
    replayability,
)
from rstsafe._core.attempts import ConnectionLife, RequestAttempts
from rstsafe._core.clock import ManualClock
from rstsafe.core import Origin, OriginKeepAlive, RetryAction, TTLSource

ORIGIN = Origin("http", "127.0.0.1", 8080)


def _reset() -> ConnectionResetError:
    return ConnectionResetError(104, "Connection reset by peer")


def test_life_reports_reuse_idle_and_bytes_of_the_current_attempt() -> None:
    """Facts describe the attempt: reused after one request, idle time, bytes counted."""
    clock = ManualClock()
    life = ConnectionLife(ORIGIN, clock=clock)
    life.begin_attempt()
    assert life.facts().reused is False
    life.bytes_sent = 10
    life.finish_request()
    clock.advance(4.5)
    life.begin_attempt()
    clock.advance(0.2)  # time spent in the attempt is not idle time
    facts = life.facts()
    assert facts.reused is True
    assert facts.idle_seconds == pytest.approx(4.5)
    assert facts.requests_served == 1
    assert facts.bytes_sent == 0  # reset for the new attempt
    assert facts.age_seconds == pytest.approx(4.5)


def test_life_expires_against_the_origin_ttl_and_header_max() -> None:
    """A connection idle past the TTL, or with Keep-Alive max=0, must not be reused."""
    clock = ManualClock()
    state = OriginKeepAlive(KeepAlive(server_keepalive=5.0, jitter=0.0), origin=ORIGIN, clock=clock)
    life = ConnectionLife(ORIGIN, clock=clock)
    life.begin_attempt()
    life.finish_request(b"timeout=5, max=1")
    assert life.requests_remaining == 1
    clock.advance(1.0)
    assert life.expiry_reason(state) is None
    clock.advance(3.5)  # idle 4.5 s > 5 s minus the margin
    reason = life.expiry_reason(state)
    assert reason is not None
    assert "idle TTL" in reason
    fresh = ConnectionLife(ORIGIN, clock=clock)
    fresh.finish_request("timeout=5, max=0")
    assert fresh.expiry_reason(state) is not None


def test_stale_reused_post_that_sent_nothing_is_retried_at_once() -> None:
    """A reset on a reused connection with zero bytes written is retried now, for any method."""
    state = OriginKeepAlive(KeepAlive(), origin=ORIGIN)
    attempts = RequestAttempts(
        policy=RetryPolicy(), replay=replayability("POST", {}, b"order"), keepalive=state
    )
    life = ConnectionLife(ORIGIN)
    life.finish_request()
    life.begin_attempt()
    decision = attempts.failed(_reset(), life.facts())
    assert decision.action is RetryAction.RETRY_NOW
    assert attempts.last_failure is not None
    assert attempts.last_failure.delivery is Delivery.NOT_SENT


def test_sent_post_is_never_retried_and_the_error_says_why() -> None:
    """A POST that may have been sent gives up; the error is RequestMaybeSentError."""
    attempts = RequestAttempts(policy=RetryPolicy(), replay=replayability("POST", {}, b"x"))
    life = ConnectionLife(ORIGIN)
    life.finish_request()
    life.begin_attempt()
    life.bytes_sent = 120
    decision = attempts.failed(_reset(), life.facts())
    assert decision.action is RetryAction.GIVE_UP
    error = attempts.error()
    assert isinstance(error, RequestMaybeSentError)
    assert "not idempotent" in str(error)
    assert "127.0.0.1:8080" in str(error)


def test_stale_failure_teaches_the_origin_an_upper_bound() -> None:
    """A stale reused connection after 6 s idle makes the TTL a learned one below 6 s."""
    state = OriginKeepAlive(KeepAlive(default_idle_ttl=30.0, jitter=0.0), origin=ORIGIN)
    clock = ManualClock()
    life = ConnectionLife(ORIGIN, clock=clock)
    life.finish_request()
    clock.advance(6.0)
    life.begin_attempt()
    attempts = RequestAttempts(policy=RetryPolicy(), replay=replayability("GET"), keepalive=state)
    attempts.failed(_reset(), life.facts())
    ttl = state.idle_ttl()
    assert ttl.source is TTLSource.LEARNED
    assert ttl.seconds < 6.0


def test_header_and_status_retry_on_success() -> None:
    """A 503 with Retry-After is retried for GET; the Keep-Alive header is learned."""
    state = OriginKeepAlive(KeepAlive(jitter=0.0), origin=ORIGIN)
    policy = RetryPolicy(retry_statuses=frozenset({503}))
    attempts = RequestAttempts(
        policy=policy, replay=replayability("GET"), keepalive=state, rng=random.Random(1)
    )
    decision = attempts.succeeded(status=503, keep_alive="timeout=7", retry_after="1")
    assert decision is not None
    assert decision.action is RetryAction.RETRY_AFTER
    assert decision.delay == pytest.approx(1.0)
    assert state.idle_ttl().source is TTLSource.HEADER
    assert attempts.succeeded(status=200) is None


def test_refused_connection_error_is_not_sent() -> None:
    """When retries run out on a refused connection the error says nothing was sent."""
    attempts = RequestAttempts(policy=RetryPolicy(retries=0), replay=replayability("POST"))
    decision = attempts.failed(ConnectionRefusedError(111, "Connection refused"))
    assert not decision.retry
    assert isinstance(attempts.error(), RequestNotSentError)


def test_error_before_any_failure_is_a_programming_error() -> None:
    """Asking for the error with no failed attempt is refused clearly."""
    attempts = RequestAttempts(policy=RetryPolicy(), replay=replayability("GET"))
    with pytest.raises(RuntimeError, match="before any failed attempt"):
        attempts.error()


def test_policy_timeout_bounds_the_retries() -> None:
    """With RetryPolicy(timeout=1), a failure after 1.5 s gives up instead of backing off."""
    clock = ManualClock()
    attempts = RequestAttempts(
        policy=RetryPolicy(timeout=1.0, wait_initial=0.1, jitter=0.0),
        replay=replayability("GET"),
        clock=clock,
    )
    refused = ConnectionRefusedError(111, "Connection refused")
    first = attempts.failed(refused)
    assert first.action is RetryAction.RETRY_AFTER
    clock.advance(1.5)
    assert attempts.elapsed() == pytest.approx(1.5)
    second = attempts.failed(refused)
    assert second.action is RetryAction.GIVE_UP
    assert "timeout" in second.reason


def test_facts_of_a_connection_that_never_carried_a_request() -> None:
    """A failed connect reports a fresh connection with nothing sent, not idle or age times."""
    clock = ManualClock()
    life = ConnectionLife(ORIGIN, clock=clock)
    clock.advance(1.0)  # the connect timed out after 1 s
    facts = life.facts()
    assert facts.reused is False
    assert facts.idle_seconds is None
    assert facts.age_seconds is None
    assert facts.bytes_sent == 0
