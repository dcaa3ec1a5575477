"""The retry budget's deposit fast path (the current second's bucket, cached) counts as before."""

from __future__ import annotations

import math
import random

from rstsafe import RetryBudget
from rstsafe._core.budget import RetryBudgetState


def _counted(state: RetryBudgetState) -> dict[int, list[int]]:
    return {second: list(counts) for second, counts in state._buckets.items() if counts != [0, 0]}


def test_deposits_land_in_the_second_they_were_made_in_any_order() -> None:
    """Deposits across seconds, back in time and between withdrawals match flooring each one."""
    rng = random.Random(14)
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, window=5.0)
    state = RetryBudgetState()
    expected: dict[int, list[int]] = {}
    now = 100.0
    for _ in range(5_000):
        now += rng.choice((0.0, 0.001, 0.3, 0.999, 1.0, -0.7, -2.0))
        if rng.random() < 0.1:
            if state.try_withdraw(budget, now):
                expected.setdefault(math.floor(now), [0, 0])[1] += 1
        else:
            state.deposit(now)
            expected.setdefault(math.floor(now), [0, 0])[0] += 1
    assert _counted(state) == {s: c for s, c in expected.items() if s in state._buckets}
    assert set(expected) >= set(_counted(state))


def test_the_cached_bucket_survives_pruning_and_stays_in_the_table() -> None:
    """After MAX_WINDOW seconds of traffic the cached bucket is the newest one, still counted."""
    state = RetryBudgetState()
    for second in range(RetryBudgetState.MAX_WINDOW * 3):
        state.deposit(second + 0.25)
        state.deposit(second + 0.75)
    last = RetryBudgetState.MAX_WINDOW * 3 - 1
    assert state._buckets[last] == [2, 0]
    state.deposit(last + 0.5)
    assert state._buckets[last] == [3, 0]
    assert len(state._buckets) <= RetryBudgetState.MAX_WINDOW + 1
    budget = RetryBudget(ratio=1.0, min_per_second=0.0, window=1.0)
    assert state.balance(budget, last + 0.9) == 3.0
