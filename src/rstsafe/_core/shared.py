"""What every connection and request of one client shares: the per-origin bookkeeping.

One object per httpx transport or aiohttp connector (urllib3 keeps the same facts per
pool, which is per origin already): the origins' keep-alive states, cached without a lock
(dict reads are atomic); the stale watermark per origin (idle connections last used at or
before it are expired); the expiry epoch, bumped whenever what decides expiry may have
shortened, so that connections re-run their full check; and the de-duplication of the
reports that teach nothing new. Sans I/O: the adapters subclass it with what their host
needs.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from rstsafe._core.classify import Origin
from rstsafe._core.clock import Clock, MonotonicClock
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry, OriginKeepAlive
from rstsafe._core.retry import RetryPolicy

__all__ = ("MAX_CACHED_ORIGINS", "ClientShared", "origin_for")

#: Entries kept in a client's per-origin caches before they are cleared (a crawler
#: visiting many origins stays bounded; the registry keeps its own bound).
MAX_CACHED_ORIGINS = 4096

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def origin_for(scheme: str, host: str | None, port: int | None) -> Origin:
    """The origin of a URL's parts: lower-case scheme and host, the scheme's default port."""
    scheme = scheme.lower()
    if port is None:
        port = _DEFAULT_PORTS.get(scheme, 0)
    return Origin(scheme, (host or "").lower(), port)


class ClientShared:
    """The per-origin bookkeeping of one client (see the module docstring).

    Args:
        keepalive: The keep-alive configuration (None: ``KeepAlive()``).
        policy: The retry policy.
        clock: The clock (a ManualClock in tests); None for the monotonic clock.
    """

    __slots__ = (
        "clock",
        "epoch",
        "last_header",
        "now",
        "ok_idle",
        "policy",
        "registry",
        "stale_before",
        "states",
    )

    def __init__(
        self, keepalive: KeepAlive | None, policy: RetryPolicy, clock: Clock | None
    ) -> None:
        self.clock: Clock = clock if clock is not None else MonotonicClock()
        # Pools ask every idle connection on every request: call the C function directly
        # for the real clock.
        self.now: Callable[[], float] = (
            time.monotonic if isinstance(self.clock, MonotonicClock) else self.clock.now
        )
        self.registry = KeepAliveRegistry(keepalive, clock=self.clock)
        self.policy = policy
        # Per origin: idle connections last used at or before this time are expired (set
        # when a reused connection turned out stale; see expire_idle).
        self.stale_before: dict[Origin, float] = {}
        # Bumped whenever what decides expiry may have shortened (a stale connection, a
        # close while idle, a new Keep-Alive header): connections re-run the full check.
        self.epoch = 0
        self.last_header: dict[Origin, str] = {}
        # Per origin: (epoch, the longest idle after which a reuse was reported to the
        # keep-alive state). A shorter one teaches it nothing until the epoch changes.
        self.ok_idle: dict[Origin, tuple[int, float]] = {}
        # A lock-free cache of the registry's states.
        self.states: dict[Origin, OriginKeepAlive] = {}

    def state(self, origin: Origin) -> OriginKeepAlive:
        """The keep-alive state of ``origin``."""
        state = self.states.get(origin)
        if state is None:
            if len(self.states) >= MAX_CACHED_ORIGINS:
                self.states.clear()
                self.ok_idle.clear()
            state = self.states[origin] = self.registry.for_origin(origin)
        return state

    def reused_ok(self, origin: Origin, idle: float) -> None:
        """A reused connection answered after ``idle`` seconds: teach the origin's state.

        The state keeps the largest such idle (a lower bound on the server's timeout),
        so reporting a smaller one is skipped, unless something changed since (a stale
        connection, a new header: the epoch), when the state may have dropped it.
        """
        epoch = self.epoch
        seen = self.ok_idle.get(origin)
        if seen is None or seen[0] != epoch or idle > seen[1]:
            self.state(origin).observe_reused_ok(idle)
            self.ok_idle[origin] = (epoch, idle)

    def saw_header(self, origin: Origin, keep_alive: str) -> None:
        """A response carried ``Keep-Alive``; a new value may change the TTL."""
        if self.last_header.get(origin) != keep_alive:
            self.last_header[origin] = keep_alive
            self.epoch += 1

    def expire_idle(self, origin: Origin | None, last_used_at: float) -> None:
        """Expire every idle connection to ``origin`` idle at least since ``last_used_at``.

        A connection found stale after ``t`` seconds idle says the server closes
        connections idle that long: every other connection to the origin idle as long
        is closed too, instead of being tried (and failing) one by one.
        """
        if origin is None:
            return
        # A lost update between two threads only keeps the smaller cutoff: harmless.
        if last_used_at > self.stale_before.get(origin, float("-inf")):
            self.stale_before[origin] = last_used_at
        self.epoch += 1
