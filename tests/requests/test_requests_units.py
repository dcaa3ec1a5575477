"""The adapters' own small rules: error classes, Retry handling, byte counting, quick bounds."""

from __future__ import annotations

import select
import socket
import struct

import pytest
import requests
import urllib3
from hypothesis import given
from hypothesis import strategies as st

import rstsafe.requests
import rstsafe.urllib3
from rstsafe import (
    ConnectionFacts,
    Delivery,
    Failure,
    FailureKind,
    KeepAlive,
    Origin,
    OriginKeepAlive,
    RequestMaybeSentError,
    RequestNotSentError,
    RetryHistory,
)
from rstsafe._core.attempts import ConnectionLife
from rstsafe._core.clock import ManualClock
from rstsafe.requests._adapter import _translate
from rstsafe.urllib3._pools import _PoolLocal, _PoolShared, _without_transport_retries

ORIGIN = Origin("http", "127.0.0.1", 8080)


def test_requests_errors_are_caught_by_existing_except_clauses() -> None:
    """Each rstsafe.requests error is the requests exception people already catch."""
    assert issubclass(rstsafe.requests.NotSentConnectionError, requests.ConnectionError)
    assert issubclass(rstsafe.requests.NotSentConnectionError, RequestNotSentError)
    assert issubclass(rstsafe.requests.MaybeSentConnectionError, requests.ConnectionError)
    assert issubclass(rstsafe.requests.MaybeSentConnectionError, RequestMaybeSentError)
    assert issubclass(rstsafe.requests.ConnectTimeout, requests.exceptions.ConnectTimeout)
    assert issubclass(rstsafe.requests.ConnectTimeout, requests.exceptions.Timeout)
    assert issubclass(rstsafe.requests.ReadTimeout, requests.exceptions.ReadTimeout)
    assert issubclass(rstsafe.requests.ReadTimeout, RequestMaybeSentError)


def test_urllib3_errors_are_max_retry_errors_with_a_reason() -> None:
    """rstsafe.urllib3 errors are MaxRetryError (reason, pool, url) carrying the failure."""
    failure = Failure(kind=FailureKind.REFUSED, delivery=Delivery.NOT_SENT)
    reason = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    error = rstsafe.urllib3.NotSentMaxRetryError(
        "gave up", failure=failure, history=RetryHistory(), pool=None, url="/x", reason=reason
    )
    assert isinstance(error, urllib3.exceptions.MaxRetryError)
    assert isinstance(error, urllib3.exceptions.HTTPError)
    assert error.reason is reason
    assert error.url == "/x"
    assert str(error) == "gave up"
    assert error.delivery is Delivery.NOT_SENT


def test_translation_keeps_requests_errors_rstsafe_does_not_own() -> None:
    """An SSLError (or any error without rstsafe facts) is left as requests raised it."""
    request = requests.Request("GET", "http://127.0.0.1/").prepare()
    assert _translate(requests.exceptions.SSLError("bad cert"), request) is None
    assert _translate(requests.ConnectionError("plain"), request) is None


def test_translation_picks_the_class_by_kind_and_delivery() -> None:
    """Connect timeout, read timeout, not sent and maybe sent map to the four classes."""
    request = requests.Request("GET", "http://127.0.0.1/").prepare()
    cases = {
        (FailureKind.CONNECT_TIMEOUT, Delivery.NOT_SENT): rstsafe.requests.ConnectTimeout,
        (FailureKind.READ_TIMEOUT, Delivery.MAYBE_SENT): rstsafe.requests.ReadTimeout,
        (FailureKind.REFUSED, Delivery.NOT_SENT): rstsafe.requests.NotSentConnectionError,
        (FailureKind.RESET, Delivery.MAYBE_SENT): rstsafe.requests.MaybeSentConnectionError,
    }
    for (kind, delivery), cls in cases.items():
        failure = Failure(kind=kind, delivery=delivery)
        cause = rstsafe.urllib3.NotSentMaxRetryError("why", failure=failure, pool=None, url="/")
        error = _translate(requests.ConnectionError(cause, request=request), request)
        assert type(error) is cls
        assert isinstance(error, rstsafe.RstsafeError)
        assert error.failure is failure
        assert error.request is request
        assert error.__cause__ is cause


def test_urllib3_retry_keeps_redirects_but_not_transport_retries() -> None:
    """The Retry passed to urllib3 keeps redirect and status settings, zero transport retries."""
    given_retry = urllib3.Retry(total=5, connect=3, read=3, redirect=4, status_forcelist=[503])
    inner = _without_transport_retries(given_retry)
    assert (inner.connect, inner.read, inner.other) == (0, 0, 0)
    assert inner.redirect == 4
    assert inner.status_forcelist == [503]
    requests_default = urllib3.Retry(0, read=False)
    assert _without_transport_retries(requests_default) is requests_default
    never = urllib3.Retry(False)
    assert _without_transport_retries(never) is never


def _reset_socket() -> tuple[socket.socket, socket.socket]:
    """A connected client socket whose peer has reset the connection (RST received)."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname(), timeout=5)
        server, _ = listener.accept()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    server.close()
    assert select.select([client], [], [], 5)[0]  # the RST has arrived
    return client, server


@pytest.mark.parametrize(("size", "counted"), [(100, False), (64 * 1024, True)])
def test_a_failed_first_small_write_counts_as_nothing_sent(size: int, counted: bool) -> None:
    """A first write of <= 4 KiB that fails sent nothing; a bigger one may have sent part."""
    client, _ = _reset_socket()
    conn = rstsafe.urllib3.HTTPConnection("127.0.0.1", 8080)
    conn.sock = client
    try:
        conn.life.begin_attempt()
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            conn.send(b"x" * size)
        assert (conn.life.bytes_sent > 0) is counted
    finally:
        conn.close()


facts_strategy = st.floats(min_value=0.0, max_value=100.0, allow_nan=False)


@given(
    idle=facts_strategy,
    age_extra=facts_strategy,
    server=st.one_of(st.none(), st.floats(min_value=0.1, max_value=50.0)),
    lifetime=st.one_of(st.none(), st.floats(min_value=0.5, max_value=200.0)),
)
def test_quick_bounds_never_keep_an_expired_connection(
    idle: float, age_extra: float, server: float | None, lifetime: float | None
) -> None:
    """Whenever the quick check says 'surely alive', the full expiry check agrees."""
    clock = ManualClock(1000.0)
    config = KeepAlive(server_keepalive=server, max_lifetime=lifetime)
    state = OriginKeepAlive(config, origin=ORIGIN, clock=clock)
    life = ConnectionLife(ORIGIN, clock=clock)
    clock.advance(age_extra)
    life.begin_attempt()
    life.finish_request()
    clock.advance(idle)
    shared = _PoolShared(state, _PoolLocal())
    if shared.surely_alive(life, clock.now()):
        for _ in range(20):  # every jitter draw
            assert life.expiry_reason(state) is None


def test_facts_of_a_failed_attempt_say_how_much_was_sent() -> None:
    """ConnectionFacts from a connection's life feed classification's delivery."""
    life = ConnectionLife(ORIGIN)
    life.begin_attempt()
    facts = life.facts()
    assert isinstance(facts, ConnectionFacts)
    assert facts.bytes_sent == 0
    assert facts.reused is False
