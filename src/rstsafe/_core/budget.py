"""A retry budget: retries may add a fraction to an origin's traffic, never multiply it.

A per-request retry limit (``retries=3``) caps what one request does, not what all of
them do together: when an origin is down, every request retries, and the origin gets
four times its traffic just when it can least take it. A budget caps the sum. Each
request deposits ``ratio`` of a retry; each retry withdraws one; a small reserve
(``min_per_second`` over ``window`` seconds) lets a quiet client still retry.

Precedents:
- Finagle ``RetryBudget``: 20 % of requests (``percentCanRetry``), at least 10 retries
  per second (``minRetriesPerSec``), over a 10 s window (``ttl``).
- reqwest 0.13 ``retry::budget``: 20 % with a small floor; gRPC retry throttling
  (a token bucket that refills with successes); Envoy ``retry_budget``: 20 %.

Exempt: the first immediate retry of a request whose *reused* connection proved stale.
It costs the server nothing when it succeeds (the stale connection never reached the
application), and without it a healthy origin's keep-alive race would be user-visible.

Pure code: times are passed in (monotonic seconds); the state is thread safe.
"""

from __future__ import annotations

import dataclasses
import math
import threading

__all__ = ("DEFAULT_RETRY_BUDGET", "RetryBudget", "RetryBudgetState")


def _number(name: str, value: object, *, minimum: float, inclusive: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    if not math.isfinite(value) or value < minimum or (not inclusive and value == minimum):
        bound = ">=" if inclusive else ">"
        raise ValueError(f"{name} must be finite and {bound} {minimum:g}, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class RetryBudget:
    """How many retries an origin's traffic may carry (frozen; share it freely).

    Attributes:
        ratio: Retries allowed per request, over the window (0.2: 20 %, Finagle's).
        min_per_second: Retries allowed per second whatever the traffic, so that a
            client sending few requests can still retry (Finagle: 10).
        window: Seconds over which requests and retries are counted (Finagle: 10).
    """

    ratio: float = 0.2
    min_per_second: float = 10.0
    window: float = 10.0

    def __post_init__(self) -> None:
        _number("ratio", self.ratio, minimum=0.0)
        _number("min_per_second", self.min_per_second, minimum=0.0)
        _number("window", self.window, minimum=1.0)

    @property
    def reserve(self) -> float:
        """Retries allowed over one window with no traffic at all."""
        return self.min_per_second * self.window


DEFAULT_RETRY_BUDGET = RetryBudget()
"""Finagle's defaults: 20 % of requests plus 10 per second, over 10 s."""


class RetryBudgetState:
    """One origin's deposits (requests) and withdrawals (retries), per second; thread safe.

    Counts are kept in one-second buckets over the longest window asked for (at most
    ``MAX_WINDOW`` seconds), so the state is bounded whatever the traffic.
    """

    MAX_WINDOW = 300

    __slots__ = ("_buckets", "_current", "_current_end", "_current_start", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # second -> [requests, retries]
        self._buckets: dict[int, list[int]] = {}
        # The bucket of the second last counted in, and that second's bounds: every
        # request deposits, nearly always into the same second as the one before, and a
        # comparison is cheaper than flooring ``now`` and looking the bucket up.
        self._current: list[int] = [0, 0]
        self._current_start = math.inf
        self._current_end = -math.inf

    def _bucket(self, now: float) -> list[int]:
        second = math.floor(now)
        bucket = self._buckets.get(second)
        if bucket is None:
            bucket = self._buckets[second] = [0, 0]
            if len(self._buckets) > self.MAX_WINDOW:
                oldest = second - self.MAX_WINDOW
                for key in [k for k in self._buckets if k <= oldest]:
                    del self._buckets[key]
        # Only buckets older than MAX_WINDOW seconds are dropped, never this one.
        self._current, self._current_start, self._current_end = bucket, second, second + 1
        return bucket

    def deposit(self, now: float) -> None:
        """Count one request."""
        with self._lock:
            if self._current_start <= now < self._current_end:
                self._current[0] += 1
            else:
                self._bucket(now)[0] += 1

    def _counts(self, budget: RetryBudget, now: float) -> tuple[int, int]:
        start = math.floor(now) - math.ceil(budget.window) + 1
        requests = retries = 0
        for second, (req, ret) in self._buckets.items():
            if second >= start:
                requests += req
                retries += ret
        return requests, retries

    def balance(self, budget: RetryBudget, now: float) -> float:
        """Retries still allowed now: reserve + ratio x requests - retries, in the window."""
        with self._lock:
            requests, retries = self._counts(budget, now)
        return budget.reserve + budget.ratio * requests - retries

    def try_withdraw(self, budget: RetryBudget, now: float) -> bool:
        """Take one retry if the budget allows it; False when it is exhausted."""
        with self._lock:
            requests, retries = self._counts(budget, now)
            if budget.reserve + budget.ratio * requests - retries < 1.0:
                return False
            self._bucket(now)[1] += 1
            return True

    def __repr__(self) -> str:
        with self._lock:
            requests = sum(b[0] for b in self._buckets.values())
            retries = sum(b[1] for b in self._buckets.values())
        return f"RetryBudgetState(requests={requests}, retries={retries})"
