"""rstsafe.requests is a drop-in: what requests does keeps working, configured in one place."""

from __future__ import annotations

import io
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import requests
import urllib3

import rstsafe.core
import rstsafe.requests
import rstsafe.urllib3
from rstsafe import KeepAlive, RetryPolicy
from rstsafe.testing import (
    ConnectionEnd,
    Healthy,
    IdleCloseWithLag,
    MisbehavingServer,
    ResetUnread,
)

FAST = RetryPolicy(retries=2, wait_initial=0.01, wait_max=0.05)


def test_redirects_cookies_and_auth_behave_as_in_requests(app_server: str) -> None:
    """Redirects are followed (303 turns POST into GET), cookies kept, auth sent."""
    with rstsafe.requests.Session(retry=FAST) as session:
        response = session.get(app_server + "/redirect", timeout=5)
        assert response.status_code == 200
        assert response.text == "GET /landed"
        assert [r.status_code for r in response.history] == [302]
        response = session.post(app_server + "/redirect-303", data=b"x", timeout=5)
        assert response.text == "GET /landed"
        session.get(app_server + "/set-cookie", timeout=5)
        assert session.get(app_server + "/echo-cookie", timeout=5).text == "flavour=oat"
        auth = session.get(app_server + "/auth", auth=("ann", "secret"), timeout=5).text
        assert auth.startswith("Basic ")


def test_adapter_mounts_on_an_existing_session(app_server: str) -> None:
    """HTTPAdapter can be mounted on a plain requests.Session."""
    with requests.Session() as session:
        adapter = rstsafe.requests.HTTPAdapter(retry=FAST, pool_maxsize=4)
        session.mount("http://", adapter)
        assert session.get(app_server + "/x", timeout=5).text == "GET /x"
        assert isinstance(adapter.poolmanager, rstsafe.urllib3.PoolManager)


def test_streamed_response_returns_its_connection_only_when_consumed(app_server: str) -> None:
    """stream=True: the request is finished (and the connection pooled) after the body."""
    with rstsafe.requests.Session(retry=FAST) as session:
        response = session.get(app_server + "/stream", stream=True, timeout=5)
        manager = session.adapter.poolmanager
        (key,) = manager.pools.keys()
        pool = manager.pools[key]
        assert pool.pool is not None
        assert all(c is None for c in pool.pool.queue)  # the connection is out
        conn = response.raw._connection
        assert isinstance(conn, rstsafe.urllib3.HTTPConnection)
        assert conn.life.requests_served == 0
        lines = list(response.iter_lines())
        assert lines == [b"chunk %d" % i for i in range(5)]
        assert conn.life.requests_served == 1
        assert conn in pool.pool.queue
        assert session.get(app_server + "/again", timeout=5).text == "GET /again"
        assert conn.life.requests_served == 2  # reused


def test_invalid_url_and_schemes_keep_requests_errors() -> None:
    """Errors rstsafe does not handle are requests' own (InvalidURL, InvalidSchema)."""
    with rstsafe.requests.Session(retry=FAST) as session:
        with pytest.raises(requests.exceptions.InvalidURL):
            session.get("http://", timeout=1)
        with pytest.raises(requests.exceptions.InvalidSchema):
            session.get("ftp://127.0.0.1/", timeout=1)


def test_http_proxy_goes_through_rstsafe_pools(app_server: str) -> None:
    """An HTTP proxy gets rstsafe's ProxyManager; the request reaches the proxy as absolute URI."""
    with rstsafe.requests.Session(retry=FAST) as session:
        target = "http://example.invalid/through-proxy"
        response = session.get(target, proxies={"http": app_server}, timeout=5)
        assert response.text == "GET http://example.invalid/through-proxy"
        manager = session.adapter.proxy_manager[app_server]
        assert isinstance(manager, rstsafe.urllib3.ProxyManager)


def _chunks() -> Iterator[bytes]:
    yield b"part one, "
    yield b"part two"


def test_a_generator_body_goes_on_a_fresh_connection_past_the_proven_idle() -> None:
    """Safe send: a PUT that could not be resent avoids the connection idle past what is proven."""
    with (
        MisbehavingServer(IdleCloseWithLag(idle=0.2, lag=1.5)) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        assert session.get(server.url + "/warm", timeout=5).status_code == 200
        time.sleep(0.5)
        response = session.put(server.url + "/doc", data=_chunks(), timeout=5)
        assert response.status_code == 200
        assert server.executions("PUT", "/doc") == 1
        assert len(server.connections) == 2


def test_generator_body_is_never_replayed() -> None:
    """A stale connection with a generator body: the request fails, nothing is resent.

    The server's timeout is claimed (10 s, wrongly): safe send trusts a claim, so the PUT
    reuses the connection the server has closed.
    """
    with (
        MisbehavingServer(IdleCloseWithLag(idle=0.2, lag=1.5)) as server,
        rstsafe.requests.Session(
            retry=FAST, keepalive=rstsafe.KeepAlive(server_keepalive=10.0)
        ) as session,
    ):
        assert session.get(server.url + "/warm", timeout=5).status_code == 200
        time.sleep(0.5)
        with pytest.raises(requests.ConnectionError) as caught:
            session.put(server.url + "/doc", data=_chunks(), timeout=5)
        # rstsafe did not act (the body cannot be sent again): requests' own error.
        assert type(caught.value) is requests.ConnectionError
        assert not isinstance(caught.value, rstsafe.RstsafeError)
        assert server.executions("PUT", "/doc") == 0


def test_seekable_file_body_is_rewound_and_resent_in_full() -> None:
    """A PUT with a file body on a stale connection is resent from the file's start."""
    body = b"0123456789" * 100
    with (
        MisbehavingServer(IdleCloseWithLag(idle=0.2, lag=1.5)) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        assert session.get(server.url + "/warm", timeout=5).status_code == 200
        time.sleep(0.5)
        response = session.put(server.url + "/doc", data=io.BytesIO(body), timeout=5)
        assert response.status_code == 200
        assert response.text == f"PUT /doc body={len(body)}\n"
        assert server.executions("PUT", "/doc") == 1


def test_idempotency_key_makes_a_post_retryable() -> None:
    """A POST with an Idempotency-Key on a stale connection is retried at once."""
    with (
        MisbehavingServer(IdleCloseWithLag(idle=0.2, lag=1.5)) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        assert session.get(server.url + "/warm", timeout=5).status_code == 200
        time.sleep(0.5)
        headers = {"Idempotency-Key": "order-7"}
        response = session.post(server.url + "/orders", data=b"{}", headers=headers, timeout=5)
        assert response.status_code == 200
        assert server.executions("POST", "/orders", idempotency_key="order-7") == 1


@pytest.mark.parametrize("retries", [urllib3.Retry(3), urllib3.Retry(0), False, None])
def test_urllib3_retry_counts_transport_retries_as_in_plain_urllib3(
    retries: urllib3.Retry | bool | None,
) -> None:
    """urllib3's Retry alone decides transport retries: as many connections as plain urllib3."""
    counts = []
    errors = []
    for manager in (urllib3.PoolManager(), rstsafe.urllib3.PoolManager(retry=FAST)):
        with MisbehavingServer(ResetUnread()) as server:
            try:
                with pytest.raises(urllib3.exceptions.HTTPError) as caught:
                    manager.request("GET", server.url + "/", timeout=5, retries=retries)
            finally:
                manager.clear()
            time.sleep(0.2)
            counts.append(len(server.connections))
            errors.append(caught.value)
    assert counts[0] == counts[1]
    assert type(errors[0]) is type(errors[1])
    assert not isinstance(errors[1], rstsafe.RstsafeError)


def test_urllib3_pool_manager_follows_redirects(app_server: str) -> None:
    """rstsafe.urllib3.PoolManager keeps urllib3's redirect handling."""
    manager = rstsafe.urllib3.PoolManager(retry=FAST)
    try:
        response = manager.request("GET", app_server + "/redirect", timeout=5)
        assert response.status == 200
        assert response.data == b"GET /landed"
        with pytest.raises(urllib3.exceptions.MaxRetryError):
            manager.request("GET", app_server + "/redirect", retries=urllib3.Retry(redirect=0))
    finally:
        manager.clear()


def test_status_retries_are_urllib3s_retry() -> None:
    """max_retries=Retry(status_forcelist=[503]): urllib3 retries the 503 after Retry-After."""
    retry = urllib3.Retry(1, status_forcelist=[503], raise_on_status=False)
    with (
        MisbehavingServer(Healthy(keepalive=None)) as server,
        rstsafe.requests.Session(retry=FAST, max_retries=retry) as session,
    ):
        started = time.monotonic()
        response = session.get(server.url + "/busy?status=503&retry-after=1", timeout=5)
        assert response.status_code == 503
        assert time.monotonic() - started >= 0.9
        assert server.executions("GET", "/busy") == 2


def test_max_requests_per_connection_is_enforced() -> None:
    """KeepAlive(max_requests=2): a connection serves two requests, then a new one opens."""
    with (
        MisbehavingServer(Healthy(keepalive=None)) as server,
        rstsafe.requests.Session(retry=FAST, keepalive=KeepAlive(max_requests=2)) as session,
    ):
        for index in range(5):
            assert session.get(server.url + f"/{index}", timeout=5).status_code == 200
        assert len(server.connections) == 3


def test_max_lifetime_is_enforced() -> None:
    """KeepAlive(max_lifetime=0.3): a connection older than that is not reused."""
    keepalive = KeepAlive(max_lifetime=0.3, jitter=0.0)
    with (
        MisbehavingServer(Healthy(keepalive=None)) as server,
        rstsafe.requests.Session(retry=FAST, keepalive=keepalive) as session,
    ):
        assert session.get(server.url + "/1", timeout=5).status_code == 200
        assert session.get(server.url + "/2", timeout=5).status_code == 200
        time.sleep(0.4)
        assert session.get(server.url + "/3", timeout=5).status_code == 200
        assert len(server.connections) == 2


def test_socket_options_keep_tcp_nodelay_and_add_keepalive() -> None:
    """New connections have TCP_NODELAY (urllib3's default) and SO_KEEPALIVE."""
    seen: list[tuple[int, int]] = []
    with (
        MisbehavingServer(Healthy(keepalive=None)) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        response = session.get(server.url + "/", stream=True, timeout=5)
        conn = response.raw._connection
        assert conn is not None
        sock = conn.sock
        assert isinstance(sock, socket.socket)
        seen.append((sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY), 1))
        seen.append((sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE), 1))
        response.close()
    assert all(value != 0 for value, _ in seen)


def test_configuration_is_validated_in_one_place() -> None:
    """Conflicting keep-alive arguments are refused with a ValueError naming the field."""
    registry = rstsafe.core.KeepAliveRegistry(KeepAlive())
    with pytest.raises(ValueError, match="keepalive"):
        rstsafe.urllib3.PoolManager(
            keepalive=KeepAlive(max_requests=3), keepalive_registry=registry
        )


def test_one_session_is_thread_safe_under_idle_drops() -> None:
    """8 threads x 50 requests on one Session against a server dropping idle connections."""
    import random

    from rstsafe.testing import IdleDrop

    errors: list[BaseException] = []
    with (
        MisbehavingServer(IdleDrop(idle=0.15)) as server,
        rstsafe.requests.Session(retry=FAST, pool_maxsize=8) as session,
    ):

        def worker(number: int) -> None:
            rng = random.Random(number)
            for index in range(50):
                if rng.random() < 0.15:
                    time.sleep(0.25)  # longer than the server's idle limit
                path = f"/t{number}/{index}"
                try:
                    if index % 2:
                        key = {"Idempotency-Key": path}
                        session.post(server.url + path, data=b"x", headers=key, timeout=5)
                    else:
                        session.get(server.url + path, timeout=5)
                except Exception as exc:  # collected and asserted below
                    errors.append(exc)

        threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        executed = [(e.method, e.path) for e in server.executed]
        assert len(executed) == 400
        assert len(set(executed)) == 400  # every request exactly once
    # Closing the session closed every connection: none leaked.
    assert ConnectionEnd.OPEN not in server.ends()


def test_closing_the_session_closes_its_connections() -> None:
    """Session.close() closes pooled connections at once (no reference cycles keep them)."""
    with MisbehavingServer(Healthy(keepalive=None)) as server:
        with rstsafe.requests.Session(retry=FAST) as session:
            session.get(server.url + "/a", timeout=5)
            session.post(server.url + "/b", data=b"x", timeout=5)
        assert server.wait_until(lambda s: ConnectionEnd.OPEN not in s.ends(), timeout=5)


def test_session_survives_pickling_with_its_configuration() -> None:
    """A pickled Session comes back with rstsafe's adapter and the same configuration."""
    import pickle

    keepalive = KeepAlive(server_keepalive=7.0)
    with rstsafe.requests.Session(retry=FAST, keepalive=keepalive) as session:
        copy = pickle.loads(pickle.dumps(session))
    with copy:
        assert isinstance(copy, rstsafe.requests.Session)
        assert copy.adapter.keepalive == keepalive
        assert copy.adapter.retry_policy == FAST
        assert isinstance(copy.adapter.poolmanager, rstsafe.urllib3.PoolManager)
