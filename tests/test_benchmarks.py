"""benchmarks/run_all.py end to end, on its cheapest section (reuse efficiency, tiny sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

RUN_ALL = Path(__file__).resolve().parent.parent / "benchmarks" / "run_all.py"


def test_run_all_writes_report_and_plots_from_measured_figures(tmp_path: Path) -> None:
    """run_all --only reuse writes markdown and PNGs that carry the figures it measured."""
    out, figures = tmp_path / "docs", tmp_path / "figures.json"
    argv = [sys.executable, str(RUN_ALL), "--only", "reuse", "--out", str(out)]
    argv += ["--reuse-requests", "12", "--reuse-timeout", "0.1", "--json", str(figures)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=50, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    report = (out / "benchmarks.md").read_text()
    runs = json.loads(figures.read_text())["reuse"]
    assert len(runs) == 16  # 4 clients x 2 regimes x 2 workloads
    for run in runs:
        assert run["requests"] == 12
        assert 1 <= run["connections"] <= 12
        row = f"| {run['workload']} | {run['client']} | {run['per_thousand']:.1f} "
        assert row + f"({run['connections']} for 12) | {run['failed']}" in report
    assert "--reuse-requests 12" in report  # the exact command is recorded
    assert "## Overhead" not in report  # only the section asked for
    for name in ("reuse-ttl.png", "reuse-connections.png"):
        png = (out / "img" / "benchmarks" / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        assert f"(img/benchmarks/{name})" in report
