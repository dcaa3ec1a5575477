"""Recovery latency: what a transparent stale-connection retry adds to a request.

What is measured: GETs on a reused connection, in two conditions, for rstsafe requests
and rstsafe httpx (sync):

- *healthy*: a :class:`~rstsafe.testing.Healthy` server that keeps idle connections
  open; the request goes out on the pooled connection and is answered;
- *stale*: an :class:`~rstsafe.testing.IdleDrop` server that has forgotten the pooled
  connection. Nothing reached the client (no FIN), so no liveness check can tell; the
  request is written, the server answers with an RST, and rstsafe retries at once on a
  fresh connection.

Each measured stale request is confirmed from the server's accounting: it was executed
once, on a new connection, and the connection it was first written to ended with an
RST (the server resets a dropped connection only when bytes arrive on it). Requests
that were not retried are left out and counted.

The clients are told to keep idle connections for a long time and not to learn
(``KeepAlive(default_idle_ttl=60, learn=False)``), so that every stale request is
really sent on the dropped connection: with learning on, rstsafe would shorten its
TTL after the first reset and stop meeting stale connections at all, which is the
point of learning but not what this section measures. Both conditions alternate in
one thread per client so machine noise hits them alike.

Why it matters: the retry is the safety net for the stale connections a TTL cannot
avoid; its cost is one RST round trip plus one new connection, which should be well
under a millisecond on loopback.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from common import make_client, median, new_figure, percentile, save_figure

import rstsafe
from rstsafe.testing import ConnectionEnd, Healthy, IdleDrop, MisbehavingServer

__all__ = ("CLIENTS", "RecoveryConfig", "RecoveryRun", "render", "run")

CLIENTS: tuple[str, ...] = ("rstsafe requests", "rstsafe httpx")


@dataclass(frozen=True, slots=True, kw_only=True)
class RecoveryConfig:
    """Samples per condition and the server's idle timer."""

    requests: int = 300
    idle: float = 0.04

    def __post_init__(self) -> None:
        if self.requests < 3:
            raise ValueError(f"requests must be >= 3, got {self.requests!r}")


@dataclass(slots=True, kw_only=True)
class RecoveryRun:
    """Latencies of one client, in seconds."""

    client: str
    healthy: list[float] = field(default_factory=list)
    stale: list[float] = field(default_factory=list)
    not_retried: int = 0
    failed: int = 0

    def figures(self) -> dict[str, float]:
        """Median and p99 of both conditions and their differences, in milliseconds."""
        h50, h99 = median(self.healthy), percentile(self.healthy, 0.99)
        s50, s99 = median(self.stale), percentile(self.stale, 0.99)
        return {
            "healthy_median_ms": h50 * 1e3,
            "healthy_p99_ms": h99 * 1e3,
            "stale_median_ms": s50 * 1e3,
            "stale_p99_ms": s99 * 1e3,
            "extra_median_ms": (s50 - h50) * 1e3,
            "extra_p99_ms": (s99 - h99) * 1e3,
        }


def run_one(client_name: str, config: RecoveryConfig) -> RecoveryRun:
    """Alternate a healthy and a stale reused-connection GET, ``config.requests`` times."""
    keepalive = rstsafe.KeepAlive(default_idle_ttl=60.0, learn=False, max_lifetime=None)
    result = RecoveryRun(client=client_name)
    gap = config.idle * 2.0
    healthy_client = make_client(client_name, keepalive)
    stale_client = make_client(client_name, keepalive)
    stale_latency: dict[str, float] = {}
    with (
        MisbehavingServer(Healthy(keepalive=None)) as healthy,
        MisbehavingServer(IdleDrop(idle=config.idle)) as stale,
    ):
        try:
            # Index 0 opens the connections; it is not measured.
            for index in range(config.requests + 1):
                time.sleep(gap)
                path = f"/r/{index}"
                for server, client, sink in (
                    (healthy, healthy_client, result.healthy),
                    (stale, stale_client, None),
                ):
                    started = time.perf_counter()
                    try:
                        client.request("GET", server.url + path, None, timeout=5.0)
                    except Exception:  # counted, never measured
                        result.failed += 1
                        continue
                    elapsed = time.perf_counter() - started
                    if index == 0:
                        continue
                    if sink is not None:
                        sink.append(elapsed)
                    else:
                        stale_latency[path] = elapsed
        finally:
            healthy_client.close()
            stale_client.close()
        executions = [e for e in stale.executed if e.method == "GET"]
        records = {r.id: r for r in stale.connections}
    by_path = {e.path: e for e in executions}
    for index in range(1, config.requests + 1):
        path, previous = f"/r/{index}", f"/r/{index - 1}"
        if path not in stale_latency:
            continue
        current, before = by_path.get(path), by_path.get(previous)
        retried = (
            current is not None
            and before is not None
            and sum(1 for e in executions if e.path == path) == 1
            and current.connection_id != before.connection_id
            and records[before.connection_id].end is ConnectionEnd.RST
            and "next bytes" in records[before.connection_id].reason
        )
        if retried:
            result.stale.append(stale_latency[path])
        else:
            result.not_retried += 1
    return result


def run(config: RecoveryConfig) -> list[RecoveryRun]:
    """Both clients, one after the other (latency is measured, so nothing overlaps)."""
    return [run_one(name, config) for name in CLIENTS]


def summary(runs: list[RecoveryRun]) -> str:
    """One line for the report's summary."""
    parts = []
    for run_ in runs:
        f = run_.figures()
        parts.append(
            f"{run_.client} +{f['extra_median_ms']:.2f} ms median "
            f"(p99 {f['stale_p99_ms']:.2f} ms against {f['healthy_p99_ms']:.2f} ms healthy)"
        )
    confirmed = sum(len(r.stale) for r in runs)
    return (
        "Recovery: a transparent stale-connection retry adds " + "; ".join(parts) + f"; "
        f"{confirmed} retries confirmed by the server's accounting."
    )


def render(runs: list[RecoveryRun], config: RecoveryConfig, img_dir: Path, img_prefix: str) -> str:
    """The section's markdown; writes its PNG into ``img_dir``."""
    lines = [
        "## Recovery latency",
        "",
        "GETs on a reused connection, healthy against stale: the stale connection was "
        f"dropped by the server (`IdleDrop(idle={config.idle:g})`, no FIN, so the client "
        "cannot know before sending); the server resets it when the request arrives and "
        "rstsafe retries at once on a new connection. The clients keep idle connections "
        "60 s and do not learn, so every stale request meets a dropped connection. Every "
        "stale figure is a request the server's accounting shows was written to the "
        "dropped connection (which ended with an RST) and executed once, on a new one. "
        f"{config.requests} requests per condition, alternating, "
        f"{config.idle * 2:g} s apart.",
        "",
        "| client | healthy median (ms) | healthy p99 | stale + retry median | stale + retry p99 "
        "| extra median | extra p99 | confirmed retried | not retried | failed |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run_ in runs:
        f = run_.figures()
        lines.append(
            f"| {run_.client} | {f['healthy_median_ms']:.3f} | {f['healthy_p99_ms']:.3f} "
            f"| {f['stale_median_ms']:.3f} | {f['stale_p99_ms']:.3f} "
            f"| **{f['extra_median_ms']:+.3f}** | **{f['extra_p99_ms']:+.3f}** "
            f"| {len(run_.stale)} | {run_.not_retried} | {run_.failed} |"
        )
    png = f"{img_prefix}recovery.png"
    _plot(runs, img_dir / png)
    lines += [
        "",
        "*extra* is stale minus healthy (the retry's cost: the RST round trip, a new "
        "connection, the request again). A p99 rests on the slowest few samples, so on a "
        "noisy machine the difference of the p99s is rough (it can even come out negative); "
        "the medians are the robust figure, the plot shows both distributions.",
        "",
        f"![Latency of a request on a healthy and on a stale connection](img/benchmarks/{png})",
        "",
    ]
    return "\n".join(lines)


def _plot(runs: list[RecoveryRun], path: Path) -> None:
    figure = new_figure(8.0, 4.0)
    ax = figure.subplots()
    data: list[list[float]] = []
    labels: list[str] = []
    for run_ in runs:
        data += [[v * 1e3 for v in run_.healthy], [v * 1e3 for v in run_.stale]]
        labels += [f"{run_.client}\nhealthy", f"{run_.client}\nstale + retry"]
    ax.boxplot(data, whis=(1, 99), showfliers=True, flierprops={"markersize": 2})
    ax.set_xticks(range(1, len(labels) + 1), labels, fontsize="small")
    ax.set_ylabel("latency per request (ms)")
    # A single scheduler hiccup would squash the boxes: cut the axis above the p99s.
    top = 1.5 * max((percentile(series, 0.99) for series in data if series), default=1.0)
    hidden = sum(1 for series in data for v in series if v > top)
    ax.set_ylim(0, top)
    title = "Stale-connection retry cost (boxes: quartiles, whiskers: p1..p99)"
    if hidden:
        title += f"\n{hidden} sample(s) above {top:.1f} ms not shown"
    ax.set_title(title, fontsize="medium")
    save_figure(figure, str(path))


def as_json(runs: list[RecoveryRun]) -> list[dict[str, object]]:
    """The headline figures (for ``--json``)."""
    return [
        {
            "client": r.client,
            "confirmed": len(r.stale),
            "not_retried": r.not_retried,
            "failed": r.failed,
            **r.figures(),
        }
        for r in runs
    ]
