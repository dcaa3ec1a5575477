"""rstsafe.httpx against plain httpx: per-request overhead and throughput under concurrency.

Not a test: run it by hand and read the ratios, which come from the same run on the same
machine, the two clients interleaved round by round (absolute numbers mean little on a
shared machine).

    .venv/bin/python benchmarks/httpx_overhead.py [--requests 2000] [--rounds 7]

The server is nginx (``return 200``, keep-alive, in a temporary directory) in its own
process, so the client's cost is what differs; without nginx, a small threaded Python
server in a subprocess is used instead (slower, so ratios look better than they are).

Measured:

- sync: sequential GETs on one ``httpx.Client`` vs ``rstsafe.httpx.Client`` (one
  keep-alive connection), median seconds per request over the rounds;
- async: the same with ``AsyncClient`` on asyncio;
- concurrency: ``--tasks`` concurrent asyncio tasks over ``max_connections=20``, requests
  per second (median over rounds).

Ratios are rstsafe / plain: for time per request the target is <= 1.05, for throughput
>= 0.97. Results and their reading are in docs/httpx.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

import rstsafe.httpx

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout 75s;
    keepalive_requests 1000000;
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

PYTHON_SERVER = textwrap.dedent(
    """\
    import socket, sys, threading
    RESPONSE = b"HTTP/1.1 200 OK\\r\\nContent-Length: 3\\r\\n\\r\\nok\\n"
    def serve(conn):
        buf = b""
        with conn:
            while True:
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\\r\\n\\r\\n" in buf:
                    _, _, buf = buf.partition(b"\\r\\n\\r\\n")
                    conn.sendall(RESPONSE)
    listener = socket.create_server(("127.0.0.1", int(sys.argv[1])), backlog=512)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()
    """
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextlib.contextmanager
def server() -> Iterator[tuple[str, str]]:
    """Start the benchmark server; yield its URL and its name."""
    port = _free_port()
    with tempfile.TemporaryDirectory() as tmp:
        nginx = shutil.which("nginx") or (
            "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
        )
        if nginx is not None:
            conf = Path(tmp) / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, port=port))
            argv, name = [nginx, "-c", str(conf), "-p", tmp], "nginx"
        else:
            argv, name = [sys.executable, "-c", PYTHON_SERVER, str(port)], "python threads"
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 10
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port), 0.5).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"http://127.0.0.1:{port}/", name
        finally:
            process.terminate()
            process.wait(timeout=10)


def sync_per_request(client: httpx.Client, url: str, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        client.get(url)
    return (time.perf_counter() - started) / requests


async def async_per_request(client: httpx.AsyncClient, url: str, requests: int) -> float:
    started = time.perf_counter()
    for _ in range(requests):
        await client.get(url)
    return (time.perf_counter() - started) / requests


async def async_throughput(client: httpx.AsyncClient, url: str, requests: int, tasks: int) -> float:
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            await client.get(url)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(tasks)))
    return requests / (time.perf_counter() - started)


def _rounds(
    rounds: int, plain: Callable[[], float], safe: Callable[[], float]
) -> tuple[float, float]:
    plain_results: list[float] = []
    safe_results: list[float] = []
    for index in range(rounds):
        # Alternate which goes first, so drift on the machine hits both alike.
        order = [(plain, plain_results), (safe, safe_results)]
        for measure, results in order if index % 2 == 0 else reversed(order):
            results.append(measure())
    return statistics.median(plain_results), statistics.median(safe_results)


async def _async_rounds(
    rounds: int, plain: Callable[[], Awaitable[float]], safe: Callable[[], Awaitable[float]]
) -> tuple[float, float]:
    plain_results: list[float] = []
    safe_results: list[float] = []
    for index in range(rounds):
        order = [(plain, plain_results), (safe, safe_results)]
        for measure, results in order if index % 2 == 0 else reversed(order):
            results.append(await measure())
    return statistics.median(plain_results), statistics.median(safe_results)


@dataclass(frozen=True, slots=True)
class Figures:
    """Medians over rounds: seconds per request (sync, async) and requests per second."""

    server: str
    requests: int
    rounds: int
    tasks: int
    sync: tuple[float, float]  # (plain, rstsafe)
    async_: tuple[float, float]
    throughput: tuple[float, float]


async def _measure_async(
    url: str, requests: int, rounds: int, tasks: int
) -> tuple[tuple[float, float], tuple[float, float]]:
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=20)
    async with (
        httpx.AsyncClient(limits=limits) as plain,
        rstsafe.httpx.AsyncClient(limits=limits) as safe,
    ):
        await plain.get(url)
        await safe.get(url)
        per_request = await _async_rounds(
            rounds,
            lambda: async_per_request(plain, url, requests),
            lambda: async_per_request(safe, url, requests),
        )
        throughput = await _async_rounds(
            rounds,
            lambda: async_throughput(plain, url, requests, tasks),
            lambda: async_throughput(safe, url, requests, tasks),
        )
    return per_request, throughput


def measure(requests: int = 2000, rounds: int = 7, tasks: int = 50) -> Figures:
    """Run every measurement against one server; return the medians."""
    with server() as (url, name):
        with httpx.Client() as plain, rstsafe.httpx.Client() as safe:
            plain.get(url)  # connect and warm up
            safe.get(url)
            sync = _rounds(
                rounds,
                lambda: sync_per_request(plain, url, requests),
                lambda: sync_per_request(safe, url, requests),
            )
        per_request, throughput = asyncio.run(_measure_async(url, requests, rounds, tasks))
    return Figures(name, requests, rounds, tasks, sync, per_request, throughput)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7, help="rounds per client (median)")
    parser.add_argument("--tasks", type=int, default=50, help="concurrent tasks")
    args = parser.parse_args()

    figures = measure(args.requests, args.rounds, args.tasks)
    print(
        f"server: {figures.server}; {args.rounds} rounds of {args.requests} requests, interleaved"
    )
    for label, (p, s) in (("sync ", figures.sync), ("async", figures.async_)):
        print(
            f"{label}  per request: plain {p * 1e6:7.1f} us  rstsafe {s * 1e6:7.1f} us"
            f"  ratio {s / p:.3f}"
        )
    p, s = figures.throughput
    print(
        f"async  {args.tasks} tasks, 20 connections: plain {p:7.0f} req/s"
        f"  rstsafe {s:7.0f} req/s  ratio {s / p:.3f}"
    )


if __name__ == "__main__":
    main()
