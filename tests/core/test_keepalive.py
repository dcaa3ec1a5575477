"""Unit and property tests of the keep-alive policy: header parsing, TTL sources, learning."""

from __future__ import annotations

import dataclasses
import random
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rstsafe import ConnectionFacts, KeepAlive, classify
from rstsafe._core.clock import ManualClock
from rstsafe._core.keepalive import MIN_IDLE_EVIDENCE_FRACTION
from rstsafe.core import (
    IdleTTL,
    KeepAliveHeader,
    KeepAliveRegistry,
    Origin,
    OriginKeepAlive,
    TTLSource,
    parse_keep_alive,
)

NO_JITTER = KeepAlive(jitter=0.0)


def _state(config: KeepAlive = NO_JITTER) -> OriginKeepAlive:
    return OriginKeepAlive(config, rng=random.Random(1234))


# -- header parser ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("timeout=5, max=100", KeepAliveHeader(timeout=5.0, max=100)),
        ("timeout=5", KeepAliveHeader(timeout=5.0)),
        ("max=3", KeepAliveHeader(max=3)),
        ("Timeout = 7.5 ; MAX=2", KeepAliveHeader(timeout=7.5, max=2)),
        ('timeout="15"', KeepAliveHeader(timeout=15.0)),
        (b"timeout=2, max=0", KeepAliveHeader(timeout=2.0, max=0)),
        ("timeout=0", KeepAliveHeader(timeout=0.0)),
        ("timeout=5, timeout=1", KeepAliveHeader(timeout=5.0)),
        ("timeout=-1", KeepAliveHeader()),
        ("timeout=nan", KeepAliveHeader()),
        ("timeout=inf", KeepAliveHeader()),
        ("timeout=1e9", KeepAliveHeader()),
        ("timeout=99999999", KeepAliveHeader()),
        ("timeout=5s", KeepAliveHeader()),
        ("timeout=0x10", KeepAliveHeader()),
        ("timeout=١٢", KeepAliveHeader()),  # Arabic-Indic digits are not HTTP digits
        ("max=1.5, timeout=.", KeepAliveHeader()),
        ("garbage", KeepAliveHeader()),
        ("", KeepAliveHeader()),
        (None, KeepAliveHeader()),
        ("timeout=5," + "x" * 2000, KeepAliveHeader()),
    ],
)
def test_parse_keep_alive(value: str | bytes | None, expected: KeepAliveHeader) -> None:
    """Valid parameters are parsed; hostile or malformed ones are ignored."""
    assert parse_keep_alive(value) == expected


@given(st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_parse_keep_alive_never_raises(value: str | bytes) -> None:
    """The parser never raises and only returns sane values, for any text or bytes."""
    parsed = parse_keep_alive(value)
    if parsed.timeout is not None:
        assert 0.0 <= parsed.timeout <= 86_400.0
    if parsed.max is not None:
        assert 0 <= parsed.max <= 1_000_000_000


@given(st.text(max_size=100))
def test_observe_header_never_raises(value: str) -> None:
    """OriginKeepAlive.observe_header never raises and keeps the TTL non-negative."""
    state = _state()
    state.observe_header(value, 0.0, requests_served=1)
    assert state.idle_ttl().seconds >= 0.0


# -- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("server_keepalive", -1.0),
        ("server_keepalive", float("nan")),
        ("default_idle_ttl", float("inf")),
        ("margin", -0.1),
        ("margin_fraction", 1.0),
        ("jitter", 1.0),
        ("max_lifetime", 0.0),
        ("max_requests", 0),
        ("learn_memory", -1.0),
    ],
)
def test_config_validation_names_the_field(field: str, value: object) -> None:
    """Invalid KeepAlive values raise a ValueError naming the field."""
    with pytest.raises(ValueError, match=field):
        KeepAlive(**{field: value})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("server", "ttl"),
    [(75.0, 73.0), (5.0, 3.75), (2.0, 1.5), (8.0, 6.0), (0.0, 0.0)],
)
def test_margin_rule(server: float, ttl: float) -> None:
    """TTL = timeout - min(2 s, 25 % of timeout): 75 -> 73, 5 -> 3.75, gunicorn's 2 -> 1.5."""
    assert KeepAlive().ttl_below(server) == pytest.approx(ttl)


def test_default_ttl_when_nothing_known() -> None:
    """With nothing known the default TTL (4 s) applies as is."""
    ttl = _state().idle_ttl()
    assert ttl == IdleTTL(
        seconds=4.0, source=TTLSource.DEFAULT, server_timeout=None, before_jitter=4.0
    )


def test_configured_wins_over_header() -> None:
    """server_keepalive wins over an announced Keep-Alive timeout."""
    state = _state(dataclasses.replace(NO_JITTER, server_keepalive=75.0))
    state.observe_header("timeout=5", 0.0)
    ttl = state.idle_ttl()
    assert ttl.source is TTLSource.CONFIGURED
    assert ttl.seconds == pytest.approx(73.0)


def test_header_wins_over_default() -> None:
    """A Keep-Alive: timeout=N header gives TTL N minus margin."""
    state = _state()
    state.observe_header("timeout=75, max=100", 0.0)
    ttl = state.idle_ttl()
    assert (ttl.source, ttl.server_timeout, ttl.seconds) == (TTLSource.HEADER, 75.0, 73.0)


def test_header_ignored_when_disabled() -> None:
    """use_header=False ignores the header (it is still parsed and returned)."""
    state = _state(dataclasses.replace(NO_JITTER, use_header=False))
    assert state.observe_header("timeout=75", 0.0).timeout == 75.0
    assert state.idle_ttl().source is TTLSource.DEFAULT


def test_jitter_only_shortens_and_is_seeded() -> None:
    """Jitter takes at most the configured fraction off, reproducibly with a seed."""
    config = KeepAlive(server_keepalive=75.0, jitter=0.1)
    one = [OriginKeepAlive(config, rng=random.Random(7)).idle_ttl().seconds for _ in range(3)]
    assert len(set(one)) == 1
    state = OriginKeepAlive(config, rng=random.Random(7))
    for _ in range(200):
        seconds = state.idle_ttl().seconds
        assert 73.0 * 0.9 <= seconds <= 73.0


# -- learning -----------------------------------------------------------------------


def test_learning_after_a_close_below_the_default() -> None:
    """gunicorn (2 s): a close at 3 s idle and a reuse at 1.9 s give a TTL below 2 s."""
    state = _state()
    state.observe_stale(3.0)
    assert state.idle_ttl().source is TTLSource.LEARNED
    assert state.learned_timeout() == 1.5
    assert state.idle_ttl().seconds == pytest.approx(1.5 - 0.375)
    state.observe_reused_ok(1.9)
    ttl = state.idle_ttl()
    assert ttl.server_timeout == 1.9
    # Proven: 1.9 s survived, and 1.9 s is below the close (3 s) minus its margin.
    assert ttl.seconds == pytest.approx(1.9)
    assert state.describe() == "server keep-alive learned: 1.9-3 s"


def test_a_close_just_above_a_survived_idle_keeps_the_margin() -> None:
    """A close at 2 s caps the proven 1.9 s at 2 s minus the margin (1.5 s)."""
    state = _state()
    state.observe_reused_ok(1.9)
    state.observe_stale(2.0)
    assert state.idle_ttl().seconds == pytest.approx(1.5)


def test_a_survived_idle_lengthens_the_default_ttl() -> None:
    """No claim: a reuse that survived 60 s idle makes the TTL 60 s; 2 s changes nothing."""
    state = _state()
    state.observe_reused_ok(2.0)
    assert state.idle_ttl().source is TTLSource.DEFAULT
    state.observe_reused_ok(60.0)
    ttl = state.idle_ttl()
    assert (ttl.source, ttl.before_jitter, ttl.server_timeout) == (TTLSource.LEARNED, 60.0, 60.0)
    assert state.learned_timeout() is None  # no close seen: no estimate of the timeout
    assert state.describe() == "server keep-alive learned: at least 60 s"


@pytest.mark.parametrize(
    "claim", [KeepAlive(server_keepalive=5.0, jitter=0.0), KeepAlive(jitter=0.0)], ids=str
)
def test_learning_never_lengthens_a_claimed_ttl(claim: KeepAlive) -> None:
    """Configured or announced 5 s: a reuse that survived 60 s leaves the TTL at 3.75 s."""
    state = _state(claim)
    if claim.server_keepalive is None:
        state.observe_header("timeout=5")
    state.observe_reused_ok(60.0)
    assert state.idle_ttl().before_jitter == pytest.approx(3.75)
    assert state.idle_ttl().source is not TTLSource.LEARNED
    assert state.probe_limit() is None


def test_a_contradicting_close_caps_the_proven_ttl_at_once() -> None:
    """A close below a survived idle (maybe noise) is not believed yet, but caps the TTL."""
    state = _state()
    state.observe_reused_ok(30.0)
    state.observe_stale(8.0)
    assert state.lower_bound == 30.0  # not dropped on one close
    assert state.idle_ttl().before_jitter == pytest.approx(6.0)  # 8 s minus the margin
    assert state.probe_limit() == 8.0


def test_probe_limit() -> None:
    """Probes reach twice the TTL or the largest survived idle, below any close."""
    state = _state()
    assert state.probe_limit() == 8.0  # twice the 4 s default
    state.observe_reused_ok(7.0)
    assert state.idle_ttl().before_jitter == 7.0
    assert state.probe_limit() == 14.0
    state.observe_stale(10.0)
    assert state.probe_limit() == 10.0
    assert _state(KeepAlive(probe=False)).probe_limit() is None
    assert _state(KeepAlive(learn=False)).probe_limit() is None


def test_expiry_lets_a_probe_through() -> None:
    """Idle 5 s: expired for any request, not for a probe (limit 8 s); idle 9 s: for both."""
    state = _state()

    def expiry(now: float, *, probe: bool) -> str | None:
        return state.expiry_reason(
            created_at=0.0, last_used_at=0.0, requests_served=1, now=now, probe=probe
        )

    assert expiry(5.0, probe=False) is not None
    assert expiry(5.0, probe=True) is None
    assert expiry(9.0, probe=True) is not None


def test_a_close_below_the_announced_timeout_wins() -> None:
    """AdvertiseKeepAlive: header says 5 s, the server closes at 1 s: learning wins."""
    state = _state()
    state.observe_header("timeout=5", 0.0)
    state.observe_reused_ok(0.5)
    state.observe_stale(1.2)
    ttl = state.idle_ttl()
    assert ttl.source is TTLSource.LEARNED
    assert ttl.seconds < 1.0


def test_server_timeout_change_resets_gracefully() -> None:
    """A contradiction (reuse OK after longer than a seen close) drops the stale bound."""
    state = _state()
    state.observe_reused_ok(1.0)
    state.observe_stale(2.0)
    assert (state.lower_bound, state.upper_bound) == (1.0, 2.0)
    state.observe_reused_ok(10.0)  # the server now keeps connections longer
    assert (state.lower_bound, state.upper_bound) == (10.0, None)
    state.observe_stale(5.0)  # shorter again? maybe noise: ignored once
    assert (state.lower_bound, state.upper_bound) == (10.0, None)
    state.observe_stale(6.0)  # a second close below the success: believed
    assert (state.lower_bound, state.upper_bound) == (None, 5.0)


def test_a_single_spurious_close_is_ignored() -> None:
    """One close below a seen success (a crash) is ignored; a later success clears it."""
    state = _state()
    state.observe_reused_ok(3.0)
    state.observe_stale(3.5)
    state.observe_stale(0.01)  # a crash on a busy connection, not an idle timeout
    assert (state.lower_bound, state.upper_bound) == (3.0, 3.5)
    state.observe_reused_ok(0.5)  # the server is fine: forget the suspicious close
    state.observe_stale(0.02)
    assert (state.lower_bound, state.upper_bound) == (3.0, 3.5)


def test_learned_bounds_are_forgotten_after_learn_memory() -> None:
    """learn_memory seconds after the last close, the origin falls back to its default."""
    clock = ManualClock(0.0)
    state = OriginKeepAlive(
        dataclasses.replace(NO_JITTER, learn_memory=600.0), rng=random.Random(1), clock=clock
    )
    state.observe_stale(3.0)
    assert state.idle_ttl().source is TTLSource.LEARNED
    clock.advance(599.0)
    assert state.idle_ttl().source is TTLSource.LEARNED
    clock.advance(1.0)
    assert state.idle_ttl().source is TTLSource.DEFAULT
    assert (state.lower_bound, state.upper_bound) == (None, None)


def test_observe_attempt_learns_only_from_reused_connections() -> None:
    """observe_attempt: success on reuse = lower bound, stale failure = upper bound."""
    state = _state()
    fresh = ConnectionFacts(reused=False, idle_seconds=0.0)
    state.observe_attempt(fresh, classify(ConnectionResetError(104, "r"), facts=fresh))
    assert (state.lower_bound, state.upper_bound) == (None, None)
    state.observe_attempt(ConnectionFacts(reused=True, idle_seconds=1.5))
    assert state.lower_bound == 1.5
    stale = ConnectionFacts(reused=True, idle_seconds=2.5, bytes_received=0)
    state.observe_attempt(stale, classify(ConnectionResetError(104, "r"), facts=stale))
    assert state.upper_bound == 2.5
    late = ConnectionFacts(reused=True, idle_seconds=1.0, bytes_received=10)
    state.observe_attempt(late, classify(ConnectionResetError(104, "r"), facts=late))
    assert state.upper_bound == 2.5  # a reset mid-response is not a stale connection


def test_learn_false_ignores_observations() -> None:
    """learn=False ignores reuses and closes."""
    state = _state(dataclasses.replace(NO_JITTER, learn=False))
    state.observe_stale(1.0)
    assert state.upper_bound is None
    assert state.idle_ttl().source is TTLSource.DEFAULT


def test_insane_observations_are_ignored() -> None:
    """NaN, negative or infinite idle times are not evidence."""
    state = _state()
    for value in (float("nan"), -1.0, float("inf")):
        state.observe_stale(value)
        state.observe_reused_ok(value)
    assert state.upper_bound is None
    assert state.lower_bound is None


def test_reset_forgets_everything() -> None:
    """reset() drops header and learned bounds."""
    state = _state()
    state.observe_header("timeout=9, max=3", 0.0, requests_served=1)
    state.observe_stale(3.0)
    state.reset()
    assert state.idle_ttl().source is TTLSource.DEFAULT
    assert state.header_max_requests is None


# Idle timeouts below MIN_IDLE_EVIDENCE_FRACTION of the default TTL (0.125 s) are not
# believed (a reset at idle ~0 is a crash or a request limit): the property holds above.
_TRUE_TIMEOUT = st.floats(
    min_value=KeepAlive().default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION, max_value=600.0
)
_FRACTIONS = st.lists(
    st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=1.0)), max_size=40
)


@settings(max_examples=300)
@given(true_timeout=_TRUE_TIMEOUT, observations=_FRACTIONS, first_close=st.floats(0.5, 1.0))
def test_learned_ttl_never_exceeds_the_true_timeout(
    true_timeout: float, observations: list[tuple[bool, float]], first_close: float
) -> None:
    """Once a close was seen (within 2x the timeout), the TTL stays <= the true timeout.

    Observations are consistent with a server closing connections idle for
    ``true_timeout``: reuses succeed below it, closes are seen at or above it. The first
    close is within twice the timeout; later ones anywhere above it.
    """
    state = OriginKeepAlive(KeepAlive(jitter=0.05), rng=random.Random(0))
    state.observe_stale(true_timeout / first_close if first_close > 0.5 else 2 * true_timeout)
    assert state.idle_ttl().seconds <= true_timeout
    for reused_ok, fraction in observations:
        if reused_ok:
            state.observe_reused_ok(true_timeout * fraction * 0.999)
        else:
            state.observe_stale(true_timeout * (1.0 + 10.0 * fraction))
        assert state.idle_ttl().seconds <= true_timeout
        assert state.idle_ttl().before_jitter <= true_timeout


@settings(max_examples=200)
@given(
    observations=st.lists(
        st.tuples(st.booleans(), st.floats(min_value=0.0, max_value=1000.0)), max_size=40
    )
)
def test_ttl_is_always_below_the_smallest_close(observations: list[tuple[bool, float]]) -> None:
    """For ANY sequence, the TTL is strictly below the smallest idle still known to fail."""
    state = _state()
    for reused_ok, idle in observations:
        if reused_ok:
            state.observe_reused_ok(idle)
        else:
            state.observe_stale(idle)
        upper = state.upper_bound
        if upper is not None and upper > 0:
            assert state.idle_ttl().seconds < upper


@settings(max_examples=100)
@given(true_timeout=st.floats(min_value=0.2, max_value=120.0), seed=st.integers(0, 2**32))
def test_simulated_client_converges_just_under_the_timeout(true_timeout: float, seed: int) -> None:
    """A client starting at 2x the timeout (4 s vs gunicorn's 2 s) settles in [0.3, 1) of it."""
    rng = random.Random(seed)
    config = KeepAlive(default_idle_ttl=2.0 * true_timeout, jitter=0.0)
    state = OriginKeepAlive(config, rng=rng)
    closes = 0
    for _ in range(300):
        idle = rng.uniform(0.0, state.idle_ttl().seconds)
        if idle < true_timeout:
            state.observe_reused_ok(idle)
        else:
            state.observe_stale(idle)
            closes += 1
    ttl = state.idle_ttl()
    assert ttl.source is TTLSource.LEARNED
    assert 0.3 * true_timeout <= ttl.seconds < true_timeout
    assert 1 <= closes <= 6


def _simulate(
    state: OriginKeepAlive,
    true_timeout: float,
    gaps: list[float],
    replayable: list[bool],
) -> tuple[int, int, int]:
    """Drive a client, as the adapters do, against a server closing idle connections.

    The server closes a connection idle for ``true_timeout``; its FIN is visible to the
    client a lag (10 %) later. A connection the rules expire is checked as the adapters
    do (seen open, or seen closed by the server); a reuse inside the lag meets a reset:
    a probe retries it transparently, any other request fails.

    Returns (connections opened, user-visible failures, transparent retries).
    """
    lag = 0.1 * true_timeout
    opened, failed, retried = 1, 0, 0
    for gap, probe in zip(gaps, replayable, strict=True):
        visible_close = gap >= true_timeout + lag
        reason = state.expiry_reason(
            created_at=0.0, last_used_at=0.0, requests_served=1, now=gap, probe=probe
        )
        if reason is not None or visible_close:
            if visible_close:
                state.observe_closed_idle(gap)
            else:
                state.observe_open(gap)
            opened += 1
        elif gap < true_timeout:
            state.observe_reused_ok(gap)
        else:
            state.observe_stale(gap)
            opened += 1
            if probe:
                retried += 1
            else:
                failed += 1
    return opened, failed, retried


@settings(max_examples=100)
@given(
    true_timeout=st.floats(min_value=0.2, max_value=120.0),
    default_ratio=st.sampled_from([0.05, 0.3, 0.5, 0.8]),
    seed=st.integers(0, 2**32),
)
def test_probes_learn_a_timeout_above_the_default(
    true_timeout: float, default_ratio: float, seed: int
) -> None:
    """GETs every 0.85-0.95x of a timeout above the default: one connection, TTL >= 0.9x.

    The reuse-efficiency case of the benchmarks: uvicorn's 5 s against the 4 s default,
    or nginx's 75 s (0.05); the TTL climbs by probes, none of which fails.
    """
    rng = random.Random(seed)
    state = OriginKeepAlive(
        KeepAlive(default_idle_ttl=default_ratio * true_timeout, jitter=0.05), rng=rng
    )
    gaps = [true_timeout * rng.uniform(0.85, 0.95) for _ in range(200)]
    opened, failed, retried = _simulate(state, true_timeout, gaps, [True] * len(gaps))
    assert (failed, retried) == (0, 0)
    # At most two: the first gap may be out of the probes' reach, which it then extends.
    assert opened <= 2
    assert 0.9 * true_timeout <= state.idle_ttl().before_jitter < true_timeout


@settings(max_examples=100)
@given(true_timeout=st.floats(min_value=0.2, max_value=120.0), seed=st.integers(0, 2**32))
def test_mixed_traffic_settles_under_the_timeout_with_few_failures(
    true_timeout: float, seed: int
) -> None:
    """Random gaps up to 2x, half of them POSTs: the TTL settles in [0.7, 1) of the timeout.

    POSTs never probe; those that fail met a stale connection before any close had
    been seen from the 4 s default (the first POST case the docs describe).
    """
    rng = random.Random(seed)
    state = OriginKeepAlive(KeepAlive(default_idle_ttl=2.0 * true_timeout, jitter=0.05), rng=rng)
    gaps = [true_timeout * rng.uniform(0.0, 2.0) for _ in range(400)]
    replayable = [rng.random() < 0.5 for _ in gaps]
    _, failed, _ = _simulate(state, true_timeout, gaps, replayable)
    assert failed <= 2
    ttl = state.idle_ttl()
    assert ttl.source is TTLSource.LEARNED
    assert 0.7 * true_timeout <= ttl.before_jitter < true_timeout


def test_a_probe_callable_is_asked_only_past_the_ttl() -> None:
    """The adapters pass the probe decision as a callable: asked once, and only past the TTL."""
    state = _state()
    asked: list[float] = []

    def expiry(now: float) -> str | None:
        def may_probe() -> bool:
            asked.append(now)
            return True

        return state.expiry_reason(
            created_at=0.0, last_used_at=0.0, requests_served=1, now=now, probe=may_probe
        )

    assert expiry(1.0) is None
    assert asked == []
    assert expiry(5.0) is None  # past the 4 s TTL, within the probes' 8 s reach
    assert asked == [5.0]


def test_a_timeout_below_the_default_needs_no_learning_at_a_steady_pace() -> None:
    """gunicorn (2 s) at a 1.8 s pace: one connection, the 4 s default stays, nothing fails."""
    state = _state()
    gaps = [1.8] * 100
    assert _simulate(state, 2.0, gaps, [False] * len(gaps)) == (1, 0, 0)
    assert state.idle_ttl().source is TTLSource.DEFAULT


def test_a_close_seen_by_a_liveness_check_teaches_unless_contradicted() -> None:
    """A FIN seen after 3 s idle is an upper bound; after 1 s, below a survived 2 s, nothing."""
    state = _state()
    state.observe_reused_ok(2.0)
    state.observe_closed_idle(1.0)  # a restart closing every idle connection
    assert (state.lower_bound, state.upper_bound) == (2.0, None)
    state.observe_closed_idle(3.0)
    assert state.upper_bound == 3.0
    assert state.idle_ttl().before_jitter == pytest.approx(2.0)


def test_seen_open_raises_the_ttl_less_the_margin_and_the_probe_reach() -> None:
    """A connection seen open after 30 s: TTL 22.5 s (30 less 25 %), probes reach 60 s."""
    state = _state()
    state.observe_open(30.0)
    assert state.idle_ttl().before_jitter == 22.5
    assert state.idle_ttl().source is TTLSource.LEARNED
    assert state.probe_limit() == 60.0
    state.observe_stale(29.0)  # a close below it: the open connection was a FIN on its way
    assert state.open_bound is None
    assert state.idle_ttl().before_jitter < 29.0


# -- expiry -------------------------------------------------------------------------


def test_expiry_by_idle_ttl() -> None:
    """A connection idle at least the TTL is expired; the reason names the source."""
    clock = ManualClock(100.0)
    state = _state()
    clock.advance(3.9)
    assert not state.is_expired(
        created_at=100.0, last_used_at=100.0, requests_served=1, now=clock.now()
    )
    clock.advance(0.2)
    reason = state.expiry_reason(
        created_at=100.0, last_used_at=100.0, requests_served=1, now=clock.now()
    )
    assert reason is not None
    assert "default" in reason


def test_expiry_by_lifetime_and_requests() -> None:
    """Max lifetime, max requests, the header's max= and max=0 remaining all expire."""
    state = _state(dataclasses.replace(NO_JITTER, max_lifetime=10.0, max_requests=5))
    assert state.expiry_reason(created_at=0.0, last_used_at=9.5, requests_served=1, now=10.0) == (
        "age 10.00 s >= max lifetime 10.00 s"
    )
    reason = state.expiry_reason(created_at=0.0, last_used_at=1.0, requests_served=5, now=1.0)
    assert reason is not None
    assert "max requests 5" in reason
    assert state.is_expired(
        created_at=0.0, last_used_at=1.0, requests_served=1, now=1.0, requests_remaining=0
    )
    state.observe_header("timeout=5, max=2", 0.0, requests_served=1)
    assert state.header_max_requests == 3
    assert state.is_expired(created_at=0.0, last_used_at=1.0, requests_served=3, now=1.0)
    assert not state.is_expired(created_at=0.0, last_used_at=1.0, requests_served=2, now=1.0)


# -- registry -----------------------------------------------------------------------


def test_registry_one_state_per_origin() -> None:
    """The registry returns the same state for the same origin (scheme/host case-insensitive)."""
    registry = KeepAliveRegistry(NO_JITTER, rng=random.Random(1))
    a = registry.get("HTTP", "Example.org", 80)
    assert registry.get("http", "example.org", 80) is a
    assert registry.for_origin(Origin("http", "example.org", 80)) is a
    assert registry.get("https", "example.org", 443) is not a
    assert len(registry) == 2
    assert Origin("http", "example.org", 80) in registry
    assert set(registry) == {Origin("http", "example.org", 80), Origin("https", "example.org", 443)}
    assert a.origin == Origin("http", "example.org", 80)


def test_registry_is_thread_safe() -> None:
    """Eight threads asking for the same origins get one state each; observations do not race."""
    registry = KeepAliveRegistry(NO_JITTER)
    seen: list[OriginKeepAlive] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(200):
            state = registry.get("http", "127.0.0.1", 8000 + i % 4)
            state.observe_reused_ok(0.001 * (i % 50))
            state.idle_ttl()
            with lock:
                seen.append(state)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(registry) == 4
    assert len({id(s) for s in seen}) == 4
