"""``rstsafe demo``: every way a server resets a connection, against every client.

For each behaviour of :mod:`rstsafe.testing` the demo starts a
:class:`~rstsafe.testing.MisbehavingServer` in-process and runs the same short workload
(GETs and POSTs, paced against the behaviour's timers) with each client, each against
a server of its own so the server's accounting is per client. It records, per behaviour
and client, every request that failed (what happened, whether it may have been sent,
what the client decided) and every request the server executed more than once; the
report (``rstsafe._cli._demo_report``) explains each failure from those records.

The clients are the columns, grouped by library (:data:`CLIENTS`): a library's plain
client, the same library with rstsafe, and other ways of using it. Adding a library is
adding its :class:`Client` entries; the report lays the groups out to fit 100 columns.

Every scenario runs at the same time, in threads, so the demo takes as long as its
slowest scenario (a few seconds), not their sum.

Exit codes: 0 the demo ran; 1 an rstsafe client executed a non-idempotent request twice
(the one thing rstsafe promises never to do); 2 usage.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from rstsafe._cli import EXIT_FAILURE, EXIT_OK, add_format_option
from rstsafe._core.classify import Delivery, FailureKind, classify
from rstsafe._core.idempotency import DEFAULT_IDEMPOTENCY_RULES
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

    import aiohttp

__all__ = (
    "CLIENTS",
    "SCENARIOS",
    "Cell",
    "Client",
    "DemoClient",
    "FailedRequest",
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
class FailedRequest:
    """One request that raised: which one, what happened, and what the client decided.

    Attributes:
        index: Its position in the scenario's workload.
        method: Its method.
        path: Its path.
        error: ``Outer(Root)``: the exception raised and the OS-level cause under it.
        kind: What happened, as rstsafe classifies it.
        delivery: Whether the server may have received it.
        reused: Whether it was sent on a reused connection, when the client tells.
        attempts: Attempts made: the rstsafe error's history, 1 when a client keeps none.
        reason: rstsafe's last retry decision, when the error carries one.
        idempotent: Whether the method (or an idempotency key) makes it safe to repeat.
    """

    index: int
    method: str
    path: str
    error: str
    kind: FailureKind
    delivery: Delivery
    reused: bool | None = None
    attempts: int = 1
    reason: str | None = None
    idempotent: bool = False

    @property
    def request(self) -> str:
        """``POST /orders/3``."""
        return f"{self.method} {self.path}"


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    """The result of one client against one scenario.

    Attributes:
        requests: Requests sent.
        errors: Failed requests by ``Outer(Root)`` exception name.
        statuses: Responses by status.
        duplicates: Extra executions of non-idempotent requests (a POST run twice is 1).
        unavailable: Why the client could not run (``"not installed"``), if it could not.
        failures: Every request that raised, in order.
        answered: Indexes of the requests that got a response.
        executed_twice: ``(request, executions)`` of each non-idempotent request the
            server executed more than once.
    """

    requests: int
    errors: Counter[str] = field(default_factory=Counter)
    statuses: Counter[int] = field(default_factory=Counter)
    duplicates: int = 0
    unavailable: str | None = None
    failures: tuple[FailedRequest, ...] = ()
    answered: frozenset[int] = frozenset()
    executed_twice: tuple[tuple[str, int], ...] = ()

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def summary(self) -> str:
        """The short form: ``ok 6/6``, ``3/6 failed``, ``ok 2/2 (413)``, ``..., 4 dup``."""
        if self.unavailable is not None:
            return self.unavailable
        if not self.errors:
            text = f"ok {self.requests}/{self.requests}"
            unusual = sorted(s for s in self.statuses if s != 200)
            if unusual:
                text += " (" + ", ".join(str(s) for s in unusual) + ")"
        else:
            text = f"{self.failed}/{self.requests} failed"
        if self.duplicates:
            text += f", {self.duplicates} dup"
        return text

    def render(self) -> str:
        """The long form, with the root cause: ``3/6 failed ConnectionResetError``."""
        if self.unavailable is not None:
            return self.unavailable
        if not self.errors:
            text = self.summary().removesuffix(f", {self.duplicates} dup")
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
        label="idle-close-with-lag + header",
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


@dataclass(frozen=True, slots=True, kw_only=True)
class Client:
    """A column of the demo: one library (the group) used one way (the variant).

    Attributes:
        library: The group the column belongs to, e.g. ``"requests"``.
        variant: ``"plain"`` (the library's defaults), ``"rstsafe"``, or another way of
            using the library (``"retry-all"``: urllib3's Retry for every method).
        factory: Makes a fresh client; raises ImportError when the library is missing.
        on_failure: What the client does when a request fails, for the footnotes
            (``"not retried: no retry configured"``).
        resends_unsafe: Whether it resends requests that are not idempotent (a hazard
            the footnotes point out when it got an answer rstsafe did not).
        title: The column's title (default ``"<variant> <library>"``).
    """

    library: str
    variant: str
    factory: Callable[[], DemoClient]
    on_failure: str
    resends_unsafe: bool = False
    title: str = ""

    def __post_init__(self) -> None:
        if not self.title:
            object.__setattr__(self, "title", f"{self.variant} {self.library}")

    @property
    def is_rstsafe(self) -> bool:
        return self.variant == "rstsafe"

    def make(self) -> DemoClient | None:
        """A fresh client, or None when its library is not installed."""
        try:
            return self.factory()
        except ImportError:
            return None


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


#: aiohttp's ``TOO_LARGE_BYTES_BODY``: above it, a bytes body makes aiohttp warn.
_AIOHTTP_LARGE_BYTES = 2**20


class _PlainAiohttp:
    """aiohttp's ClientSession, driven from the demo's worker thread by an event loop of its own.

    The session is made inside that loop, at the first request (aiohttp binds a session
    to the loop it was made in); the demo's cells run in threads, one client per cell.
    """

    def __init__(self) -> None:
        import aiohttp

        self._aiohttp = aiohttp
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: aiohttp.ClientSession | None = None

    def _new_session(self) -> aiohttp.ClientSession:
        return self._aiohttp.ClientSession()

    async def _send(self, step: Step, url: str, timeout: float) -> int:
        if self._session is None:
            self._session = self._new_session()
        limit = self._aiohttp.ClientTimeout(total=timeout)
        body: bytes | io.BytesIO | None = step.body
        if step.body is not None and len(step.body) > _AIOHTTP_LARGE_BYTES:
            # aiohttp warns (ResourceWarning) about a large bytes body and asks for a file
            # object, as its users do for uploads; such a body is not replayed, like theirs.
            body = io.BytesIO(step.body)
        async with self._session.request(step.method, url, data=body, timeout=limit) as response:
            await response.read()
            return response.status

    def request(self, step: Step, url: str, timeout: float) -> int:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self._send(step, url, timeout))

    def close(self) -> None:
        if self._loop is None:
            return
        if self._session is not None:
            self._loop.run_until_complete(self._session.close())
        self._loop.close()


class _RstsafeAiohttp(_PlainAiohttp):
    """rstsafe.aiohttp.ClientSession with its defaults."""

    def __init__(self) -> None:
        super().__init__()
        import rstsafe.aiohttp

        self._rstsafe_aiohttp = rstsafe.aiohttp

    def _new_session(self) -> aiohttp.ClientSession:
        return self._rstsafe_aiohttp.ClientSession()


def _registry(*clients: Client) -> dict[str, Client]:
    return {client.title: client for client in clients}


#: The columns, by title, in order; a library's columns stay together (its group).
CLIENTS: dict[str, Client] = _registry(
    Client(
        library="requests",
        variant="plain",
        factory=_PlainRequests,
        on_failure="not retried (requests retries nothing by default)",
    ),
    Client(
        library="requests",
        variant="retry-all",
        factory=_NaiveRetryRequests,
        on_failure="retries every method, up to twice (Retry(allowed_methods=None))",
        resends_unsafe=True,
    ),
    Client(
        library="requests",
        variant="rstsafe",
        factory=_RstsafeRequests,
        on_failure="not retried",
    ),
    Client(
        library="httpx",
        variant="plain",
        factory=_PlainHttpx,
        on_failure="not retried (httpx retries only connects, and only if asked)",
    ),
    Client(
        library="httpx",
        variant="rstsafe",
        factory=_RstsafeHttpx,
        on_failure="not retried",
    ),
    Client(
        library="aiohttp",
        variant="plain",
        factory=_PlainAiohttp,
        on_failure="not retried (aiohttp resends only idempotent requests, once, after a reuse)",
    ),
    Client(
        library="aiohttp",
        variant="rstsafe",
        factory=_RstsafeAiohttp,
        on_failure="not retried",
    ),
)


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


def _failed_request(index: int, step: Step, exc: BaseException) -> FailedRequest:
    """What the records say about one failed request (rstsafe's errors carry their facts)."""
    failure = getattr(exc, "failure", None)
    if failure is None or not hasattr(failure, "delivery"):
        failure = classify(exc)
    history = getattr(exc, "history", None)
    attempts = getattr(history, "attempts", ())
    reason = attempts[-1].decision.reason if attempts else None
    return FailedRequest(
        index=index,
        method=step.method,
        path=step.path,
        error=_error_name(exc),
        kind=failure.kind,
        delivery=failure.delivery,
        reused=failure.facts.reused,
        attempts=max(1, len(attempts)),
        reason=reason,
        idempotent=DEFAULT_IDEMPOTENCY_RULES.is_idempotent(step.method),
    )


def _run_cell(scenario: Scenario, client: DemoClient | None) -> Cell:
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
        executed = Counter(
            f"{e.method} {e.path}"
            for e in server.executed
            if not DEFAULT_IDEMPOTENCY_RULES.is_idempotent(e.method)
        )
    twice = tuple((request, count) for request, count in executed.items() if count > 1)
    return Cell(
        requests=len(scenario.steps),
        errors=Counter(_error_name(exc) for exc in outcome.errors.values()),
        statuses=Counter(outcome.statuses.values()),
        duplicates=sum(count - 1 for _, count in twice),
        failures=tuple(
            _failed_request(index, scenario.steps[index], exc)
            for index, exc in sorted(outcome.errors.items())
        ),
        answered=frozenset(outcome.statuses),
        executed_twice=twice,
    )


#: Called as each run ends: ``(runs done, runs in all)``.
ProgressCallback = Callable[[int, int], None]


def run_demo(
    scenarios: Sequence[Scenario] = SCENARIOS,
    clients: Mapping[str, Client] | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> dict[str, dict[str, Cell]]:
    """Run every scenario with every client, concurrently; ``{scenario: {client: Cell}}``.

    The clients are made here, before any thread starts, so that every library is
    imported once, by one thread.
    """
    clients = CLIENTS if clients is None else clients
    jobs = [(s, title, client.make()) for s in scenarios for title, client in clients.items()]
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        futures = {(s.name, title): pool.submit(_run_cell, s, made) for s, title, made in jobs}
        for done, _ in enumerate(as_completed(futures.values()), start=1):
            if progress is not None:
                progress(done, len(jobs))
    # In the scenarios' order, then the clients'.
    return {
        s.name: {title: futures[(s.name, title)].result() for title in clients} for s in scenarios
    }


def _handle(args: argparse.Namespace) -> int:
    from rstsafe._cli._demo_report import as_json, render_text
    from rstsafe._cli._term import Progress, Style

    bar = Progress("rstsafe demo")
    total_scenarios = len(SCENARIOS)

    def report(done: int, total: int) -> None:
        bar.update(f"{done}/{total} runs ({total_scenarios} behaviours x {len(CLIENTS)} clients)")

    bar.update("starting the servers")
    try:
        results = run_demo(progress=report)
    finally:
        bar.done()
    if args.output_format == "json":
        json.dump(as_json(results, CLIENTS), sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        width = None if args.wide else 100
        sys.stdout.write(render_text(results, CLIENTS, width=width, style=Style(sys.stdout)))
    broken = any(
        cell.duplicates
        for cells in results.values()
        for title, cell in cells.items()
        if CLIENTS[title].is_rstsafe
    )
    return EXIT_FAILURE if broken else EXIT_OK


def register(subparsers: _SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``rstsafe demo`` to the command line."""
    parser = subparsers.add_parser(
        "demo",
        help="show what plain clients get from servers that reset connections",
        description=(
            "Start the misbehaving server in-process, one instance per behaviour and "
            "client, and print what each client gets: failed requests, each explained, "
            "and requests executed twice. The table fits 100 columns (--wide: one table)."
        ),
        epilog="exit codes: 0 the demo ran, 1 an rstsafe client executed a request twice "
        "that is not idempotent, 2 usage",
    )
    add_format_option(parser)
    parser.add_argument(
        "--json",
        dest="output_format",
        action="store_const",
        const="json",
        help="same as --format json",
    )
    parser.add_argument(
        "--wide",
        action="store_true",
        help="one table with every client side by side, root causes in the cells",
    )
    parser.set_defaults(handler=_handle)
