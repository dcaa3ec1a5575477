"""Run the host libraries' own test suites plain and with rstsafe swapped in; report regressions.

A regression is a test that passes plain and does not pass (fails, errors, is skipped or is
missing) with rstsafe's classes swapped in. Tests that need the Internet fail in both runs (the
runs happen in a loopback-only network namespace where root allows it), so they are not
regressions. Each regression is run once more, swapped, by node id; one that then passes is
reported as flaky, not as a regression.

Exit status: 0 when every regression is on ``contract/allowed.toml``, 1 otherwise, 2 when the
runner itself could not run (download, install).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from contract.suites import SUITES, VARIANTS, Variant

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[import-not-found, unused-ignore]

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".contract-cache"
ALLOWED = ROOT / "contract" / "allowed.toml"

# Per-test limit (pytest-timeout): a hang in one test must not eat CI's budget.
TEST_TIMEOUT = 60
# Per-run limit: a run still going after this is ended; what its junit report holds counts.
RUN_TIMEOUT = 30 * 60

# Outcomes, from best to worst: the worst of a test's reports wins (a teardown error after a
# passed call makes the test an error).
PASSED, SKIPPED, FAILED, ERROR, MISSING = "passed", "skipped", "failed", "error", "missing"
_RANK = {PASSED: 0, SKIPPED: 1, FAILED: 2, ERROR: 3}


#: Reruns of the regressions, each on its own; passing once makes a test flaky.
RERUNS = 3


def log(message: str) -> None:
    print(f"[contract {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs: object) -> None:
    log("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


# -- sources and the venv ---------------------------------------------------------------


def host_versions(python: str) -> dict[str, str]:
    """The versions of the hosts (and httpcore) installed for ``python``."""
    names = ("requests", "urllib3", "httpx", "httpcore", "aiohttp")
    code = (
        "import importlib.metadata as m, json; "
        f"print(json.dumps({{n: m.version(n) for n in {names!r}}}))"
    )
    out = subprocess.run([python, "-c", code], check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout))


def sdist(name: str, version: str, python: str) -> Path:
    """The extracted sdist of ``name==version`` under .contract-cache/src (downloaded once)."""
    downloads = CACHE / "sdists"
    downloads.mkdir(parents=True, exist_ok=True)
    archives = list(downloads.glob(f"{name}-{version}.tar.gz"))
    if not archives:
        run(
            [
                python, "-m", "pip", "download", "--quiet", "--no-binary", ":all:", "--no-deps",
                "--dest", str(downloads), f"{name}=={version}",
            ]
        )  # fmt: skip
        archives = list(downloads.glob(f"{name}-{version}.tar.gz"))
    if not archives:
        raise RuntimeError(f"pip download gave no {name}-{version}.tar.gz in {downloads}")
    target = CACHE / "src" / f"{name}-{version}"
    if not (target / ".extracted").exists():
        shutil.rmtree(target, ignore_errors=True)
        target.parent.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archives[0]) as tar:
            tar.extractall(target.parent, filter="data")
        for folder in SUITES[name].shadowing:
            shutil.rmtree(target / folder, ignore_errors=True)
        (target / ".extracted").write_text(version)
    return target


def contract_venv(python: str, versions: dict[str, str]) -> Path:
    """A venv with the hosts at their installed versions, their tests' needs and rstsafe.

    Separate from the project's venv: the upstream suites need pytest plugins (pytest-httpbin,
    pytest-socket, ...) that must not load into rstsafe's own test runs. rebuilt when the host
    versions or the ``contract`` extra change.
    """
    pins = [f"{name}=={version}" for name, version in sorted(versions.items())]
    extras = [req for suite in SUITES.values() for req in suite.extras]
    pyproject = (ROOT / "pyproject.toml").read_bytes()
    key = hashlib.sha256(repr((pins, extras, pyproject, sys.version)).encode()).hexdigest()[:12]
    venv = CACHE / "venv"
    stamp = venv / ".contract-stamp"
    if stamp.exists() and stamp.read_text() == key:
        return venv
    shutil.rmtree(venv, ignore_errors=True)
    run([python, "-m", "venv", str(venv)])
    vpy = str(venv / "bin" / "python")
    run([vpy, "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    # The hosts pinned; the `contract` extra (see pyproject.toml) for what their tests import.
    run([vpy, "-m", "pip", "install", "--quiet", "-e", f"{ROOT}[contract]", *pins, *extras])
    run([vpy, "-m", "pip", "install", "--quiet", *pins])  # the pins win over any extra
    stamp.write_text(key)
    return venv


# The suites' "tarpit" hosts: addresses their tests expect to swallow a SYN and leave the
# connect to time out (urllib3's TARPIT_HOST 240.0.0.0, requests' 10.255.255.1), as they do
# on a host with a default route. A namespace without one answers ENETUNREACH at once, and
# tests written for a connect that hangs then race: urllib3's
# test_http2_probe_blocked_per_thread expects three connects on three threads, and a connect
# that fails in microseconds lets the thread pool hand the next one to the same thread.
# Routed to loopback, where nothing answers for them, the SYN is dropped as upstream expects.
TARPIT_ROUTES = ("240.0.0.0/4", "10.255.255.1/32")
NETNS_SETUP = " && ".join(
    ["ip link set lo up", *(f"ip route add {net} dev lo" for net in TARPIT_ROUTES)]
)


def netns_prefix() -> list[str]:
    """``unshare -n`` with loopback up when root allows it, else nothing (plain run)."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return []
    probe = subprocess.run(
        ["unshare", "-n", "sh", "-c", f"{NETNS_SETUP} && echo ok"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0 or probe.stdout.strip() != "ok":
        return []
    return ["unshare", "-n", "sh", "-c", f'{NETNS_SETUP} && exec "$@"', "netns"]


# -- running and reading a suite -----------------------------------------------------------


@dataclass
class Run:
    variant: Variant
    junit: Path
    seconds: float = 0.0
    returncode: int = 0
    outcomes: dict[str, str] = field(default_factory=dict)

    def count(self, outcome: str) -> int:
        return sum(1 for value in self.outcomes.values() if value == outcome)


def pytest_command(
    venv: Path, variant: Variant, junit: Path, nodeids: list[str] | None = None
) -> list[str]:
    suite = SUITES[variant.suite]
    cmd = [
        str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "-p", "no:rstsafe", "-o", "junit_family=xunit1", f"--junitxml={junit}",
        f"--timeout={TEST_TIMEOUT}", "-o", "console_output_style=classic",
        "-p", "contract.plugins.hard_exit",
        *suite.pytest_args,
    ]  # fmt: skip
    if variant.plugin is not None:
        cmd += ["-p", f"contract.plugins.{variant.plugin}"]
    cmd += nodeids if nodeids is not None else list(suite.tests)
    return cmd


def run_variant(
    venv: Path, source: Path, variant: Variant, out: Path, nodeids: list[str] | None = None
) -> Run:
    tag = variant.name if nodeids is None else f"{variant.name}.rerun"
    junit = out / f"{tag}.xml"
    junit.unlink(missing_ok=True)
    cmd = netns_prefix() + pytest_command(venv, variant, junit, nodeids)
    env = dict(os.environ)
    # contract.plugins importable; the worktree's rstsafe first (also installed editable).
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "src")])
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_PLUGINS", None)
    started = time.monotonic()
    log(f"{tag}: running {' '.join(cmd[-3:]) if nodeids is None else len(nodeids)} ...")
    with open(out / f"{tag}.log", "w") as output:
        proc = subprocess.Popen(
            cmd,
            cwd=source,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            log(f"{tag}: still running after {RUN_TIMEOUT} s, ended")
            os.killpg(proc.pid, signal.SIGKILL)
            returncode = proc.wait()
    result = Run(variant, junit, time.monotonic() - started, returncode)
    if junit.exists():
        result.outcomes = read_junit(junit, source)
    log(
        f"{tag}: exit {returncode} in {result.seconds:.0f} s, "
        f"{result.count(PASSED)} passed, {result.count(FAILED)} failed, "
        f"{result.count(ERROR)} errors, {result.count(SKIPPED)} skipped"
    )
    return result


def nodeid(case: ET.Element, source: Path) -> str:
    """pytest's node id of a junit testcase: its module file, classes and name.

    The module comes from ``classname`` (the longest dotted prefix that is a file of the
    suite), not from ``file``: a test class imported into another module (urllib3's
    test_pyopenssl re-runs test_socketlevel's classes) is collected, and selected, there.
    """
    name = case.get("name", "")
    parts = case.get("classname", "").split(".")
    for cut in range(len(parts), 0, -1):
        module = "/".join(parts[:cut]) + ".py"
        if (source / module).is_file():
            return "::".join([module, *parts[cut:], name])
    return "::".join([case.get("file") or ".".join(parts), name])


def read_junit(path: Path, source: Path) -> dict[str, str]:
    outcomes: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        outcome = PASSED
        for child in case:
            if child.tag == "failure":
                outcome = max(outcome, FAILED, key=_RANK.__getitem__)
            elif child.tag == "error":
                outcome = max(outcome, ERROR, key=_RANK.__getitem__)
            elif child.tag == "skipped":
                outcome = max(outcome, SKIPPED, key=_RANK.__getitem__)
        key = nodeid(case, source)
        previous = outcomes.get(key, PASSED)
        outcomes[key] = max(previous, outcome, key=_RANK.__getitem__)
    return outcomes


def regressions(plain: Run, swapped: Run) -> dict[str, str]:
    """Tests that passed plain and did not pass swapped, with their swapped outcome."""
    found = {}
    for test, outcome in plain.outcomes.items():
        if outcome != PASSED:
            continue
        swapped_outcome = swapped.outcomes.get(test, MISSING)
        if swapped_outcome != PASSED:
            found[test] = swapped_outcome
    return found


def load_allowed() -> dict[tuple[str, str], str]:
    if not ALLOWED.exists():
        return {}
    data = tomllib.loads(ALLOWED.read_text())
    allowed = {}
    for entry in data.get("allowed", []):
        variant, test, reason = entry["variant"], entry["test"], entry.get("reason", "").strip()
        if not reason:
            raise ValueError(f"{ALLOWED}: {variant} {test} has no reason")
        allowed[(variant, test)] = reason
    return allowed


# -- the command ---------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/contract", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--python",
        default=str(ROOT / ".venv" / "bin" / "python"),
        help="the interpreter whose installed requests/urllib3/httpx/aiohttp versions are tested",
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="only these variants (repeatable; e.g. requests-session); the plain run of "
        "their suite is always included",
    )
    parser.add_argument("--suite", action="append", default=[], help="only these suites")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument("--no-rerun", action="store_true", help="do not rerun regressions")
    parser.add_argument(
        "--report-only",
        action="append",
        default=[],
        metavar="SUITE",
        help="report this suite's regressions without failing on them (repeatable)",
    )
    args = parser.parse_args(argv)

    selected = [
        v
        for v in VARIANTS
        if (not args.suite or v.suite in args.suite)
        and (not args.variant or v.plugin is None or v.name in args.variant)
    ]
    if args.variant:
        suites_wanted = {v.suite for v in VARIANTS if v.name in args.variant}
        selected = [v for v in selected if v.suite in suites_wanted]
    started = time.monotonic()
    try:
        versions = host_versions(args.python)
        sources = {s: sdist(s, versions[s], args.python) for s in {v.suite for v in selected}}
        venv = contract_venv(args.python, versions)
    except (subprocess.CalledProcessError, RuntimeError, OSError) as exc:
        log(f"could not prepare the suites: {exc}")
        return 2
    out = CACHE / "runs"
    out.mkdir(parents=True, exist_ok=True)
    log(f"hosts: {versions}; network namespace: {'yes' if netns_prefix() else 'no'}")

    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        futures = {
            v.name: pool.submit(run_variant, venv, sources[v.suite], v, out) for v in selected
        }
        runs = {name: future.result() for name, future in futures.items()}

    # A plain run that collected nothing (a missing test requirement, a bad option) would
    # make every swapped run look clean: the runner could not run that suite.
    empty = [v.name for v in selected if v.plugin is None and not runs[v.name].outcomes]
    if empty:
        log(f"no test results from {', '.join(empty)}: see {out}/<variant>.log")
        return 2

    allowed = load_allowed()
    report: list[str] = []
    summary: dict[str, object] = {"versions": versions, "variants": {}}
    unexpected = 0
    reported_only = 0
    for variant in selected:
        if variant.plugin is None:
            continue
        plain, swapped = runs[variant.suite], runs[variant.name]
        found = regressions(plain, swapped)
        flaky: dict[str, str] = {}
        # Flaky: passes swapped when run again on its own, in one of RERUNS reruns (on a
        # loaded 2-core machine some upstream tests are timing-dependent, e.g. thread ids
        # reused by the OS). A test the reruns did not find, or that fails swapped every
        # time, stays a regression.
        for _ in range(0 if args.no_rerun else RERUNS):
            if not found:
                break
            ids = sorted(found)
            again_swapped = run_variant(venv, sources[variant.suite], variant, out, ids)
            for test in ids:
                if again_swapped.outcomes.get(test) == PASSED:
                    flaky[test] = found.pop(test)
        listed = {t: o for t, o in found.items() if (variant.name, t) in allowed}
        unlisted = {t: o for t, o in found.items() if (variant.name, t) not in allowed}
        if variant.suite in args.report_only:
            reported_only += len(unlisted)
        else:
            unexpected += len(unlisted)
        report.append(
            f"| {variant.name} | {plain.count(PASSED)} | {swapped.count(PASSED)} | "
            f"{len(found)} | {len(listed)} | {len(flaky)} | {swapped.seconds:.0f} s |"
        )
        summary["variants"][variant.name] = {  # type: ignore[index]
            "plain_passed": plain.count(PASSED),
            "swapped_passed": swapped.count(PASSED),
            "regressions": found,
            "allowed": listed,
            "flaky": flaky,
            "seconds": round(swapped.seconds),
        }
        for test, outcome in sorted(unlisted.items()):
            report.append(f"|   | {outcome}: `{test}` | | | | | |")
        for test, outcome in sorted(flaky.items()):
            report.append(f"|   | flaky ({outcome}, passed when rerun): `{test}` | | | | | |")
    for variant in selected:
        if variant.plugin is None:
            summary[f"{variant.name}-plain-seconds"] = round(runs[variant.name].seconds)

    elapsed = time.monotonic() - started
    header = [
        f"Hosts: {', '.join(f'{k} {v}' for k, v in versions.items())}; "
        f"{elapsed / 60:.1f} min in all.",
        "",
        "| variant | plain passed | swapped passed | regressions | allowed | flaky | time |",
        "|---|---|---|---|---|---|---|",
    ]
    text = "\n".join(header + report)
    print(text)
    (CACHE / "report.md").write_text(text + "\n")
    summary["seconds"] = round(elapsed)
    (CACHE / "report.json").write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
    if reported_only:
        suites = ", ".join(args.report_only)
        print(f"\n{reported_only} regression(s) in {suites}, reported only (--report-only)")
    if unexpected:
        print(f"\n{unexpected} regression(s) not on {ALLOWED.relative_to(ROOT)}", flush=True)
        return 1
    print("\ncontract kept: no enforced regression outside the allow-list", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
