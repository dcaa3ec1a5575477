"""``rstsafe demo``: the table is computed from real runs against the misbehaving server."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from rstsafe._cli.demo import CLIENTS, SCENARIOS, Cell, Scenario, run_demo


def _scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def test_demo_covers_every_behaviour() -> None:
    """The demo has one scenario per registered behaviour of rstsafe.testing."""
    from rstsafe.testing import BEHAVIOURS, behaviour_name

    assert {behaviour_name(s.behaviour) for s in SCENARIOS} == set(BEHAVIOURS)
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)  # row titles are unique


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


def test_takeaway_is_computed_from_the_run() -> None:
    """The closing line quotes this run's totals, and is left out when a column is missing."""
    from collections import Counter

    from rstsafe._cli.demo import _takeaway

    failed = Cell(requests=2, errors=Counter({"ConnectionResetError": 2}))
    results = {
        "a": {
            "plain requests": failed,
            "requests, retry all": Cell(requests=2, duplicates=3),
            "rstsafe requests": Cell(requests=2),
        }
    }
    line = _takeaway(results)
    assert line is not None
    assert "failed 0 requests where plain requests failed 2" in line
    assert "ran 3 POSTs twice" in line
    assert _takeaway({"a": {"plain requests": failed}}) is None


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


RACE_WITH_HEADER = "idle-close-with-lag + Keep-Alive header"


@pytest.mark.parametrize(
    ("plain", "safe"), [("plain requests", "rstsafe requests"), ("plain httpx", "rstsafe httpx")]
)
def test_rstsafe_columns_never_duplicate_and_fail_less(plain: str, safe: str) -> None:
    """rstsafe: never a duplicate POST, no failure where a TTL or a safe retry recovers."""
    names = (
        "healthy",
        "idle-close-with-lag",
        RACE_WITH_HEADER,
        "idle-drop",
        "close-after-requests",
        "process-then-reset",
        "early-response",
        "abortive-close",
        "advertise-keep-alive",
    )
    results = run_demo(
        [_scenario(name) for name in names], {title: CLIENTS[title] for title in (plain, safe)}
    )
    for name in names:
        assert results[name][safe].duplicates == 0
    recoverable = (
        "healthy",
        RACE_WITH_HEADER,
        "close-after-requests",
        "early-response",
        "abortive-close",
        "advertise-keep-alive",
    )
    for name in recoverable:
        assert results[name][safe].failed == 0, name
    assert results[RACE_WITH_HEADER][plain].failed > 0  # plain clients ignore the header
    for name in ("idle-close-with-lag", "idle-drop"):
        # Nothing is known yet: the first POST on a stale connection may have been sent,
        # so it is not resent; after that the learned timeout avoids the race.
        assert results[name][safe].failed <= 1
        assert results[name][plain].failed > results[name][safe].failed
