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
