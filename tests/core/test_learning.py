"""Learning reads each close for what it is; a connection's lease gives one answer.

Pure tests of :class:`rstsafe.core.OriginKeepAlive` and :class:`ConnectionLife` with a
:class:`ManualClock` and seeded generators: no sockets, no sleeping.
"""

from __future__ import annotations

import random
import select
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rstsafe import KeepAlive
from rstsafe._core.attempts import ConnectionLife
from rstsafe._core.clock import ManualClock
from rstsafe._core.keepalive import (
    CLOSE_HISTORY,
    DEFAULT_MAX_ORIGINS,
    MIN_IDLE_EVIDENCE_FRACTION,
    RESTART_WINDOW,
)
from rstsafe.core import KeepAliveRegistry, Origin, OriginKeepAlive, TTLSource

NO_JITTER = KeepAlive(jitter=0.0)


def _state(
    config: KeepAlive = NO_JITTER, clock: ManualClock | None = None
) -> tuple[OriginKeepAlive, ManualClock]:
    clock = clock if clock is not None else ManualClock(1000.0)
    return OriginKeepAlive(config, rng=random.Random(7), clock=clock), clock


# -- the lease -------------------------------------------------------------------


def test_one_connection_checked_many_times_at_one_instant_gets_one_answer() -> None:
    """20 checks of one connection at the same instant: all expired or all alive."""
    for seed in range(50):
        clock = ManualClock(0.0)
        state = OriginKeepAlive(KeepAlive(jitter=0.5), rng=random.Random(seed), clock=clock)
        life = ConnectionLife(clock=clock)
        life.finish_request()
        clock.advance(3.0)  # inside the jitter band of the 4 s default: [2, 4) s
        answers = {life.expiry_reason(state) is None for _ in range(20)}
        assert len(answers) == 1


def test_the_lease_is_drawn_again_when_the_connection_is_returned_idle() -> None:
    """A new idle period draws a new jitter; the same period keeps its draw."""
    clock = ManualClock(0.0)
    state = OriginKeepAlive(KeepAlive(jitter=0.5), rng=random.Random(3), clock=clock)
    life = ConnectionLife(clock=clock)
    outcomes: set[bool] = set()
    for _ in range(40):
        life.finish_request()
        clock.advance(3.0)
        first = life.expiry_reason(state) is None
        assert all((life.expiry_reason(state) is None) == first for _ in range(5))
        outcomes.add(first)
    assert outcomes == {True, False}  # the draws differ between idle periods


def test_the_lifetime_draw_is_kept_for_the_connections_life() -> None:
    """Max lifetime 100 s with 50 % jitter: one connection's lifetime never moves."""
    clock = ManualClock(0.0)
    config = KeepAlive(jitter=0.5, max_lifetime=100.0, server_keepalive=1000.0)
    state = OriginKeepAlive(config, rng=random.Random(11), clock=clock)
    life = ConnectionLife(clock=clock)
    clock.advance(75.0)
    first = life.expiry_reason(state)
    for _ in range(30):
        life.finish_request()
        assert (life.expiry_reason(state) is None) == (first is None)


# -- closes that are not idle timeouts -------------------------------------------


def test_a_reset_after_the_same_request_count_teaches_a_request_limit() -> None:
    """A server resetting after 5 requests: learned max_requests 5, the idle TTL untouched."""
    state, clock = _state()
    for _ in range(3):
        for _request in range(4):
            state.observe_reused_ok(0.2)
            clock.advance(0.2)
        state.observe_stale(0.2, requests_served=5, age_seconds=1.0)
        clock.advance(5.0)
    assert state.learned_max_requests == 5
    assert state.upper_bound is None
    assert state.idle_ttl().before_jitter == 4.0  # the default: no idle timeout learned
    assert (
        state.expiry_reason(
            created_at=clock.now(), last_used_at=clock.now(), requests_served=5, now=clock.now()
        )
        == "served 5 requests >= max requests 5"
    )
    assert (
        state.expiry_reason(
            created_at=clock.now(), last_used_at=clock.now(), requests_served=4, now=clock.now()
        )
        is None
    )


def test_the_first_close_of_a_count_pattern_is_taken_back() -> None:
    """The first reset after 3 requests was held as suspect; the second one explains it."""
    state, clock = _state()
    state.observe_reused_ok(2.5)
    state.observe_stale(2.0, requests_served=3, age_seconds=10.0)
    assert state.lower_bound == 2.5  # suspect: held, not believed
    clock.advance(30.0)
    state.observe_stale(1.0, requests_served=3, age_seconds=10.0)
    assert state.upper_bound is None
    assert state.learned_max_requests == 3
    assert state.idle_ttl().source is TTLSource.DEFAULT


def test_a_restart_resetting_every_open_connection_is_not_an_idle_timeout() -> None:
    """8 connections, all open before the restart, reset within a second: nothing learned."""
    state, clock = _state()
    state.observe_reused_ok(1.5)
    for number in range(8):
        state.observe_stale(0.05 + 0.3 * number, requests_served=number + 1, age_seconds=60.0)
        clock.advance(RESTART_WINDOW / 10)
    assert (state.lower_bound, state.upper_bound) == (1.5, None)
    assert state.idle_ttl().before_jitter == 4.0


def test_a_restart_seen_by_liveness_checks_is_not_an_idle_timeout() -> None:
    """Idle connections found closed at once by liveness checks: nothing learned."""
    state, clock = _state()
    for number in range(4):
        state.observe_closed_idle(0.5 + number, age_seconds=30.0)
        clock.advance(0.01)
    assert state.upper_bound is None
    assert state.idle_ttl().source is TTLSource.DEFAULT


def test_closes_of_connections_opened_one_after_another_are_not_a_burst() -> None:
    """A server closing at 1 s idle, one connection at a time: each close teaches."""
    state, clock = _state()
    for _ in range(4):
        # Each connection was opened after the previous close (age below the gap).
        state.observe_stale(1.2, requests_served=1, age_seconds=0.05)
        clock.advance(0.1)
    assert state.upper_bound == 1.2
    assert state.idle_ttl().before_jitter < 1.2


def test_a_reset_at_idle_zero_never_turns_reuse_off() -> None:
    """Resets right after the last response (a crash, a limit) teach no idle timeout."""
    state, clock = _state()
    floor = KeepAlive().default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION
    for _ in range(10):
        state.observe_stale(floor / 2)
        clock.advance(60.0)
    assert state.upper_bound is None
    assert state.idle_ttl().before_jitter == 4.0


def test_one_spurious_close_below_a_survived_idle_changes_nothing_lasting() -> None:
    """One close below a survived idle is held as suspect; a reuse longer clears it."""
    state, clock = _state()
    state.observe_reused_ok(3.0)
    state.observe_stale(1.0)
    assert state.lower_bound == 3.0
    clock.advance(10.0)
    state.observe_reused_ok(1.5)
    assert (state.lower_bound, state.upper_bound) == (3.0, None)
    assert state.idle_ttl().before_jitter == 4.0


# -- passive evidence and safe send ----------------------------------------------


def test_connections_seen_open_lengthen_the_ttl_for_every_method() -> None:
    """No claim: an expired connection seen open at 6 s raises the TTL past the default."""
    state, _ = _state()
    state.observe_open(6.0)
    ttl = state.idle_ttl()
    assert ttl.source is TTLSource.LEARNED
    assert ttl.before_jitter == pytest.approx(4.5)  # 6 s less 25 %
    state.observe_open(8.0)
    assert state.idle_ttl().before_jitter == pytest.approx(6.0)


def test_seen_open_never_lengthens_a_claim() -> None:
    """A configured 5 s keep-alive stays 3.75 s whatever was seen open."""
    state, _ = _state(KeepAlive(server_keepalive=5.0, jitter=0.0))
    state.observe_open(60.0)
    assert state.idle_ttl().before_jitter == pytest.approx(3.75)


def test_a_request_that_cannot_be_retried_reuses_only_below_the_proven_idle() -> None:
    """Nothing proven: a POST reuses below the floor only; a survived 2 s lets it reach 1.9 s."""
    state, clock = _state()
    now = clock.now()

    def expiry(idle: float, *, retryable: bool) -> str | None:
        return state.expiry_reason(
            created_at=now - 100.0,
            last_used_at=now - idle,
            requests_served=1,
            now=now,
            retryable=retryable,
        )

    floor = KeepAlive().default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION
    assert expiry(floor * 0.9, retryable=False) is None
    reason = expiry(0.6, retryable=False)
    assert reason is not None
    assert "could not be retried" in reason
    assert expiry(0.6, retryable=True) is None  # a GET: the default TTL (4 s) applies
    state.observe_reused_ok(2.0)
    assert state.safe_idle() == pytest.approx(1.9)  # 2 s less PROOF_MARGIN (5 %)
    assert expiry(1.8, retryable=False) is None
    assert expiry(1.95, retryable=False) is not None
    state.observe_open(3.0)  # seen open: counts for 75 % of it
    assert state.safe_idle() == pytest.approx(2.25)


def test_a_claimed_timeout_is_trusted_for_requests_that_cannot_be_retried() -> None:
    """Keep-Alive: timeout=5 announced: a POST reuses up to the claimed TTL (3.75 s)."""
    state, _ = _state()
    state.observe_header("timeout=5")
    assert state.safe_idle() == pytest.approx(3.75)


def test_safe_send_asks_the_request_only_past_the_safe_idle() -> None:
    """The retryable callable is not asked for a connection idle below the safe idle."""
    state, clock = _state()
    asked: list[bool] = []

    def retryable() -> bool:
        asked.append(True)
        return False

    now = clock.now()
    state.expiry_reason(
        created_at=now, last_used_at=now - 0.01, requests_served=1, now=now, retryable=retryable
    )
    assert asked == []
    state.expiry_reason(
        created_at=now, last_used_at=now - 1.0, requests_served=1, now=now, retryable=retryable
    )
    assert asked == [True]


@settings(max_examples=100)
@given(
    true_timeout=st.floats(min_value=0.5, max_value=120.0),
    seed=st.integers(0, 2**32),
)
def test_requests_that_cannot_be_retried_never_meet_the_race(
    true_timeout: float, seed: int
) -> None:
    """Against a server closing at T (FIN 10 % late), a POST never reuses a closing connection.

    GETs and POSTs alternate at random gaps up to 2 T; the adapters' liveness check is
    modelled (a FIN seen: closed; else open). A POST is only ever sent on a connection
    that the server still keeps.
    """
    rng = random.Random(seed)
    clock = ManualClock(0.0)
    state = OriginKeepAlive(
        KeepAlive(default_idle_ttl=2.0 * true_timeout), rng=random.Random(seed), clock=clock
    )
    lag = 0.1 * true_timeout
    for _ in range(200):
        gap = rng.uniform(0.0, 2.0) * true_timeout
        is_post = rng.random() < 0.5
        clock.advance(gap)
        life_created = clock.now() - gap - 1.0
        reason = state.expiry_reason(
            created_at=life_created,
            last_used_at=clock.now() - gap,
            requests_served=1,
            now=clock.now(),
            probe=not is_post,
            retryable=not is_post,
        )
        if gap >= true_timeout + lag:
            state.observe_closed_idle(gap)
        elif reason is not None:
            state.observe_open(gap)
        elif gap < true_timeout:
            state.observe_reused_ok(gap)
        else:
            assert not is_post, f"a POST met the race at idle {gap / true_timeout:.2f} T"
            state.observe_stale(gap)


# -- bounded state ---------------------------------------------------------------


def test_the_registry_keeps_at_most_max_origins_least_recently_used_first_out() -> None:
    """20,000 origins through a registry of 100: 100 kept, the recently used among them."""
    registry = KeepAliveRegistry(NO_JITTER, max_origins=100)
    keep = registry.get("http", "kept.example", 80)
    for number in range(20_000):
        registry.get("http", f"h{number}.example", 80)
        if number % 50 == 0:
            assert registry.get("http", "kept.example", 80) is keep
    assert len(registry) == 100
    assert Origin("http", "kept.example", 80) in registry
    assert Origin("http", "h0.example", 80) not in registry
    assert KeepAliveRegistry().max_origins == DEFAULT_MAX_ORIGINS


def test_the_registry_rejects_bad_arguments_by_name() -> None:
    """A wrong type or value names the parameter, at construction."""
    with pytest.raises(TypeError, match="max_origins"):
        KeepAliveRegistry(max_origins="10")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_origins"):
        KeepAliveRegistry(max_origins=0)
    with pytest.raises(TypeError, match="config"):
        KeepAliveRegistry(5)  # type: ignore[arg-type]


def test_the_close_history_is_bounded() -> None:
    """A broken origin closing every connection keeps at most CLOSE_HISTORY closes."""
    state, clock = _state()
    for number in range(10_000):
        state.observe_stale(0.5 + (number % 7) * 0.1, requests_served=number % 13 + 1)
        clock.advance(0.3)
    assert len(state._closes) <= CLOSE_HISTORY


# -- the witness -----------------------------------------------------------------


def _is_open(handle: object) -> bool:
    """What the adapters ask: no FIN, nothing readable (a zero-timeout poll)."""
    assert isinstance(handle, socket.socket)
    readable, _, _ = select.select([handle], [], [], 0.0)
    return not readable


def test_a_witness_proves_a_longer_idle_than_the_pace_of_posts() -> None:
    """POSTs every 6 s, server keeps 30 s: the witness seen open at 18 s makes 6 s safe."""
    state, clock = _state()
    ours, theirs = socket.socketpair()
    try:
        state.observe_open(6.0)  # the first expired connection, seen open at the pace
        assert state.safe_idle() < 6.0
        kept = state.offer_witness(
            ours, last_used_at=clock.now() - 6.0, created_at=clock.now() - 7.0, close=ours.close
        )
        assert kept
        assert state.witness_held
        for _ in range(2):
            clock.advance(6.0)
            state.check_witness(_is_open)
        assert state.open_bound == 18.0
        assert state.safe_idle() > 6.0
        assert not ours._closed  # type: ignore[attr-defined]
    finally:
        state.release_witness()
        theirs.close()
    assert ours.fileno() == -1  # released: closed


def test_a_witness_closed_by_the_server_teaches_an_upper_bound_and_is_released() -> None:
    """The server closes the witness (FIN): an upper bound, and the socket is closed."""
    state, clock = _state()
    ours, theirs = socket.socketpair()
    state.offer_witness(ours, last_used_at=clock.now(), created_at=clock.now(), close=ours.close)
    clock.advance(2.0)
    state.check_witness(_is_open)
    assert state.open_bound == 2.0
    theirs.close()  # the server's FIN
    clock.advance(1.0)
    state.check_witness(_is_open)
    assert not state.witness_held
    assert state.upper_bound == 3.0
    assert ours.fileno() == -1


def test_one_witness_at_most_and_none_when_a_timeout_is_claimed() -> None:
    """A second offer is refused; so is any offer once a Keep-Alive timeout is announced."""
    state, clock = _state()
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        now = clock.now()
        first, second, third = (a for a, _ in pairs)
        assert state.offer_witness(first, last_used_at=now, created_at=now, close=first.close)
        assert not state.offer_witness(second, last_used_at=now, created_at=now, close=second.close)
        state.observe_header("timeout=5")
        state.check_witness(_is_open)  # an announced timeout releases it
        assert not state.witness_held
        assert first.fileno() == -1
        assert not state.offer_witness(third, last_used_at=now, created_at=now, close=third.close)
        configured, _ = _state(KeepAlive(server_keepalive=5.0))
        assert not configured.offer_witness(
            third, last_used_at=now, created_at=now, close=third.close
        )
        off, _ = _state(KeepAlive(witness=False))
        assert not off.offer_witness(third, last_used_at=now, created_at=now, close=third.close)
    finally:
        for a, b in pairs:
            a.close()
            b.close()


def test_the_registry_releases_witnesses_on_close_and_eviction() -> None:
    """Closing the registry, or dropping an origin from it, closes the witness."""
    registry = KeepAliveRegistry(NO_JITTER, max_origins=1)
    ours, theirs = socket.socketpair()
    mine, other = socket.socketpair()
    try:
        state = registry.get("http", "a.example", 80)
        assert state.offer_witness(ours, last_used_at=0.0, created_at=0.0, close=ours.close)
        registry.get("http", "b.example", 80)  # evicts a.example
        assert ours.fileno() == -1
        state = registry.get("http", "b.example", 80)
        assert state.offer_witness(mine, last_used_at=0.0, created_at=0.0, close=mine.close)
        registry.close()
        assert mine.fileno() == -1
    finally:
        for sock in (ours, theirs, mine, other):
            sock.close()


def test_busy_connections_reaching_a_request_limit_together_are_not_a_restart() -> None:
    """50 connections closed after their 5th request within a second: a limit is learned."""
    state, clock = _state()
    state.observe_reused_ok(0.01)
    for _ in range(50):
        state.observe_stale(0.005, requests_served=5, age_seconds=0.5)
        clock.advance(0.01)
    assert state.learned_max_requests == 5
    assert state.upper_bound is None


def test_a_request_limit_found_by_liveness_checks_is_learned_not_a_restart() -> None:
    """50 idle connections found reset at once after their 5th request: a limit, no burst."""
    state, clock = _state()
    for _ in range(50):
        state.observe_closed_idle(0.002, age_seconds=0.3, requests_served=5)
        clock.advance(0.005)
    assert state.learned_max_requests == 5
    assert state.upper_bound is None
    assert state.idle_ttl().before_jitter == 4.0
    # No restart was seen: a close at idle ~0 of a connection below the limit says
    # nothing of its idle peers.
    assert not state.closes_idle_peers(0.002, requests_served=2)


def test_liveness_closes_after_a_kept_idle_teach_no_request_limit() -> None:
    """Idle connections of one request each, found closed after a survived idle: no limit."""
    state, clock = _state()
    state.observe_reused_ok(2.0)
    for _ in range(4):
        # Opened one after another (age below the gap between closes): not a burst.
        state.observe_closed_idle(1.0, age_seconds=0.1, requests_served=1)
        clock.advance(0.5)
    assert state.learned_max_requests is None


def test_closes_at_a_known_limit_are_no_part_of_a_restart_burst() -> None:
    """Once the limit is learned, connections reaching it together never make a burst."""
    state, clock = _state()
    state.observe_stale(0.002, requests_served=5, age_seconds=0.3)
    state.observe_stale(0.002, requests_served=5, age_seconds=0.3)
    assert state.learned_max_requests == 5
    for _ in range(20):
        clock.advance(0.01)
        state.observe_stale(0.002, requests_served=5, age_seconds=0.3)
        state.observe_closed_idle(0.001, age_seconds=0.3, requests_served=5)
    assert not state.closes_idle_peers(0.002, requests_served=3)
    assert state.upper_bound is None


def test_a_close_at_a_request_limit_keeps_the_idle_peers() -> None:
    """A stale close at a learned or announced limit does not expire the other connections."""
    state, clock = _state()
    state.observe_reused_ok(0.5)  # a longer idle was kept: these closes are no timeout
    for _ in range(2):
        state.observe_stale(0.3, requests_served=5, age_seconds=0.1)
        clock.advance(1.0)
    assert state.learned_max_requests == 5
    assert not state.closes_idle_peers(0.3, requests_served=5)
    announced, _ = _state()
    announced.observe_header("timeout=30, max=3", requests_served=1)  # 4 in all
    assert not announced.closes_idle_peers(1.0, requests_served=4)
    assert announced.closes_idle_peers(1.0, requests_served=2)


def test_an_idle_timeout_or_a_restart_closes_the_idle_peers() -> None:
    """The peers are expired for a close that reads as an idle timeout, or during a restart."""
    state, clock = _state()
    floor = KeepAlive().default_idle_ttl * MIN_IDLE_EVIDENCE_FRACTION
    state.observe_stale(1.0, requests_served=1, age_seconds=1.5)
    assert state.closes_idle_peers(1.0, requests_served=1)  # an idle timeout
    restart, clock = _state()
    restart.observe_stale(floor / 4, requests_served=3, age_seconds=60.0)
    assert not restart.closes_idle_peers(floor / 4, requests_served=3)  # too short: a crash?
    for served in (7, 11):
        clock.advance(RESTART_WINDOW / 10)
        restart.observe_stale(floor / 4, requests_served=served, age_seconds=60.0)
    assert restart.closes_idle_peers(floor / 4, requests_served=11)  # the third: a restart
    clock.advance(RESTART_WINDOW * 2)
    assert not restart.closes_idle_peers(floor / 4, requests_served=2)  # that one is over


def test_one_close_below_a_survived_idle_keeps_the_idle_peers() -> None:
    """A close after less idle than a reuse survived is noise until a second one follows."""
    state, clock = _state()
    state.observe_reused_ok(2.0)
    state.observe_stale(1.0, requests_served=1, age_seconds=3.0)
    assert not state.closes_idle_peers(1.0, requests_served=1)
    clock.advance(30.0)
    state.observe_stale(1.0, requests_served=2, age_seconds=3.0)
    assert state.closes_idle_peers(1.0, requests_served=2)  # the server now closes sooner


def test_closes_idle_peers_answers_false_for_nonsense() -> None:
    """A negative, infinite or NaN idle is no evidence: the peers are kept."""
    state, _ = _state()
    for idle in (-1.0, float("inf"), float("nan")):
        assert not state.closes_idle_peers(idle, requests_served=1)


@pytest.mark.parametrize("counts", [(105, 105, 103, 99, 110), (103, 105, 105, 99, 110)])
def test_a_restart_resetting_two_connections_after_the_same_count_teaches_no_limit(
    counts: tuple[int, ...],
) -> None:
    """A restart whose resets include two after the same count: no limit kept, a burst seen."""
    state, clock = _state()
    for served in counts:
        state.observe_stale(0.01, requests_served=served, age_seconds=60.0)
        clock.advance(RESTART_WINDOW / 10)
    assert state.learned_max_requests is None
    assert state.closes_idle_peers(0.01, requests_served=1)  # the restart: peers are closed
    assert state.upper_bound is None


def test_a_limit_learned_before_a_restart_survives_it() -> None:
    """A request limit learned earlier is kept when a later restart resets every connection."""
    state, clock = _state()
    for _ in range(2):
        state.observe_stale(0.01, requests_served=5, age_seconds=0.2)
        clock.advance(10.0)
    assert state.learned_max_requests == 5
    for served in (1, 2, 3, 4):
        state.observe_stale(0.01, requests_served=served, age_seconds=5.0)
        clock.advance(RESTART_WINDOW / 10)
    assert state.learned_max_requests == 5


def test_idle_checks_reported_by_the_lease_carry_age_and_request_count() -> None:
    """ConnectionLife.report_idle_check: what every adapter reports of an idle connection.

    50 connections found reset after their 5th request and an idle too short for any
    timeout teach a request limit (it needs their request counts), and no idle bound; a
    connection seen open teaches its idle; one that never served a request teaches nothing.
    """
    state, clock = _state()
    never_used = ConnectionLife(clock=clock)
    clock.advance(9.0)
    never_used.report_idle_check(state, is_open=False)
    assert state.upper_bound is None
    for _ in range(50):
        life = ConnectionLife(clock=clock)
        for _ in range(5):
            life.begin_attempt()
            clock.advance(0.05)
            life.finish_request()
        clock.advance(0.002)
        life.report_idle_check(state, is_open=False)
        clock.advance(0.005)
    assert state.learned_max_requests == 5
    assert state.upper_bound is None
    kept = ConnectionLife(clock=clock)
    kept.begin_attempt()
    kept.finish_request()
    clock.advance(3.0)
    kept.report_idle_check(state, is_open=True)
    assert state.open_bound == pytest.approx(3.0)
