"""RetryPolicy(timeout=...) bounds httpx's retries from the request's start; urllib3 and requests
leave every retry but the stale one to the host (docs/contract.md)."""

from __future__ import annotations

import anyio
import httpx
import pytest
import requests
import urllib3

import rstsafe
import rstsafe.httpx
import rstsafe.requests
import rstsafe.urllib3
from rstsafe.testing import BlackHole, MisbehavingServer, Refuse

# 50 retries 0.2 s apart would take 10 s; the timeout allows the first two backoffs only
# (0.2 + 0.2 <= 0.5 < 0.6), so the request gives up after three attempts.
POLICY = rstsafe.RetryPolicy(retries=50, wait_initial=0.2, wait_max=0.2, jitter=0.0, timeout=0.5)


def _check(error: BaseException) -> None:
    assert isinstance(error, rstsafe.RequestNotSentError)  # refused: nothing was sent
    assert error.attempts == 3
    assert "timeout" in str(error)


def test_requests_leaves_backoff_retries_to_max_retries() -> None:
    """rstsafe.requests applies no backoff retry (docs/contract.md): requests' own error."""
    with (
        MisbehavingServer(Refuse()) as server,
        rstsafe.requests.Session(retry=POLICY) as session,
        pytest.raises(requests.ConnectionError) as caught,
    ):
        session.get(server.url)
    assert type(caught.value) is requests.ConnectionError
    assert type(caught.value.args[0]) is urllib3.exceptions.MaxRetryError


def test_urllib3_leaves_backoff_retries_to_urllib3s_retry() -> None:
    """rstsafe.urllib3 applies no backoff retry: urllib3's own MaxRetryError."""
    with MisbehavingServer(Refuse()) as server:
        pool = rstsafe.urllib3.PoolManager(retry=POLICY)
        with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
            pool.request("GET", server.url)
        pool.clear()
    assert type(caught.value) is urllib3.exceptions.MaxRetryError


def test_httpx_gives_up_at_the_timeout() -> None:
    """rstsafe.httpx.Client stops retrying a refused connection when the timeout would pass."""
    with (
        MisbehavingServer(Refuse()) as server,
        rstsafe.httpx.Client(retry=POLICY) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.get(server.url)
    _check(caught.value)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_httpx_gives_up_at_the_timeout(backend: str) -> None:
    """rstsafe.httpx.AsyncClient honours the timeout on asyncio and trio."""

    async def main(url: str) -> BaseException:
        async with rstsafe.httpx.AsyncClient(retry=POLICY) as client:
            try:
                await client.get(url)
            except httpx.ConnectError as exc:
                return exc
        raise AssertionError("the request to a refusing server succeeded")

    with MisbehavingServer(Refuse()) as server:
        error = anyio.run(main, server.url, backend=backend)
    _check(error)


def test_httpx_counts_the_timeout_from_the_request_start() -> None:
    """A first attempt that took 0.4 s leaves no room for a 0.2 s backoff in a 0.5 s budget."""
    with (
        MisbehavingServer(BlackHole()) as server,
        rstsafe.httpx.Client(retry=POLICY) as client,
        pytest.raises(httpx.ReadTimeout) as caught,
    ):
        client.get(server.url, timeout=0.4)
    assert isinstance(caught.value, rstsafe.RstsafeError)
    assert caught.value.attempts == 1
    assert "timeout" in str(caught.value)


def test_requests_never_retries_a_read_timeout_on_its_own() -> None:
    """rstsafe.requests: a read timeout is requests' own ReadTimeout, after one attempt."""
    with (
        MisbehavingServer(BlackHole()) as server,
        rstsafe.requests.Session(retry=POLICY) as session,
        pytest.raises(requests.ReadTimeout) as caught,
    ):
        session.get(server.url, timeout=0.4)
    assert type(caught.value) is requests.ReadTimeout
    assert server.wait_until(lambda s: len(s.connections) == 1)
