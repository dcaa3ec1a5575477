"""benchmarks/run_all.py end to end: reuse, learning and imports sections with tiny sizes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

RUN_ALL = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"
PNG = b"\x89PNG\r\n\x1a\n"
CLIENTS = {
    "plain requests",
    "rstsafe requests",
    "plain httpx",
    "rstsafe httpx",
    "plain httpx async",
    "rstsafe httpx async",
}


# One run of three sections: about 20 s on an idle 2-core machine (24 reuse processes,
# the learning scenarios, 20 interpreters for the import times), twice that when the
# machine is busy; the suite's 60 s per test is too tight for it.
@pytest.mark.timeout(180)
def test_run_all_writes_report_and_plots_from_measured_figures(tmp_path: Path) -> None:
    """run_all --only reuse learning imports renders every figure and row it measured."""
    out, json_path = tmp_path / "docs", tmp_path / "figures.json"
    argv = [sys.executable, str(RUN_ALL), "--only", "reuse", "learning", "imports"]
    argv += ["--reuse-requests", "12", "--reuse-timeout", "0.1", "--learning-requests", "60"]
    argv += ["--restart-requests", "10", "--import-rounds", "1"]
    argv += ["--out", str(out), "--json", str(json_path)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=150, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = (out / "benchmarks.md").read_text()
    figures = json.loads(json_path.read_text())
    images = out / "img" / "benchmarks"

    # Reuse: 6 clients (4 sync, 2 async) x 2 regimes x 2 workloads.
    runs = figures["reuse"]
    assert len(runs) == 24
    assert {run["client"] for run in runs} == CLIENTS
    for run in runs:
        assert run["requests"] == 12
        assert 1 <= run["connections"] <= 12
        row = f"| {run['workload']} | {run['client']} | {run['per_thousand']:.1f} "
        assert row + f"({run['connections']} for 12) | {run['failed']}" in report
    assert "--reuse-requests 12" in report  # the exact command is recorded
    assert "## Overhead" not in report  # only the sections asked for
    for name in ("reuse-ttl.png", "reuse-connections.png", "learning.png"):
        assert (images / name).read_bytes().startswith(PNG)
        assert f"(img/benchmarks/{name})" in report

    # Learning: every row rendered with its verdict, computed from its figures.
    rows = figures["learning"]
    by_scenario: dict[str, set[str]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario"], set()).add(row["client"])
        line = (
            f"| {row['title']} | {row['client']} | {row['connections']} | {row['target']} "
            f"| {row['verdict']} |"
        )
        assert line in report
        assert row["verdict"].startswith("met") == row["met"]
        assert row["met"] == (
            row["connections"] <= row["limit"] and row["failed"] == 0 and row["duplicates"] == 0
        )
        assert row["connections"] >= 1  # for the restart: the new server was reached
    assert by_scenario == {
        "post-above": CLIENTS,
        "limit": CLIENTS,
        "limit-tasks": {"plain httpx async", "rstsafe httpx async"},
        "restart": CLIENTS,
    }
    reuse_posts = {
        r["client"]: r["connections"]
        for r in runs
        if r["regime"] == "above" and r["workload"] == "POST"
    }
    for row in rows:
        if row["scenario"] == "post-above":  # the reuse run's own rows, not a rerun
            assert row["connections"] == reuse_posts[row["client"]]
            assert row["limit"] == 2  # 2 per 1,000, never fewer than 2
        if row["scenario"] == "limit" and row["client"].startswith("plain"):
            assert row["failed"] > 0  # the server really resets: plain clients fail

    # Imports: each rstsafe module against its host, the difference and the verdict.
    imports = figures["imports"]
    assert [r["module"] for r in imports][:3] == ["rstsafe", "rstsafe.httpx", "rstsafe.requests"]
    for r in imports:
        assert r["module_ms"] > 0
        assert r["host_ms"] > 0
        assert r["difference_ms"] == r["module_ms"] - r["host_ms"]
        verdict = "met" if r["met"] else "not met"
        assert f"| {r['difference_ms']:+.1f} ms | {verdict}" in report
