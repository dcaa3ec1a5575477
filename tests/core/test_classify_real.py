"""classify() against the REAL exceptions each library raises from misbehaving servers.

Every client talks to a :class:`rstsafe.testing.MisbehavingServer` on 127.0.0.1 that
closes without answering (FIN), resets after reading the request (RST), refuses,
never answers (read timeout), never accepts (connect timeout) or truncates the body;
and to a TLS listener whose certificate no client trusts (``helpers.py``). The
exceptions are whatever the library raised, not hand-made ones.
"""

from __future__ import annotations

import asyncio
import http.client
import ssl
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest

from rstsafe import ConnectionFacts, Delivery, FailureKind, RetryPolicy, classify, replayability
from rstsafe.core import Origin, RetryAction
from rstsafe.testing import (
    AcceptQueueOverflow,
    BlackHole,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
)
from rstsafe.testing._behaviours import Behaviour

from .helpers import UntrustedTLSServer

# The scenario that tests a timeout gets 0.5 s for it; every other timeout is far longer
# than any server delay on a busy machine, so a scenario can never time out instead.
SHORT = 0.5
LONG = 20.0


def _http_client(url: str, connect: float, read: float) -> None:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    timeout = min(connect, read)  # http.client has one timeout for both phases
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(
            parts.hostname, parts.port, timeout=timeout, context=ssl.create_default_context()
        )
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.request("GET", "/")
        conn.getresponse().read()
    finally:
        conn.close()


def _urllib3(url: str, connect: float, read: float) -> None:
    import urllib3

    timeout = urllib3.Timeout(connect=connect, read=read)
    with urllib3.PoolManager(retries=False, timeout=timeout) as pool:
        pool.request("GET", url + "/")


def _requests(url: str, connect: float, read: float) -> None:
    import requests

    with requests.Session() as session:
        session.get(url + "/", timeout=(connect, read))


def _httpx(url: str, connect: float, read: float) -> None:
    import httpx

    with httpx.Client(timeout=httpx.Timeout(read, connect=connect)) as client:
        client.get(url + "/")


def _httpx_async(url: str, connect: float, read: float) -> None:
    import httpx

    async def main() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(read, connect=connect)) as client:
            await client.get(url + "/")

    asyncio.run(main())


def _aiohttp(url: str, connect: float, read: float) -> None:
    import aiohttp

    async def main() -> None:
        limits = aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=read)
        async with (
            aiohttp.ClientSession(timeout=limits) as session,
            session.get(url + "/") as response,
        ):
            await response.read()

    asyncio.run(main())


CLIENTS: dict[str, Callable[[str, float, float], None]] = {
    "http.client": _http_client,
    "urllib3": _urllib3,
    "requests": _requests,
    "httpx": _httpx,
    "httpx-async": _httpx_async,
    "aiohttp": _aiohttp,
}

_MAYBE = Delivery.MAYBE_SENT
_NOT = Delivery.NOT_SENT

# scenario -> (behaviour, expected kind, expected delivery, connect timeout, read timeout)
SCENARIOS: dict[str, tuple[Callable[[], Behaviour], FailureKind, Delivery, float, float]] = {
    "closed-without-response": (
        lambda: ProcessThenReset(reset=False),
        FailureKind.CLOSED,
        _MAYBE,
        LONG,
        LONG,
    ),
    "reset-after-request": (
        lambda: ProcessThenReset(reset=True),
        FailureKind.RESET,
        _MAYBE,
        LONG,
        LONG,
    ),
    "reset-unread": (ResetUnread, FailureKind.RESET, _MAYBE, LONG, LONG),
    "refused": (Refuse, FailureKind.REFUSED, _NOT, LONG, LONG),
    "truncated-body": (TruncatedBody, FailureKind.TRUNCATED_BODY, _MAYBE, LONG, LONG),
    "read-timeout": (BlackHole, FailureKind.READ_TIMEOUT, _MAYBE, LONG, SHORT),
    "connect-timeout": (AcceptQueueOverflow, FailureKind.CONNECT_TIMEOUT, _NOT, SHORT, LONG),
}


@pytest.mark.parametrize("client", list(CLIENTS))
@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_real_exception_is_classified(scenario: str, client: str) -> None:
    """Each library's real exception for each misbehaviour gets the right kind and delivery."""
    make_behaviour, kind, delivery, connect, read = SCENARIOS[scenario]
    if client == "http.client" and kind in (FailureKind.READ_TIMEOUT, FailureKind.CONNECT_TIMEOUT):
        # A bare socket.timeout does not say which phase timed out: see the next test.
        kind, delivery = FailureKind.TIMEOUT, Delivery.MAYBE_SENT
    with (
        MisbehavingServer(make_behaviour()) as server,
        pytest.raises(Exception) as caught,  # noqa: PT011 - any library's own exception
    ):
        CLIENTS[client](server.url, connect, read)
    failure = classify(caught.value)
    assert (failure.kind, failure.delivery) == (kind, delivery), repr(caught.value)


def test_adapter_facts_fix_an_ambiguous_http_client_timeout() -> None:
    """http.client's connect timeout is a bare TimeoutError; bytes_sent=0 proves NOT_SENT."""
    with MisbehavingServer(AcceptQueueOverflow()) as server, pytest.raises(TimeoutError) as caught:
        _http_client(server.url, SHORT, SHORT)
    failure = classify(caught.value, facts=ConnectionFacts(reused=False, bytes_sent=0))
    assert (failure.kind, failure.delivery) == (FailureKind.TIMEOUT, Delivery.NOT_SENT)
    assert RetryPolicy().decide(failure, replayability("POST", {}, b"x")).retry


@pytest.mark.parametrize("client", list(CLIENTS))
def test_real_certificate_failure_is_tls_not_sent(
    client: str, untrusted_tls_server: UntrustedTLSServer
) -> None:
    """A certificate the client does not trust: TLS, NOT_SENT, and never retried."""
    with pytest.raises(Exception) as caught:  # noqa: PT011 - any library's own exception
        CLIENTS[client](untrusted_tls_server.url, LONG, LONG)
    failure = classify(caught.value)
    assert (failure.kind, failure.delivery) == (FailureKind.TLS, Delivery.NOT_SENT), repr(
        caught.value
    )
    assert not RetryPolicy().decide(failure, replayability("GET")).retry


def test_stale_reused_requests_connection_retries_now() -> None:
    """requests reusing a connection the server forgot (IdleDrop): RESET, then RETRY_NOW for GET."""
    import requests

    with MisbehavingServer(IdleDrop(idle=0.2)) as server, requests.Session() as session:
        assert session.get(server.url + "/", timeout=LONG).status_code == 200
        last_used = time.monotonic()
        time.sleep(1.0)  # five times the server's idle limit
        idle = time.monotonic() - last_used
        with pytest.raises(requests.exceptions.ConnectionError) as caught:
            session.get(server.url + "/", timeout=LONG)
    facts = ConnectionFacts(
        origin=Origin("http", *server.address), reused=True, idle_seconds=idle, requests_served=1
    )
    failure = classify(caught.value, facts=facts)
    assert failure.kind is FailureKind.RESET
    assert failure.stale
    policy = RetryPolicy()
    assert policy.decide(failure, replayability("GET")).action is RetryAction.RETRY_NOW
    assert policy.decide(failure, replayability("POST", {}, b"x")).action is RetryAction.GIVE_UP
