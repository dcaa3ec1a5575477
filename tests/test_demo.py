"""``rstsafe demo``: the report is computed from real runs against the misbehaving server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections import Counter

import pytest

from rstsafe._cli._demo_report import as_json, explain, render_text, takeaway
from rstsafe._cli._term import Style
from rstsafe._cli.demo import (
    CLIENTS,
    SCENARIOS,
    Cell,
    Client,
    DemoClient,
    FailedRequest,
    Scenario,
    run_demo,
)
from rstsafe._core.classify import Delivery, FailureKind

RACE_WITH_HEADER = "idle-close-with-lag + header"
MARKER = re.compile(r"\[(\d+)\]")


def _scenario(name: str) -> Scenario:
    return next(s for s in SCENARIOS if s.name == name)


def _no_client() -> DemoClient:
    raise ImportError("not installed here")


def _client(library: str, variant: str, *, resends_unsafe: bool = False) -> Client:
    return Client(
        library=library,
        variant=variant,
        factory=_no_client,
        on_failure="not retried",
        resends_unsafe=resends_unsafe,
    )


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
        assert [f.request for f in reset.failures] == [
            "GET /items/0",
            "POST /orders/1",
            "GET /items/2",
            "POST /orders/3",
        ]
        healthy = results["healthy"][title]
        assert healthy.failed == 0
        assert healthy.statuses[200] == healthy.requests


def test_naive_retry_executes_posts_twice() -> None:
    """Retrying every method after process-then-reset runs each POST more than once."""
    results = run_demo([_scenario("process-then-reset")], {"naive": CLIENTS["retry-all requests"]})
    cell = results["process-then-reset"]["naive"]
    assert cell.duplicates >= 2  # two POSTs, each executed at least twice
    assert {request for request, _ in cell.executed_twice} == {"POST /orders/1", "POST /orders/3"}
    assert all(count >= 2 for _, count in cell.executed_twice)


def test_cell_summary_and_render() -> None:
    """The short form fits a narrow table; the wide form names the root cause people search."""
    cell = Cell(requests=6, errors=Counter({"ConnectionError(ConnectionResetError)": 3}))
    assert cell.summary() == "3/6 failed"
    assert cell.render() == "3/6 failed ConnectionResetError"
    assert Cell(requests=2, duplicates=1).summary() == "ok 2/2, 1 dup"
    assert Cell(requests=2, duplicates=1).render() == "ok 2/2, 1 dup POST"
    assert Cell(requests=2, statuses=Counter({413: 2})).summary() == "ok 2/2 (413)"


def _post(index: int, **facts: object) -> FailedRequest:
    values: dict[str, object] = {
        "index": index,
        "method": "POST",
        "path": f"/orders/{index}",
        "error": "MaybeSentConnectionError(ConnectionResetError)",
        "kind": FailureKind.RESET,
        "delivery": Delivery.MAYBE_SENT,
        "reused": True,
    }
    values.update(facts)
    return FailedRequest(**values)  # type: ignore[arg-type]


def test_footnote_says_which_request_and_why_not_resending_is_right() -> None:
    """A POST rstsafe did not resend: named, 'may have been sent', 'not resent, by design'."""
    clients = {
        "plain x": _client("x", "plain"),
        "retry-all x": _client("x", "retry-all", resends_unsafe=True),
        "rstsafe x": _client("x", "rstsafe"),
    }
    row = {
        "plain x": Cell(requests=4, errors=Counter({"E": 1}), failures=(_post(3, reused=None),)),
        "retry-all x": Cell(
            requests=4,
            answered=frozenset({0, 1, 2, 3}),
            duplicates=1,
            executed_twice=(("POST /orders/3", 2),),
        ),
        "rstsafe x": Cell(
            requests=4,
            errors=Counter({"E": 1}),
            failures=(_post(3),),
            answered=frozenset({0, 1, 2}),
        ),
    }
    category, text = explain(row["rstsafe x"].failures[0], clients["rstsafe x"], row, clients)
    assert category == "by design"
    assert "may have been sent: not resent, by design" in text
    assert "retry-all x ran it 2 times" in text
    results = {"race": row}
    report = render_text(results, clients, width=100)
    assert "[2] retry-all x, race: the server ran POST /orders/3 2 times" in report
    assert "[3] rstsafe x, race: POST /orders/3: connection reset on a reused connection" in report
    category, text = explain(row["plain x"].failures[0], clients["plain x"], row, clients)
    assert category == "other"
    assert text.endswith("retry-all x got an answer")


def test_takeaway_is_computed_from_the_run() -> None:
    """The takeaway quotes this run's totals and categories, and says so when rstsafe erred."""
    clients = {"plain x": _client("x", "plain"), "rstsafe x": _client("x", "rstsafe")}
    failed = Cell(requests=2, errors=Counter({"E": 2}), failures=(_post(0), _post(1)))
    safe = Cell(requests=2, errors=Counter({"E": 1}), failures=(_post(1),), answered=frozenset({0}))
    lines = takeaway({"a": {"plain x": failed, "rstsafe x": safe}}, clients)
    assert lines[0].startswith("rstsafe x: 1 of 2 failed (plain x: 2), none ran twice.")
    assert "1 may have run on the server and are not idempotent" in lines[0]
    assert lines[-1].startswith("Take away: rstsafe ran no request twice")
    # An rstsafe failure another client recovered from is not hidden by the verdict.
    recovered = Cell(
        requests=2,
        errors=Counter({"E": 1}),
        answered=frozenset({0}),
        failures=(_post(1, method="GET", idempotent=True, attempts=4),),
    )
    rescued = Cell(requests=2, answered=frozenset({0, 1}))
    lines = takeaway({"a": {"plain x": rescued, "rstsafe x": recovered}}, clients)
    assert "1 other" in lines[0]
    assert lines[-1].startswith("Take away: this run found rstsafe failures")


def test_layout_adapts_to_more_columns() -> None:
    """More libraries (a third group of plain and rstsafe): still 100 columns, groups whole."""
    clients = dict(CLIENTS)
    clients["plain aiohttp"] = _client("aiohttp", "plain")
    clients["rstsafe aiohttp"] = _client("aiohttp", "rstsafe")
    failing = Cell(
        requests=6,
        errors=Counter({"ReadError(ConnectionResetError)": 6}),
        failures=tuple(_post(i) for i in range(6)),
    )
    results = {s.name: dict.fromkeys(clients, failing) for s in SCENARIOS}
    report = render_text(results, clients, width=100)
    assert max(len(line) for line in report.splitlines()) <= 100
    headers = [line for line in report.splitlines() if line.startswith("behaviour ")]
    for group in (
        ["plain requests", "retry-all requests", "rstsafe requests"],
        ["plain aiohttp", "rstsafe aiohttp"],
    ):
        assert any(all(title in header for title in group) for header in headers), group
    assert len(MARKER.findall(report)) >= 2 * len(SCENARIOS) * len(clients)  # cell + note


@pytest.fixture(scope="module")
def full_run() -> dict[str, dict[str, Cell]]:
    """The whole demo, run once for the tests of its report."""
    return run_demo()


def test_default_report_fits_100_columns_and_explains_every_failed_cell(
    full_run: dict[str, dict[str, Cell]],
) -> None:
    """Every line <= 100 columns; each failed cell has a marker and a footnote for that cell."""
    report = render_text(full_run, CLIENTS, width=100, style=Style.plain())
    lines = report.splitlines()
    assert max(len(line) for line in lines) <= 100
    rows: dict[str, list[str]] = {}
    for line in lines:
        for scenario in full_run:
            if line.startswith(scenario + "  "):
                rows.setdefault(scenario, []).append(line)
    for scenario, cells in full_run.items():
        for title, cell in cells.items():
            if not (cell.failed or cell.duplicates):
                continue
            note = re.search(
                rf"^\[(\d+)\] {re.escape(title)}, {re.escape(scenario)}: ", report, re.M
            )
            assert note is not None, (scenario, title)
            assert any(f"[{note.group(1)}]" in row for row in rows[scenario]), (scenario, title)
            # The cell's own footnote names its failed requests, or says all of them.
            rest = report[note.end() :]
            # It ends where a line does not continue it: another footnote, a blank line.
            following = re.search(r"\n(?!\s+\S)", rest)
            text = " ".join(rest[: following.start() if following else None].split())
            missing = [f.path for f in cell.failures if f.path not in text]
            if missing:  # only when one explanation covers every request of the cell
                every = "both requests" if cell.requests == 2 else f"all {cell.requests} requests"
                assert len(cell.failures) == cell.requests, (scenario, title, missing, text)
                assert every in text, (scenario, title, missing, text)
    assert "Take away:" in report


def test_coloured_report_keeps_its_columns(
    full_run: dict[str, dict[str, Cell]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a terminal the cells are coloured, and the colour codes do not widen a line."""
    import pty

    from rstsafe._cli._term import visible_width

    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal:
            report = render_text(full_run, CLIENTS, width=100, style=Style(terminal))
    finally:
        os.close(master)
        os.close(slave)
    assert "\x1b[31m" in report  # failed cells in red
    assert "\x1b[32m" in report  # ok cells in green
    assert max(visible_width(line) for line in report.splitlines()) <= 100
    plain = render_text(full_run, CLIENTS, width=100, style=Style.plain())
    assert [visible_width(line) for line in report.splitlines()] == [
        len(line) for line in plain.splitlines()
    ]


def test_json_report_explains_every_failure(full_run: dict[str, dict[str, Cell]]) -> None:
    """The JSON has every scenario and client, each failure with its explanation, the totals."""
    data = json.loads(json.dumps(as_json(full_run, CLIENTS)))
    assert set(data["scenarios"]) == {s.name for s in SCENARIOS}
    for cells in data["scenarios"].values():
        assert set(cells) == set(CLIENTS)
        for cell in cells.values():
            assert len(cell["failures"]) == cell["failed"]
            assert all(f["explanation"] and f["category"] for f in cell["failures"])
    assert data["scenarios"]["refuse"]["plain httpx"]["failed"] == 2
    assert data["totals"]["rstsafe requests"]["duplicate_executions"] == 0
    assert data["takeaway"][-1].startswith("Take away:")


@pytest.mark.parametrize(
    ("plain", "safe"), [("plain requests", "rstsafe requests"), ("plain httpx", "rstsafe httpx")]
)
def test_rstsafe_columns_never_duplicate_and_fail_less(
    plain: str, safe: str, full_run: dict[str, dict[str, Cell]]
) -> None:
    """rstsafe: never a duplicate POST, no failure where a TTL or a safe retry recovers."""
    results = full_run
    for name in results:
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


def test_cli_text_fits_100_columns_with_progress_only_on_a_terminal() -> None:
    """``rstsafe demo`` piped: plain text <= 100 columns; its stderr on a pty shows progress."""
    import pty

    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    process = subprocess.Popen(
        [sys.executable, "-m", "rstsafe", "demo"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=slave,
        env=environment,
    )
    os.close(slave)
    terminal: list[bytes] = []

    def read_terminal() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its end
                return
            if not data:
                return
            terminal.append(data)

    reader = threading.Thread(target=read_terminal)
    reader.start()
    try:
        out, _ = process.communicate(timeout=55)
    finally:
        reader.join(10)
        os.close(master)
    assert process.returncode == 0
    text = out.decode()
    assert "\x1b" not in text  # a pipe gets no colour and no progress
    assert max(len(line) for line in text.splitlines()) <= 100
    assert "Take away:" in text
    progress = b"".join(terminal).decode()
    runs = len(SCENARIOS) * len(CLIENTS)
    assert f"{runs}/{runs} runs" in progress
    assert progress.endswith("\r\x1b[K")  # erased when done
