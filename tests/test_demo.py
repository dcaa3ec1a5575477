"""``rstsafe demo``: the table is computed from real runs against the misbehaving server."""

from __future__ import annotations

import json
import subprocess
import sys

from rstsafe._demo import CLIENTS, SCENARIOS, Cell, Scenario, run_demo


def _scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def test_demo_covers_every_behaviour() -> None:
    """The demo has one scenario per registered behaviour of rstsafe.testing."""
    from rstsafe.testing import BEHAVIOURS

    assert sorted(s.name for s in SCENARIOS) == sorted(BEHAVIOURS)


def test_plain_clients_fail_where_the_server_resets_everything() -> None:
    """Against reset-unread every plain request fails, and a healthy server fails none."""
    results = run_demo(
        [_scenario("reset-unread"), _scenario("healthy")],
        {title: CLIENTS[title] for title in ("plain requests", "plain httpx")},
    )
    for title in ("plain requests", "plain httpx"):
        reset = results["reset-unread"][title]
        assert reset.failed == reset.requests == 4
        assert any("ConnectionResetError" in name for name in reset.errors)
        healthy = results["healthy"][title]
        assert healthy.failed == 0
        assert healthy.statuses[200] == healthy.requests


def test_naive_retry_executes_posts_twice() -> None:
    """Retrying every method after process-then-reset runs each POST more than once."""
    results = run_demo([_scenario("process-then-reset")], {"naive": CLIENTS["requests, retry all"]})
    cell = results["process-then-reset"]["naive"]
    assert cell.duplicates >= 2  # two POSTs, each executed at least twice


def test_cell_rendering_names_the_root_cause() -> None:
    """A cell shows the failure count and the OS-level cause people search for."""
    from collections import Counter

    cell = Cell(requests=6, errors=Counter({"ConnectionError(ConnectionResetError)": 3}))
    assert cell.render() == "3/6 failed ConnectionResetError"
    assert Cell(requests=2, duplicates=1).render() == "ok 2/2, 1 dup POST"


def test_cli_json_output() -> None:
    """``rstsafe demo --json`` runs the whole demo and prints every scenario and client."""
    done = subprocess.run(
        [sys.executable, "-m", "rstsafe", "demo", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    data = json.loads(done.stdout)
    assert set(data) == {s.name for s in SCENARIOS}
    for cells in data.values():
        assert set(cells) == set(CLIENTS)
    assert data["refuse"]["plain httpx"]["failed"] == 2


def test_rstsafe_requests_column_never_duplicates_and_fails_less() -> None:
    """rstsafe requests: never a duplicate POST, no failure on healthy-enough servers, fewer."""
    names = (
        "healthy",
        "idle-close-with-lag",
        "idle-drop",
        "close-after-requests",
        "process-then-reset",
        "early-response",
        "abortive-close",
        "advertise-keep-alive",
    )
    results = run_demo(
        [_scenario(name) for name in names],
        {title: CLIENTS[title] for title in ("plain requests", "rstsafe requests")},
    )
    for name in names:
        assert results[name]["rstsafe requests"].duplicates == 0
    for name in ("healthy", "close-after-requests", "early-response", "abortive-close"):
        assert results[name]["rstsafe requests"].failed == 0
    assert results["advertise-keep-alive"]["rstsafe requests"].failed == 0
    for name in ("idle-close-with-lag", "idle-drop"):
        rstsafe_cell = results[name]["rstsafe requests"]
        assert rstsafe_cell.failed <= 1  # the first POST on a stale connection, before learning
        assert results[name]["plain requests"].failed > rstsafe_cell.failed


def test_rstsafe_httpx_column_never_duplicates_and_fails_less() -> None:
    """rstsafe httpx: never a duplicate POST; no failure where a retry or TTL can recover."""
    names = (
        "healthy",
        "idle-close-with-lag",
        "idle-drop",
        "close-after-requests",
        "process-then-reset",
        "early-response",
        "abortive-close",
        "advertise-keep-alive",
    )
    results = run_demo(
        [_scenario(name) for name in names],
        {title: CLIENTS[title] for title in ("plain httpx", "rstsafe httpx")},
    )
    for name in names:
        assert results[name]["rstsafe httpx"].duplicates == 0
    for name in ("healthy", "close-after-requests", "early-response", "abortive-close"):
        assert results[name]["rstsafe httpx"].failed == 0
    assert results["advertise-keep-alive"]["rstsafe httpx"].failed == 0
    for name in ("idle-close-with-lag", "idle-drop"):
        rstsafe_cell = results[name]["rstsafe httpx"]
        assert rstsafe_cell.failed <= 1  # the first POST on a stale connection, before learning
        assert results[name]["plain httpx"].failed > rstsafe_cell.failed
