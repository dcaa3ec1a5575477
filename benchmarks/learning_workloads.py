"""Learning section, scenarios b and c: the workloads and the rows they produce.

See section_learning.py for what each scenario is and why; this module runs them:
:func:`run_limit` and :func:`run_limit_tasks` (b: a server resetting every connection
after N requests, one request at a time and from concurrent tasks),
:func:`run_restart` and :func:`run_restart_tasks` (c: a restart under load, threads
or tasks sharing one client). Every figure is counted by the server
(:class:`~rstsafe.testing.MisbehavingServer`'s connection and execution logs).
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import httpx
from common import Client, error_name, make_async_client, make_client

import rstsafe
import rstsafe.core
from rstsafe.testing import CloseAfterRequests, Execution, Healthy, MisbehavingServer

__all__ = (
    "POST_EVERY",
    "LearningConfig",
    "LearningRow",
    "limit_ideal",
    "run_limit",
    "run_limit_tasks",
    "run_restart",
    "run_restart_tasks",
)

#: Issue 13's targets.
LIMIT_TOLERANCE = 0.25
RESTART_FACTOR = 1.5
#: Every POST_EVERY-th request of a restart worker is a POST.
POST_EVERY = 4
#: What a worker waits after an error before its next request (seconds).
ERROR_PAUSE = 0.01
#: A scenario that has not finished after this long is cut short (and reported).
DEADLINE = 120.0
TIMEOUT = 5.0


@dataclass(frozen=True, slots=True, kw_only=True)
class LearningConfig:
    """Sizes of scenarios b and c (a's come from the reuse section's config)."""

    requests: int = 1000
    limit: int = 5
    tasks: int = 50
    workers: int = 8
    restart_requests: int = 100

    def __post_init__(self) -> None:
        for name in ("requests", "limit", "tasks", "workers", "restart_requests"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if self.requests < 2 * self.limit:
            raise ValueError(
                f"requests must be >= 2 * limit ({2 * self.limit}), got {self.requests!r}"
            )


@dataclass(slots=True, kw_only=True)
class LearningRow:
    """One client in one scenario, with the figure the target is checked against."""

    scenario: str
    client: str
    requests: int
    #: The figure compared with ``limit``: connections (a: for the run; b: in total;
    #: c: opened after the restart).
    connections: int
    ideal: float
    limit: float
    target_text: str
    #: User-visible errors that count against the target.
    errors: Counter[str] = field(default_factory=Counter)
    #: User-visible errors reported but not counted (c: POSTs that may have been sent).
    other_errors: Counter[str] = field(default_factory=Counter)
    duplicates: int = 0
    learned: str = "-"
    notes: str = ""

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    @property
    def met(self) -> bool:
        return self.connections <= self.limit and not self.failed and not self.duplicates

    def verdict(self) -> str:
        """``met``, or ``not met:`` and why."""
        problems = []
        if self.connections > self.limit:
            problems.append(f"{self.connections} connections > {self.limit:g}")
        if self.failed:
            problems.append(f"{self.failed} failed")
        if self.duplicates:
            problems.append(f"{self.duplicates} executed twice")
        return "met" if not problems else "not met: " + "; ".join(problems)


# -- b. a request limit -----------------------------------------------------------------


def _duplicates(executions: Iterable[Execution]) -> int:
    counts = Counter((e.method, e.path) for e in executions)
    return sum(n - 1 for n in counts.values() if n > 1)


def _learned_limit(
    registry: rstsafe.core.KeepAliveRegistry | None, server: MisbehavingServer
) -> str:
    if registry is None:
        return "-"
    state = registry.for_origin(rstsafe.core.Origin("http", server.host, server.port))
    ttl = state.idle_ttl_for(0.0)
    upper = state.upper_bound
    return (
        f"max requests {state.learned_max_requests}; TTL {ttl.before_jitter:.3g} s "
        f"({ttl.source.value}), upper bound {'none' if upper is None else f'{upper:.3g} s'}"
    )


def limit_ideal(config: LearningConfig, tasks: int = 1) -> float:
    """Fewest connections for the request-limit scenario: requests / N, at least one per task.

    ``tasks`` requests in flight at once need as many connections from the start.
    """
    return float(max(math.ceil(config.requests / config.limit), min(tasks, config.requests)))


def _limit_row(
    scenario: str,
    client: str,
    *,
    config: LearningConfig,
    server: MisbehavingServer,
    errors: Counter[str],
    learned: str,
    tasks: int = 1,
) -> LearningRow:
    ideal = limit_ideal(config, tasks)
    executed = {e.path for e in server.executed}
    missing = config.requests - len(executed)
    return LearningRow(
        scenario=scenario,
        client=client,
        requests=config.requests,
        connections=len(server.connections),
        ideal=ideal,
        limit=ideal * (1 + LIMIT_TOLERANCE),
        target_text=(
            f"within {LIMIT_TOLERANCE:.0%} of the ideal {ideal:g} "
            + (
                f"({config.requests} / {config.limit})"
                if ideal == math.ceil(config.requests / config.limit)
                else f"(one per task: {tasks})"
            )
        ),
        errors=errors,
        duplicates=_duplicates(server.executed),
        learned=learned,
        notes=(f"{tasks} tasks; " if tasks > 1 else "") + f"{missing} never executed",
    )


def _record(errors: Counter[str], exc: BaseException) -> None:
    errors[error_name(exc)] += 1


def run_limit(client_name: str, config: LearningConfig) -> LearningRow:
    """``config.requests`` GETs one after the other against a server resetting after N."""
    client: Client = make_client(client_name)
    registry = client.registry()
    errors: Counter[str] = Counter()
    with MisbehavingServer(CloseAfterRequests(count=config.limit, reset=True)) as server:
        try:
            for index in range(config.requests):
                try:
                    status = client.request("GET", f"{server.url}/items/{index}", None, TIMEOUT)
                except Exception as exc:  # every failure is a result
                    _record(errors, exc)
                else:
                    if status != 200:
                        errors[f"status {status}"] += 1
            learned = _learned_limit(registry, server)
        finally:
            client.close()
    return _limit_row(
        "limit", client_name, config=config, server=server, errors=errors, learned=learned
    )


async def _limit_tasks(
    client_name: str, config: LearningConfig, server: MisbehavingServer
) -> tuple[str, Counter[str]]:
    # A pool as large as the concurrency, plain and rstsafe alike: with httpx's default
    # (20 connections kept idle) 50 tasks churn connections whatever the server does,
    # which would hide what learning the limit changes.
    limits = httpx.Limits(max_connections=config.tasks, max_keepalive_connections=config.tasks)
    client, transport = make_async_client(client_name, limits=limits)
    errors: Counter[str] = Counter()
    indexes = iter(range(config.requests))  # shared: the tasks take the next index

    async def worker() -> None:
        for index in indexes:
            try:
                response = await client.get(f"{server.url}/items/{index}", timeout=TIMEOUT)
            except Exception as exc:  # every failure is a result
                _record(errors, exc)
            else:
                if response.status_code != 200:
                    errors[f"status {response.status_code}"] += 1

    async with client:
        await asyncio.gather(*(worker() for _ in range(config.tasks)))
        registry = None if transport is None else transport.keepalive_registry
        learned = _learned_limit(registry, server)
    return learned, errors


def run_limit_tasks(client_name: str, config: LearningConfig) -> LearningRow:
    """The same GETs from ``config.tasks`` concurrent tasks on one async client."""
    with MisbehavingServer(CloseAfterRequests(count=config.limit, reset=True)) as server:
        learned, errors = asyncio.run(_limit_tasks(client_name, config, server))
    return _limit_row(
        "limit-tasks",
        client_name,
        config=config,
        server=server,
        errors=errors,
        learned=learned,
        tasks=config.tasks,
    )


# -- c. a restart -----------------------------------------------------------------------


@dataclass(slots=True)
class _Restart:
    """The shared state of one restart run."""

    config: LearningConfig
    done: list[int]
    errors: dict[str, Counter[str]] = field(default_factory=dict)
    restarted_at: list[int] | None = None
    gap: float = math.nan
    cut_short: bool = False

    def request(self, worker: int, index: int) -> tuple[str, str, bytes | None]:
        if index % POST_EVERY == POST_EVERY - 1:
            return "POST", f"/orders/w{worker}/{index}", b'{"order": %d}' % index
        return "GET", f"/items/w{worker}/{index}", None

    def failed(self, method: str, exc: BaseException) -> None:
        _record(self.errors.setdefault(method, Counter()), exc)

    def finished(self, worker: int) -> bool:
        if self.restarted_at is None:
            return False
        return self.done[worker] - self.restarted_at[worker] >= self.config.restart_requests

    def warmed_up(self) -> bool:
        return min(self.done) >= self.config.restart_requests


def _restart_row(
    client_name: str,
    state: _Restart,
    old: MisbehavingServer,
    new: MisbehavingServer,
    learned: str,
) -> LearningRow:
    workers = state.config.workers
    ends = Counter(r.end.value for r in old.connections)
    notes = (
        f"{sum(state.done)} requests; server down {state.gap * 1e3:.0f} ms; old server's "
        "connections ended " + ", ".join(f"{n} {end}" for end, n in sorted(ends.items()))
    )
    posts = state.errors.get("POST", Counter())
    if posts:
        notes += "; POST errors (not retried: may have been sent): " + ", ".join(
            f"{n} {k}" for k, n in posts.items()
        )
    if state.cut_short:
        notes += f"; cut short after {DEADLINE:g} s"
    return LearningRow(
        scenario="restart",
        client=client_name,
        requests=sum(state.done),
        connections=len(new.connections),
        ideal=float(workers),
        limit=RESTART_FACTOR * workers,
        target_text=f"<= {RESTART_FACTOR:g} x {workers} new connections after the restart",
        errors=state.errors.get("GET", Counter()),
        other_errors=posts,
        duplicates=_duplicates(old.executed + new.executed),
        learned=learned,
        notes=notes,
    )


def _first_server() -> MisbehavingServer:
    """The server before the restart, on a port given explicitly.

    ``MisbehavingServer`` sets ``SO_REUSEADDR`` only when given a port, and Linux lets
    the new server bind the port over the old one's TIME_WAIT connections only when
    both listeners set it: so a free port is picked first and passed to both.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    return MisbehavingServer(Healthy(keepalive=30.0), port=port).start()


def _restart_server(old: MisbehavingServer, state: _Restart) -> MisbehavingServer:
    started = time.monotonic()
    state.restarted_at = list(state.done)
    old.stop()
    new = MisbehavingServer(Healthy(keepalive=30.0), port=old.port).start()
    state.gap = time.monotonic() - started
    return new


def run_restart(client_name: str, config: LearningConfig) -> LearningRow:
    """Threads sharing one sync client across a server restart."""
    client = make_client(client_name)
    registry = client.registry()
    state = _Restart(config, [0] * config.workers)
    lock = threading.Lock()
    stop = threading.Event()
    old = _first_server()
    url = old.url

    def worker(number: int) -> None:
        index = 0
        while not stop.is_set() and not state.finished(number):
            method, path, body = state.request(number, index)
            try:
                client.request(method, url + path, body, TIMEOUT)
            except Exception as exc:  # every failure is a result
                with lock:
                    state.failed(method, exc)
                time.sleep(ERROR_PAUSE)
            index += 1
            state.done[number] = index

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(config.workers)]
    new = old
    deadline = time.monotonic() + DEADLINE
    try:
        for thread in threads:
            thread.start()
        while not state.warmed_up() and time.monotonic() < deadline:
            time.sleep(0.005)
        new = _restart_server(old, state)
        while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
            time.sleep(0.005)
        state.cut_short = any(t.is_alive() for t in threads)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        try:
            learned = _learned_limit(registry, new)
        finally:
            client.close()
            old.stop()
            new.stop()
    return _restart_row(client_name, state, old, new, learned)


async def _restart_tasks(client_name: str, config: LearningConfig) -> LearningRow:
    client, transport = make_async_client(client_name)
    state = _Restart(config, [0] * config.workers)
    old = _first_server()
    url = old.url
    new = old

    async def worker(number: int) -> None:
        index = 0
        while not state.finished(number):
            method, path, body = state.request(number, index)
            try:
                await client.request(method, url + path, content=body, timeout=TIMEOUT)
            except Exception as exc:  # every failure is a result
                state.failed(method, exc)
                await asyncio.sleep(ERROR_PAUSE)
            index += 1
            state.done[number] = index

    deadline = time.monotonic() + DEADLINE
    try:
        async with client:
            tasks = [asyncio.create_task(worker(n)) for n in range(config.workers)]
            while not state.warmed_up() and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            # In a thread, so the tasks keep sending while the server goes down and up.
            new = await asyncio.to_thread(_restart_server, old, state)
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
            state.cut_short = bool(pending)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            registry = None if transport is None else transport.keepalive_registry
            learned = _learned_limit(registry, new)
    finally:
        old.stop()
        new.stop()
    return _restart_row(client_name, state, old, new, learned)


def run_restart_tasks(client_name: str, config: LearningConfig) -> LearningRow:
    """Tasks sharing one async client across a server restart, on asyncio."""
    return asyncio.run(_restart_tasks(client_name, config))
