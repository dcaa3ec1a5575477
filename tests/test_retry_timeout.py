"""RetryPolicy(timeout=...) bounds every adapter's retries, counted from the request's start."""

from __future__ import annotations

import anyio
import httpx
import pytest
import requests

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


def test_requests_gives_up_at_the_timeout() -> None:
    """rstsafe.requests stops retrying a refused connection when the timeout would pass."""
    with (
        MisbehavingServer(Refuse()) as server,
        rstsafe.requests.Session(retry=POLICY) as session,
        pytest.raises(requests.ConnectionError) as caught,
    ):
        session.get(server.url)
    _check(caught.value)


def test_urllib3_gives_up_at_the_timeout() -> None:
    """rstsafe.urllib3 stops retrying a refused connection when the timeout would pass."""
    with MisbehavingServer(Refuse()) as server:
        pool = rstsafe.urllib3.PoolManager(retry=POLICY)
        with pytest.raises(rstsafe.RstsafeError) as caught:
            pool.request("GET", server.url)
        pool.clear()
    _check(caught.value)


def test_httpx_refuses_backoff_retries() -> None:
    """rstsafe.httpx takes no backoff retries (httpx's retries= decides): ValueError naming them."""
    with pytest.raises(ValueError, match="retries"):
        rstsafe.httpx.Client(retry=POLICY)
    with pytest.raises(ValueError, match="retries"):
        rstsafe.httpx.AsyncTransport(retry=POLICY)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_httpx_refused_is_httpx_error(backend: str) -> None:
    """A refused connect is httpx's ConnectError, unchanged, on asyncio and trio."""
    policy = rstsafe.RetryPolicy(retries=0, timeout=0.5)

    async def main(url: str) -> BaseException:
        async with rstsafe.httpx.AsyncClient(retry=policy) as client:
            try:
                await client.get(url)
            except httpx.ConnectError as exc:
                return exc
        raise AssertionError("the request to a refusing server succeeded")

    with MisbehavingServer(Refuse()) as server:
        error = anyio.run(main, server.url, backend=backend)
    assert type(error) is httpx.ConnectError


def test_httpx_read_timeout_is_httpx_error() -> None:
    """A read timeout is never retried by rstsafe.httpx: httpx's ReadTimeout, once."""
    policy = rstsafe.RetryPolicy(retries=0, timeout=0.5)
    with (
        MisbehavingServer(BlackHole()) as server,
        rstsafe.httpx.Client(retry=policy) as client,
        pytest.raises(httpx.ReadTimeout) as caught,
    ):
        client.get(server.url, timeout=0.4)
    assert type(caught.value) is httpx.ReadTimeout
    assert server.wait_until(lambda s: s.received_unexecuted == 1)


def test_requests_counts_the_timeout_from_the_request_start() -> None:
    """The same for rstsafe.requests: one slow attempt, then the budget is spent."""
    with (
        MisbehavingServer(BlackHole()) as server,
        rstsafe.requests.Session(retry=POLICY) as session,
        pytest.raises(requests.ReadTimeout) as caught,
    ):
        session.get(server.url, timeout=0.4)
    assert isinstance(caught.value, rstsafe.RstsafeError)
    assert caught.value.attempts == 1
