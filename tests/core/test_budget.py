"""The retry budget: retries add a bounded fraction to an origin's traffic."""

from __future__ import annotations

import random

import pytest

from rstsafe import KeepAlive, RetryBudget, RetryPolicy
from rstsafe._core.attempts import RequestAttempts
from rstsafe._core.budget import RetryBudgetState
from rstsafe._core.classify import ConnectionFacts
from rstsafe._core.clock import ManualClock
from rstsafe._core.idempotency import replayability
from rstsafe.core import OriginKeepAlive, RetryAction


def test_the_reserve_allows_min_per_second_over_the_window() -> None:
    """No traffic: 10/s over 10 s is 100 retries, then none until the window moves on."""
    budget = RetryBudget()
    state = RetryBudgetState()
    allowed = sum(state.try_withdraw(budget, 100.0) for _ in range(500))
    assert allowed == 100
    assert not state.try_withdraw(budget, 109.9)
    assert state.try_withdraw(budget, 110.0)  # the first second left the window


def test_requests_deposit_ratio_of_a_retry() -> None:
    """1,000 requests with no reserve allow 200 retries (20 %)."""
    budget = RetryBudget(min_per_second=0.0)
    state = RetryBudgetState()
    for _ in range(1000):
        state.deposit(5.0)
    assert state.balance(budget, 5.0) == pytest.approx(200.0)
    assert sum(state.try_withdraw(budget, 5.5) for _ in range(1000)) == 200


def test_the_state_is_bounded_in_time() -> None:
    """A day of traffic keeps at most MAX_WINDOW one-second buckets."""
    state = RetryBudgetState()
    for second in range(86_400):
        state.deposit(float(second))
    assert len(state._buckets) <= RetryBudgetState.MAX_WINDOW + 1


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"ratio": "0.2"}, TypeError, "ratio"),
        ({"ratio": -0.1}, ValueError, "ratio"),
        ({"min_per_second": float("nan")}, ValueError, "min_per_second"),
        ({"window": 0.5}, ValueError, "window"),
        ({"window": True}, TypeError, "window"),
    ],
)
def test_bad_budgets_are_rejected_by_name(
    kwargs: dict[str, object], error: type[Exception], name: str
) -> None:
    """Wrong types and values name the field, at construction."""
    with pytest.raises(error, match=name):
        RetryBudget(**kwargs)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="budget"):
        RetryPolicy(budget=0.2)  # type: ignore[arg-type]


def _reset_error() -> ConnectionResetError:
    return ConnectionResetError(104, "Connection reset by peer")


def test_backoff_retries_stop_when_the_origin_budget_is_exhausted() -> None:
    """A broken origin: 1,000 GETs each wanting 3 retries get 100 + 20 % of retries, in all."""
    clock = ManualClock(50.0)
    origin = OriginKeepAlive(KeepAlive(), rng=random.Random(1), clock=clock)
    policy = RetryPolicy(retries=3, wait_initial=0.0, jitter=0.0)
    fresh = ConnectionFacts(reused=False, bytes_sent=0, bytes_received=0)
    attempts_made = 0
    for _ in range(1000):
        origin.note_request()
        attempts = RequestAttempts(
            policy=policy, replay=replayability("GET"), keepalive=origin, clock=clock
        )
        while True:
            attempts_made += 1
            decision = attempts.failed(_reset_error(), fresh)
            if not decision.retry:
                break
    assert attempts_made == 1000 + 100 + 200
    error = attempts.error()
    assert "retry budget is exhausted" in str(error)


def test_the_first_stale_retry_is_exempt_from_the_budget() -> None:
    """An empty budget still allows the one immediate retry after a stale reused connection."""
    clock = ManualClock(50.0)
    origin = OriginKeepAlive(KeepAlive(), rng=random.Random(1), clock=clock)
    policy = RetryPolicy(budget=RetryBudget(ratio=0.0, min_per_second=0.0))
    stale = ConnectionFacts(
        reused=True, idle_seconds=2.0, requests_served=1, bytes_sent=0, bytes_received=0
    )
    attempts = RequestAttempts(
        policy=policy, replay=replayability("GET"), keepalive=origin, clock=clock
    )
    first = attempts.failed(_reset_error(), stale)
    assert first.action is RetryAction.RETRY_NOW
    second = attempts.failed(_reset_error(), stale)
    assert second.action is RetryAction.GIVE_UP
    assert "budget" in second.reason


def test_no_budget_means_per_request_limits_only() -> None:
    """budget=None: every request gets its 3 retries."""
    clock = ManualClock(50.0)
    origin = OriginKeepAlive(KeepAlive(), rng=random.Random(1), clock=clock)
    policy = RetryPolicy(retries=3, wait_initial=0.0, jitter=0.0, budget=None)
    fresh = ConnectionFacts(reused=False, bytes_sent=0, bytes_received=0)
    made = 0
    for _ in range(200):
        attempts = RequestAttempts(
            policy=policy, replay=replayability("GET"), keepalive=origin, clock=clock
        )
        while True:
            made += 1
            if not attempts.failed(_reset_error(), fresh).retry:
                break
    assert made == 800
