"""rstsafe.requests against real servers, paced just across their keep-alive timeouts.

gunicorn (gthread worker, default keep-alive 2 s), uvicorn (default 5 s) and nginx
(``keepalive_timeout 1s``, and ``1s 1s`` which also sends ``Keep-Alive: timeout=1``).
Every scenario runs at the same time, so the test lasts about as long as uvicorn's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import pytest

import rstsafe.requests
from realservers import RealServer, ServerFactory
from requests_helpers import Outcome, Step, alternating, run_paced
from rstsafe import KeepAlive, RetryPolicy
from rstsafe.core import Origin, TTLSource

pytestmark = pytest.mark.realserver

FAST = RetryPolicy(retries=2, wait_initial=0.01, wait_max=0.05)
# Just past the server's timeout: the connection was closed (or is being closed) by the
# server when the next request goes out.
OVER = 0.3


def _run(server: RealServer, steps: Sequence[Step], keepalive: KeepAlive | None) -> Outcome:
    with rstsafe.requests.Session(retry=FAST, keepalive=keepalive) as session:

        def send(step: Step) -> int:
            url = server.url + step.path
            return session.request(step.method, url, data=step.body, timeout=10).status_code

        outcome = run_paced(send, steps)
        if keepalive is None and server.name == "nginx-header":
            state = session.adapter.keepalive_registry.for_origin(
                Origin("http", "127.0.0.1", server.port)
            )
            assert state.idle_ttl().source is TTLSource.HEADER
    return outcome


def test_real_servers_paced_across_their_keepalive(
    start_gunicorn: ServerFactory, start_uvicorn: ServerFactory, start_nginx: ServerFactory
) -> None:
    """No idempotent request fails, no POST runs twice; a known timeout saves POSTs too."""
    servers = {
        "gunicorn": (start_gunicorn(), 2.0, 4),
        "uvicorn": (start_uvicorn(), 5.0, 3),
        "nginx": (start_nginx(keepalive="1s"), 1.0, 5),
    }
    header = start_nginx(keepalive="1s 1s")
    jobs: dict[str, tuple[RealServer, Sequence[Step], KeepAlive | None]] = {}
    for name, (server, timeout, count) in servers.items():
        steps: Sequence[Step] = alternating(count, timeout + OVER)
        jobs[f"{name} learned"] = (server, steps, None)
        known = [dataclasses.replace(s, path="/known" + s.path) for s in steps]
        jobs[f"{name} configured"] = (server, known, KeepAlive(server_keepalive=timeout))
    tagged = dataclasses.replace(header, name="nginx-header")
    jobs["nginx header"] = (tagged, alternating(5, 1.0 + OVER), None)

    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        futures = {name: pool.submit(_run, *job) for name, job in jobs.items()}
    outcomes = {name: future.result() for name, future in futures.items()}

    for name, outcome in outcomes.items():
        server, steps, keepalive = jobs[name]
        gets = [i for i in outcome.failed if steps[i].method == "GET"]
        assert gets == [], f"{name}: {outcome.errors}"
        for index, step in enumerate(steps):
            executed = server.executions(step.method, step.path)
            if step.method == "POST":
                assert executed <= 1, f"{name}: POST {step.path} ran {executed} times"
            if index in outcome.statuses:
                assert executed == 1, f"{name}: {step.method} {step.path} ran {executed} times"
        if keepalive is not None or name == "nginx header":
            assert outcome.failed == [], f"{name}: {outcome.errors}"
