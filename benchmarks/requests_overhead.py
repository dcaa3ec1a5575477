"""Per-request overhead of rstsafe.requests / rstsafe.urllib3 against plain requests / urllib3.

Not a test: run it by hand and read the ratios, which come from the same run on the same
machine (absolute numbers mean little on a shared machine).

    .venv/bin/python benchmarks/requests_overhead.py [--requests 2000] [--rounds 15]

What is measured: sequential GETs on one keep-alive connection to a loopback server that
answers every request with a fixed 2-byte response as fast as it can. The server runs in
another process (a raw-socket loop, no HTTP framework), so the time measured is the
client's: building the request, the pool, the connection, reading the response. Clients
are interleaved round by round (plain, rstsafe, plain, rstsafe...) so that machine noise
hits them alike, and each figure is the median over rounds of the mean time per request.

Two clocks: the client process's CPU time (``time.process_time``: the work done per
request, what the overhead ratio is about, and far less sensitive to other processes on
a shared machine) and wall time (``time.perf_counter``, which includes the server's
turn and the scheduler's noise).
"""

from __future__ import annotations

import argparse
import multiprocessing
import selectors
import socket
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import requests
import urllib3

import rstsafe.requests
import rstsafe.urllib3

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def serve(listener: socket.socket) -> None:
    """Answer every request head on every connection with RESPONSE (runs in a child)."""
    selector = selectors.DefaultSelector()
    listener.setblocking(False)
    selector.register(listener, selectors.EVENT_READ)
    buffers: dict[socket.socket, bytes] = {}
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if sock is listener:
                conn, _ = listener.accept()
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                selector.register(conn, selectors.EVENT_READ)
                buffers[conn] = b""
                continue
            data = sock.recv(65536)
            if not data:
                selector.unregister(sock)
                sock.close()
                del buffers[sock]
                continue
            buffer = buffers[sock] + data
            count = buffer.count(b"\r\n\r\n")
            if count:
                sock.sendall(RESPONSE * count)
                buffer = buffer[buffer.rindex(b"\r\n\r\n") + 4 :]
            buffers[sock] = buffer


Client = Callable[[], object]


def clients(url: str) -> dict[str, tuple[Client, Callable[[], object]]]:
    """Name -> (send one GET, close)."""
    plain_session = requests.Session()
    rstsafe_session = rstsafe.requests.Session()
    plain_manager = urllib3.PoolManager()
    rstsafe_manager = rstsafe.urllib3.PoolManager()

    def get(session: requests.Session) -> Client:
        return lambda: session.get(url).content

    def request(manager: urllib3.PoolManager) -> Client:
        return lambda: manager.request("GET", url).data

    return {
        "requests": (get(plain_session), plain_session.close),
        "rstsafe.requests": (get(rstsafe_session), rstsafe_session.close),
        "urllib3": (request(plain_manager), plain_manager.clear),
        "rstsafe.urllib3": (request(rstsafe_manager), rstsafe_manager.clear),
    }


@dataclass(frozen=True, slots=True)
class Figures:
    """Seconds per request of each client, one sample per round (CPU and wall clocks)."""

    requests: int
    rounds: int
    cpu: dict[str, list[float]]
    wall: dict[str, list[float]]

    def ratio(self, ours: str, plain: str, clock: str = "cpu") -> float:
        """Median time per request of ``ours`` over that of ``plain``."""
        samples = self.cpu if clock == "cpu" else self.wall
        return statistics.median(samples[ours]) / statistics.median(samples[plain])


#: (rstsafe client, plain client) pairs whose ratio is the overhead.
PAIRS = (("rstsafe.requests", "requests"), ("rstsafe.urllib3", "urllib3"))


def measure(requests_per_round: int = 2000, rounds: int = 15, warmup: int = 200) -> Figures:
    """Run the benchmark (server in a child process) and return the per-round samples."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.listen(64)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/bench"
    server = multiprocessing.get_context("fork").Process(target=serve, args=(listener,))
    server.daemon = True
    server.start()
    listener.close()
    try:
        made = clients(url)
        for send, _ in made.values():  # warm up: connect, fill caches
            for _ in range(warmup):
                send()
        cpu: dict[str, list[float]] = {name: [] for name in made}
        wall: dict[str, list[float]] = {name: [] for name in made}
        for _ in range(rounds):
            for name, (send, _) in made.items():
                started, started_cpu = time.perf_counter(), time.process_time()
                for _ in range(requests_per_round):
                    send()
                cpu[name].append((time.process_time() - started_cpu) / requests_per_round)
                wall[name].append((time.perf_counter() - started) / requests_per_round)
        for _, close in made.values():
            close()
    finally:
        server.terminate()
        server.join(5)
    return Figures(requests_per_round, rounds, cpu, wall)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=15, help="rounds (median taken)")
    args = parser.parse_args()

    figures = measure(args.requests, args.rounds)
    cpu, wall = figures.cpu, figures.wall
    print(f"{args.rounds} rounds x {args.requests} GETs, per request (median, best round):")
    print(f"  {'client':18} {'CPU':>20} {'wall':>20}")
    for name in cpu:
        row = [
            f"{statistics.median(samples[name]) * 1e6:6.1f} us ({min(samples[name]) * 1e6:6.1f})"
            for samples in (cpu, wall)
        ]
        print(f"  {name:18} {row[0]:>20} {row[1]:>20}")
    for ours, plain in PAIRS:
        for label, samples in (("CPU", cpu), ("wall", wall)):
            ratios = [o / p for o, p in zip(samples[ours], samples[plain], strict=True)]
            ratio = statistics.median(samples[ours]) / statistics.median(samples[plain])
            best = min(samples[ours]) / min(samples[plain])
            print(
                f"  {ours} / {plain} ({label}): {ratio:.3f}, best rounds {best:.3f}"
                f" (per-round ratios: median {statistics.median(ratios):.3f},"
                f" min {min(ratios):.3f}, max {max(ratios):.3f})"
            )


if __name__ == "__main__":
    main()
