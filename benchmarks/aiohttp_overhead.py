"""rstsafe.aiohttp against plain aiohttp: per-request overhead and throughput under concurrency.

Not a test: run it by hand and read the ratios, which come from the same run on the same
machine, the two sessions interleaved round by round (absolute numbers mean little on a
shared machine).

    .venv/bin/python benchmarks/aiohttp_overhead.py [--requests 1000] [--rounds 15]

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
>= 0.97. The headline ratio is the ratio of the two medians; on a machine shared with
other jobs it moves by 10 % from run to run, so each round of rstsafe is also paired with
the plain round run right before or after it (the two see the same load) and the paired
ratios' quartiles are given as the spread. For the benchmarks page:
``aiohttp_overhead.measure(requests, rounds, tasks)`` returns a dict (``server``,
``requests``, ``rounds``, ``tasks``, ``per_request`` and ``throughput`` as ``(plain,
rstsafe)`` pairs, both ratios, and ``*_paired`` as the paired ratios' (lower quartile,
median, upper quartile)).
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


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    """(lower quartile, median, upper quartile); the median three times for one value."""
    if len(values) < 2:
        return (values[0],) * 3
    low, middle, high = statistics.quantiles(values, n=4)
    return low, middle, high


async def _rounds(
    rounds: int, plain: Callable[[], Awaitable[Timing]], safe: Callable[[], Awaitable[Timing]]
) -> dict[str, Any]:
    plain_results: list[Timing] = []
    safe_results: list[Timing] = []
    for index in range(rounds):
        # Alternate which goes first, so drift on the machine hits both alike.
        order = [(plain, plain_results), (safe, safe_results)]
        for run, results in order if index % 2 == 0 else reversed(order):
            results.append(await run())
    figures: dict[str, Any] = {}
    for column, kind in enumerate(("wall", "cpu")):
        figures[kind] = (
            statistics.median(r[column] for r in plain_results),
            statistics.median(r[column] for r in safe_results),
        )
        # Round i of each side ran back to back: their ratio is free of slow drift.
        figures[f"{kind}_paired"] = _quartiles(
            [s[column] / p[column] for p, s in zip(plain_results, safe_results, strict=True)]
        )
    return figures


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
        "per_request_paired": sequential["wall_paired"],
        "throughput_paired": concurrent["wall_paired"],
        "per_request_cpu_paired": sequential["cpu_paired"],
        "throughput_cpu_paired": concurrent["cpu_paired"],
    }


def measure(requests: int = 1000, rounds: int = 15, tasks: int = 50) -> dict[str, Any]:
    """Run both measurements against one server; return the medians and the ratios."""
    with server() as (url, name):
        figures = asyncio.run(_measure(url, requests, rounds, tasks))
    figures["server"] = name
    figures["aiohttp"] = aiohttp.__version__
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds per session (median)")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent tasks")
    args = parser.parse_args()

    figures = measure(args.requests, args.rounds, args.tasks)
    print(
        f"server: {figures['server']}; aiohttp {figures['aiohttp']}; {args.rounds} rounds"
        f" of {args.requests} requests, interleaved"
    )
    for suffix, label in (("", "wall"), ("_cpu", "user CPU")):
        p, s = figures[f"per_request{suffix}"]
        low, mid, high = figures[f"per_request{suffix}_paired"]
        print(
            f"{label} per request: plain {p * 1e6:7.1f} us  rstsafe {s * 1e6:7.1f} us"
            f"  ratio {figures[f'per_request{suffix}_ratio']:.3f}"
            f"  (paired {mid:.3f}, quartiles {low:.3f}-{high:.3f})"
        )
        p, s = figures[f"throughput{suffix}"]
        low, mid, high = figures[f"throughput{suffix}_paired"]
        print(
            f"{label} {args.tasks} tasks, {CONNECTIONS} connections: plain {p:7.0f} req/s"
            f"  rstsafe {s:7.0f} req/s  ratio {figures[f'throughput{suffix}_ratio']:.3f}"
            f"  (paired {mid:.3f}, quartiles {low:.3f}-{high:.3f})"
        )


if __name__ == "__main__":
    main()
