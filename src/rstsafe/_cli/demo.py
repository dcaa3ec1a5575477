"""``rstsafe demo``: every way a server resets a connection, against every client.

For each behaviour of :mod:`rstsafe.testing` the demo starts a
:class:`~rstsafe.testing.MisbehavingServer` in-process and runs the same short workload
(GETs and POSTs, paced against the behaviour's timers) with each client, each against
a server of its own so the server's accounting is per client. It prints one table:
per behaviour and client, the requests that failed (and with what), and the POSTs
the server executed more than once.

Every scenario runs at the same time, in threads, so the demo takes as long as its
slowest scenario (a few seconds), not their sum.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from rstsafe.testing import (
    AbortiveClose,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    Behaviour,
    BlackHole,
    CloseAfterRequests,
    EarlyResponse,
    Healthy,
    IdleCloseWithLag,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
    behaviour_name,
)

if TYPE_CHECKING:
    from argparse import _SubParsersAction

__all__ = (
    "SCENARIOS",
    "Cell",
    "Outcome",
    "Scenario",
    "Send",
    "Step",
    "alternating",
    "run_demo",
    "run_paced",
)

# A body large enough that the client is still uploading when an early response
# arrives: loopback socket buffers hold a few MiB.
_LARGE_BODY = b"u" * (8 * 1024 * 1024)


@dataclass(frozen=True, slots=True, kw_only=True)
class Step:
    """One request of a scenario's workload, sent ``pause`` seconds after the last."""

    method: str
    path: str
    pause: float = 0.0
    body: bytes | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A behaviour, the workload that exposes it, and the per-request timeout."""

    behaviour: Behaviour
    steps: tuple[Step, ...]
    timeout: float = 5.0
    label: str | None = None

    @property
    def name(self) -> str:
        """The row's title: ``label``, or the behaviour's command-line name."""
        return self.label if self.label is not None else behaviour_name(self.behaviour)


@dataclass(slots=True)
class Outcome:
    """What a paced run got: the status of each request by index, and the exceptions."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: dict[int, BaseException] = field(default_factory=dict)

    @property
    def failed(self) -> list[int]:
        """Indexes of the requests that raised."""
        return sorted(self.errors)


#: Sends one step and returns the response status.
Send = Callable[[Step], int]


def run_paced(send: Send, steps: Sequence[Step]) -> Outcome:
    """Send every step after its pause; record statuses and exceptions (never raises)."""
    outcome = Outcome()
    for index, step in enumerate(steps):
        if step.pause:
            time.sleep(step.pause)
        try:
            outcome.statuses[index] = send(step)
        except Exception as exc:  # every failure is a result to report
            outcome.errors[index] = exc
    return outcome


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """The result of one client against one scenario."""

    requests: int
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    duplicates: int = 0
    unavailable: str | None = None

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def render(self) -> str:
        if self.unavailable is not None:
            return self.unavailable
        if not self.errors:
            text = f"ok {self.requests}/{self.requests}"
            unusual = sorted(s for s in self.statuses if s != 200)
            if unusual:
                text += " (" + ", ".join(str(s) for s in unusual) + ")"
        else:
            # The root cause is what people search for; the JSON output has the full names.
            (name, _), *_ = self.errors.most_common(1)
            root = name.rpartition("(")[2].rstrip(")") or name
            text = f"{self.failed}/{self.requests} failed {root}"
        if self.duplicates:
            text += f", {self.duplicates} dup POST"
        return text


def alternating(
    count: int, pause: float, *, methods: tuple[str, ...] = ("GET", "POST")
) -> tuple[Step, ...]:
    """``count`` requests cycling through ``methods``, each path unique, ``pause`` apart."""
    steps = []
    for index in range(count):
        method = methods[index % len(methods)]
        path = f"/items/{index}" if method in ("GET", "HEAD") else f"/orders/{index}"
        body = None if method in ("GET", "HEAD") else b'{"order": %d}' % index
        steps.append(Step(method=method, path=path, body=body, pause=pause if index else 0.0))
    return tuple(steps)


# The workloads pace requests against each behaviour's timers: an idle timer of 0.3 s
# with pauses of 0.6 s puts every request after the first on a connection the server
# has given up on. The margins (0.3 s either side, a 1.2 s lag window) keep the
# outcome the same on a loaded machine.
SCENARIOS: tuple[Scenario, ...] = (
    Scenario(behaviour=Healthy(keepalive=0.3), steps=alternating(6, 0.6)),
    Scenario(behaviour=IdleCloseWithLag(idle=0.3, lag=1.2), steps=alternating(6, 0.6)),
    Scenario(
        behaviour=IdleCloseWithLag(idle=0.3, lag=1.2, advertised=0.3),
        steps=alternating(6, 0.6),
        label="idle-close-with-lag + Keep-Alive header",
    ),
    Scenario(behaviour=IdleDrop(idle=0.3), steps=alternating(6, 0.6)),
    Scenario(behaviour=CloseAfterRequests(count=2, reset=True), steps=alternating(6, 0.2)),
    Scenario(behaviour=ProcessThenReset(), steps=alternating(4, 0.0)),
    Scenario(behaviour=ResetUnread(), steps=alternating(4, 0.0)),
    Scenario(
        behaviour=EarlyResponse(),
        steps=tuple(Step(method="POST", path=f"/upload/{i}", body=_LARGE_BODY) for i in range(2)),
    ),
    Scenario(behaviour=TruncatedBody(), steps=alternating(4, 0.0)),
    Scenario(behaviour=BlackHole(), steps=alternating(2, 0.0), timeout=0.5),
    Scenario(behaviour=AcceptQueueOverflow(), steps=alternating(2, 0.0), timeout=0.5),
    Scenario(behaviour=AbortiveClose(), steps=alternating(6, 0.2)),
    Scenario(behaviour=AdvertiseKeepAlive(advertised=5.0, actual=0.3), steps=alternating(6, 0.6)),
    Scenario(behaviour=Refuse(), steps=alternating(2, 0.0), timeout=0.5),
)


class DemoClient(Protocol):
    """A client under test: sends one request and returns its status code."""

    def request(self, step: Step, url: str, timeout: float) -> int: ...

    def close(self) -> None: ...


#: Factories of the demo's columns, by column title. A factory returns ``None`` when
#: the client's library is not installed.
ClientFactory = Callable[[], "DemoClient | None"]


class _PlainRequests:
    def __init__(self) -> None:
        import requests

        self._session = requests.Session()

    def request(self, step: Step, url: str, timeout: float) -> int:
        response = self._session.request(step.method, url, data=step.body, timeout=timeout)
        return int(response.status_code)

    def close(self) -> None:
        self._session.close()


class _NaiveRetryRequests(_PlainRequests):
    """requests with a common but unsafe setting: retry every method on any error."""

    def __init__(self) -> None:
        super().__init__()
        from requests.adapters import HTTPAdapter
        from urllib3.util.retry import Retry

        retry = Retry(total=2, allowed_methods=None, backoff_factor=0)
        self._session.mount("http://", HTTPAdapter(max_retries=retry))


class _PlainHttpx:
    def __init__(self) -> None:
        import httpx

        self._client = httpx.Client()

    def request(self, step: Step, url: str, timeout: float) -> int:
        response = self._client.request(step.method, url, content=step.body, timeout=timeout)
        return response.status_code

    def close(self) -> None:
        self._client.close()


class _RstsafeRequests(_PlainRequests):
    """rstsafe.requests.Session with its defaults."""

    def __init__(self) -> None:
        import rstsafe.requests

        self._session = rstsafe.requests.Session()


class _RstsafeHttpx(_PlainHttpx):
    """rstsafe.httpx.Client with its defaults."""

    def __init__(self) -> None:
        import rstsafe.httpx

        self._client = rstsafe.httpx.Client()


def _optional(factory: Callable[[], DemoClient]) -> ClientFactory:
    def make() -> DemoClient | None:
        try:
            return factory()
        except ImportError:
            return None

    return make


CLIENTS: dict[str, ClientFactory] = {
    "plain requests": _optional(_PlainRequests),
    "requests, retry all": _optional(_NaiveRetryRequests),
    "rstsafe requests": _optional(_RstsafeRequests),
    "plain httpx": _optional(_PlainHttpx),
    "rstsafe httpx": _optional(_RstsafeHttpx),
}


def _error_name(exc: BaseException) -> str:
    """``Outer(Root)``: the exception the user catches and the OS-level cause under it."""
    outer = type(exc).__name__
    root: BaseException = exc
    seen: set[int] = set()
    while id(root) not in seen:
        seen.add(id(root))
        nxt = root.__cause__ or root.__context__
        if nxt is None:
            # urllib3 and requests keep the cause in args, not in __cause__.
            nested = [a for a in getattr(root, "args", ()) if isinstance(a, BaseException)]
            reason = getattr(root, "reason", None)
            if isinstance(reason, BaseException):
                nested.insert(0, reason)
            if not nested:
                break
            nxt = nested[0]
        root = nxt
    inner = type(root).__name__
    return outer if inner == outer else f"{outer}({inner})"


def _run_cell(scenario: Scenario, factory: ClientFactory) -> Cell:
    client = factory()
    if client is None:
        return Cell(requests=len(scenario.steps), unavailable="not installed")
    with MisbehavingServer(scenario.behaviour) as server:
        try:
            outcome = run_paced(
                lambda step: client.request(step, server.url + step.path, scenario.timeout),
                scenario.steps,
            )
        finally:
            client.close()
        executed = Counter(e.path for e in server.executed if e.method == "POST")
    duplicates = sum(count - 1 for count in executed.values() if count > 1)
    return Cell(
        requests=len(scenario.steps),
        errors=Counter(_error_name(exc) for exc in outcome.errors.values()),
        statuses=Counter(outcome.statuses.values()),
        duplicates=duplicates,
    )


def run_demo(
    scenarios: Sequence[Scenario] = SCENARIOS,
    clients: dict[str, ClientFactory] | None = None,
) -> dict[str, dict[str, Cell]]:
    """Run every scenario with every client, concurrently; ``{scenario: {client: Cell}}``."""
    clients = CLIENTS if clients is None else clients
    jobs = [(s, title, factory) for s in scenarios for title, factory in clients.items()]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {(s.name, title): pool.submit(_run_cell, s, f) for s, title, f in jobs}
    results: dict[str, dict[str, Cell]] = {s.name: {} for s in scenarios}
    for (scenario_name, title), future in futures.items():
        results[scenario_name][title] = future.result()
    return results


def _render_table(results: dict[str, dict[str, Cell]]) -> str:
    titles = list(next(iter(results.values())).keys()) if results else []
    rows = [["behaviour", *titles]]
    for scenario_name, cells in results.items():
        rows.append([scenario_name, *(cells[t].render() for t in titles)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _summary(results: dict[str, dict[str, Cell]]) -> str:
    totals: dict[str, tuple[int, int, int]] = {}
    for cells in results.values():
        for title, cell in cells.items():
            failed, duplicated, sent = totals.get(title, (0, 0, 0))
            totals[title] = (
                failed + cell.failed,
                duplicated + cell.duplicates,
                sent + cell.requests,
            )
    parts = [
        f"{title}: {failed}/{sent} failed, {duplicated} duplicate POST executions"
        for title, (failed, duplicated, sent) in totals.items()
    ]
    return "\n".join(parts)


def _takeaway(results: dict[str, dict[str, Cell]]) -> str | None:
    """The one line to remember, computed from this run (None if a column is missing)."""

    def totals(title: str) -> tuple[int, int] | None:
        cells = [cells[title] for cells in results.values() if title in cells]
        if not cells or any(c.unavailable for c in cells):
            return None
        return sum(c.failed for c in cells), sum(c.duplicates for c in cells)

    plain, safe = totals("plain requests"), totals("rstsafe requests")
    naive = totals("requests, retry all")
    if plain is None or safe is None or naive is None:
        return None
    return (
        f"Take away: rstsafe requests failed {safe[0]} requests where plain requests failed "
        f"{plain[0]}, and ran {safe[1]} POSTs twice; retrying everything failed {naive[0]} but "
        f"ran {naive[1]} POSTs twice. What rstsafe still fails cannot succeed at all, or may "
        "already have run on the server."
    )


def _as_json(results: dict[str, dict[str, Cell]]) -> dict[str, Any]:
    return {
        scenario: {
            title: {
                "requests": cell.requests,
                "failed": cell.failed,
                "errors": dict(cell.errors),
                "statuses": {str(k): v for k, v in cell.statuses.items()},
                "duplicates": cell.duplicates,
                "unavailable": cell.unavailable,
            }
            for title, cell in cells.items()
        }
        for scenario, cells in results.items()
    }


def _handle(args: argparse.Namespace) -> int:
    results = run_demo()
    if args.json:
        json.dump(_as_json(results), sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    print("What each client gets from a server that resets connections (rstsafe.testing):\n")
    print(_render_table(results))
    print("\n'N dup POST': extra executions of a POST the server had already run (C10).")
    print()
    print(_summary(results))
    takeaway = _takeaway(results)
    if takeaway is not None:
        print()
        print(takeaway)
    return 0


def register(subparsers: _SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rstsafe demo`` to the command line."""
    parser = subparsers.add_parser(
        "demo",
        help="show what plain clients get from servers that reset connections",
        description=(
            "Start the misbehaving server in-process, one instance per behaviour and "
            "client, and print what each client gets: failed requests and POSTs "
            "executed twice."
        ),
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.set_defaults(handler=_handle)
