"""The keep-alive race (C2) with the timeout advertised: rstsafe never meets it, plain clients do.

The server closes a connection 0.6 s after its last response but lets the FIN leave 1.5 s
later, and says so in ``Keep-Alive: timeout=0.6``. Requests paced 0.8 s apart land in
that window. Plain clients reuse the connection and get a reset, GET and POST alike;
rstsafe honours the header with its margin, opens a fresh connection instead, and no
request fails, none is executed twice.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import httpx
import pytest
import requests
import urllib3

import rstsafe.httpx
import rstsafe.requests
import rstsafe.urllib3
from rstsafe._cli.demo import alternating, run_paced
from rstsafe.testing import IdleCloseWithLag, MisbehavingServer

RACE = IdleCloseWithLag(idle=0.6, lag=1.5, advertised=0.6)
PAUSE = 0.8  # past the idle deadline, well inside the lag window
STEPS = alternating(4, PAUSE)  # GET, POST, GET, POST, each path unique

Send = Callable[[str, str, bytes | None], int]


def _run(send: Send, server: MisbehavingServer) -> list[str]:
    """Send STEPS; return the error type names (empty when all succeeded)."""
    outcome = run_paced(lambda step: send(step.method, server.url + step.path, step.body), STEPS)
    assert all(status == 200 for status in outcome.statuses.values())
    return [type(outcome.errors[index]).__name__ for index in outcome.failed]


def _assert_each_post_once(server: MisbehavingServer) -> None:
    for step in STEPS:
        if step.method == "POST":
            assert server.executions(method="POST", path=step.path) <= 1


@pytest.mark.parametrize("library", ["requests", "urllib3", "httpx"])
def test_plain_clients_meet_the_race(library: str) -> None:
    """Plain requests, urllib3 and httpx ignore the header and fail every paced request."""
    with MisbehavingServer(RACE) as server:
        if library == "requests":
            with requests.Session() as session:
                errors = _run(lambda m, u, b: session.request(m, u, data=b).status_code, server)
        elif library == "urllib3":
            pool = urllib3.PoolManager(retries=False)
            errors = _run(lambda m, u, b: pool.request(m, u, body=b).status, server)
            pool.clear()
        else:
            with httpx.Client() as client:
                errors = _run(lambda m, u, b: client.request(m, u, content=b).status_code, server)
        _assert_each_post_once(server)
    # Every request that reuses a connection meets the race: the 2nd and the 4th (the 3rd
    # goes out on the fresh connection that replaced the reset one).
    assert len(errors) == 2


@pytest.mark.parametrize("library", ["requests", "urllib3", "httpx"])
def test_rstsafe_never_meets_the_race_when_the_timeout_is_advertised(library: str) -> None:
    """rstsafe's requests, urllib3 and httpx clients: zero errors for GET and POST, no duplicate."""
    with MisbehavingServer(RACE) as server:
        if library == "requests":
            with rstsafe.requests.Session() as session:
                errors = _run(lambda m, u, b: session.request(m, u, data=b).status_code, server)
        elif library == "urllib3":
            pool = rstsafe.urllib3.PoolManager()
            errors = _run(lambda m, u, b: pool.request(m, u, body=b).status, server)
            pool.clear()
        else:
            with rstsafe.httpx.Client() as client:
                errors = _run(lambda m, u, b: client.request(m, u, content=b).status_code, server)
        _assert_each_post_once(server)
        assert server.executions() == len(STEPS)
    assert errors == []


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_rstsafe_async_httpx_never_meets_the_race(backend: str) -> None:
    """rstsafe.httpx.AsyncClient on asyncio and trio: zero errors, each request executed once."""

    async def main(url: str) -> list[str]:
        errors = []
        async with rstsafe.httpx.AsyncClient() as client:
            for step in STEPS:
                await anyio.sleep(step.pause)
                try:
                    response = await client.request(step.method, url + step.path, content=step.body)
                    assert response.status_code == 200
                except httpx.TransportError as exc:
                    errors.append(type(exc).__name__)
        return errors

    with MisbehavingServer(RACE) as server:
        errors = anyio.run(main, server.url, backend=backend)
        assert server.executions() == len(STEPS)
    assert errors == []
