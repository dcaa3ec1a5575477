"""Retry amplification against a broken origin (issue 16).

A backend that resets every connection must not get several times its traffic from
clients that retry. 32 threads share one client and send 20 GETs each (640 requests)
to a local misbehaving server; the server counts what reached it:

- ``reset-unread``: every connection is reset as soon as a request arrives (nothing is
  executed): connections per request are attempts per request.
- ``process-then-reset``: every request is executed, then its connection is reset
  without an answer: executions per request are the load the backend carried.
- ``close-after-1``: every connection answers one request and is reset right after it,
  without ``Connection: close``: a pool that reuses it before the RST lands meets a
  stale connection, so this row shows what stale retries cost.

Default settings (requests' pools of 10, httpx's limits), plain clients beside rstsafe's,
same process, same server. No timing: counts only.

    python benchmarks/section_amplification.py            # the table
    python benchmarks/section_amplification.py --json     # one JSON object per row

``benchmarks/run_all.py`` runs it as the ``amplification`` section of the benchmarks page.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass

from rstsafe.testing import (
    Behaviour,
    CloseAfterRequests,
    MisbehavingServer,
    ProcessThenReset,
    ResetUnread,
)

THREADS = 32
PER_THREAD = 20

#: Behaviours by row name.
BEHAVIOURS: dict[str, Callable[[], Behaviour]] = {
    "reset-unread": ResetUnread,
    "process-then-reset": lambda: ProcessThenReset(reset=True),
    "close-after-1": lambda: CloseAfterRequests(count=1, reset=True),
}


@dataclass(frozen=True)
class Row:
    """One client against one behaviour: what the server saw per request sent."""

    behaviour: str
    client: str
    requests: int
    connections: int
    executions: int
    failed: int
    errors: str

    @property
    def connections_per_request(self) -> float:
        return self.connections / self.requests

    @property
    def executions_per_request(self) -> float:
        return self.executions / self.requests


def _session_get(client_name: str) -> tuple[Callable[[str], object], Callable[[], None]]:
    """A ``get(url)`` callable on one shared client, and its ``close``."""
    if client_name.endswith(" max_retries=3"):
        # The host's own retries, asked for by the user: the host's to decide (the contract),
        # so rstsafe must make exactly what plain requests makes.
        import requests

        if client_name.startswith("plain"):
            session = requests.Session()
            adapter: requests.adapters.HTTPAdapter = requests.adapters.HTTPAdapter(max_retries=3)
        else:
            import rstsafe.requests

            session = rstsafe.requests.Session()
            adapter = rstsafe.requests.HTTPAdapter(max_retries=3)
        session.mount("http://", adapter)
        return (lambda url: session.get(url, timeout=5)), session.close
    if client_name in ("plain requests", "rstsafe requests"):
        import requests

        if client_name == "plain requests":
            session = requests.Session()
        else:
            import rstsafe.requests

            session = rstsafe.requests.Session()
        return (lambda url: session.get(url, timeout=5)), session.close
    if client_name in ("plain httpx", "rstsafe httpx"):
        import httpx

        if client_name == "plain httpx":
            client = httpx.Client(timeout=5)
        else:
            import rstsafe.httpx

            client = rstsafe.httpx.Client(timeout=5)
        return client.get, client.close
    raise ValueError(f"unknown client {client_name!r}")


CLIENTS = (
    "plain requests",
    "rstsafe requests",
    "plain httpx",
    "rstsafe httpx",
    "plain requests max_retries=3",
    "rstsafe requests max_retries=3",
)


def measure(
    behaviour_name: str, client_name: str, threads: int = THREADS, per_thread: int = PER_THREAD
) -> Row:
    """Run ``threads`` x ``per_thread`` GETs through one client; count what the server saw."""
    errors: Counter[str] = Counter()
    lock = threading.Lock()
    with MisbehavingServer(BEHAVIOURS[behaviour_name]()) as server:
        get, close = _session_get(client_name)
        start = threading.Barrier(threads)

        def worker() -> None:
            start.wait()
            for _ in range(per_thread):
                try:
                    get(server.url + "/")
                except Exception as exc:
                    with lock:
                        errors[type(exc).__name__] += 1

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        close()
        connections = len(server.connections)
        executions = len(server.executed)
    return Row(
        behaviour=behaviour_name,
        client=client_name,
        requests=threads * per_thread,
        connections=connections,
        executions=executions,
        failed=sum(errors.values()),
        errors=", ".join(f"{count} {name}" for name, count in errors.most_common()),
    )


#: Issue 16's bound: attempts per request against an origin that resets every connection.
TARGET = 1.5


def run() -> list[Row]:
    """Every behaviour against every client."""
    return [measure(behaviour, client) for behaviour in BEHAVIOURS for client in CLIENTS]


def _rstsafe_defaults(rows: list[Row]) -> list[Row]:
    return [r for r in rows if r.client in ("rstsafe requests", "rstsafe httpx")]


def summary(rows: list[Row]) -> str:
    """One line for the report's summary."""
    worst = max((r.connections_per_request for r in _rstsafe_defaults(rows)), default=0.0)
    verdict = "met" if worst <= TARGET else "NOT met"
    return (
        f"Retry amplification (target: at most {TARGET:g} attempts per request against an "
        f"origin that resets every connection, {THREADS} threads x {PER_THREAD} GETs): "
        f"{verdict}, worst {worst:.2f} for rstsafe's defaults."
    )


def render(rows: list[Row]) -> str:
    """The section's markdown."""
    lines = [
        "## Retry amplification",
        "",
        f"{THREADS} threads share one client and send {PER_THREAD} GETs each to a server that "
        "breaks every connection; the server counts connections (one attempt each) and "
        "executions. Default settings unless the client's name says otherwise. Target "
        f"(issue 16): rstsafe's defaults at most {TARGET:g} attempts per request. The "
        "`max_retries=3` rows show the host's own retries, which stay the host's to decide "
        "([the contract](contract.md)).",
        "",
        "- `reset-unread`: every connection is reset as soon as a request arrives.",
        "- `process-then-reset`: every request is executed, then its connection is reset "
        "unanswered.",
        "- `close-after-1`: each connection answers one request and is reset right after it "
        "(no `Connection: close`).",
        "",
        "| behaviour | client | attempts (connections) / request | executions / request | failed |",
        "|---|---|---:|---:|---|",
    ]
    for row in rows:
        failed = f"{row.failed} ({row.errors})" if row.failed else "0"
        lines.append(
            f"| {row.behaviour} | {row.client} | {row.connections_per_request:.2f}"
            f" | {row.executions_per_request:.2f} | {failed} |"
        )
    lines.append("")
    return "\n".join(lines)


def as_json(rows: list[Row]) -> list[dict[str, object]]:
    """The rows' figures (for ``--json``)."""
    return [
        {
            **asdict(r),
            "connections_per_request": r.connections_per_request,
            "executions_per_request": r.executions_per_request,
        }
        for r in rows
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="one JSON object per row")
    parser.add_argument("--client", action="append", choices=CLIENTS, help="only these clients")
    parser.add_argument(
        "--behaviour", action="append", choices=list(BEHAVIOURS), help="only these behaviours"
    )
    args = parser.parse_args(argv)
    rows = [
        measure(behaviour, client)
        for behaviour in args.behaviour or BEHAVIOURS
        for client in args.client or CLIENTS
    ]
    if args.json:
        for record in as_json(rows):
            print(json.dumps(record))
        return 0
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
