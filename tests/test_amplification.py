"""Retry amplification: a broken origin gets no more traffic through rstsafe than plain.

Issue 16's scenario: 32 threads share one client and send 20 GETs each to a server that
resets every connection. rstsafe adds only the immediate retry after a stale *reused*
connection, so against a server where no connection survives to be reused, it makes
exactly the attempts the host makes. Counts come from the server; nothing is timed.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import section_amplification as amplification  # the benchmark script is the measurement

THREADS = 32
PER_THREAD = 20


@pytest.mark.parametrize("client", ["rstsafe requests", "rstsafe httpx"])
@pytest.mark.parametrize("behaviour", ["reset-unread", "process-then-reset"])
def test_a_server_that_resets_every_connection_gets_at_most_1_5_attempts_per_request(
    behaviour: str, client: str
) -> None:
    """32 threads x 20 GETs: at most 1.5 connections and executions per request (1 expected)."""
    row = amplification.measure(behaviour, client, THREADS, PER_THREAD)
    assert row.requests == THREADS * PER_THREAD
    assert row.failed == row.requests  # every request meets the reset: nothing hides it
    assert row.connections_per_request <= 1.5
    assert row.executions_per_request <= 1.5
    if behaviour == "process-then-reset":
        assert row.executions == row.connections  # each attempt was executed once


def test_host_retries_are_the_hosts_and_no_more() -> None:
    """requests' own max_retries=3: rstsafe makes the attempts plain requests makes, no more."""
    plain = amplification.measure("reset-unread", "plain requests max_retries=3", 8, 5)
    swapped = amplification.measure("reset-unread", "rstsafe requests max_retries=3", 8, 5)
    assert plain.connections == 4 * plain.requests
    assert swapped.connections == plain.connections


@pytest.mark.parametrize("client", ["rstsafe requests", "rstsafe httpx"])
def test_connections_reset_after_each_answer_cost_no_extra_executions(client: str) -> None:
    """A reset after every answer: 0 failures and one execution per request, no duplicates."""
    row = amplification.measure("close-after-1", client, THREADS, PER_THREAD)
    assert row.failed == 0, row.errors
    assert row.executions == row.requests
