"""Overhead: the per-request cost of rstsafe against the plain clients, on a fast server.

What is measured: sequential GETs on one keep-alive connection to a loopback server in
another process, rstsafe and plain clients interleaved round by round, median over
rounds; and, for httpx's AsyncClient, throughput with concurrent tasks. The work is in
``requests_overhead.py`` (requests and urllib3, client CPU time per request) and
``httpx_overhead.py`` (httpx sync and async, wall time per request, against nginx) and
``aiohttp_overhead.py`` (aiohttp's ClientSession, per request and with concurrent tasks,
against the same server); this module calls their ``measure`` functions and reports the
ratios.

Why it matters: the target is a cost ratio of at most 1.05 (5 % slower) on the happy
path, where rstsafe only does bookkeeping. This section is CPU-bound, so run_all runs
it alone.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from pathlib import Path

import aiohttp_overhead
import httpx_overhead
import requests_overhead
from common import new_figure, save_figure

__all__ = ("TARGET", "OverheadConfig", "OverheadResult", "render", "run")

#: The issue's target for time per request, rstsafe / plain.
TARGET = 1.05
#: Issue 14's bound for aiohttp's throughput under 50 tasks, rstsafe / plain.
AIOHTTP_THROUGHPUT_TARGET = 0.97


@dataclass(frozen=True, slots=True, kw_only=True)
class OverheadConfig:
    """Requests per round and rounds, for each script."""

    requests_requests: int = 2000
    requests_rounds: int = 11
    httpx_requests: int = 2000
    httpx_rounds: int = 7
    httpx_tasks: int = 50
    aiohttp_requests: int = 1000
    aiohttp_rounds: int = 15
    aiohttp_tasks: int = 50


@dataclass(frozen=True, slots=True)
class Row:
    """One comparison: plain and rstsafe figures, their ratio, and the unit."""

    label: str
    clock: str
    plain: float
    rstsafe: float
    unit: str
    lower_is_better: bool = True
    #: The ratio's bound: at most this for a cost, at least this for a throughput.
    target: float = TARGET

    @property
    def ratio(self) -> float:
        return self.rstsafe / self.plain

    @property
    def meets_target(self) -> bool:
        if self.lower_is_better:
            return self.ratio <= self.target
        return self.ratio >= self.target

    @property
    def target_text(self) -> str:
        return f"<= {self.target:g}" if self.lower_is_better else f">= {self.target:.3g}"


@dataclass(frozen=True, slots=True)
class OverheadResult:
    """Both scripts' figures, as table rows."""

    rows: list[Row]
    httpx_server: str
    config: OverheadConfig


def run(config: OverheadConfig) -> OverheadResult:
    """Run both scripts' measurements, one after the other."""
    req = requests_overhead.measure(config.requests_requests, config.requests_rounds)
    hx = httpx_overhead.measure(config.httpx_requests, config.httpx_rounds, config.httpx_tasks)
    ah = aiohttp_overhead.measure(
        config.aiohttp_requests, config.aiohttp_rounds, config.aiohttp_tasks
    )
    rows = []
    for ours, plain in requests_overhead.PAIRS:
        rows.append(
            Row(
                f"{ours} / {plain}",
                "client CPU",
                statistics.median(req.cpu[plain]) * 1e6,
                statistics.median(req.cpu[ours]) * 1e6,
                "us/request",
            )
        )
    rows += [
        Row("rstsafe.httpx.Client / httpx.Client", "wall", *_us(hx.sync), "us/request"),
        Row(
            "rstsafe.httpx.AsyncClient / httpx.AsyncClient",
            "wall",
            *_us(hx.async_),
            "us/request",
        ),
        Row(
            f"AsyncClient throughput, {hx.tasks} tasks, 20 connections",
            "wall",
            hx.throughput[0],
            hx.throughput[1],
            "requests/s",
            lower_is_better=False,
            target=1 / TARGET,
        ),
        Row(
            "rstsafe.aiohttp.ClientSession / aiohttp.ClientSession",
            "wall",
            *_us(ah["per_request"]),
            "us/request",
        ),
        Row(
            f"aiohttp throughput, {ah['tasks']} tasks, {ah['connections']} connections",
            "wall",
            ah["throughput"][0],
            ah["throughput"][1],
            "requests/s",
            lower_is_better=False,
            target=AIOHTTP_THROUGHPUT_TARGET,
        ),
    ]
    return OverheadResult(rows, hx.server, config)


def _us(pair: tuple[float, float]) -> tuple[float, float]:
    return pair[0] * 1e6, pair[1] * 1e6


def summary(result: OverheadResult) -> str:
    """One line for the report's summary."""
    met = sum(1 for row in result.rows if row.meets_target)
    worst = max(result.rows, key=lambda row: row.ratio if row.lower_is_better else 1 / row.ratio)
    return (
        f"Overhead (target: cost ratio <= {TARGET:g}): met in {met} of {len(result.rows)} "
        f"comparisons; the worst is {worst.label} at {worst.ratio:.3f}."
    )


def render(result: OverheadResult, img_dir: Path, img_prefix: str) -> str:
    """The section's markdown; writes its PNG into ``img_dir``."""
    c = result.config
    lines = [
        "## Overhead",
        "",
        "Sequential GETs on one keep-alive connection to a loopback server in another "
        "process; rstsafe and plain clients interleaved round by round, median over rounds. "
        f"requests and urllib3: {c.requests_rounds} rounds of {c.requests_requests} requests "
        "against a raw-socket server, client CPU time per request "
        "(`benchmarks/requests_overhead.py`). httpx: "
        f"{c.httpx_rounds} rounds of {c.httpx_requests} requests against "
        f"{result.httpx_server}, wall time (`benchmarks/httpx_overhead.py`). aiohttp: "
        f"{c.aiohttp_rounds} rounds of {c.aiohttp_requests} requests against the same server, "
        f"sequential and from {c.aiohttp_tasks} tasks, wall time "
        "(`benchmarks/aiohttp_overhead.py`). "
        f"Target: ratio <= {TARGET:g} for time per request, >= {1 / TARGET:.3f} for "
        f"httpx's throughput, >= {AIOHTTP_THROUGHPUT_TARGET:g} for aiohttp's (issue 14).",
        "",
        "| comparison | clock | plain | rstsafe | unit | ratio | target | met |",
        "|---|---|---:|---:|---|---:|---|---|",
    ]
    for row in result.rows:
        lines.append(
            f"| {row.label} | {row.clock} | {row.plain:.1f} | {row.rstsafe:.1f} | {row.unit} "
            f"| **{row.ratio:.3f}** | {row.target_text} | {'yes' if row.meets_target else 'NO'} |"
        )
    png = f"{img_prefix}overhead.png"
    _plot(result, img_dir / png)
    lines += [
        "",
        f"![Cost ratio rstsafe / plain per client](img/benchmarks/{png})",
        "",
    ]
    return "\n".join(lines)


def _plot(result: OverheadResult, path: Path) -> None:
    figure = new_figure(8.0, 4.0)
    ax = figure.subplots()
    # Throughput is inverted so every bar reads "cost ratio, lower is better".
    labels, values = [], []
    for row in result.rows:
        short = row.label.split(" / ")[0].replace("rstsafe.", "")
        if not row.lower_is_better:
            short = f"{row.label.split()[0]} throughput\n(inverted)"
        labels.append(short)
        values.append(row.ratio if row.lower_is_better else 1 / row.ratio)
    colors = ["tab:green" if row.meets_target else "tab:red" for row in result.rows]
    bars = ax.bar(range(len(values)), values, color=colors)
    ax.bar_label(bars, fmt="%.3f", fontsize="small")
    ax.axhline(1.0, color="black", linewidth=1, label="1.0 (same cost)")
    ax.axhline(TARGET, color="tab:red", linestyle="--", linewidth=1, label=f"target {TARGET:g}")
    ax.set_xticks(range(len(labels)), labels, fontsize="small")
    ax.set_ylabel("cost ratio rstsafe / plain")
    ax.set_ylim(min(0.8, min(values) - 0.05), max(1.15, max(values) + 0.05))
    ax.legend(fontsize="small")
    save_figure(figure, str(path))


def as_json(result: OverheadResult) -> list[dict[str, object]]:
    """The headline figures (for ``--json``)."""
    return [
        {"label": r.label, "plain": r.plain, "rstsafe": r.rstsafe, "ratio": r.ratio}
        for r in result.rows
    ]
