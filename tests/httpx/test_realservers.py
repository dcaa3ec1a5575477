"""rstsafe.httpx against real servers: uvicorn, hypercorn, nginx; TLS and HTTP/2.

Requests are paced across each server's 1 s keep-alive timeout, where plain clients
meet closed connections and the keep-alive race. Idempotent requests must never fail,
and every POST must be executed exactly once.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import httpx
import pytest
import trustme

import rstsafe.httpx
from realservers import ASGI_APP, VENV_BIN, RealServer, ServerFactory, free_port
from rstsafe import KeepAlive

pytestmark = pytest.mark.realserver

# (method, pause before it): around and across a 1 s server keep-alive timeout.
PACED: Sequence[tuple[str, float]] = (
    ("GET", 0.0),
    ("GET", 0.95),
    ("GET", 1.05),
    ("POST", 1.5),
    ("GET", 0.1),
)


def _start(request: pytest.FixtureRequest, name: str) -> RealServer:
    factory: ServerFactory = request.getfixturevalue(f"start_{name}")
    if name == "nginx":
        return factory(keepalive="1s")
    if name == "uvicorn":
        return factory(timeout_keep_alive=1)
    return factory(keep_alive_timeout=1)


@pytest.mark.parametrize("name", ["uvicorn", "hypercorn", "nginx"])
def test_paced_across_the_keepalive_timeout(request: pytest.FixtureRequest, name: str) -> None:
    """Zero errors for GETs paced across the server's 1 s timeout; the POST runs once."""
    server = _start(request, name)
    with rstsafe.httpx.Client(timeout=10) as client:
        for index, (method, pause) in enumerate(PACED):
            time.sleep(pause)
            response = client.request(
                method, f"{server.url}/r/{index}", content=b"1" if method == "POST" else None
            )
            assert response.status_code == 200
    for index, (method, _) in enumerate(PACED):
        executed = server.executions(method, f"/r/{index}")
        seen = f"{method} /r/{index} executed {executed} times: {server.executed()}"
        if method == "POST":
            assert executed == 1, seen
        else:
            assert executed >= 1, seen


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_paced_against_uvicorn(start_uvicorn: ServerFactory) -> None:
    """The async client, paced across uvicorn's 1 s keep-alive: zero errors, POST once."""
    server = start_uvicorn(timeout_keep_alive=1)
    async with rstsafe.httpx.AsyncClient(timeout=10) as client:
        for index, (method, pause) in enumerate(PACED):
            await anyio.sleep(pause)
            response = await client.request(
                method, f"{server.url}/r/{index}", content=b"1" if method == "POST" else None
            )
            assert response.status_code == 200
    assert server.executions("POST", "/r/3") == 1


@pytest.fixture
def tls_hypercorn(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> tuple[str, ssl.SSLContext]:
    """hypercorn on loopback with a trustme certificate (HTTP/1.1 and HTTP/2 via ALPN)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    pem = tmp_path / "server.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(pem))
    (tmp_path / "rstsafe_asgi_app.py").write_text(ASGI_APP)
    port = free_port()
    argv = [
        str(VENV_BIN / "hypercorn"),
        "--keep-alive=1",
        f"--bind=127.0.0.1:{port}",
        f"--certfile={pem}",
        f"--keyfile={pem}",
        "rstsafe_asgi_app:app",
    ]
    _real_servers("hypercorn-tls", argv, port)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return f"https://127.0.0.1:{port}", context


@pytest.mark.parametrize("http2", [False, True])
def test_tls_paced_across_the_keepalive(
    tls_hypercorn: tuple[str, ssl.SSLContext], http2: bool
) -> None:
    """Over TLS, HTTP/1.1 and HTTP/2, requests across the keep-alive never fail.

    HTTP/2 connections expire on httpcore's timer, which rstsafe sets from the
    configured ``server_keepalive`` (header and learning reach HTTP/1.1 only).
    """
    url, context = tls_hypercorn
    keepalive = KeepAlive(server_keepalive=1.0) if http2 else None
    expected = "HTTP/2" if http2 else "HTTP/1.1"
    with rstsafe.httpx.Client(
        verify=context, http2=http2, keepalive=keepalive, timeout=10
    ) as client:
        for index, (method, pause) in enumerate(PACED):
            time.sleep(pause)
            response = client.request(
                method, f"{url}/r/{index}", content=b"1" if method == "POST" else None
            )
            assert response.status_code == 200
            assert response.http_version == expected


def test_http2_stale_connection_is_retried(tls_hypercorn: tuple[str, ssl.SSLContext]) -> None:
    """HTTP/2, default TTL (4 s) above hypercorn's 1 s: a GET on a closed connection is resent."""
    url, context = tls_hypercorn
    with rstsafe.httpx.Client(verify=context, http2=True, timeout=10) as client:
        for index in range(3):
            response = client.get(f"{url}/g/{index}")
            assert (response.status_code, response.http_version) == (200, "HTTP/2")
            time.sleep(1.3)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_http2_multiplexed_concurrent_requests(
    tls_hypercorn: tuple[str, ssl.SSLContext],
) -> None:
    """HTTP/2 with h2: 50 concurrent requests share connections and all succeed."""
    url, context = tls_hypercorn
    statuses: list[int] = []
    async with rstsafe.httpx.AsyncClient(verify=context, http2=True, timeout=10) as client:

        async def one(index: int) -> None:
            response = await client.get(f"{url}/m/{index}")
            assert response.http_version == "HTTP/2"
            statuses.append(response.status_code)

        async with anyio.create_task_group() as group:
            for index in range(50):
                group.start_soon(one, index)
    assert statuses == [200] * 50


def test_certificate_errors_are_not_retried(tls_hypercorn: tuple[str, ssl.SSLContext]) -> None:
    """An untrusted certificate is httpx's ConnectError, unchanged (not rstsafe's to act on)."""
    url, _ = tls_hypercorn
    with rstsafe.httpx.Client() as client, pytest.raises(httpx.ConnectError) as caught:
        client.get(url)
    assert type(caught.value) is httpx.ConnectError
    assert "CERTIFICATE_VERIFY_FAILED" in str(caught.value)
