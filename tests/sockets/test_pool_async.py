"""rstsafe.AsyncPool: the same decisions as Pool, driven by asyncio, over real loopback streams."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import pytest

import rstsafe
import rstsafe.sockets
from rstsafe import AsyncPool, PoolConfig
from rstsafe._core.clock import ManualClock
from rstsafe.sockets import DiscardReason

from .helpers import PATIENCE, PING, PONG, PongServer, loopback_listener


@dataclass(eq=False)
class Stream:
    """An asyncio connection: a reader and a writer, closed with aclose()."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def ping(self) -> None:
        self.writer.write(PING)
        await self.writer.drain()
        reply = await self.reader.readline()
        if reply != PONG:
            raise ConnectionError(f"expected +PONG, got {reply!r}")

    async def aclose(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    @property
    def closed(self) -> bool:
        return self.writer.is_closing()


def connector(address: tuple[str, int], made: list[Stream]) -> Callable[[], Awaitable[Stream]]:
    async def connect() -> Stream:
        reader, writer = await asyncio.open_connection(*address)
        stream = Stream(reader, writer)
        made.append(stream)
        return stream

    return connect


async def ping(stream: Stream) -> None:
    await stream.ping()


def test_async_pool_validates_reuses_and_counts(pong_server: PongServer) -> None:
    """New connections are pinged; reuse within 0.5 s is not; after idle it is again."""
    clock = ManualClock()
    made: list[Stream] = []

    async def main() -> AsyncPool[Stream]:
        async with AsyncPool(
            connector(pong_server.address, made), heartbeat=ping, clock=clock
        ) as pool:
            async with pool.connection() as first:
                await first.ping()
            async with pool.connection() as second:
                assert second is first
            clock.advance(1.0)
            async with pool.connection():
                pass
        return pool

    counters = asyncio.run(main()).counters
    assert (counters.created, counters.reused, counters.validated) == (1, 2, 2)
    assert counters.discarded[DiscardReason.POOL_CLOSED] == 1
    assert made[0].closed


def test_async_pool_replaces_a_connection_the_server_closed(pong_server: PongServer) -> None:
    """An idle connection the server dropped fails its heartbeat; the user gets a fresh one."""
    clock = ManualClock()
    made: list[Stream] = []

    async def main() -> rstsafe.sockets.PoolCounters:
        pool = AsyncPool(connector(pong_server.address, made), heartbeat=ping, clock=clock)
        try:
            async with pool.connection():
                pass
            made[0].writer.transport.abort()  # as if a middlebox had dropped it
            clock.advance(1.0)
            async with pool.connection() as conn:
                await conn.ping()
                assert conn is made[1]
            return pool.counters
        finally:
            await pool.aclose()

    counters = asyncio.run(main())
    assert counters.failed_validation == 1
    assert counters.discarded[DiscardReason.FAILED_VALIDATION] == 1


def test_async_heartbeat_is_cancelled_after_the_timeout() -> None:
    """A listener that never answers: the heartbeat is cancelled, the borrow fails clearly."""
    listener = loopback_listener()
    made: list[Stream] = []
    config = PoolConfig(heartbeat_timeout=0.2, max_connect_attempts=2)

    async def main() -> None:
        async with AsyncPool(
            connector(listener.getsockname(), made), heartbeat=ping, config=config
        ) as pool:
            with pytest.raises(rstsafe.sockets.NoHealthyConnectionError) as info:
                async with pool.connection():
                    pass
            assert [type(f) for f in info.value.failures] == [
                rstsafe.sockets.HeartbeatTimeoutError
            ] * 2

    try:
        asyncio.run(main())
    finally:
        listener.close()
    assert len(made) == 2
    assert all(stream.closed for stream in made)


def test_async_errors_and_cancellation_discard_the_connection(pong_server: PongServer) -> None:
    """A connection error or a cancellation inside the block discards the connection."""
    made: list[Stream] = []

    async def main() -> rstsafe.sockets.PoolCounters:
        async with AsyncPool(connector(pong_server.address, made), heartbeat=ping) as pool:
            with pytest.raises(ConnectionResetError):
                async with pool.connection():
                    raise ConnectionResetError(104, "Connection reset by peer")

            inside = asyncio.Event()

            async def hang() -> None:
                async with pool.connection():
                    inside.set()
                    await asyncio.sleep(PATIENCE)

            task = asyncio.create_task(hang())
            # Cancelled inside the block, not while the pool still connects or sends the
            # heartbeat (the pool counts those as in use too).
            await asyncio.wait_for(inside.wait(), PATIENCE)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            return pool.counters

    counters = asyncio.run(main())
    assert counters.discarded[DiscardReason.ERROR] == 2
    assert counters.in_use == 0
    assert all(stream.closed for stream in made)


def test_async_exhausted_pool_times_out_and_a_waiter_is_woken(pong_server: PongServer) -> None:
    """max_size=1: a second borrow times out; a waiter gets the connection once it returns."""
    made: list[Stream] = []

    async def main() -> None:
        config = PoolConfig(max_size=1, wait_timeout=0.2)
        pool = AsyncPool(connector(pong_server.address, made), config=config)
        async with pool, pool.connection():
            with pytest.raises(rstsafe.sockets.PoolTimeoutError):
                async with pool.connection():
                    pass
        # An hour: without the wake-up the waiter would outlive the 60 s test timeout.
        patient = PoolConfig(max_size=1, wait_timeout=3600.0)
        async with AsyncPool(connector(pong_server.address, made), config=patient) as pool:
            release = asyncio.Event()

            async def holder() -> None:
                async with pool.connection():
                    await release.wait()

            task = asyncio.create_task(holder())
            while pool.counters.in_use == 0:
                await asyncio.sleep(0.01)
            loop = asyncio.get_running_loop()
            loop.call_later(0.05, release.set)
            async with pool.connection() as conn:
                assert conn is made[-1]
            await task

    asyncio.run(main())
    assert len(made) == 2


def test_async_background_heartbeat_runs_and_stops_with_the_pool(pong_server: PongServer) -> None:
    """heartbeat_interval: the task pings idle connections and is cancelled by aclose()."""
    made: list[Stream] = []

    async def main() -> None:
        config = PoolConfig(heartbeat_interval=0.1)
        pool = AsyncPool(connector(pong_server.address, made), heartbeat=ping, config=config)
        async with pool:
            async with pool.connection():
                pass
            for _ in range(int(PATIENCE / 0.02)):
                if pool.counters.heartbeats >= 2:
                    break
                await asyncio.sleep(0.02)
            assert pool.counters.heartbeats >= 2
            maintainer = pool._maintainer
        assert maintainer is not None
        assert maintainer.done()
        await pool.aclose()  # idempotent
        with pytest.raises(rstsafe.sockets.PoolClosedError):
            async with pool.connection():
                pass

    asyncio.run(main())


def test_async_default_close_handles_sockets_and_aclose() -> None:
    """Without close=, a raw socket is closed gracefully and other objects via aclose()."""
    listener = loopback_listener()

    async def connect() -> socket.socket:
        return socket.create_connection(listener.getsockname(), timeout=PATIENCE)

    async def main() -> socket.socket:
        async with AsyncPool(connect) as pool, pool.connection() as sock:
            return sock

    try:
        sock = asyncio.run(main())
    finally:
        listener.close()
    assert sock.fileno() == -1


def test_cancelling_a_waiting_borrower_leaves_the_pool_consistent(pong_server: PongServer) -> None:
    """A borrower cancelled while it waits for a slot takes nothing with it."""
    made: list[Stream] = []

    async def main() -> rstsafe.sockets.PoolCounters:
        config = PoolConfig(max_size=1, wait_timeout=PATIENCE)
        async with AsyncPool(connector(pong_server.address, made), config=config) as pool:
            async with pool.connection() as held:

                async def waiter() -> None:
                    async with pool.connection():
                        pass

                task = asyncio.create_task(waiter())
                await asyncio.sleep(0.05)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            async with pool.connection() as again:
                assert again is held
            return pool.counters

    counters = asyncio.run(main())
    assert (counters.created, counters.reused) == (1, 1)


def test_async_pool_works_with_anyio_streams_on_the_asyncio_backend(
    pong_server: PongServer,
) -> None:
    """anyio's asyncio back end: anyio socket streams, closed by the default aclose()."""
    import anyio
    import anyio.abc

    made: list[anyio.abc.SocketStream] = []

    async def connect() -> anyio.abc.SocketStream:
        stream = await anyio.connect_tcp(*pong_server.address)
        made.append(stream)
        return stream

    async def heartbeat(stream: anyio.abc.SocketStream) -> None:
        await stream.send(PING)
        if await stream.receive() != PONG:
            raise ConnectionError("no PONG")

    async def main() -> None:
        async with AsyncPool(connect, heartbeat=heartbeat) as pool, pool.connection() as stream:
            await heartbeat(stream)

    anyio.run(main, backend="asyncio")
    assert len(made) == 1
    with pytest.raises(anyio.ClosedResourceError):
        anyio.run(made[0].send, b"x", backend="asyncio")
