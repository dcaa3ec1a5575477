"""Scenario matrix: user-visible errors and duplicate executions, plain clients against rstsafe.

Two parts, run at the same time (both are sleep-bound):

- every behaviour of the misbehaving server against every client, via
  :func:`rstsafe._cli.demo.run_demo` (the ``rstsafe demo`` table, with its workloads): which
  requests failed, and which POSTs the server executed more than once;
- real servers nobody here wrote (nginx, gunicorn, uvicorn) with a short keep-alive,
  started as ``tests/realservers.py`` describes. The workload alternates GETs and POSTs
  (each with a unique path, so the app's execution log counts executions per request)
  with pauses that straddle the server's keep-alive: some just under it, some just over,
  where the client's reuse races the server's close. nginx answers from its config
  (no application), so for nginx only errors are counted.

Why it matters: this is the whole promise in one table, on synthetic and on real
servers: fewer failures, and no request executed twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from common import MATRIX_CLIENT_NAMES, error_name, make_client, new_figure, save_figure

from rstsafe._cli.demo import Cell, run_demo

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import realservers

__all__ = ("RealServerConfig", "RealServerRun", "render", "run_real_servers", "run_synthetic")

#: Pauses as multiples of the server's keep-alive K: under, at, and over it. The ones
#: within 1 % of K race the server's close; gunicorn's gthread worker checks its
#: keep-alive timers about once a second, hence the longer pauses.
PAUSES: tuple[float, ...] = (0.5, 0.9, 0.99, 0.999, 1.0, 1.001, 1.01, 1.1, 1.5, 2.2)


@dataclass(frozen=True, slots=True, kw_only=True)
class RealServerConfig:
    """Keep-alive of the real servers (whole seconds: uvicorn takes an int) and requests."""

    keepalive: int = 1
    requests: int = 20


@dataclass(slots=True, kw_only=True)
class RealServerRun:
    """One client against one real server."""

    server: str
    client: str
    requests: int
    errors: Counter[str] = field(default_factory=Counter)
    #: For each failed request: its method and the pause before it, in K.
    failed_after: list[str] = field(default_factory=list)
    duplicates: int | None = None

    @property
    def failed(self) -> int:
        return sum(self.errors.values())


def run_synthetic() -> dict[str, dict[str, Cell]]:
    """The demo's table: ``{scenario: {client: Cell}}``."""
    return run_demo()


def _argv(name: str, port: int, keepalive: int, workdir: Path) -> list[str]:
    bin_dir = realservers.VENV_BIN
    if name == "gunicorn":
        (workdir / "rstsafe_wsgi_app.py").write_text(realservers.WSGI_APP)
        return [
            str(bin_dir / "gunicorn"),
            "--worker-class=gthread",
            "--threads=8",
            "--workers=1",
            f"--bind=127.0.0.1:{port}",
            f"--chdir={workdir}",
            f"--keep-alive={keepalive}",
            "rstsafe_wsgi_app:app",
        ]
    if name == "uvicorn":
        (workdir / "rstsafe_asgi_app.py").write_text(realservers.ASGI_APP)
        return [
            str(bin_dir / "uvicorn"),
            "rstsafe_asgi_app:app",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--app-dir={workdir}",
            "--no-access-log",
            "--lifespan=off",
            f"--timeout-keep-alive={keepalive}",
        ]
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    conf = workdir / "nginx.conf"
    conf.write_text(
        realservers.NGINX_CONF.format(
            tmp=workdir,
            port=port,
            keepalive=f"{keepalive}s",
            requests=100000,
            log=workdir / "executed.log",
        )
    )
    return [nginx, "-c", str(conf), "-p", str(workdir), "-e", str(workdir / "error.log")]


def available_servers() -> list[str]:
    """The real servers installed here."""
    names = []
    if shutil.which("nginx") or Path("/usr/sbin/nginx").exists():
        names.append("nginx")
    for name in ("gunicorn", "uvicorn"):
        if (realservers.VENV_BIN / name).exists():
            names.append(name)
    return names


@contextmanager
def real_server(name: str, keepalive: int) -> Iterator[realservers.RealServer]:
    """Start ``name`` with a keep-alive of ``keepalive`` seconds; stop it on exit."""
    with tempfile.TemporaryDirectory(prefix=f"rstsafe-bench-{name}-") as tmp:
        workdir = Path(tmp)
        port = realservers.free_port()
        log = workdir / "server.log"
        execution_log = workdir / "executed.log"
        env = {**os.environ, "RSTSAFE_EXECUTION_LOG": str(execution_log)}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                _argv(name, port, keepalive, workdir),
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=workdir,
                env=env,
            )
        try:
            realservers.wait_for_port(port, process, log)
            yield realservers.RealServer(name, f"http://127.0.0.1:{port}", port, execution_log)
        finally:
            realservers.stop_process(process)


def _paced(
    server: realservers.RealServer, client_name: str, config: RealServerConfig
) -> RealServerRun:
    import time

    result = RealServerRun(server=server.name, client=client_name, requests=config.requests)
    client = make_client(client_name)
    prefix = client_name.replace(" ", "-")
    try:
        for index in range(config.requests):
            pause = PAUSES[index % len(PAUSES)] if index else 0.0
            time.sleep(pause * config.keepalive)
            if index % 2:
                method, path, body = "POST", f"/{prefix}/orders/{index}", b"order %d" % index
            else:
                method, path, body = "GET", f"/{prefix}/items/{index}", None
            try:
                client.request(method, server.url + path, body, timeout=10.0)
            except Exception as exc:  # every failure is a result
                result.errors[error_name(exc)] += 1
                result.failed_after.append(f"{method} after {pause:g} K")
    finally:
        client.close()
    return result


def run_real_servers(config: RealServerConfig) -> list[RealServerRun]:
    """Every real server x client; clients of one server run at once, servers too."""
    runs: list[RealServerRun] = []

    def one_server(name: str) -> list[RealServerRun]:
        with real_server(name, config.keepalive) as server:
            with ThreadPoolExecutor(max_workers=len(MATRIX_CLIENT_NAMES)) as pool:
                results = list(pool.map(lambda c: _paced(server, c, config), MATRIX_CLIENT_NAMES))
            if name != "nginx":
                executed = Counter(p for m, p in server.executed() if m == "POST")
                for result in results:
                    prefix = "/" + result.client.replace(" ", "-") + "/"
                    result.duplicates = sum(
                        n - 1 for p, n in executed.items() if p.startswith(prefix) and n > 1
                    )
        return results

    names = available_servers()
    with ThreadPoolExecutor(max_workers=max(1, len(names))) as pool:
        for results in pool.map(one_server, names):
            runs += results
    return runs


def summary(synthetic: dict[str, dict[str, Cell]], real: list[RealServerRun]) -> str:
    """One line for the report's summary."""
    titles = list(next(iter(synthetic.values())).keys()) if synthetic else []
    parts = []
    for title in titles:
        column = [c[title] for c in synthetic.values()]
        parts.append(
            f"{title} {sum(c.failed for c in column)}/{sum(c.requests for c in column)} "
            f"failed, {sum(c.duplicates for c in column)} duplicate POSTs"
        )
    text = "Scenario matrix, misbehaving server: " + "; ".join(parts) + "."
    if real:
        rows = []
        for client in MATRIX_CLIENT_NAMES:
            mine = [r for r in real if r.client == client]
            rows.append(
                f"{client} {sum(r.failed for r in mine)}/{sum(r.requests for r in mine)} "
                f"failed, {sum(r.duplicates or 0 for r in mine)} duplicate POSTs"
            )
        text += " Real servers: " + "; ".join(rows) + "."
    return text


def render(
    synthetic: dict[str, dict[str, Cell]],
    real: list[RealServerRun],
    config: RealServerConfig,
    img_dir: Path,
    img_prefix: str,
) -> str:
    """The section's markdown; writes its PNG into ``img_dir``."""
    titles = list(next(iter(synthetic.values())).keys()) if synthetic else []
    lines = [
        "## Scenario matrix",
        "",
        "### The misbehaving server",
        "",
        "Every behaviour of `rstsafe.testing` against every client, with the workloads of "
        "`rstsafe demo` (a few GETs and POSTs paced against the "
        "behaviour's timers, a server per cell). Cells: requests that failed (the most common "
        "root cause), and extra executions of POSTs the server had already run (*dup*).",
        "",
        "| behaviour | " + " | ".join(titles) + " |",
        "|---|" + "---|" * len(titles),
    ]
    for scenario, cells in synthetic.items():
        lines.append(f"| {scenario} | " + " | ".join(cells[t].render() for t in titles) + " |")
    totals = []
    for title in titles:
        column = [c[title] for c in synthetic.values()]
        totals.append(
            f"{sum(c.failed for c in column)}/{sum(c.requests for c in column)} failed, "
            f"{sum(c.duplicates for c in column)} dup"
        )
    lines.append("| **total** | " + " | ".join(f"**{t}**" for t in totals) + " |")
    png = f"{img_prefix}matrix.png"
    _plot(synthetic, real, img_dir / png)
    image = f"![Failed requests per behaviour, real server and client](img/benchmarks/{png})"
    lines += [
        "",
        "### Real servers",
        "",
    ]
    if not real:
        lines += ["No real server (nginx, gunicorn, uvicorn) is installed here: not run.", ""]
        return "\n".join([*lines, image, ""])
    pauses = ", ".join(f"{p:g}" for p in PAUSES)
    lines += [
        f"nginx, gunicorn (gthread) and uvicorn with a keep-alive of K = {config.keepalive} s; "
        f"{config.requests} requests per client alternating GET and POST, each with a unique "
        f"path, paused by K times ({pauses}) in turn, so some arrive just before the server's "
        f"close and some just after. The {len(MATRIX_CLIENT_NAMES)} clients run at once "
        "against one server per kind. Duplicates come from the app's execution log (one "
        "line per executed request); nginx answers from its config, so only its errors are "
        "counted. A failure names the request that failed and the pause before it.",
        "",
        "| server | " + " | ".join(MATRIX_CLIENT_NAMES) + " |",
        "|---|" + "---|" * len(MATRIX_CLIENT_NAMES),
    ]
    for server in dict.fromkeys(r.server for r in real):
        row: list[str] = []
        for client in MATRIX_CLIENT_NAMES:
            run_ = next(r for r in real if r.server == server and r.client == client)
            text = f"{run_.failed}/{run_.requests} failed"
            if run_.errors:
                text += " (" + ", ".join(f"{n} {k}" for k, n in run_.errors.items())
                text += ": " + ", ".join(run_.failed_after) + ")"
            text += ", dup n/a" if run_.duplicates is None else f", {run_.duplicates} dup"
            row.append(text)
        lines.append(f"| {server} (K = {config.keepalive} s) | " + " | ".join(row) + " |")
    return "\n".join([*lines, "", image, ""])


def _plot(synthetic: dict[str, dict[str, Cell]], real: list[RealServerRun], path: Path) -> None:
    """Heatmap: share of requests failed per row (behaviour or real server) and client."""
    titles: list[str] = list(next(iter(synthetic.values())).keys()) if synthetic else []
    titles += [c for c in MATRIX_CLIENT_NAMES if c not in titles]
    # (failed, requests, duplicates) per row and column; None where a client did not run.
    rows: dict[str, dict[str, tuple[int, int, int]]] = {
        scenario: {t: (c.failed, c.requests, c.duplicates) for t, c in cells.items()}
        for scenario, cells in synthetic.items()
    }
    for run_ in real:
        rows.setdefault(f"{run_.server} (real server)", {})[run_.client] = (
            run_.failed,
            run_.requests,
            run_.duplicates or 0,
        )
    names = list(rows)
    figure = new_figure(9.0, 0.42 * len(names) + 1.8)
    ax = figure.subplots()
    nan = float("nan")
    data = [
        [
            rows[n][t][0] / max(1, rows[n][t][1]) if t in rows[n] and rows[n][t][1] else nan
            for t in titles
        ]
        for n in names
    ]
    image = ax.imshow(data, cmap="Reds", vmin=0, vmax=1, aspect="auto")
    for row, name in enumerate(names):
        for column, title in enumerate(titles):
            if title not in rows[name]:
                ax.text(column, row, "not run", ha="center", va="center", fontsize=7)
                continue
            failed, sent, duplicates = rows[name][title]
            text = f"{failed}/{sent}" + (f"\n+{duplicates} dup" if duplicates else "")
            colour = "white" if data[row][column] > 0.5 else "black"
            ax.text(column, row, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(len(titles)), titles, fontsize="small")
    ax.set_yticks(range(len(names)), names, fontsize="small")
    ax.xaxis.tick_top()
    figure.colorbar(image, ax=ax, label="share of requests failed")
    save_figure(figure, str(path))


def as_json(synthetic: dict[str, dict[str, Cell]], real: list[RealServerRun]) -> dict[str, object]:
    """The headline figures (for ``--json``)."""
    return {
        "synthetic": {
            s: {t: {"failed": c.failed, "duplicates": c.duplicates} for t, c in cells.items()}
            for s, cells in synthetic.items()
        },
        "real": [
            {"server": r.server, "client": r.client, "failed": r.failed, "dup": r.duplicates}
            for r in real
        ],
    }
