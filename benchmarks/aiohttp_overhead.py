"""rstsafe.aiohttp against plain aiohttp: per-request overhead and throughput under concurrency.

Not a test: run it by hand and read the ratios, which come from the same run on the same
machine, the two sessions interleaved round by round (absolute numbers mean little on a
shared machine).

    .venv/bin/python benchmarks/aiohttp_overhead.py [--requests 2000] [--rounds 7]

The server is the one of ``httpx_overhead.py`` (nginx ``return 200`` in its own process;
a threaded Python server when nginx is missing), so the client's cost is what differs.

Measured, in one asyncio run:

- per request: sequential GETs, body read, on one ``aiohttp.ClientSession`` vs one
  ``rstsafe.aiohttp.ClientSession`` (one keep-alive connection), median seconds per
  request over the rounds;
- throughput: ``--tasks`` (50) concurrent tasks sharing one session with a connector
  limit of 20 connections, requests per second (median over rounds).

Both are given in wall time and in this process's user CPU time: on a machine shared
with other jobs the CPU figures are the steadier reading of what the client costs.

Ratios are rstsafe / plain: for time per request the target is <= 1.05, for throughput
>= 0.97. For the benchmarks page: ``aiohttp_overhead.measure(requests, rounds, tasks)``
returns a dict (``server``, ``requests``, ``rounds``, ``tasks``, ``per_request`` and
``throughput`` as ``(plain, rstsafe)`` pairs, and both ratios).
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from httpx_overhead import server

import rstsafe.aiohttp

CONNECTIONS = 20


Timing = tuple[float, float]  # (wall seconds, user CPU seconds of this process)


def _user_cpu() -> float:
    """User-mode CPU seconds of this process: the client's own work, without the kernel's.

    On loopback, ``send()`` runs the receiving side's network stack in the sender's
    system time, and on a shared machine that varies with everything else running;
    the user time is what the client library itself costs.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_utime


async def per_request(session: aiohttp.ClientSession, url: str, requests: int) -> Timing:
    """Wall and CPU seconds per sequential GET (body read)."""
    wall, cpu = time.perf_counter(), _user_cpu()
    for _ in range(requests):
        async with session.get(url) as response:
            await response.read()
    return (
        (time.perf_counter() - wall) / requests,
        (_user_cpu() - cpu) / requests,
    )


async def throughput(session: aiohttp.ClientSession, url: str, requests: int, tasks: int) -> Timing:
    """Requests per wall second and per CPU second, ``tasks`` tasks sharing ``requests`` GETs."""
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            async with session.get(url) as response:
                await response.read()

    wall, cpu = time.perf_counter(), _user_cpu()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return (
        requests / (time.perf_counter() - wall),
        requests / max(_user_cpu() - cpu, 1e-9),
    )


async def _rounds(
    rounds: int, plain: Callable[[], Awaitable[Timing]], safe: Callable[[], Awaitable[Timing]]
) -> dict[str, tuple[float, float]]:
    plain_results: list[Timing] = []
    safe_results: list[Timing] = []
    for index in range(rounds):
        # Alternate which goes first, so drift on the machine hits both alike.
        order = [(plain, plain_results), (safe, safe_results)]
        for run, results in order if index % 2 == 0 else reversed(order):
            results.append(await run())
    return {
        kind: (
            statistics.median(r[column] for r in plain_results),
            statistics.median(r[column] for r in safe_results),
        )
        for column, kind in enumerate(("wall", "cpu"))
    }


async def _measure(url: str, requests: int, rounds: int, tasks: int) -> dict[str, Any]:
    plain_connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    safe_connector = rstsafe.aiohttp.TCPConnector(limit=CONNECTIONS)
    async with (
        aiohttp.ClientSession(connector=plain_connector) as plain,
        rstsafe.aiohttp.ClientSession(connector=safe_connector) as safe,
    ):
        for session in (plain, safe):  # connect and warm up
            await throughput(session, url, CONNECTIONS * 10, CONNECTIONS)
        sequential = await _rounds(
            rounds,
            lambda: per_request(plain, url, requests),
            lambda: per_request(safe, url, requests),
        )
        concurrent = await _rounds(
            rounds,
            lambda: throughput(plain, url, requests, tasks),
            lambda: throughput(safe, url, requests, tasks),
        )
    return {
        "requests": requests,
        "rounds": rounds,
        "tasks": tasks,
        "connections": CONNECTIONS,
        "per_request": sequential["wall"],
        "throughput": concurrent["wall"],
        "per_request_ratio": sequential["wall"][1] / sequential["wall"][0],
        "throughput_ratio": concurrent["wall"][1] / concurrent["wall"][0],
        "per_request_cpu": sequential["cpu"],
        "throughput_cpu": concurrent["cpu"],
        "per_request_cpu_ratio": sequential["cpu"][1] / sequential["cpu"][0],
        "throughput_cpu_ratio": concurrent["cpu"][1] / concurrent["cpu"][0],
    }


def measure(requests: int = 2000, rounds: int = 7, tasks: int = 50) -> dict[str, Any]:
    """Run both measurements against one server; return the medians and the ratios."""
    with server() as (url, name):
        figures = asyncio.run(_measure(url, requests, rounds, tasks))
    figures["server"] = name
    figures["aiohttp"] = aiohttp.__version__
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per session (median)")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent tasks")
    args = parser.parse_args()

    figures = measure(args.requests, args.rounds, args.tasks)
    print(
        f"server: {figures['server']}; aiohttp {figures['aiohttp']}; {args.rounds} rounds"
        f" of {args.requests} requests, interleaved"
    )
    for suffix, label in (("", "wall"), ("_cpu", "user CPU")):
        p, s = figures[f"per_request{suffix}"]
        print(
            f"{label} per request: plain {p * 1e6:7.1f} us  rstsafe {s * 1e6:7.1f} us"
            f"  ratio {figures[f'per_request{suffix}_ratio']:.3f}"
        )
        p, s = figures[f"throughput{suffix}"]
        print(
            f"{label} {args.tasks} tasks, {CONNECTIONS} connections: plain {p:7.0f} req/s"
            f"  rstsafe {s:7.0f} req/s  ratio {figures[f'throughput{suffix}_ratio']:.3f}"
        )


if __name__ == "__main__":
    main()
