"""rstsafe.Pool: the pure decisions (ManualClock), the config, and the sync driver's behaviour."""

from __future__ import annotations

import dataclasses
import random
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import rstsafe
import rstsafe.sockets
from rstsafe import Pool, PoolConfig
from rstsafe._core.clock import ManualClock
from rstsafe.sockets import DiscardReason
from rstsafe.sockets._pool import expiry_reason, needs_validation

from .helpers import PATIENCE, PongServer, loopback_listener, resp_ping


class Conn:
    """A connection of a made-up protocol: the pool only ever sees the user's callables."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.healthy = True
        self.closed = False

    def close(self) -> None:
        self.closed = True


class Service:
    """A factory of Conns, and a heartbeat that fails for unhealthy ones."""

    def __init__(self, clock: ManualClock | None = None) -> None:
        self.made: list[Conn] = []
        self.clock = clock
        self.heartbeat_cost = 0.0
        self.heartbeats = 0
        self.new_ones_healthy = True
        self.refuse = False

    def connect(self) -> Conn:
        if self.refuse:
            raise ConnectionRefusedError(111, "Connection refused")
        conn = Conn(len(self.made))
        conn.healthy = self.new_ones_healthy
        self.made.append(conn)
        return conn

    def heartbeat(self, conn: Conn) -> None:
        self.heartbeats += 1
        if self.clock is not None:
            self.clock.advance(self.heartbeat_cost)
        if not conn.healthy:
            raise ConnectionResetError(104, "Connection reset by peer")


MakePool = Callable[..., Pool[Conn]]


@pytest.fixture
def clock() -> ManualClock:
    """A clock that moves only when the test says so."""
    return ManualClock(1000.0)


@pytest.fixture
def service(clock: ManualClock) -> Service:
    """A fresh service on the manual clock."""
    return Service(clock)


@pytest.fixture
def make_pool(service: Service, clock: ManualClock) -> Iterator[MakePool]:
    """Build pools on the manual clock (no background thread, no jitter); close them after."""
    pools: list[Pool[Conn]] = []

    def make(**overrides: Any) -> Pool[Conn]:
        config = PoolConfig(**{"lifetime_jitter": 0.0, "connect_backoff": 0.0, **overrides})
        pool = Pool(service.connect, heartbeat=service.heartbeat, config=config, clock=clock)
        pools.append(pool)
        return pool

    yield make
    for pool in pools:
        pool.close()


# -- pure decisions ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("now", "lifetime", "idle_ttl", "expected"),
    [
        (10.0, None, None, None),
        (10.0, 100.0, 60.0, None),
        (100.0, 100.0, None, DiscardReason.MAX_LIFETIME),  # reaching the limit counts
        (69.9, None, 60.0, None),
        (70.0, None, 60.0, DiscardReason.IDLE_TTL),
        (200.0, 100.0, 60.0, DiscardReason.MAX_LIFETIME),  # lifetime is reported first
    ],
)
def test_expiry_reason(
    now: float, lifetime: float | None, idle_ttl: float | None, expected: DiscardReason | None
) -> None:
    """Expiry is a pure function of the timestamps (created at 0, last used at 10)."""
    reason = expiry_reason(
        now=now, created_at=0.0, last_used=10.0, lifetime=lifetime, idle_ttl=idle_ttl
    )
    assert reason is expected


@pytest.mark.parametrize(
    ("fresh", "idle", "has_heartbeat", "validate_new", "expected"),
    [
        (True, 0.0, True, True, True),  # C4: every new connection is checked
        (True, 0.0, True, False, False),
        (False, 0.49, True, True, False),  # inside HikariCP's 500 ms bypass window
        (False, 0.5, True, True, True),
        (False, 30.0, False, True, False),  # nothing to validate with
    ],
)
def test_needs_validation(
    fresh: bool, idle: float, has_heartbeat: bool, validate_new: bool, expected: bool
) -> None:
    """Validation: new connections (unless disabled) and reused ones idle >= 0.5 s."""
    config = PoolConfig(validate_new=validate_new)
    decision = needs_validation(
        now=100.0 + idle,
        fresh=fresh,
        last_checked=100.0,
        has_heartbeat=has_heartbeat,
        config=config,
    )
    assert decision is expected


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_size", 0),
        ("wait_timeout", -1.0),
        ("idle_ttl", 0.0),
        ("max_lifetime", -5.0),
        ("max_lifetime", float("inf")),
        ("lifetime_jitter", 1.0),
        ("validate_after_idle", -0.1),
        ("heartbeat_timeout", 0.0),
        ("heartbeat_interval", 0.0),
        ("max_connect_attempts", 0),
        ("connect_backoff", -1.0),
    ],
)
def test_pool_config_names_the_bad_field(field: str, value: object) -> None:
    """Every invalid value raises ValueError naming the field (wrong types: test_strict_inputs)."""
    with pytest.raises(ValueError, match=f"^{field} "):
        PoolConfig(**{field: value})  # type: ignore[arg-type]


def test_pool_rejects_a_config_that_is_not_a_pool_config(service: Service) -> None:
    """Passing the wrong object as config fails early with a TypeError naming it."""
    with pytest.raises(TypeError, match=r"^config "):
        Pool(service.connect, config={"max_size": 1})  # type: ignore[arg-type]


# -- borrowing and validation -------------------------------------------------------------------


def test_new_connections_are_validated_and_reuse_skips_validation_briefly(
    make_pool: MakePool, service: Service, clock: ManualClock
) -> None:
    """New: heartbeat. Reused within 0.5 s: trusted. Reused after 0.5 s idle: heartbeat."""
    pool = make_pool()
    with pool.connection() as first:
        pass
    with pool.connection() as second:
        pass
    clock.advance(0.6)
    with pool.connection() as third:
        pass
    assert first is second is third
    counters = pool.counters
    assert (counters.created, counters.reused, counters.validated) == (1, 2, 2)
    assert service.heartbeats == 2
    assert (counters.idle, counters.in_use) == (1, 0)


def test_a_stale_idle_connection_is_replaced_without_the_caller_noticing(
    make_pool: MakePool, service: Service, clock: ManualClock
) -> None:
    """An idle connection that fails its heartbeat is discarded and a new one handed out."""
    pool = make_pool()
    with pool.connection() as stale:
        pass
    stale.healthy = False  # the server closed it while it sat idle
    clock.advance(5.0)
    with pool.connection() as conn:
        assert conn is not stale
        assert conn.healthy
    assert stale.closed
    counters = pool.counters
    assert counters.failed_validation == 1
    assert counters.discarded[DiscardReason.FAILED_VALIDATION] == 1
    assert counters.created == 2


def test_stale_idle_connections_do_not_use_up_the_connect_attempts(
    make_pool: MakePool, service: Service, clock: ManualClock
) -> None:
    """Three stale idle connections and max_connect_attempts=1: the borrow still succeeds."""
    pool = make_pool(max_size=4, max_connect_attempts=1)
    with pool.connection() as a, pool.connection() as b, pool.connection() as c:
        pass
    for conn in (a, b, c):
        conn.healthy = False
    clock.advance(5.0)
    with pool.connection() as conn:
        assert conn.healthy
    assert pool.counters.failed_validation == 3


def test_new_connections_that_all_fail_the_heartbeat_give_a_clear_error(
    make_pool: MakePool, service: Service
) -> None:
    """C4: every new connection fails its heartbeat: NoHealthyConnectionError with each failure."""
    service.new_ones_healthy = False
    pool = make_pool(max_connect_attempts=3)
    expected = pytest.raises(rstsafe.sockets.NoHealthyConnectionError, match="3 new connection")
    with expected as info, pool.connection():
        pass
    assert len(info.value.failures) == 3
    assert all(isinstance(f, ConnectionResetError) for f in info.value.failures)
    assert info.value.__cause__ is info.value.failures[-1]
    assert all(conn.closed for conn in service.made)
    assert pool.counters.in_use == 0


def test_connect_errors_are_retried_then_reported(make_pool: MakePool, service: Service) -> None:
    """A factory that keeps failing: bounded attempts, counted, and the error says why."""
    service.refuse = True
    pool = make_pool(max_connect_attempts=2)
    expected = pytest.raises(
        rstsafe.sockets.NoHealthyConnectionError, match="ConnectionRefusedError"
    )
    with expected, pool.connection():
        pass
    assert pool.counters.connect_failed == 2
    assert pool.counters.in_use == 0


def test_a_slow_heartbeat_counts_as_failed(
    make_pool: MakePool, service: Service, clock: ManualClock
) -> None:
    """A heartbeat that returns after heartbeat_timeout fails, even if it did not raise."""
    service.heartbeat_cost = 3.0
    pool = make_pool(heartbeat_timeout=2.0, max_connect_attempts=1)
    with pytest.raises(rstsafe.sockets.NoHealthyConnectionError) as info, pool.connection():
        pass
    assert isinstance(info.value.failures[0], rstsafe.sockets.HeartbeatTimeoutError)


def test_validate_new_off_hands_out_new_connections_unchecked(
    make_pool: MakePool, service: Service
) -> None:
    """With validate_new=False the heartbeat is not run on a new connection."""
    pool = make_pool(validate_new=False)
    with pool.connection():
        pass
    assert service.heartbeats == 0


# -- retiring connections --------------------------------------------------------------------


def test_idle_ttl_retires_a_connection(
    make_pool: MakePool, service: Service, clock: ManualClock
) -> None:
    """A connection idle for idle_ttl is closed and replaced, before any heartbeat."""
    pool = make_pool(idle_ttl=30.0)
    with pool.connection() as old:
        pass
    clock.advance(30.0)
    with pool.connection() as new:
        assert new is not old
    assert old.closed
    assert pool.counters.discarded[DiscardReason.IDLE_TTL] == 1
    assert service.heartbeats == 2  # both new connections; the expired one was not pinged


def test_max_lifetime_is_jittered_down_and_retires_on_return(
    service: Service, clock: ManualClock
) -> None:
    """The lifetime is shortened by up to the jitter; a connection past it is not kept."""
    config = PoolConfig(max_lifetime=100.0, lifetime_jitter=0.2, idle_ttl=None)
    with Pool(service.connect, config=config, clock=clock, rng=random.Random(7)) as pool:
        with pool.connection() as conn:
            clock.advance(79.0)  # below any jittered lifetime (>= 80 s)
        assert pool.counters.idle == 1  # kept
        lifetime = pool._core.idle[0].lifetime
        assert lifetime is not None
        assert 80.0 <= lifetime <= 100.0
        with pool.connection():
            clock.advance(21.0)  # now past any jittered lifetime
        assert pool.counters.idle == 0
        assert conn.closed
        assert pool.counters.discarded[DiscardReason.MAX_LIFETIME] == 1


def test_jitter_spreads_the_lifetimes_of_connections_opened_together(
    service: Service, clock: ManualClock
) -> None:
    """Connections opened in the same instant get different lifetimes (HikariCP's 2.5 %)."""
    config = PoolConfig(max_size=5, max_lifetime=1000.0)
    with Pool(service.connect, config=config, clock=clock, rng=random.Random(1)) as pool:
        with (
            pool.connection(),
            pool.connection(),
            pool.connection(),
            pool.connection(),
            pool.connection(),
        ):
            pass
        lifetimes = {entry.lifetime for entry in pool._core.idle}
    assert len(lifetimes) == 5
    assert all(lt is not None and 975.0 <= lt <= 1000.0 for lt in lifetimes)


# -- errors inside the block ------------------------------------------------------------------


def test_a_connection_error_in_the_block_discards_the_connection(make_pool: MakePool) -> None:
    """ConnectionResetError in the block: re-raised, and the connection is not reused."""
    pool = make_pool()
    with pytest.raises(ConnectionResetError), pool.connection() as conn:
        raise ConnectionResetError(104, "Connection reset by peer")
    assert conn.closed
    assert pool.counters.discarded[DiscardReason.ERROR] == 1
    assert pool.counters.idle == 0


def test_other_errors_return_the_connection(make_pool: MakePool) -> None:
    """A ValueError in the user's code says nothing about the connection: it is kept."""
    pool = make_pool()
    with pytest.raises(ValueError, match="bad input"), pool.connection() as conn:
        raise ValueError("bad input")
    assert not conn.closed
    assert pool.counters.idle == 1


def test_discard_on_is_configurable(make_pool: MakePool) -> None:
    """A user-specified exception type also discards the connection."""

    class ProtocolError(Exception):
        pass

    pool = make_pool(discard_on=(OSError, ProtocolError))
    with pytest.raises(ProtocolError), pool.connection() as conn:
        raise ProtocolError("garbled reply")
    assert conn.closed


def test_an_interrupt_in_the_block_discards_the_connection(make_pool: MakePool) -> None:
    """A BaseException (KeyboardInterrupt-like) leaves the protocol state unknown: discard."""

    class Interrupted(BaseException):
        pass

    pool = make_pool()
    with pytest.raises(Interrupted), pool.connection() as conn:
        raise Interrupted
    assert conn.closed


def test_an_interrupt_during_the_heartbeat_frees_the_slot(service: Service) -> None:
    """A BaseException raised by the heartbeat propagates; the connection is closed, no leak."""

    class Interrupted(BaseException):
        pass

    def heartbeat(conn: Conn) -> None:
        raise Interrupted

    pool = Pool(service.connect, heartbeat=heartbeat, config=PoolConfig(max_size=1))
    with pytest.raises(Interrupted), pool.connection():
        pass
    assert service.made[0].closed
    assert pool.counters.in_use == 0
    pool.close()


# -- size, waiting, closing -------------------------------------------------------------------


def test_an_exhausted_pool_times_out_with_a_clear_error(service: Service) -> None:
    """max_size connections in use: the next borrow waits wait_timeout, then says why."""
    config = PoolConfig(max_size=1, wait_timeout=0.2)
    exhausted = pytest.raises(
        rstsafe.sockets.PoolTimeoutError, match="all 1 connections stayed in use"
    )
    pool = Pool(service.connect, config=config)
    with pool, pool.connection(), exhausted, pool.connection():  # the 2nd borrow fails
        pass


def test_a_waiting_borrower_gets_the_returned_connection(service: Service) -> None:
    """A borrower blocked on a full pool is woken when a connection comes back."""
    # An hour: without the wake-up the waiter would outlive the 60 s test timeout.
    config = PoolConfig(max_size=1, wait_timeout=3600.0)
    with Pool(service.connect, config=config) as pool:
        borrowed = threading.Event()
        got: list[Conn] = []

        def waiter() -> None:
            borrowed.wait()
            with pool.connection() as conn:
                got.append(conn)

        thread = threading.Thread(target=waiter)
        thread.start()
        with pool.connection() as first:
            borrowed.set()
            threading.Event().wait(0.1)  # let the waiter block (it works either way)
        thread.join()
    assert got == [first]


def test_the_pool_is_thread_safe(service: Service) -> None:
    """8 threads x 50 borrows on a pool of 3: never more than 3 connections, counters add up."""
    config = PoolConfig(max_size=3, wait_timeout=PATIENCE)
    in_use: set[int] = set()
    lock = threading.Lock()
    errors: list[BaseException] = []
    with Pool(service.connect, heartbeat=service.heartbeat, config=config) as pool:

        def work() -> None:
            try:
                for _ in range(50):
                    with pool.connection() as conn:
                        with lock:
                            assert conn.number not in in_use
                            in_use.add(conn.number)
                        with lock:
                            in_use.discard(conn.number)
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        counters = pool.counters
    assert errors == []
    assert counters.created <= 3
    assert counters.created + counters.reused == 400


def is_closed(conn: Conn) -> bool:
    return conn.closed


def test_close_closes_idle_and_later_returned_connections(make_pool: MakePool) -> None:
    """close(): idle ones now, borrowed ones on return; borrowing afterwards fails; idempotent."""
    pool = make_pool(max_size=2)
    with pool.connection() as a, pool.connection() as b:
        pass
    with pool.connection() as borrowed:
        idle_one = b if borrowed is a else a
        pool.close()
        assert idle_one.closed
        assert not is_closed(borrowed)
    assert is_closed(borrowed)
    assert pool.counters.discarded[DiscardReason.POOL_CLOSED] == 2
    assert pool.closed
    with pytest.raises(rstsafe.sockets.PoolClosedError), pool.connection():
        pass
    pool.close()


def test_counters_are_a_read_only_snapshot(make_pool: MakePool) -> None:
    """The counters object is frozen and does not change under the caller."""
    pool = make_pool()
    before = pool.counters
    with pool.connection():
        pass
    assert before.created == 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        before.created = 5  # type: ignore[misc]
    with pytest.raises(TypeError):
        before.discarded[DiscardReason.ERROR] = 1  # type: ignore[index]
    assert pool.counters.discarded_total == 0
    assert "Pool idle=1 in_use=0 max_size=10" in repr(pool)


# -- the background heartbeat ----------------------------------------------------------------


def wait_until(condition: Any) -> None:
    """Poll ``condition()`` for up to PATIENCE seconds."""
    done = threading.Event()
    for _ in range(int(PATIENCE / 0.02)):
        if condition():
            return
        done.wait(0.02)
    raise AssertionError("condition not reached in time")


def test_background_heartbeat_pings_idle_connections_and_drops_failed_ones() -> None:
    """heartbeat_interval: idle connections are pinged; one that fails is discarded."""
    service = Service()
    config = PoolConfig(max_size=2, heartbeat_interval=0.1)
    pool = Pool(service.connect, heartbeat=service.heartbeat, config=config)
    try:
        with pool.connection() as good, pool.connection() as bad:
            pass
        wait_until(lambda: pool.counters.heartbeats >= 2)
        bad.healthy = False
        wait_until(lambda: pool.counters.discarded[DiscardReason.FAILED_HEARTBEAT] == 1)
        assert bad.closed
        assert not good.closed
    finally:
        pool.close()
    assert pool._maintainer is not None
    assert not pool._maintainer.is_alive()


def test_background_maintenance_retires_idle_connections(
    service: Service, clock: ManualClock
) -> None:
    """One maintenance pass closes idle connections past their TTL (ManualClock, no thread)."""
    pool = Pool(service.connect, config=PoolConfig(idle_ttl=10.0), clock=clock)
    with pool.connection() as conn:
        pass
    clock.advance(10.0)
    pool._drive(pool._core.maintain())
    assert conn.closed
    assert pool.counters.idle == 0
    pool.close()


# -- real sockets ----------------------------------------------------------------------------


def test_the_socket_timeout_bounds_a_heartbeat_and_is_restored(pong_server: PongServer) -> None:
    """With socket connections the heartbeat runs under heartbeat_timeout; then it is restored."""
    seen: list[float | None] = []

    def heartbeat(sock: socket.socket) -> None:
        seen.append(sock.gettimeout())
        resp_ping(sock)

    def connect() -> socket.socket:
        return socket.create_connection(pong_server.address, timeout=7.0)

    pool = Pool(connect, heartbeat=heartbeat, config=PoolConfig(heartbeat_timeout=3.0))
    with pool, pool.connection() as sock:
        assert sock.gettimeout() == 7.0
    assert seen == [3.0]
    assert sock.fileno() == -1  # closed by the pool (gracefully, by default)


def test_a_silent_server_fails_the_heartbeat_by_timeout() -> None:
    """A server that never answers: recv times out after heartbeat_timeout, the borrow fails."""
    listener = loopback_listener()
    try:
        config = PoolConfig(heartbeat_timeout=0.2, max_connect_attempts=2, close_timeout=0.0)
        connect = lambda: socket.create_connection(listener.getsockname(), timeout=PATIENCE)  # noqa: E731
        with Pool(connect, heartbeat=resp_ping, config=config) as pool:
            with pytest.raises(rstsafe.sockets.NoHealthyConnectionError) as info, pool.connection():
                pass
            assert all(isinstance(f, TimeoutError) for f in info.value.failures)
    finally:
        listener.close()


def test_pool_errors_are_rstsafe_errors() -> None:
    """`except rstsafe.RstsafeError` catches the pool's errors; a slow heartbeat is a timeout."""
    for error in (
        rstsafe.sockets.PoolTimeoutError,
        rstsafe.sockets.PoolClosedError,
        rstsafe.sockets.NoHealthyConnectionError,
        rstsafe.sockets.HeartbeatTimeoutError,
    ):
        assert issubclass(error, rstsafe.sockets.PoolError)
        assert issubclass(error, rstsafe.RstsafeError)
    assert issubclass(rstsafe.sockets.HeartbeatTimeoutError, TimeoutError)
