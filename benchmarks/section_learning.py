"""Learning: issue 13's targets for closes that are not what they seem.

Each row is one client; every rstsafe client (requests, httpx sync, httpx async on
asyncio) is measured beside the plain client it wraps, with rstsafe's defaults
(``KeepAlive()``, ``RetryPolicy()``) unless said otherwise:

- **a. POST-only, server timeout above the default TTL.** The "above" regime of the
  reuse section with its POST workload (section_reuse.py: uvicorn's 5 s against
  rstsafe's 4 s default, time scaled; requests 0.9 T apart). A POST that may have been
  sent is never retried, so it may not *probe* past the TTL: only the *witness* (one
  expired idle connection per origin kept open, unused) can prove that the server keeps
  connections longer than the default. Without that proof every POST at this pace
  would open a connection. The rows are the reuse section's own when it ran; else
  :func:`section_reuse.run` is called for them. Target: at most 2 connections per
  1,000 requests, no failure, no duplicate.
- **b. A server that resets every connection after N requests**
  (``CloseAfterRequests(count=5, reset=True)``, as nginx's ``keepalive_requests`` or a
  proxy's per-connection limit would, without a ``Connection: close`` or a
  ``Keep-Alive: max=`` to warn). GETs with unique paths, one after the other; for
  async, also from many tasks at once on one client. The ideal is requests / N
  connections; a client that takes the resets for idle timeouts stops reusing
  connections (one per request), one that ignores them fails (or retries) every N+1th
  request. rstsafe should learn the limit (``OriginKeepAlive.learned_max_requests``)
  and retire connections after N requests. Target: within 25 % of the ideal, no
  user-visible error, and the server's execution log shows no request executed twice.
- **c. A restart.** Workers (threads, or tasks for async) share one client and loop
  over requests against a ``Healthy(keepalive=30)`` server: every fourth request a POST,
  the rest GETs, each with a unique path. Once every worker has done its share, the
  server is stopped (which closes every connection it holds: FIN, or RST when a request
  was unread) and a new one started on the same port; the loop goes on until every
  worker has done as many requests again. Counted by the new server: connections
  opened after the restart, ideally one per worker. A worker that sees an error waits
  10 ms before its next request, as an application's error handler would (else a
  refused connect in the restart's gap would be counted hundreds of times). Target: at
  most 1.5 x workers new connections, no user-visible error for the GETs (POST errors
  are reported: a POST that may have been sent is not retried), no duplicate.

Why it matters: a restart, a request limit and steady POST traffic are everyday
conditions; learning that misreads them turns reuse off (a connection per request) or
keeps meeting the same reset.
"""

from __future__ import annotations

import asyncio
import math
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import section_reuse
from common import (
    ALL_CLIENT_NAMES,
    ASYNC_CLIENT_NAMES,
    Client,
    error_name,
    make_async_client,
    make_client,
    new_figure,
    save_figure,
)

import rstsafe
from rstsafe.testing import CloseAfterRequests, Execution, Healthy, MisbehavingServer

__all__ = (
    "SCENARIOS",
    "LearningConfig",
    "LearningRow",
    "as_json",
    "ordered",
    "render",
    "rows_from_reuse",
    "run",
    "summary",
)

#: Scenario key -> its title in the table.
SCENARIOS: dict[str, str] = {
    "post-above": "a. POST-only, server timeout above the default TTL",
    "limit": "b. reset after N requests, one request at a time",
    "limit-tasks": "b. reset after N requests, concurrent tasks on one client",
    "restart": "c. restart under load, workers sharing one client",
}
#: Issue 13's targets.
POST_CONNECTIONS_PER_THOUSAND = 2.0
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


# -- a. POST-only above the default: the reuse section's rows ----------------------------


def post_limit(requests: int) -> float:
    """Connections allowed for ``requests`` POSTs: 2 per 1,000, and never fewer than 2.

    A run shorter than 1,000 requests pays the same fixed cost of learning (the first
    connections, before the witness proves a longer idle), so it is allowed the
    issue's 2 connections rather than a share of them.
    """
    return max(2.0, POST_CONNECTIONS_PER_THOUSAND * requests / 1000.0)


def rows_from_reuse(runs: Iterable[section_reuse.ReuseRun]) -> list[LearningRow]:
    """Scenario a's rows: the reuse runs of the "above" regime with the POST workload."""
    rows = []
    for run_ in runs:
        if run_.regime != "above" or run_.workload != "POST":
            continue
        final = run_.final
        limit = post_limit(run_.requests)
        rows.append(
            LearningRow(
                scenario="post-above",
                client=run_.client,
                requests=run_.requests,
                connections=run_.connections,
                ideal=1.0,
                limit=limit,
                target_text=(
                    f"<= {POST_CONNECTIONS_PER_THOUSAND:g} per 1,000 requests "
                    f"(<= {limit:g} for {run_.requests})"
                ),
                errors=Counter(run_.errors),
                duplicates=run_.duplicates,
                learned=(
                    "-"
                    if final is None
                    else f"TTL {final.ttl:.2f} T ({final.source}), proven idle "
                    + ("-" if final.lower is None else f"{final.lower:.2f} T")
                ),
                notes=f"{run_.per_thousand:.1f} connections per 1,000",
            )
        )
    return ordered(rows)


def ordered(rows: list[LearningRow]) -> list[LearningRow]:
    """``rows`` in table order: by scenario, each plain client before its rstsafe one."""
    order = {name: index for index, name in enumerate(CLIENT_ORDER)}
    scenarios = {name: index for index, name in enumerate(SCENARIOS)}
    return sorted(rows, key=lambda r: (scenarios[r.scenario], order[r.client]))


#: Each plain client beside the rstsafe client that wraps it.
CLIENT_ORDER: tuple[str, ...] = (
    "plain requests",
    "rstsafe requests",
    "plain httpx",
    "rstsafe httpx",
    "plain httpx async",
    "rstsafe httpx async",
)
assert sorted(CLIENT_ORDER) == sorted(ALL_CLIENT_NAMES)


# -- b. a request limit -----------------------------------------------------------------


def _duplicates(executions: Iterable[Execution]) -> int:
    counts = Counter((e.method, e.path) for e in executions)
    return sum(n - 1 for n in counts.values() if n > 1)


def _learned_limit(registry: rstsafe.KeepAliveRegistry | None, server: MisbehavingServer) -> str:
    if registry is None:
        return "-"
    state = registry.for_origin(rstsafe.Origin("http", server.host, server.port))
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
    client, transport = make_async_client(client_name)
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


# -- the section ------------------------------------------------------------------------


def run(config: LearningConfig) -> list[LearningRow]:
    """Scenarios b and c for every client, one after the other (they are CPU-bound)."""
    rows = []
    for client_name in CLIENT_ORDER:
        rows.append(run_limit(client_name, config))
        if client_name in ASYNC_CLIENT_NAMES:
            rows.append(run_limit_tasks(client_name, config))
            rows.append(run_restart_tasks(client_name, config))
        else:
            rows.append(run_restart(client_name, config))
    return ordered(rows)


def run_post_above(reuse: section_reuse.ReuseConfig) -> list[LearningRow]:
    """Scenario a on its own (when the reuse section is not part of the run)."""
    runs = section_reuse.run(reuse, regimes=("above",), workloads=("POST",))
    return rows_from_reuse(runs)


def _ours(rows: Sequence[LearningRow]) -> list[LearningRow]:
    return [r for r in rows if r.client.startswith("rstsafe")]


def summary(rows: Sequence[LearningRow]) -> str:
    """One line for the report's summary."""
    ours = _ours(rows)
    met = sum(r.met for r in ours)
    missed = [f"{r.scenario} ({r.client})" for r in ours if not r.met]
    plain_failed = sum(r.failed + sum(r.other_errors.values()) for r in rows if r not in ours)
    return (
        f"Learning (issue 13: POST-only above the default, a per-connection request "
        f"limit, a restart): rstsafe met {met} of {len(ours)} targets"
        + (f" (not met: {', '.join(missed)})" if missed else "")
        + f"; duplicates {sum(r.duplicates for r in ours)}; the plain clients failed "
        f"{plain_failed} requests in the same runs."
    )


def _errors(counter: Counter[str]) -> str:
    total = sum(counter.values())
    if not total:
        return "0"
    return f"{total} (" + ", ".join(f"{n} {k}" for k, n in counter.most_common()) + ")"


def render(
    rows: Sequence[LearningRow],
    config: LearningConfig,
    reuse: section_reuse.ReuseConfig,
    img_dir: Path,
    img_prefix: str,
) -> str:
    """The section's markdown; writes its PNG into ``img_dir``."""
    t = reuse.timeout
    lines = [
        "## Learning",
        "",
        "Issue 13's targets, for rstsafe requests, rstsafe httpx and rstsafe httpx async "
        "(`AsyncClient` on asyncio), each beside the plain client it wraps; rstsafe's "
        "defaults. Connections and executions are counted by the server; every verdict is "
        "computed from this run.",
        "",
        f'- **a.** The reuse section\'s "above" regime, POST workload: {reuse.requests} POSTs '
        f"{section_reuse.PACE:g} T apart, T = {t:g} s standing for uvicorn's 5 s (rstsafe's "
        "durations scaled alike). POSTs cannot probe past the TTL; the witness proves the "
        "longer idle.",
        f"- **b.** `CloseAfterRequests(count={config.limit}, reset=True)`: {config.requests} "
        f"GETs, one at a time, and for async also from {config.tasks} concurrent tasks on "
        f"one client; ideal {limit_ideal(config):g} connections ({config.requests} / "
        f"{config.limit}; with tasks, at least one per task: "
        f'{limit_ideal(config, config.tasks):g}). "rstsafe learned" shows the origin\'s '
        "learned request limit, TTL and idle upper bound after the run: a limit or a "
        "restart must not lower the TTL.",
        f"- **c.** `Healthy(keepalive=30)`: {config.workers} threads (tasks for async) "
        f"sharing one client, {config.restart_requests} requests each (one in "
        f"{POST_EVERY} a POST), then a restart on the same port (stop, start), then "
        f"{config.restart_requests} more each; connections counted by the new server. "
        "GET errors count against the target, POST errors are listed in the notes.",
        "",
        "| scenario | client | connections | target | verdict | failed | executed twice "
        "| rstsafe learned | notes |",
        "|---|---|---:|---|---|---:|---:|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {SCENARIOS[row.scenario]} | {row.client} | {row.connections} "
            f"| {row.target_text} | {row.verdict()} | {_errors(row.errors)} "
            f"| {row.duplicates} | {row.learned} | {row.notes} |"
        )
    png = f"{img_prefix}learning.png"
    _plot(rows, img_dir / png)
    lines += [
        "",
        f"![Connections against the target, per scenario and client](img/benchmarks/{png})",
        "",
    ]
    return "\n".join(lines)


def _plot(rows: Sequence[LearningRow], path: Path) -> None:
    scenarios = [s for s in SCENARIOS if any(r.scenario == s for r in rows)]
    figure = new_figure(10.0, 2.2 + 1.6 * len(scenarios))
    axes = figure.subplots(len(scenarios), 1, squeeze=False)[:, 0]
    for ax, scenario in zip(axes, scenarios, strict=True):
        chosen = [r for r in rows if r.scenario == scenario]
        names = [r.client for r in chosen]
        colours = ["tab:green" if r.met else "tab:red" for r in chosen]
        bars = ax.barh(names, [r.connections for r in chosen], color=colours)
        labels = [f"{r.connections}" + (f", {r.failed} failed" if r.failed else "") for r in chosen]
        ax.bar_label(bars, labels=labels, padding=3, fontsize="x-small")
        ax.axvline(chosen[0].ideal, color="black", linewidth=1, label="ideal")
        ax.axvline(chosen[0].limit, color="grey", linestyle="--", linewidth=1, label="target")
        ax.set_xscale("symlog", linthresh=1)
        ax.set_xlim(0, max([r.connections for r in chosen] + [chosen[0].limit]) * 3)
        ax.invert_yaxis()
        ax.set_title(SCENARIOS[scenario], fontsize="small")
        ax.set_xlabel(
            "connections (green: target met; red: not met, by connections, failures or duplicates)",
            fontsize="x-small",
        )
        ax.tick_params(labelsize="x-small")
        ax.legend(fontsize="x-small", loc="lower right")
    save_figure(figure, str(path))


def as_json(rows: Sequence[LearningRow]) -> list[dict[str, object]]:
    """The rows' figures (for ``--json``)."""
    return [
        {
            "scenario": r.scenario,
            "client": r.client,
            "requests": r.requests,
            "connections": r.connections,
            "ideal": r.ideal,
            "limit": r.limit,
            "target": r.target_text,
            "failed": r.failed,
            "errors": dict(r.errors),
            "other_errors": dict(r.other_errors),
            "duplicates": r.duplicates,
            "met": r.met,
            "verdict": r.verdict(),
            "learned": r.learned,
            "title": SCENARIOS[r.scenario],
        }
        for r in rows
    ]
