"""httpx's connection limits hold for rstsafe.httpx: never more open sockets than allowed."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator

import anyio
import httpx
import psutil
import pytest

import rstsafe.httpx
from rstsafe.testing import Execution, IdleCloseWithLag, MisbehavingServer, ServerEvent

pytestmark = pytest.mark.anyio

LIMIT = 20


class SocketCounter:
    """The most client sockets to one port this process had open at once.

    Counted from the kernel's table (psutil: every TCP socket with a descriptor in this
    process, in any state), by a thread every millisecond and at the first request the
    server executes on each connection (from its threads). Server-side sockets are not
    counted: their remote port is the client's.
    """

    def __init__(self) -> None:
        self.port = 0
        self.most = 0
        self.samples = 0
        self._lock = threading.Lock()
        self._connections: set[int] = set()
        self._process = psutil.Process()

    def sample(self) -> None:
        if not self.port:
            return
        connections = self._process.net_connections(kind="tcp")
        count = sum(1 for c in connections if c.raddr and c.raddr.port == self.port)
        with self._lock:
            self.most = max(self.most, count)
            self.samples += 1

    def on_event(self, event: ServerEvent) -> None:
        # At the first request of each connection: when a new socket is surely open and
        # the ones it replaced may not be closed yet. (Sampling at every request slows
        # the server's threads down.)
        if isinstance(event, Execution):
            with self._lock:
                first = event.connection_id not in self._connections
                self._connections.add(event.connection_id)
            if first:
                self.sample()

    def run(self, stop: threading.Event) -> None:
        while not stop.wait(0.001):
            self.sample()


@pytest.fixture
def counted_server() -> Iterator[tuple[MisbehavingServer, SocketCounter]]:
    """A server closing connections idle 1 s with an RST 1 s later, and a socket counter."""
    counter = SocketCounter()
    behaviour = IdleCloseWithLag(idle=1.0, lag=1.0)
    with MisbehavingServer(behaviour, on_event=counter.on_event) as server:
        counter.port = server.address[1]
        stop = threading.Event()
        thread = threading.Thread(target=counter.run, args=(stop,))
        thread.start()
        try:
            yield server, counter
        finally:
            stop.set()
            thread.join()


async def test_thousand_tasks_never_open_more_sockets_than_max_connections(
    counted_server: tuple[MisbehavingServer, SocketCounter],
) -> None:
    """1,000 concurrent GETs per wave on max_connections=20: at most 20 sockets ever open.

    Between waves every pooled connection goes stale at once; rstsafe's expiry closes
    them all, and the new connections wait for those sockets to close (plain rstsafe
    before the gate: up to 30 open). No duplicate execution, no pool timeout.
    """
    server, counter = counted_server
    limits = httpx.Limits(max_connections=LIMIT, max_keepalive_connections=LIMIT)
    outcomes: Counter[str] = Counter()
    async with rstsafe.httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one(index: int) -> None:
            try:
                response = await client.get(f"{server.url}/c/{index}")
            except httpx.TransportError as exc:  # counted, then checked below
                outcomes[type(exc).__name__] += 1
            else:
                outcomes[str(response.status_code)] += 1

        for wave in range(3):
            async with anyio.create_task_group() as group:
                for index in range(wave * 1000, wave * 1000 + 1000):
                    group.start_soon(one, index)
            await anyio.sleep(1.2)  # past the server's idle timer: the pool goes stale
    time.sleep(0.01)
    assert counter.samples > 100
    assert 0 < counter.most <= LIMIT
    # A fresh connection the server closed before its first request (a busy event loop)
    # is httpx's error, passed through; everything else succeeds, nothing runs twice.
    assert outcomes["200"] >= 2990
    assert set(outcomes) <= {"200", "ReadError", "RemoteProtocolError"}
    assert server.executions() == outcomes["200"]
    assert all(server.executions(path=f"/c/{i}") <= 1 for i in range(0, 3000, 97))
