"""TLS: rstsafe.requests and rstsafe.urllib3 over HTTPS (trustme certificates).

The misbehaving server speaks plain HTTP, so a small TLS front (tests/requests_helpers)
terminates TLS and passes the server's FIN/RST decisions on to the client.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
import requests

import rstsafe.requests
import rstsafe.urllib3
from requests_helpers import Step, TLSFront, alternating, run_paced
from rstsafe import KeepAlive, RetryPolicy
from rstsafe.testing import ConnectionEnd, Healthy, IdleCloseWithLag, MisbehavingServer

FAST = RetryPolicy(retries=2, wait_initial=0.01, wait_max=0.05)
Front = Callable[[tuple[str, int]], TLSFront]


def test_https_requests_verify_and_reuse_connections(tls_front: Front, ca_bundle: Path) -> None:
    """HTTPS with a trusted CA works and keeps one connection alive for several requests."""
    with MisbehavingServer(Healthy(keepalive=None)) as server:
        front = tls_front(server.address)
        with rstsafe.requests.Session(retry=FAST) as session:
            for index in range(3):
                response = session.get(f"{front.url}/{index}", verify=str(ca_bundle), timeout=5)
                assert response.text == f"GET /{index} body=0\n"
        assert len(server.connections) == 1


@pytest.mark.parametrize(
    ("keepalive", "steps"),
    [
        (None, alternating(4, 0.6, methods=("GET",))),
        (KeepAlive(server_keepalive=0.3), alternating(6, 0.6)),
    ],
    ids=["stale-gets-retried", "known-timeout-saves-posts"],
)
def test_https_keepalive_race_zero_errors(
    tls_front: Front, ca_bundle: Path, keepalive: KeepAlive | None, steps: Sequence[Step]
) -> None:
    """Over TLS, stale GETs are retried at once and a known timeout saves POSTs too."""
    with MisbehavingServer(IdleCloseWithLag(idle=0.3, lag=1.2)) as server:
        front = tls_front(server.address)
        with rstsafe.requests.Session(retry=FAST, keepalive=keepalive) as session:

            def send(step: Step) -> int:
                url = front.url + step.path
                return session.request(
                    step.method, url, data=step.body, verify=str(ca_bundle), timeout=5
                ).status_code

            outcome = run_paced(send, steps)
        assert outcome.failed == []
        assert all(server.executions(s.method, s.path) == 1 for s in steps)
        if keepalive is None:  # the race really happened: requests hit closing connections
            assert ConnectionEnd.RST in server.ends()


def test_untrusted_certificate_keeps_requests_ssl_error(tls_front: Front) -> None:
    """A certificate the client does not trust: requests' SSLError, not retried."""
    with MisbehavingServer(Healthy(keepalive=None)) as server:
        front = tls_front(server.address)
        with rstsafe.requests.Session(retry=FAST) as session:
            started = time.monotonic()
            with pytest.raises(requests.exceptions.SSLError) as caught:
                session.get(front.url + "/", timeout=5)
            assert not isinstance(caught.value, rstsafe.RstsafeError)
            assert time.monotonic() - started < 2.0  # no backoff: TLS is not retried
        assert server.executions() == 0


def test_https_urllib3_pool_manager(tls_front: Front, ca_bundle: Path) -> None:
    """rstsafe.urllib3.PoolManager over HTTPS uses rstsafe's HTTPS pool and connection."""
    with MisbehavingServer(Healthy(keepalive=None)) as server:
        front = tls_front(server.address)
        manager = rstsafe.urllib3.PoolManager(retry=FAST, ca_certs=str(ca_bundle))
        try:
            response = manager.request("GET", front.url + "/tls", timeout=5)
            assert response.status == 200
            pool = manager.connection_from_url(front.url)
            assert isinstance(pool, rstsafe.urllib3.HTTPSConnectionPool)
            assert pool.ConnectionCls is rstsafe.urllib3.HTTPSConnection
        finally:
            manager.clear()
