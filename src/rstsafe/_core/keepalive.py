"""Keep-alive policy: give an idle connection up before the server does.

Rule of thumb at every hop: the side that reuses a connection must give it up before the
side that accepts it does. The server's idle timeout is taken, in order, from explicit
configuration (``server_keepalive=``), the ``Keep-Alive: timeout=N`` response header,
or nothing (a default TTL). Learning from observed closes can only *shorten* a configured
or announced TTL: a close is a fact, a configured or announced timeout is a claim. When
nothing is claimed, learning may also *lengthen* the default TTL, but only up to an idle
time a reuse has been seen to survive: that is a fact too. Requests that can be retried
transparently (idempotent, replayable body) may *probe*: reuse a connection somewhat past
the TTL, to find out whether it survives (see :meth:`OriginKeepAlive.probe_limit`).

Pure code: every method takes its times as arguments; randomness comes from an injected
:class:`random.Random` (jitter, via :func:`rstsafe._core.clock.jittered`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import enum
import math
import random
import threading
from collections.abc import Callable, Iterator

from rstsafe._core.budget import RetryBudgetState
from rstsafe._core.classify import ConnectionFacts, Failure, Origin
from rstsafe._core.clock import Clock, MonotonicClock

__all__ = (
    "DEFAULT_IDLE_TTL",
    "DEFAULT_MAX_ORIGINS",
    "PROBE_REACH",
    "IdleTTL",
    "KeepAlive",
    "KeepAliveHeader",
    "KeepAliveRegistry",
    "OriginKeepAlive",
    "TTLSource",
    "parse_keep_alive",
)

# The idle TTL when nothing is known about the server. Some precedents:
# - Go net/http Transport.IdleConnTimeout: 90 s (above nginx's 75 s: Go relies on retries)
# - undici (Node's fetch): keepAliveTimeout 4 s
# - httpx/httpcore: keepalive_expiry 5 s
# - aiohttp: keepalive_timeout 15 s
# - servers: nginx keepalive_timeout 75 s, Apache httpd KeepAliveTimeout 5 s,
#   uvicorn timeout_keep_alive 5 s, Node http.Server keepAliveTimeout 5 s,
#   gunicorn keepalive 2 s.
# 4 s, like undici: below the 5 s of uvicorn, Node and Apache (the commonest short
# timeouts) with 1 s to spare for the race, while keeping reuse for bursty traffic.
# gunicorn's 2 s is below it: the first stale connection teaches the origin's state
# (learning) and is retried at once on a fresh connection when that is safe.
DEFAULT_IDLE_TTL = 4.0

# Margin below a known server timeout: min(margin, margin_fraction * timeout).
# The margin covers the race of C2: the server's idle clock starts when it sent its last
# byte, ours when we read it (half an RTT later), and our next request needs another
# half RTT plus scheduling delays to arrive. undici subtracts a fixed 2 s
# (keepAliveTimeoutThreshold); HikariCP asks for a lifetime "several seconds shorter"
# than any infrastructure limit. A fixed 2 s is right for nginx's 75 s but leaves
# nothing of gunicorn's 2 s, so short timeouts get a proportional margin instead:
# 25 % keeps 1.5 s of gunicorn's 2 s and 3.75 s of uvicorn's 5 s, and every timeout
# above 8 s loses exactly 2 s.
DEFAULT_MARGIN = 2.0
DEFAULT_MARGIN_FRACTION = 0.25

# Jitter only shortens (see jittered()); HikariCP takes up to 2.5 % off maxLifetime.
# 5 % spreads the expiries of a burst of connections opened together.
DEFAULT_JITTER = 0.05

# Max lifetime: re-resolve and re-balance at least every 5 minutes (DNS changes, load
# balancers adding backends), below the 350 s of AWS NLB/NAT gateways for connections
# kept warm by traffic. Costs one handshake per connection per 5 minutes. HikariCP's
# default maxLifetime is 30 minutes; Go, OkHttp and httpx have none.
DEFAULT_MAX_LIFETIME = 300.0

# Learned bounds are forgotten this long after the last close that set them, so that
# one spurious reset (a crash, a restart, a middlebox) or a server whose timeout went
# up cannot pin an origin's TTL low forever. Relearning costs at most one stale
# connection per origin per window, retried at once when the request allows it.
DEFAULT_LEARN_MEMORY = 600.0

# A probe (a replayable request reusing a connection past the TTL, when nothing is
# claimed) goes at most this many times the TTL, or the largest idle seen to survive:
# like TCP's slow start, the reach doubles with every success, so a timeout far above
# the default is found in a few steps while a middlebox that drops idle connections
# silently (C3) is never probed far past what worked.
PROBE_REACH = 2.0

# Closes that are not idle timeouts. A close is taken as evidence of the server's idle
# timeout only when nothing else explains it (see OriginKeepAlive.observe_stale):
# - a close after less idle than this fraction of the default TTL (0.125 s of the 4 s
#   default): no server times idle connections out that fast (gunicorn's 2 s is the
#   shortest common keep-alive), so a reset at idle ~0 is a crash, a restart or a
#   per-connection request limit;
MIN_IDLE_EVIDENCE_FRACTION = 1.0 / 32.0
# - closes of this many connections within RESTART_WINDOW seconds of each other: a
#   restart or a deploy resets every connection at once, whatever their idle times;
RESTART_BURST = 3
RESTART_WINDOW = 1.0
# - closes of this many connections after the same number of requests: a server that
#   closes after N requests (nginx keepalive_requests, gunicorn max_requests, a proxy's
#   per-connection limit) teaches a max_requests bound, as ``Keep-Alive: max=`` would.
SAME_COUNT_CLOSES = 2
# The close history kept per origin, for the two patterns above (bounded: a broken
# origin closing every connection does not grow it).
CLOSE_HISTORY = 16

# Safe send: an idle that a reuse survived is proven safe to wait again, less this
# fraction for the variance of the request's way to the server (a few ms on a LAN, tens
# on a WAN; 5 % of a 2 s idle is 100 ms).
PROOF_MARGIN = 0.05


# Keep-Alive header values beyond these are hostile or nonsense and ignored.
MAX_HEADER_TIMEOUT = 86_400.0  # one day
MAX_HEADER_MAX = 1_000_000_000
_MAX_HEADER_LENGTH = 1024


class TTLSource(enum.Enum):
    """Where an idle TTL came from."""

    CONFIGURED = "configured"
    """``KeepAlive(server_keepalive=...)``."""
    HEADER = "header"
    """The server's ``Keep-Alive: timeout=N`` response header."""
    LEARNED = "learned"
    """Observed closes and successful reuses of this origin's connections."""
    DEFAULT = "default"
    """Nothing known: ``KeepAlive.default_idle_ttl``."""


def _finite_non_negative(
    name: str, value: float | None, *, allow_none: bool = True, allow_zero: bool = True
) -> None:
    """Check a duration or fraction: TypeError for a non-number, ValueError for a bad value."""
    if value is None:
        if not allow_none:
            raise TypeError(f"{name} must be a number, got None")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__} {value!r}")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
    if not allow_zero and value == 0:
        raise ValueError(f"{name} must be > 0{' or None' if allow_none else ''}, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class KeepAlive:
    """Keep-alive configuration, shared by every origin of a pool (frozen).

    Attributes:
        server_keepalive: The server's idle timeout in seconds, when you know it (for
            example nginx's ``keepalive_timeout``). Wins over the header and the default.
        default_idle_ttl: The TTL used as is when nothing is known about the server
            (4 s; see ``DEFAULT_IDLE_TTL``). No margin is taken off it.
        margin: Absolute margin below a known server timeout, in seconds.
        margin_fraction: Proportional margin; the margin applied is
            ``min(margin, margin_fraction * timeout)``.
        jitter: Fraction (0 to <1) by which TTLs and lifetimes are randomly shortened.
        max_lifetime: Close connections older than this (jittered); None for no limit.
        max_requests: Close connections after this many requests; None for no limit
            (the header's ``max=`` still applies).
        learn: Learn the server's timeout from observed closes and reuses.
        learn_memory: Forget learned bounds this many seconds after the last close that
            set them (None: never forget).
        use_header: Honour the ``Keep-Alive`` response header.
        probe: Let requests that are retried transparently when stale (idempotent, with
            a replayable body) reuse a connection past the TTL, when no timeout is
            configured or announced (see
            [`OriginKeepAlive.probe_limit`][rstsafe.core.OriginKeepAlive.probe_limit]).
        witness: When no timeout is configured or announced, keep one expired idle
            connection per origin open, unused, to watch how long the server keeps it
            (see [`OriginKeepAlive.offer_witness`][rstsafe.core.OriginKeepAlive.offer_witness]):
            what proves requests that
            cannot be retried safe to reuse. One more socket per origin, at most.
    """

    server_keepalive: float | None = None
    default_idle_ttl: float = DEFAULT_IDLE_TTL
    margin: float = DEFAULT_MARGIN
    margin_fraction: float = DEFAULT_MARGIN_FRACTION
    jitter: float = DEFAULT_JITTER
    max_lifetime: float | None = DEFAULT_MAX_LIFETIME
    max_requests: int | None = None
    learn: bool = True
    learn_memory: float | None = DEFAULT_LEARN_MEMORY
    use_header: bool = True
    probe: bool = True
    witness: bool = True

    def __post_init__(self) -> None:
        # A server keep-alive of 0 is a server that keeps nothing alive: it answers
        # ``Connection: close``, which rstsafe honours without being told. Configuring it
        # would only give a TTL of 0, so it is rejected as a likely mistake.
        _finite_non_negative("server_keepalive", self.server_keepalive, allow_zero=False)
        # A default TTL of 0 would never reuse a connection to an unknown server, and so
        # never learn anything about it: rejected (use max_requests=1 for no reuse).
        _finite_non_negative(
            "default_idle_ttl", self.default_idle_ttl, allow_none=False, allow_zero=False
        )
        # Zero margins and zero jitter have a meaning: no safety margin, no jitter.
        _finite_non_negative("margin", self.margin, allow_none=False)
        _finite_non_negative("margin_fraction", self.margin_fraction, allow_none=False)
        if self.margin_fraction >= 1.0:
            raise ValueError(f"margin_fraction must be < 1, got {self.margin_fraction!r}")
        _finite_non_negative("jitter", self.jitter, allow_none=False)
        if self.jitter >= 1.0:
            raise ValueError(f"jitter must be < 1, got {self.jitter!r}")
        _finite_non_negative("max_lifetime", self.max_lifetime, allow_zero=False)
        # Forgetting at once is learning nothing: say learn=False instead.
        _finite_non_negative("learn_memory", self.learn_memory, allow_zero=False)
        if self.max_requests is not None:
            if isinstance(self.max_requests, bool) or not isinstance(self.max_requests, int):
                raise TypeError(
                    f"max_requests must be an int or None, got "
                    f"{type(self.max_requests).__name__} {self.max_requests!r}"
                )
            if self.max_requests < 1:
                raise ValueError(f"max_requests must be >= 1 or None, got {self.max_requests!r}")
        for flag in ("learn", "use_header", "probe", "witness"):
            value = getattr(self, flag)
            if not isinstance(value, bool):
                raise TypeError(f"{flag} must be a bool, got {type(value).__name__} {value!r}")

    def margin_for(self, server_timeout: float) -> float:
        """The safety margin taken off a server timeout: ``min(margin, fraction * timeout)``."""
        return min(self.margin, self.margin_fraction * server_timeout)

    def ttl_below(self, server_timeout: float) -> float:
        """The idle TTL (before jitter) for a server idle timeout: timeout minus margin."""
        return max(0.0, server_timeout - self.margin_for(server_timeout))


@dataclasses.dataclass(frozen=True, slots=True)
class KeepAliveHeader:
    """A parsed ``Keep-Alive`` header; fields are None when absent or rejected.

    Attributes:
        timeout: The server's idle timeout in seconds (0 to one day).
        max: The number of further requests the server allows on this connection.
    """

    timeout: float | None = None
    max: int | None = None


def _parse_number(text: str) -> float | None:
    text = text.strip().strip('"').strip()
    if not text or len(text) > 32:
        return None
    # Only plain decimal numbers: no "inf", "nan", "1e9", "0x10", "5s", "-1", "1_0".
    if not all(c.isdigit() or c == "." for c in text) or text.count(".") > 1 or text == ".":
        return None
    if not text.isascii():
        return None
    return float(text)


def parse_keep_alive(value: str | bytes | None) -> KeepAliveHeader:
    """Parse a ``Keep-Alive`` response header, e.g. ``timeout=5, max=100``. Never raises.

    Parameters are separated by commas (semicolons tolerated), names compare
    case-insensitively, values may be quoted. The first valid occurrence of each
    parameter wins. Hostile or malformed values are ignored: negative, NaN or infinite,
    non-decimal, a timeout above one day, a ``max`` that is not an integer, headers
    longer than 1024 characters.

    Args:
        value: The header value (``str`` or ``bytes``; several headers joined by commas).

    Returns:
        A [`KeepAliveHeader`][rstsafe.core.KeepAliveHeader].
    """
    try:
        if value is None:
            return KeepAliveHeader()
        text = value.decode("latin-1") if isinstance(value, (bytes, bytearray)) else str(value)
        if len(text) > _MAX_HEADER_LENGTH:
            return KeepAliveHeader()
        timeout: float | None = None
        max_requests: int | None = None
        for part in text.replace(";", ",").split(","):
            name, sep, raw = part.partition("=")
            if not sep:
                continue
            name = name.strip().lower()
            number = _parse_number(raw)
            if number is None:
                continue
            if name == "timeout" and timeout is None and number <= MAX_HEADER_TIMEOUT:
                timeout = number
            elif (
                name == "max"
                and max_requests is None
                and number.is_integer()
                and "." not in raw
                and number <= MAX_HEADER_MAX
            ):
                max_requests = int(number)
        return KeepAliveHeader(timeout=timeout, max=max_requests)
    except Exception:  # never raise on a header from the network
        return KeepAliveHeader()


@dataclasses.dataclass(frozen=True, slots=True)
class IdleTTL:
    """An idle TTL and where it came from.

    Attributes:
        seconds: The TTL to apply now, margin and jitter included.
        source: Where it came from.
        server_timeout: The server timeout it was derived from (configured, announced,
            or the learned estimate), None for the default.
        before_jitter: The TTL before jitter.
    """

    seconds: float
    source: TTLSource
    server_timeout: float | None
    before_jitter: float


# The two private records below are plain slotted classes, not dataclasses: a dataclass
# costs about half a millisecond at import (issue 15), and nothing compares or prints them.


class _Witness:
    """An expired idle connection kept open, unused, to watch the server keep it."""

    __slots__ = ("close", "created_at", "handle", "last_used_at")

    def __init__(
        self, *, handle: object, last_used_at: float, created_at: float, close: Callable[[], None]
    ) -> None:
        self.handle = handle
        self.last_used_at = last_used_at
        self.created_at = created_at
        self.close = close


class _Close:
    """One close by the server, as the history keeps it (see OriginKeepAlive)."""

    __slots__ = (
        "applied",
        "at",
        "idle",
        "liveness_check",
        "lower_before",
        "opened_at",
        "pending_before",
        "served",
        "upper_before",
    )

    def __init__(
        self,
        *,
        at: float,
        idle: float,
        served: int | None,
        liveness_check: bool,
        opened_at: float | None,
    ) -> None:
        self.at = at
        self.idle = idle
        self.served = served
        self.liveness_check = liveness_check
        self.opened_at = opened_at
        # What applying it as idle evidence changed, to undo it when a pattern explains
        # it (set by applied_as_evidence).
        self.applied = False
        self.upper_before: float | None = None
        self.pending_before: float | None = None
        self.lower_before: float | None = None

    def applied_as_evidence(
        self, *, upper: float | None, pending: float | None, lower: float | None
    ) -> None:
        """Record that this close lowered the idle bound, and what the bounds were before."""
        self.applied = True
        self.upper_before = upper
        self.pending_before = pending
        self.lower_before = lower


class OriginKeepAlive:
    """The keep-alive state of one origin (scheme, host, port); thread safe.

    Holds what the server announced (``Keep-Alive`` header) and what was learned:

    * a connection reused successfully after ``t`` seconds idle means the server's
      timeout is above ``t`` (``lower_bound`` = the largest such ``t``);
    * an idle connection seen still open (no FIN, not readable) after ``t`` seconds
      means the same, more weakly (``open_bound``): a FIN may be on its way, a middlebox
      may have dropped it silently. Together they are the *proven* idle;
    * a connection found closed by the server after ``t`` seconds idle means the
      timeout is at most ``t`` (``upper_bound`` = the smallest such ``t``), when the
      close reads as an idle timeout (below).

    Once a close has been seen, the learned estimate of the server's timeout is
    ``max(lower_bound, upper_bound / 2)``: the largest idle known to survive, or half
    the smallest idle known to fail when nothing bigger survived (each close halves
    it, so a TTL far too long converges in a few steps). The learned TTL is the larger
    of that estimate minus the margin and the *proven* TTL: the proven idle itself,
    capped at ``upper_bound`` minus the margin (an idle that survived is safe to wait
    again, unless a close was seen just above it).

    A learned TTL only shortens a configured or announced one. It lengthens the
    default only up to the proven TTL: with no close seen, the TTL is
    ``max(default, proven)``. Probes (`probe_limit`) and idle connections seen
    open are how the proven idle grows past the default.

    Not every close is an idle timeout, and reading one as such would turn reuse off
    for ``learn_memory`` (a "timeout" of 0.01 s). A close teaches nothing about the
    idle timeout when:

    * it came after less idle than ``MIN_IDLE_EVIDENCE_FRACTION`` of the default TTL;
    * it is one of ``RESTART_BURST`` closes within ``RESTART_WINDOW`` seconds of
      connections that were all open before the first of them closed (a restart or a
      deploy resets every connection at once; closes of connections opened one after
      the other are not a burst);
    * it is one of ``SAME_COUNT_CLOSES`` closes after the same number of requests, each
      after an idle that was kept before (a per-connection request limit: learned as
      `learned_max_requests` instead);
    * it came after less idle than a reuse survived: noise (a crash) unless a second
      such close follows, which means the server now closes sooner.

    A pattern is seen only once its second or third close arrives: the closes it
    explains are then taken back from the bounds. All learned bounds are forgotten
    ``KeepAlive.learn_memory`` seconds after the last close that set them.

    Time comes from the injected ``clock`` (monotonic seconds).
    """

    __slots__ = (
        "_burst_at",
        "_clock",
        "_closes",
        "_config",
        "_header_at",
        "_header_limit",
        "_header_timeout",
        "_learned_at",
        "_limit_at",
        "_limit_before",
        "_lock",
        "_lower",
        "_max_requests",
        "_open",
        "_pending_stale",
        "_rng",
        "_upper",
        "_witness",
        "origin",
        "retry_budget",
    )

    def __init__(
        self,
        config: KeepAlive | None = None,
        *,
        origin: Origin | None = None,
        rng: random.Random | None = None,
        clock: Clock | None = None,
    ) -> None:
        """Create the state of one origin.

        Args:
            config: The shared configuration (default ``KeepAlive()``).
            origin: The origin, for messages.
            rng: Random generator for jitter (seed it in tests).
            clock: Monotonic clock for ``learn_memory`` (a ManualClock in tests).
        """
        self._config = config if config is not None else KeepAlive()
        self.origin = origin
        self._rng = rng if rng is not None else random.Random()
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._lock = threading.Lock()
        self._lower: float | None = None
        self._upper: float | None = None
        self._open: float | None = None
        self._header_timeout: float | None = None
        self._header_limit: int | None = None
        self._header_at: float | None = None
        self._learned_at: float | None = None
        self._pending_stale: float | None = None
        self._max_requests: int | None = None
        self._burst_at: float | None = None
        # When the learned limit was last set from a close pattern, and what it was
        # before: a restart seen within RESTART_WINDOW of it takes it back.
        self._limit_at: float | None = None
        self._limit_before: int | None = None
        self._closes: collections.deque[_Close] = collections.deque(maxlen=CLOSE_HISTORY)
        #: Requests and retries of this origin, for ``RetryPolicy.budget``.
        self.retry_budget = RetryBudgetState()
        self._witness: _Witness | None = None

    @property
    def config(self) -> KeepAlive:
        """The configuration."""
        return self._config

    def note_request(self) -> None:
        """Count one request to this origin: its deposit into the retry budget."""
        self.retry_budget.deposit(self._clock.now())

    @property
    def clock(self) -> Clock:
        """The monotonic clock."""
        return self._clock

    @property
    def rng(self) -> random.Random:
        """The random generator for jitter (connections draw their lease from it)."""
        return self._rng

    @property
    def lower_bound(self) -> float | None:
        """Largest idle seconds after which a reuse succeeded (server timeout is above)."""
        with self._lock:
            self._forget_expired()
            return self._lower

    @property
    def open_bound(self) -> float | None:
        """Largest idle seconds after which an idle connection was seen still open."""
        with self._lock:
            self._forget_expired()
            return self._open

    @property
    def upper_bound(self) -> float | None:
        """Smallest idle seconds after which the server had closed (timeout is at most)."""
        with self._lock:
            self._forget_expired()
            return self._upper

    @property
    def learned_max_requests(self) -> int | None:
        """Requests per connection learned from closes after the same request count."""
        with self._lock:
            self._forget_expired()
            return self._max_requests

    def _forget_expired(self) -> None:
        memory = self._config.learn_memory
        if memory is None or self._learned_at is None:
            return
        if self._clock.now() - self._learned_at >= memory:
            self._lower = self._upper = self._open = None
            self._learned_at = None
            self._pending_stale = None
            self._max_requests = None
            self._burst_at = self._limit_at = self._limit_before = None
            self._closes.clear()

    @property
    def header_timeout(self) -> float | None:
        """The last valid ``timeout=`` the server announced."""
        with self._lock:
            return self._header_timeout

    @property
    def header_max_requests(self) -> int | None:
        """Requests per connection implied by the header's ``max=`` (see observe_header)."""
        with self._lock:
            return self._header_limit

    def observe_header(
        self,
        value: str | bytes | None,
        now: float | None = None,
        *,
        requests_served: int | None = None,
    ) -> KeepAliveHeader:
        """Record a ``Keep-Alive`` response header. Never raises.

        Args:
            value: The header value; malformed or hostile values are ignored.
            now: When it was seen (kept for diagnostics; default: the clock's now).
            requests_served: Requests the connection has completed including this one;
                with ``max=M`` it sets a per-connection limit of ``requests_served + M``.

        Returns:
            The parsed header, so the adapter can track ``max`` per connection.
        """
        parsed = parse_keep_alive(value)
        if not self._config.use_header:
            return parsed
        with self._lock:
            if parsed.timeout is not None:
                self._header_timeout = parsed.timeout
                self._header_at = now if now is not None else self._clock.now()
            if (
                parsed.max is not None
                and isinstance(requests_served, int)
                and 0 <= requests_served <= MAX_HEADER_MAX
            ):
                self._header_limit = max(1, requests_served + parsed.max)
        return parsed

    def observe_reused_ok(self, idle_seconds: float) -> None:
        """Record that a connection idle for ``idle_seconds`` was reused successfully."""
        if not self._config.learn or not _is_sane(idle_seconds):
            return
        with self._lock:
            self._forget_expired()
            if self._upper is not None and idle_seconds >= self._upper:
                self._upper = None  # proof: the server now keeps connections longer
                self._learned_at = None
            if self._pending_stale is not None and idle_seconds >= self._pending_stale:
                self._pending_stale = None  # that close was noise
            if self._lower is None or idle_seconds > self._lower:
                self._lower = idle_seconds

    def observe_stale(
        self,
        idle_seconds: float,
        *,
        requests_served: int | None = None,
        age_seconds: float | None = None,
    ) -> None:
        """Record that a connection idle for ``idle_seconds`` was found closed by the server.

        Call it for a *reused* connection that failed as stale (reset, closed without
        response, broken pipe before any response byte); not for failures of fresh
        connections. For a close found by a liveness check, see
        `observe_closed_idle`.

        Args:
            idle_seconds: How long the connection had been idle.
            requests_served: Requests it had completed before; closes after the same
                count on several connections teach a request limit, not an idle timeout.
            age_seconds: How long it had been open; closes of connections that were
                open together, at once, are a restart, not an idle timeout.
        """
        self._observe_close(
            idle_seconds, liveness_check=False, served=requests_served, age=age_seconds
        )

    def _observe_close(
        self,
        idle_seconds: float,
        *,
        liveness_check: bool,
        served: int | None = None,
        age: float | None = None,
    ) -> None:
        if not self._config.learn or not _is_sane(idle_seconds):
            return
        if isinstance(served, bool) or not isinstance(served, int) or served < 1:
            served = None
        with self._lock:
            self._forget_expired()
            now = self._clock.now()
            opened_at = now - age if age is not None and _is_sane(age) else None
            close = _Close(
                at=now,
                idle=idle_seconds,
                served=served,
                liveness_check=liveness_check,
                opened_at=opened_at,
            )
            if self._explain_locked(close):
                self._closes.append(close)
                self._learned_at = now
                return
            if idle_seconds < self._config.default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION:
                self._closes.append(close)
                return  # too short for any idle timeout: a crash or a limit
            if self._open is not None and idle_seconds <= self._open:
                self._open = None  # a connection seen open at least this long was weak
            close.applied_as_evidence(
                upper=self._upper, pending=self._pending_stale, lower=self._lower
            )
            self._closes.append(close)
            if self._lower is not None and idle_seconds <= self._lower:
                if liveness_check:
                    # Closed for another reason (see observe_closed_idle).
                    close.applied = False
                    return
                if self._pending_stale is None:
                    # Contradicts a seen success: maybe noise (a crash). Wait for a
                    # second such close before believing the server changed.
                    self._pending_stale = idle_seconds
                    self._learned_at = now
                    return
                idle_seconds = min(idle_seconds, self._pending_stale)
                self._lower = None  # the server now closes sooner
            self._pending_stale = None
            if self._upper is None or idle_seconds < self._upper:
                self._upper = idle_seconds
            self._learned_at = now

    def _known_limit_locked(self) -> int | None:
        """The smallest request limit known: configured, announced (``max=``) or learned."""
        limits = [
            n
            for n in (self._config.max_requests, self._header_limit, self._max_requests)
            if n is not None
        ]
        return min(limits) if limits else None

    def _explain_locked(self, close: _Close) -> bool:
        """Whether a pattern explains ``close``: a restart burst or a request limit.

        * A restart: ``close`` is one of ``RESTART_BURST`` closes within
          ``RESTART_WINDOW`` of connections all open before the first of them closed,
          unless the group is shaped as a limit: at least ``SAME_COUNT_CLOSES`` closes
          of known request count, all after the same count (50 busy connections, each
          closed after its 5th request, close together too; a restart resets
          connections whatever their counts). A limit learned from closes of the group
          is taken back (a restart of 8 connections may well reset two of them after
          the same count).
        * A request limit: the ``SAME_COUNT_CLOSES``-th close after the same count, each
          after an idle that no idle timeout explains; or a close after as many
          requests as a limit already known (configured, announced or learned).

        When a close completes a pattern, the earlier closes of the pattern are taken
        back from the bounds (newest first, so each restores what it found).
        """
        pattern: list[_Close] = []
        group: list[_Close] = []
        first = close.at
        if close.opened_at is not None:
            recent = [
                c
                for c in self._closes
                if close.at - c.at <= RESTART_WINDOW and c.opened_at is not None
            ]
            first = min([c.at for c in recent] + [close.at])
            if close.opened_at < first:
                group = [c for c in recent if c.opened_at is not None and c.opened_at < first]
        counted = [c.served for c in (*group, close) if c.served is not None]
        limit_shaped = len(counted) >= SAME_COUNT_CLOSES and len(set(counted)) == 1
        if len(group) + 1 >= RESTART_BURST and not limit_shaped:
            self._burst_at = close.at
            if self._limit_at is not None and self._limit_at >= first:
                self._max_requests = self._limit_before  # learned from the restart itself
                self._limit_at = None
            pattern = group
        else:
            kept = max(self._lower or 0.0, self._open or 0.0)
            floor = self._config.default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION

            def not_a_timeout(c: _Close) -> bool:
                # After an idle too short for any idle timeout, or (met by a request) one
                # that was kept before. Not for liveness checks after a kept idle: idle
                # connections closed at once (a restart, a server lowering its timeout)
                # often have the same count, one request each.
                return c.idle < floor or (not c.liveness_check and c.idle <= kept)

            if close.served is not None and not_a_timeout(close):
                same = [c for c in self._closes if c.served == close.served and not_a_timeout(c)]
                if len(same) + 1 >= SAME_COUNT_CLOSES:
                    pattern = same
                    if self._max_requests is None or close.served < self._max_requests:
                        self._limit_before, self._limit_at = self._max_requests, close.at
                        self._max_requests = close.served
            limit = self._known_limit_locked()
            if not pattern and not (
                close.served is not None and limit is not None and close.served >= limit
            ):
                return False
        for earlier in reversed(pattern):
            if earlier.applied:
                self._upper = earlier.upper_before
                self._pending_stale = earlier.pending_before
                self._lower = earlier.lower_before
        for earlier in pattern:
            earlier.applied = False
        return True

    def closes_idle_peers(self, idle_seconds: float, *, requests_served: int | None = None) -> bool:
        """Whether a stale close just observed says the other idle connections are closed too.

        Ask it after `observe_stale` (or `observe_attempt`) of the same close. An
        adapter then expires every idle connection to the origin idle at least as long,
        instead of trying (and failing on) them one by one. True when the close reads
        as an idle timeout (the server closes connections idle that long) or is part of
        a restart burst seen within ``RESTART_WINDOW`` (every connection open then was
        reset). False when something else explains it, and the idle peers are
        presumably fine:

        * the connection had served as many requests as a known request limit
          (configured, ``Keep-Alive: max=``, or learned): its peers are retired by
          their own counts, so closing them all would waste every request they had
          left (50 connections, each closed after its 5th request, would cost 4 of
          5 requests on every idle peer at each close);
        * the idle is below ``MIN_IDLE_EVIDENCE_FRACTION`` of the default TTL: no
          server times idle connections out that fast (a crash, a limit not yet
          learned, a restart whose burst is not yet seen: the liveness check and the
          stale resend deal with each connection);
        * a reuse survived a longer idle: one such close is noise (a crash) until a
          second one follows (`observe_stale`).

        Args:
            idle_seconds: How long the connection had been idle.
            requests_served: Requests it had completed before the close.
        """
        if not _is_sane(idle_seconds):
            return False
        with self._lock:
            self._forget_expired()
            now = self._clock.now()
            if self._burst_at is not None and now - self._burst_at <= RESTART_WINDOW:
                return True
            limit = self._known_limit_locked()
            if (
                isinstance(requests_served, int)
                and not isinstance(requests_served, bool)
                and limit is not None
                and requests_served >= limit
            ):
                return False
            if idle_seconds < self._config.default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION:
                return False
            return self._pending_stale is None or idle_seconds > self._pending_stale

    # -- the witness ------------------------------------------------------------------

    @property
    def witness_held(self) -> bool:
        """Whether an expired connection is kept open to watch the server (offer_witness)."""
        return self._witness is not None

    def offer_witness(
        self,
        handle: object,
        *,
        last_used_at: float,
        created_at: float,
        close: Callable[[], None],
    ) -> bool:
        """Offer an idle connection that is being discarded while still open; True: kept.

        Requests that cannot be retried reuse a connection only below the idle proven
        kept (`safe_idle`), and steady traffic of them never proves more than its
        own pace: every connection it discards is seen open at that pace, no longer. A
        witness is one such connection kept open and unused (one per origin at most),
        so that it is seen open at twice, three times the pace (proving a longer idle)
        or is closed by the server (an upper bound from its FIN): a passive
        ``rstsafe probe`` that costs one socket and no request.

        Kept only when ``KeepAlive.witness`` and ``learn`` are on, no timeout is
        configured or announced, and no witness is held. The adapter then keeps the
        socket open (the host library must not close it) and reports on it with
        `check_witness`; ``close`` closes it, called once, by whoever releases it.

        Args:
            handle: The adapter's handle on the connection (a socket), passed back to
                the ``is_open`` of `check_witness`.
            last_used_at: When its last response was read (the clock's seconds).
            created_at: When it was established.
            close: Closes it gracefully.
        """
        config = self._config
        if not (config.witness and config.learn):
            return False
        with self._lock:
            if (
                self._witness is not None
                or config.server_keepalive is not None
                or self._header_timeout is not None
            ):
                return False
            self._witness = _Witness(
                handle=handle, last_used_at=last_used_at, created_at=created_at, close=close
            )
            return True

    def check_witness(self, is_open: Callable[[object], bool]) -> None:
        """Look at the witness, if one is held, and learn from it. Adapters call it per request.

        ``is_open(handle)`` answers whether the connection is still open (no FIN, not
        readable); it is called outside the lock. Seen open after *t* seconds idle: the
        server keeps connections at least about *t* (`observe_open`). Closed: an
        upper bound (`observe_closed_idle`), and the witness is released. It is
        also released once a timeout is announced or it is past its max lifetime.
        """
        witness = self._witness
        if witness is None:
            return
        now = self._clock.now()
        idle = max(0.0, now - witness.last_used_at)
        age = max(0.0, now - witness.created_at)
        lifetime = self._config.max_lifetime
        if self._header_timeout is not None or (lifetime is not None and age >= lifetime):
            self._release(witness)
            return
        try:
            alive = is_open(witness.handle)
        except Exception:  # a broken socket is a closed one
            alive = False
        if self._witness is not witness:
            return  # another thread released it meanwhile
        if alive:
            self.observe_open(idle)
            return
        if self._release(witness):
            self.observe_closed_idle(idle, age_seconds=age)

    def release_witness(self) -> None:
        """Close the witness, if one is held (adapters call it when their pool closes)."""
        witness = self._witness
        if witness is not None:
            self._release(witness)

    def _release(self, witness: _Witness) -> bool:
        """Drop ``witness`` if it is still the one held, and close it; True if it was."""
        with self._lock:
            if self._witness is not witness:
                return False
            self._witness = None
        # Closing an already broken socket may raise; there is nothing more to do.
        with contextlib.suppress(Exception):
            witness.close()
        return True

    def observe_open(self, idle_seconds: float) -> None:
        """Record that an idle connection was still open (no FIN, no reset) after ``idle_seconds``.

        Adapters report it for connections they expire by idle time and find still open.
        It proves (weakly: a FIN may be on its way) that the server keeps idle
        connections at least that long, so it raises the proven idle and, when nothing
        is claimed, the TTL of every request; a later close at that idle or below takes
        it back.
        """
        if not self._config.learn or not _is_sane(idle_seconds):
            return
        with self._lock:
            self._forget_expired()
            if self._upper is not None and idle_seconds >= self._upper:
                return  # contradicted by a close: a FIN on its way, or a silent drop
            if self._open is None or idle_seconds > self._open:
                self._open = idle_seconds

    def observe_closed_idle(
        self,
        idle_seconds: float,
        *,
        age_seconds: float | None = None,
        requests_served: int | None = None,
    ) -> None:
        """Record that a liveness check found an idle connection closed by the server.

        The server closed it at most ``idle_seconds`` after its last response: an upper
        bound, as for `observe_stale`, unless a reuse survived at least as long or
        it is one of a burst (then it was closed for another reason, e.g. a restart
        closing every idle connection at once, and it teaches nothing), or it had
        served as many requests as a known request limit (``requests_served``: the
        limit explains it, and it is no part of a burst). Closes found this way teach a
        request limit (``SAME_COUNT_CLOSES`` at the same count) only after an idle too
        short for any idle timeout: idle connections closed by a timeout, or at once,
        often have the same count (one request each).
        """
        self._observe_close(
            idle_seconds, liveness_check=True, served=requests_served, age=age_seconds
        )

    def observe_attempt(self, facts: ConnectionFacts, failure: Failure | None = None) -> None:
        """Learn from one attempt on a reused connection; ignores fresh connections.

        A success (``failure`` None) after ``facts.idle_seconds`` is a lower bound; a
        stale failure ([`Failure.stale`][rstsafe.Failure.stale]) is an upper bound (with the request
        count,
        see `observe_stale`); other failures teach nothing.

        Args:
            facts: The connection facts of the attempt.
            failure: Its classification when it failed.
        """
        if facts.reused is not True or facts.idle_seconds is None:
            return
        if failure is None:
            self.observe_reused_ok(facts.idle_seconds)
        elif failure.stale:
            self.observe_stale(
                facts.idle_seconds,
                requests_served=facts.requests_served,
                age_seconds=facts.age_seconds,
            )

    def reset(self) -> None:
        """Forget everything observed (header and learning); release the witness."""
        self.release_witness()
        with self._lock:
            self._lower = self._upper = self._open = None
            self._learned_at = self._pending_stale = None
            self._max_requests = None
            self._burst_at = self._limit_at = self._limit_before = None
            self._closes.clear()
            self._header_timeout = None
            self._header_limit = None
            self._header_at = None

    def learned_timeout(self) -> float | None:
        """The learned estimate of the server's idle timeout, or None before any close."""
        with self._lock:
            self._forget_expired()
            return self._estimate()

    def _seen_open(self) -> float | None:
        """The idle seen open, less ``margin_fraction`` of it; under the lock.

        A connection seen open proves less than a reuse that survived: the server may
        have closed it already, its FIN still on the way (as far behind as the network
        is slow, and :class:`rstsafe.testing.IdleCloseWithLag` makes it slower still).
        A proportional margin, not the absolute one, keeps it below the server's timeout
        however long the timeout is.
        """
        if self._open is None:
            return None
        return self._open * (1.0 - self._config.margin_fraction)

    def _proven(self) -> float | None:
        """The idle proven safe to wait: survived, or seen open less the margin; under
        the lock."""
        seen_open = self._seen_open()
        if self._lower is None:
            return seen_open
        if seen_open is None:
            return self._lower
        return max(self._lower, seen_open)

    def _estimate(self) -> float | None:
        if self._upper is None:
            return None
        half = self._upper / 2.0
        proven = self._proven()
        return half if proven is None else max(proven, half)

    def _ttl_locked(self) -> tuple[float, TTLSource, float | None]:
        """The TTL before jitter, its source and server timeout; under the lock."""
        config = self._config
        self._forget_expired()
        estimate = self._estimate()
        conservative = None if estimate is None else config.ttl_below(estimate)
        # The proven TTL: an idle that survived (or was seen open), unless a close was
        # seen just above it.
        proven = self._proven()
        if proven is not None:
            for bound in (self._upper, self._pending_stale):
                if bound is not None:
                    proven = min(proven, config.ttl_below(bound))
        learned = conservative
        if proven is not None and (learned is None or proven > learned):
            learned = proven
        learned_server = estimate if estimate is not None else self._proven()
        claimed = config.server_keepalive
        source = TTLSource.CONFIGURED
        if claimed is None:
            claimed, source = self._header_timeout, TTLSource.HEADER
        if claimed is not None:
            base = config.ttl_below(claimed)
            # A claim is only shortened by what was learned, never lengthened, and only
            # once a close below the claimed timeout has proved it wrong.
            upper = self._upper
            if upper is not None and upper < claimed and learned is not None and learned < base:
                return learned, TTLSource.LEARNED, learned_server
            return base, source, claimed
        base = config.default_idle_ttl
        ttl = base if conservative is None else min(base, conservative)
        if proven is not None and proven > ttl:
            ttl = proven
        if ttl != base:
            return ttl, TTLSource.LEARNED, learned_server
        return base, TTLSource.DEFAULT, None

    def _safe_idle_locked(self, ttl: float) -> float:
        """The idle below which a request that cannot be retried may reuse; under the lock.

        A claimed timeout (configured or announced) is followed as for every request.
        Otherwise the idle must be below what is proven kept, less a margin: a reuse
        that survived *t* proves the server kept the connection longer than *t* plus the
        request's way there, so ``PROOF_MARGIN`` (5 %) covers the variance of that way;
        a connection seen open at *t* proves less (its FIN may be on its way) and counts
        for ``(1 - margin_fraction)`` of *t*. With nothing proven, below the floor under
        which no idle timeout is believed (``MIN_IDLE_EVIDENCE_FRACTION`` of the default
        TTL). Never above the TTL.
        """
        config = self._config
        if config.server_keepalive is not None or self._header_timeout is not None:
            return ttl
        floor = config.default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION
        survived = 0.0 if self._lower is None else self._lower * (1.0 - PROOF_MARGIN)
        seen_open = self._seen_open() or 0.0
        return min(max(floor, survived, seen_open), ttl)

    def idle_ttl(self) -> IdleTTL:
        """The idle TTL to apply now (margin and jitter included), and its source."""
        return self.idle_ttl_for(self._rng.random())

    def idle_ttl_for(self, draw: float) -> IdleTTL:
        """The idle TTL for a connection whose jitter draw (in [0, 1)) is ``draw``.

        No side effect: a connection draws once, when it is returned idle
        (`rstsafe._core.attempts.ConnectionLife`), so that checking it many times
        gives one answer.
        """
        with self._lock:
            base, source, server = self._ttl_locked()
        seconds = base * (1.0 - self._config.jitter * draw) if base > 0 else base
        return IdleTTL(seconds=seconds, source=source, server_timeout=server, before_jitter=base)

    def safe_idle(self) -> float:
        """Idle seconds below which a request that cannot be retried may reuse a connection.

        A request whose stale failure could not be retried transparently (a POST without
        ``Idempotency-Key``, a body that cannot be sent again) goes on a reused
        connection only when its idle time is below what is proven alive, less the
        margin; otherwise on a fresh one, so that it never meets the keep-alive race.
        Before jitter.
        """
        with self._lock:
            ttl, _, _ = self._ttl_locked()
            return self._safe_idle_locked(ttl)

    def probe_limit(self) -> float | None:
        """How long idle a connection may be for a probe to reuse it; None: no probing.

        A probe is a request that is retried at once, transparently, if the connection
        turns out stale (idempotent, with a replayable body): letting it reuse a
        connection idle past the TTL costs at most that retry, and a success raises
        ``lower_bound`` and with it the TTL of every request. Without probes, a TTL
        below the server's timeout would never learn that it could be longer.

        Probing happens only when no timeout is configured or announced (a claim is
        followed as is), up to ``PROBE_REACH`` (2) times the largest of the TTL, the
        largest idle a reuse survived, and the largest idle a connection was seen still
        open (`observe_open`), and below any idle seen to fail.

        Returns:
            The limit in seconds (idle must be below it), or None when probing is off
            (``KeepAlive.probe`` or ``learn`` false, a timeout configured or announced)
            or would reach no further than the TTL.
        """
        config = self._config
        if not (config.probe and config.learn):
            return None
        with self._lock:
            if config.server_keepalive is not None or self._header_timeout is not None:
                return None
            ttl, _, _ = self._ttl_locked()
            seen = max(ttl, self._lower or 0.0, self._open or 0.0)
            reach = PROBE_REACH * seen
            for bound in (self._upper, self._pending_stale):
                if bound is not None:
                    reach = min(reach, bound)
        return reach if reach > ttl else None

    def expiry_reason(
        self,
        *,
        created_at: float,
        last_used_at: float,
        requests_served: int,
        now: float,
        requests_remaining: int | None = None,
        probe: bool | Callable[[], bool] = False,
        retryable: bool | Callable[[], bool] | None = None,
        ttl_draw: float | None = None,
        lifetime_draw: float | None = None,
    ) -> str | None:
        """Why a pooled connection must not be reused now, or None if it may be.

        Args:
            created_at: When the connection was established (monotonic seconds).
            last_used_at: When its last response was read completely.
            requests_served: Requests it has completed.
            now: The current time on the same clock.
            requests_remaining: The header's ``max=`` from its last response, if any.
            probe: The connection is for a request that may probe (retried at once,
                transparently, if stale): an idle past the TTL but below
                `probe_limit` is allowed. A callable is asked only when the idle
                is past the TTL (working out a request's replayability costs more than
                the rest of this check).
            retryable: Whether the request would be retried at once if the connection
                turned out stale. False (or a callable answering False) applies the
                safe-send rule (`safe_idle`); None: not known, the rule is not
                applied. A callable is asked only when the idle is past the safe idle.
            ttl_draw: The connection's jitter draw for its idle TTL, in [0, 1); None
                draws one now (a side effect: connections pass their own).
            lifetime_draw: Likewise for its max lifetime.

        Returns:
            A short human-readable reason, or None when the connection may be reused.
        """
        config = self._config
        idle = max(0.0, now - last_used_at)
        if ttl_draw is None:
            ttl_draw = self._rng.random()
        ttl = self.idle_ttl_for(ttl_draw)
        if idle >= ttl.seconds:
            may_probe = probe() if callable(probe) else probe
            limit = self.probe_limit() if may_probe else None
            if limit is None or idle >= limit:
                return f"idle {idle:.2f} s >= idle TTL {ttl.seconds:.2f} s ({ttl.source.value}" + (
                    f", server keep-alive {_secs(ttl.server_timeout)} s)"
                    if ttl.server_timeout is not None
                    else ")"
                )
        elif retryable is not None and requests_served > 0:
            with self._lock:
                safe = self._safe_idle_locked(ttl.before_jitter)
            if idle >= safe * (1.0 - config.jitter * ttl_draw):
                can_retry = retryable() if callable(retryable) else retryable
                if not can_retry:
                    return (
                        f"idle {idle:.2f} s >= {_secs(safe)} s proven alive, for a request"
                        " that could not be retried"
                    )
        if config.max_lifetime is not None:
            if lifetime_draw is None:
                lifetime_draw = self._rng.random()
            lifetime = config.max_lifetime * (1.0 - config.jitter * lifetime_draw)
            age = max(0.0, now - created_at)
            if age >= lifetime:
                return f"age {age:.2f} s >= max lifetime {lifetime:.2f} s"
        if requests_remaining is not None and requests_remaining <= 0:
            return "the server allows no more requests on it (Keep-Alive max=0)"
        limits = [
            n
            for n in (config.max_requests, self.header_max_requests, self.learned_max_requests)
            if n is not None
        ]
        if limits and requests_served >= min(limits):
            return f"served {requests_served} requests >= max requests {min(limits)}"
        return None

    def is_expired(
        self,
        *,
        created_at: float,
        last_used_at: float,
        requests_served: int,
        now: float,
        requests_remaining: int | None = None,
        probe: bool | Callable[[], bool] = False,
    ) -> bool:
        """True when a pooled connection must be closed instead of reused (see expiry_reason)."""
        return (
            self.expiry_reason(
                created_at=created_at,
                last_used_at=last_used_at,
                requests_served=requests_served,
                now=now,
                requests_remaining=requests_remaining,
                probe=probe,
            )
            is not None
        )

    def describe(self) -> str:
        """A one-line summary for error messages, e.g. ``server keep-alive learned: 5 s``."""
        ttl = self.idle_ttl_for(0.0)
        if ttl.source is TTLSource.LEARNED:
            with self._lock:
                lower, upper = max(self._lower or 0.0, self._open or 0.0) or None, self._upper
            if lower is not None and upper is not None:
                return f"server keep-alive learned: {_secs(lower)}-{_secs(upper)} s"
            if upper is not None:
                return f"server keep-alive learned: at most {_secs(upper)} s"
            if lower is not None:
                return f"server keep-alive learned: at least {_secs(lower)} s"
        if ttl.server_timeout is None:
            return f"server keep-alive unknown, default idle TTL {_secs(ttl.before_jitter)} s"
        return f"server keep-alive {ttl.source.value}: {_secs(ttl.server_timeout)} s"

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"OriginKeepAlive(origin={self.origin!r}, lower_bound={self._lower!r}, "
                f"open_bound={self._open!r}, upper_bound={self._upper!r}, "
                f"header_timeout={self._header_timeout!r}, "
                f"learned_max_requests={self._max_requests!r})"
            )


def _secs(seconds: float) -> str:
    """Seconds for messages: at most two decimals, no trailing zeros (``5``, ``4.5``, ``0.45``)."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def _is_sane(idle_seconds: float) -> bool:
    return (
        isinstance(idle_seconds, (int, float))
        and not isinstance(idle_seconds, bool)
        and math.isfinite(idle_seconds)
        and 0.0 <= idle_seconds <= MAX_HEADER_TIMEOUT
    )


# Origins whose state a registry keeps; the least recently used is dropped beyond it
# (its connections keep working: a dropped origin starts again from what it announces
# and the default). urllib3's PoolManager keeps 10 pools (num_pools), LRU as well;
# Go, OkHttp and httpx keep a pool per host without a bound. The state of one origin is
# a few hundred bytes, so 1,024 costs well under a megabyte.
DEFAULT_MAX_ORIGINS = 1024


class KeepAliveRegistry:
    """Per-origin [`OriginKeepAlive`][rstsafe.core.OriginKeepAlive] states sharing one
    configuration; thread safe.

    One registry per pool (or per client): adapters look the state up by origin for
    every connection they open or reuse. Bounded: beyond ``max_origins`` the least
    recently used origin is forgotten.
    """

    __slots__ = ("_clock", "_config", "_lock", "_max_origins", "_rng", "_states")

    def __init__(
        self,
        config: KeepAlive | None = None,
        *,
        rng: random.Random | None = None,
        clock: Clock | None = None,
        max_origins: int = DEFAULT_MAX_ORIGINS,
    ) -> None:
        """Create an empty registry.

        Args:
            config: The configuration every origin uses (default ``KeepAlive()``).
            rng: Random generator shared by the origins for jitter.
            clock: Monotonic clock shared by the origins.
            max_origins: How many origins to keep (least recently used dropped).
        """
        if config is not None and not isinstance(config, KeepAlive):
            raise TypeError(f"config must be a rstsafe.KeepAlive, got {type(config).__name__}")
        if isinstance(max_origins, bool) or not isinstance(max_origins, int):
            raise TypeError(f"max_origins must be an int, got {type(max_origins).__name__}")
        if max_origins < 1:
            raise ValueError(f"max_origins must be >= 1, got {max_origins!r}")
        self._config = config if config is not None else KeepAlive()
        self._rng = rng if rng is not None else random.Random()
        self._clock: Clock = clock if clock is not None else MonotonicClock()
        self._lock = threading.Lock()
        self._max_origins = max_origins
        self._states: collections.OrderedDict[Origin, OriginKeepAlive] = collections.OrderedDict()

    @property
    def max_origins(self) -> int:
        """How many origins the registry keeps."""
        return self._max_origins

    @property
    def config(self) -> KeepAlive:
        """The configuration."""
        return self._config

    def get(self, scheme: str, host: str, port: int) -> OriginKeepAlive:
        """The state of an origin, created on first use. Scheme and host are lower-cased."""
        origin = Origin(scheme.lower(), host.lower(), int(port))
        with self._lock:
            state = self._states.get(origin)
            if state is None:
                state = OriginKeepAlive(
                    self._config, origin=origin, rng=self._rng, clock=self._clock
                )
                self._states[origin] = state
                dropped = None
                if len(self._states) > self._max_origins:
                    _, dropped = self._states.popitem(last=False)
            else:
                self._states.move_to_end(origin)
                return state
        if dropped is not None:
            dropped.release_witness()
        return state

    def close(self) -> None:
        """Release every origin's witness (adapters call it when their pool closes)."""
        with self._lock:
            states = list(self._states.values())
        for state in states:
            state.release_witness()

    def for_origin(self, origin: Origin) -> OriginKeepAlive:
        """The state of ``origin``, created on first use."""
        return self.get(origin.scheme, origin.host, origin.port)

    def __contains__(self, origin: object) -> bool:
        with self._lock:
            return origin in self._states

    def __len__(self) -> int:
        with self._lock:
            return len(self._states)

    def __iter__(self) -> Iterator[Origin]:
        with self._lock:
            return iter(list(self._states))

    def __repr__(self) -> str:
        return f"KeepAliveRegistry(config={self._config!r}, origins={len(self)})"
