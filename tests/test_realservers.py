"""The real-server fixtures start real servers whose execution logs count requests."""

from __future__ import annotations

import http.client
from urllib.parse import urlsplit

import pytest

from realservers import RealServer, ServerFactory


def _get_and_post(server: RealServer) -> None:
    parts = urlsplit(server.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        for method, path, body in (("GET", "/a", None), ("POST", "/orders/1", b"x" * 100)):
            conn.request(method, path, body=body)
            response = conn.getresponse()
            assert response.status == 200
            assert response.read() == b"ok\n"
    finally:
        conn.close()


@pytest.mark.parametrize("name", ["nginx", "gunicorn", "uvicorn", "hypercorn"])
def test_real_server_answers_and_logs_executions(name: str, request: pytest.FixtureRequest) -> None:
    """Each real server answers on loopback and its log counts every executed request."""
    factory: ServerFactory = request.getfixturevalue(f"start_{name}")
    server = factory()
    _get_and_post(server)
    # nginx writes its access log after the response: allow it a moment.
    import time

    deadline = time.monotonic() + 10
    while server.executions() < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.executions(method="POST", path="/orders/1") == 1
    assert server.executions(method="GET", path="/a") == 1
