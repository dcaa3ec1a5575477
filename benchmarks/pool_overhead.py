"""Borrow/return cost of rstsafe.Pool per operation, against a plain queue.Queue-based pool.

Not a test: run it by hand and read the ratios, which come from the same run on the same
machine (absolute numbers mean little on a shared machine).

    .venv/bin/python benchmarks/pool_overhead.py [--operations 100000] [--repeats 5]

What is measured: one ``with pool.connection() as conn: pass`` per operation, single thread,
the connection always idle in the pool (the steady state of a busy client). The connection is
a plain object and the heartbeat does no I/O, so only the pool's own work is timed:

- ``queue.LifoQueue``: ``get_nowait()`` / ``put()`` in a context manager, no checks at all;
- ``rstsafe.Pool``, no validation: the default path within HikariCP's 500 ms window
  (expiry checks, counters, lock and condition);
- ``rstsafe.Pool``, validation on every borrow (``validate_after_idle=0``): adds the heartbeat
  call and its timing check;
- the same with a real heartbeat: a 1-byte round trip over loopback TCP to an echo thread,
  for scale: this is what the 500 ms bypass window saves on a busy connection.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from typing import Protocol

import rstsafe


class Connection:
    def close(self) -> None:
        pass


class QueuePool:
    """The simplest thread-safe pool: a LIFO queue of idle connections."""

    def __init__(self, connect: Callable[[], Connection]) -> None:
        self._connect = connect
        self._idle: queue.LifoQueue[Connection] = queue.LifoQueue()

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        try:
            conn = self._idle.get_nowait()
        except queue.Empty:
            conn = self._connect()
        try:
            yield conn
        finally:
            self._idle.put(conn)


def heartbeat(conn: Connection) -> None:
    pass


class EchoConnection(Connection):
    """A loopback TCP connection to a thread that echoes every byte back."""

    def __init__(self) -> None:
        with socket.create_server(("127.0.0.1", 0)) as listener:
            self.sock = socket.create_connection(listener.getsockname())
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            peer, _ = listener.accept()
        self._echo = threading.Thread(target=self._serve, args=(peer,), daemon=True)
        self._echo.start()

    @staticmethod
    def _serve(peer: socket.socket) -> None:
        with peer:
            while data := peer.recv(1):
                peer.sendall(data)

    def round_trip(self) -> None:
        self.sock.sendall(b"P")
        if self.sock.recv(1) != b"P":
            raise ConnectionError("no echo")

    def close(self) -> None:
        self.sock.close()
        self._echo.join()


class AnyPool(Protocol):
    def connection(self) -> AbstractContextManager[object]: ...


def per_operation(pool: AnyPool, operations: int, repeats: int) -> float:
    """Best-of-``repeats`` seconds per borrow/return."""
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        for _ in range(operations):
            with pool.connection():
                pass
        best = min(best, (time.perf_counter() - started) / operations)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    baseline = per_operation(QueuePool(Connection), args.operations, args.repeats)
    plain = rstsafe.Pool(Connection, heartbeat=heartbeat)
    validating = rstsafe.Pool(
        Connection, heartbeat=heartbeat, config=rstsafe.PoolConfig(validate_after_idle=0.0)
    )
    echoing = rstsafe.Pool(
        EchoConnection,
        heartbeat=EchoConnection.round_trip,
        close=EchoConnection.close,
        config=rstsafe.PoolConfig(validate_after_idle=0.0),
    )
    with plain, validating, echoing:
        no_validation = per_operation(plain, args.operations, args.repeats)
        with_validation = per_operation(validating, args.operations, args.repeats)
        with_round_trip = per_operation(echoing, max(1, args.operations // 10), args.repeats)

    rows = [
        ("queue.LifoQueue pool (baseline)", baseline),
        ("rstsafe.Pool, no validation (reused < 0.5 s)", no_validation),
        ("rstsafe.Pool, heartbeat on every borrow", with_validation),
        ("rstsafe.Pool, loopback round trip every borrow", with_round_trip),
    ]
    print(f"{args.operations} borrow/return operations, best of {args.repeats}")
    print(f"{'pool':<48} {'us/op':>8} {'x baseline':>11}")
    for name, seconds in rows:
        print(f"{name:<48} {seconds * 1e6:>8.2f} {seconds / baseline:>11.2f}")


if __name__ == "__main__":
    main()
