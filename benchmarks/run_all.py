"""Run every rstsafe benchmark and write a markdown report with PNG plots.

    .venv/bin/python benchmarks/run_all.py [--quick] [--only SECTION ...] [--out docs]

(``scripts/bench`` installs what it needs and runs this.) Sections:

- ``matrix``: errors and duplicate executions per misbehaving behaviour and real server,
  plain clients against rstsafe (section_matrix.py);
- ``overhead``: per-request cost ratio rstsafe / plain (section_overhead.py);
- ``reuse``: connections per 1,000 requests at a pace just under the server's keep-alive,
  and the TTL rstsafe learns (section_reuse.py);
- ``recovery``: the latency a stale-connection retry adds (section_recovery.py);
- ``learning``: issue 13's targets, POST-only traffic above the default TTL, a server
  resetting after N requests, a restart under load (section_learning.py);
- ``imports``: import time of rstsafe's modules against their hosts' (section_imports.py);
- ``amplification``: attempts per request against an origin that resets every connection
  (section_amplification.py).

Order: ``overhead`` runs first and alone (it is CPU-bound and a ratio of CPU costs);
then ``imports`` alone (it times interpreters starting); then ``recovery`` alone (it
measures latency); then ``learning``'s request-limit and restart scenarios alone (they
are CPU-bound), then ``amplification`` alone (counts only); then ``matrix`` and ``reuse``
together (they are paced by sleeps, so they overlap without disturbing each other's
figures). ``learning``'s POST-only rows are ``reuse``'s own; when ``reuse`` is not
asked for, those runs alone are made, in the same slot.

Writes ``<out>/benchmarks.md`` and ``<out>/img/benchmarks/*.png``; every figure in
them comes from this run.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import section_amplification
import section_imports
import section_learning
import section_matrix
import section_overhead
import section_recovery
import section_reuse

SECTIONS: tuple[str, ...] = (
    "matrix",
    "overhead",
    "reuse",
    "recovery",
    "learning",
    "amplification",
    "imports",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Plan:
    """The sizes of every section for one run."""

    overhead: section_overhead.OverheadConfig
    reuse: section_reuse.ReuseConfig
    recovery: section_recovery.RecoveryConfig
    real: section_matrix.RealServerConfig
    learning: section_learning.LearningConfig
    imports: section_imports.ImportsConfig


FULL = Plan(
    overhead=section_overhead.OverheadConfig(),
    reuse=section_reuse.ReuseConfig(requests=1000, timeout=0.25),
    recovery=section_recovery.RecoveryConfig(requests=300),
    real=section_matrix.RealServerConfig(requests=20),
    learning=section_learning.LearningConfig(),
    imports=section_imports.ImportsConfig(),
)
QUICK = Plan(
    overhead=section_overhead.OverheadConfig(
        requests_requests=300,
        requests_rounds=3,
        httpx_requests=300,
        httpx_rounds=3,
        aiohttp_requests=300,
        aiohttp_rounds=3,
    ),
    reuse=section_reuse.ReuseConfig(requests=100, timeout=0.2),
    recovery=section_recovery.RecoveryConfig(requests=60),
    real=section_matrix.RealServerConfig(requests=10),
    learning=section_learning.LearningConfig(requests=300, restart_requests=30),
    imports=section_imports.ImportsConfig(rounds=5),
)


def _version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def _nginx_version() -> str:
    for nginx in ("nginx", "/usr/sbin/nginx"):
        try:
            done = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
        except OSError:
            continue
        return done.stderr.strip().rpartition("/")[2] or "unknown"
    return "not installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> list[str]:
    """Lines describing where and with what this ran."""
    packages = ["rstsafe", "requests", "urllib3", "httpx", "httpcore", "gunicorn", "uvicorn"]
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    return [
        f"- Machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.system()} "
        f"{platform.release()}",
        f"- Python {platform.python_version()}; {versions}; nginx {_nginx_version()}; "
        f"matplotlib {_version('matplotlib')}",
    ]


def _timed(name: str, job: Callable[[], object], durations: dict[str, float]) -> object:
    started = time.monotonic()
    try:
        return job()
    finally:
        durations[name] = time.monotonic() - started
        print(f"run_all: {name} done in {durations[name]:.1f} s", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller counts, same sections")
    parser.add_argument(
        "--only",
        nargs="+",
        choices=SECTIONS,
        metavar="SECTION",
        help=f"run only these sections ({', '.join(SECTIONS)})",
    )
    parser.add_argument("--out", default="docs", help="directory for benchmarks.md and img/")
    parser.add_argument("--json", metavar="PATH", help="also write the headline figures as JSON")
    parser.add_argument(
        "--reuse-requests",
        type=int,
        metavar="N",
        help="override the reuse section's requests per run",
    )
    parser.add_argument(
        "--reuse-timeout",
        type=float,
        metavar="T",
        help="override the reuse section's server timeout T (seconds)",
    )
    parser.add_argument(
        "--learning-requests",
        type=int,
        metavar="N",
        help="override the learning section's GETs against the request-limited server",
    )
    parser.add_argument(
        "--restart-requests",
        type=int,
        metavar="N",
        help="override the learning section's requests per worker, before and after the restart",
    )
    parser.add_argument(
        "--import-rounds",
        type=int,
        metavar="N",
        help="override the imports section's rounds (the minimum of N is reported)",
    )
    args = parser.parse_args(argv)

    plan = QUICK if args.quick else FULL
    if args.reuse_requests is not None or args.reuse_timeout is not None:
        plan = dataclasses.replace(
            plan,
            reuse=section_reuse.ReuseConfig(
                requests=args.reuse_requests or plan.reuse.requests,
                timeout=args.reuse_timeout or plan.reuse.timeout,
            ),
        )
    if args.learning_requests is not None or args.restart_requests is not None:
        plan = dataclasses.replace(
            plan,
            learning=dataclasses.replace(
                plan.learning,
                requests=args.learning_requests or plan.learning.requests,
                restart_requests=args.restart_requests or plan.learning.restart_requests,
            ),
        )
    if args.import_rounds is not None:
        plan = dataclasses.replace(
            plan, imports=section_imports.ImportsConfig(rounds=args.import_rounds)
        )
    sections = [s for s in SECTIONS if args.only is None or s in args.only]
    out = Path(args.out)
    img_dir = out / "img" / "benchmarks"
    img_dir.mkdir(parents=True, exist_ok=True)
    started_at = datetime.datetime.now(datetime.timezone.utc)
    started = time.monotonic()
    durations: dict[str, float] = {}
    parts: dict[str, str] = {}
    summaries: dict[str, str] = {}
    figures: dict[str, object] = {}

    if "overhead" in sections:
        overhead = section_overhead.run(plan.overhead)
        durations["overhead"] = time.monotonic() - started
        print(f"run_all: overhead done in {durations['overhead']:.1f} s", file=sys.stderr)
        parts["overhead"] = section_overhead.render(overhead, img_dir, "")
        summaries["overhead"] = section_overhead.summary(overhead)
        figures["overhead"] = section_overhead.as_json(overhead)
    if "imports" in sections:
        imports = _timed("imports", lambda: section_imports.run(plan.imports), durations)
        assert isinstance(imports, list)
        parts["imports"] = section_imports.render(imports, plan.imports)
        summaries["imports"] = section_imports.summary(imports)
        figures["imports"] = section_imports.as_json(imports)
    if "recovery" in sections:
        recovery = _timed("recovery", lambda: section_recovery.run(plan.recovery), durations)
        assert isinstance(recovery, list)
        parts["recovery"] = section_recovery.render(recovery, plan.recovery, img_dir, "")
        summaries["recovery"] = section_recovery.summary(recovery)
        figures["recovery"] = section_recovery.as_json(recovery)
    if "amplification" in sections:
        amplification = _timed("amplification", section_amplification.run, durations)
        assert isinstance(amplification, list)
        parts["amplification"] = section_amplification.render(amplification)
        summaries["amplification"] = section_amplification.summary(amplification)
        figures["amplification"] = section_amplification.as_json(amplification)
    learning: list[section_learning.LearningRow] = []
    if "learning" in sections:
        done = _timed(
            "learning (request limit, restart)",
            lambda: section_learning.run(plan.learning),
            durations,
        )
        assert isinstance(done, list)
        learning += done
    with ThreadPoolExecutor(max_workers=3) as pool:
        jobs = {}
        if "reuse" in sections:
            jobs["reuse"] = pool.submit(
                _timed, "reuse", lambda: section_reuse.run(plan.reuse), durations
            )
        elif "learning" in sections:
            jobs["post-above"] = pool.submit(
                _timed,
                "learning (POST-only above the default)",
                lambda: section_learning.run_post_above(plan.reuse),
                durations,
            )
        if "matrix" in sections:
            jobs["synthetic"] = pool.submit(
                _timed, "matrix (misbehaving server)", section_matrix.run_synthetic, durations
            )
            jobs["real"] = pool.submit(
                _timed,
                "matrix (real servers)",
                lambda: section_matrix.run_real_servers(plan.real),
                durations,
            )
        results = {name: future.result() for name, future in jobs.items()}
    if "reuse" in results:
        reuse = results["reuse"]
        assert isinstance(reuse, list)
        parts["reuse"] = section_reuse.render(reuse, plan.reuse, img_dir, "")
        summaries["reuse"] = section_reuse.summary(reuse)
        figures["reuse"] = section_reuse.as_json(reuse)
        if "learning" in sections:
            learning += section_learning.rows_from_reuse(reuse)
    if "post-above" in results:
        post_above = results["post-above"]
        assert isinstance(post_above, list)
        learning += post_above
    if "learning" in sections:
        learning = section_learning.ordered(learning)
        parts["learning"] = section_learning.render(
            learning, plan.learning, plan.reuse, img_dir, ""
        )
        summaries["learning"] = section_learning.summary(learning)
        figures["learning"] = section_learning.as_json(learning)
    if "synthetic" in results:
        synthetic, real = results["synthetic"], results["real"]
        assert isinstance(synthetic, dict)
        assert isinstance(real, list)
        parts["matrix"] = section_matrix.render(synthetic, real, plan.real, img_dir, "")
        summaries["matrix"] = section_matrix.summary(synthetic, real)
        figures["matrix"] = section_matrix.as_json(synthetic, real)
    elapsed = time.monotonic() - started

    command = "python benchmarks/run_all.py" + (
        " " + shlex.join(sys.argv[1:] if argv is None else argv) if (argv or sys.argv[1:]) else ""
    )
    budget = 90.0 if args.quick else 480.0
    header = [
        "# Benchmarks",
        "",
        '!!! note "Generated"',
        "    This page is written by `benchmarks/run_all.py`; do not edit it by hand. Every "
        "figure and plot comes from the run described here. Regenerate with `scripts/bench`.",
        "",
        f"- Date: {started_at:%Y-%m-%d %H:%M} UTC; the run took {elapsed:.0f} s "
        f"({'quick' if args.quick else 'full'} sizes, target under {budget:.0f} s: "
        f"{'met' if elapsed < budget else 'NOT met'}; sections: {', '.join(sections)})",
        *machine(),
        f"- Command: `{command}`",
        "",
        "Figures come from a shared, noisy 2-core machine: ratios and counts are comparable "
        "within this page, absolute times much less so.",
        "",
        "## Summary",
        "",
        *(f"- {summaries[s]}" for s in SECTIONS if s in summaries),
        "",
    ]
    body = [parts[s] for s in SECTIONS if s in parts]
    (out / "benchmarks.md").write_text("\n".join(header) + "\n" + "\n".join(body))
    if args.json:
        Path(args.json).write_text(json.dumps({"elapsed": elapsed, **figures}, indent=2) + "\n")
    print(f"run_all: wrote {out / 'benchmarks.md'} in {elapsed:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
