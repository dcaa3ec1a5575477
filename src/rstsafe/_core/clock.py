"""Clocks and jitter: the only sources of time and randomness in rstsafe's decisions.

The decision core (classification, retry, expiry) never calls ``time`` or ``random``
itself. It takes a :class:`Clock` and a :class:`random.Random`, so unit tests drive it
with :class:`ManualClock` and a seeded generator, and get the same answer every time.
"""

from __future__ import annotations

import random
import time
from typing import Protocol, runtime_checkable

__all__ = ("Clock", "ManualClock", "MonotonicClock", "jittered")


@runtime_checkable
class Clock(Protocol):
    """Anything with a monotonic ``now()`` in seconds."""

    def now(self) -> float:
        """Return the current time in seconds on a monotonic scale."""
        ...


class MonotonicClock:
    """The real clock: `time.monotonic`, which never goes backwards."""

    __slots__ = ()

    def now(self) -> float:
        return time.monotonic()

    def __repr__(self) -> str:
        return "MonotonicClock()"


class ManualClock:
    """A clock that moves only when told to; for tests of time-dependent decisions."""

    __slots__ = ("_now",)

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._now += seconds

    def __repr__(self) -> str:
        return f"ManualClock(start={self._now!r})"


def jittered(value: float, fraction: float, rng: random.Random) -> float:
    """Return ``value`` shortened by a random amount of up to ``fraction`` of itself.

    Jitter only ever shortens: a TTL or lifetime that is already below the server's
    limit must stay below it. Spreading expiries stops a pool that opened many
    connections at once from closing (and reopening) them all in the same instant,
    which is why HikariCP subtracts up to 2.5 % from ``maxLifetime``.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"jitter fraction must be in [0, 1), got {fraction!r}")
    if value <= 0.0 or fraction == 0.0:
        return value
    return value * (1.0 - fraction * rng.random())
