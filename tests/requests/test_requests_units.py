"""The adapters' own small rules: error classes, policy checks, byte counting, quick bounds."""

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
    RequestMaybeSentError,
    RequestNotSentError,
)
from rstsafe._core.attempts import ConnectionLife
from rstsafe._core.clock import ManualClock
from rstsafe.core import Origin, OriginKeepAlive, RetryHistory
from rstsafe.requests._adapter import _translate
from rstsafe.urllib3._pools import _PoolLocal, _PoolShared

ORIGIN = Origin("http", "127.0.0.1", 8080)


def test_requests_errors_are_caught_by_existing_except_clauses() -> None:
    """Each rstsafe.requests error is the requests exception people already catch."""
    assert issubclass(rstsafe.requests.NotSentConnectionError, requests.ConnectionError)
    assert issubclass(rstsafe.requests.NotSentConnectionError, RequestNotSentError)
    assert issubclass(rstsafe.requests.MaybeSentConnectionError, requests.ConnectionError)
    assert issubclass(rstsafe.requests.MaybeSentConnectionError, RequestMaybeSentError)
    assert issubclass(rstsafe.requests.ConnectTimeout, requests.exceptions.ConnectTimeout)
    assert issubclass(rstsafe.requests.ConnectTimeout, RequestNotSentError)
    assert issubclass(rstsafe.requests.MaybeSentConnectTimeout, requests.exceptions.Timeout)
    assert issubclass(rstsafe.requests.MaybeSentConnectTimeout, RequestMaybeSentError)


def test_urllib3_errors_are_urllib3s_own_with_urllib3s_args() -> None:
    """rstsafe.urllib3's MaxRetryError keeps urllib3's args, pool, url and reason."""
    failure = Failure(kind=FailureKind.REFUSED, delivery=Delivery.NOT_SENT)
    reason = urllib3.exceptions.NewConnectionError(None, "refused")  # type: ignore[arg-type]
    plain = urllib3.exceptions.MaxRetryError(None, "/x", reason)  # type: ignore[arg-type]
    error = rstsafe.urllib3.NotSentMaxRetryError(
        "gave up", failure=failure, history=RetryHistory(), host_args=(None, "/x", reason)
    )
    assert isinstance(error, urllib3.exceptions.MaxRetryError)
    assert error.args == plain.args
    assert error.reason is reason
    assert error.url == "/x"
    assert str(error) == f"{plain} [rstsafe: gave up]"
    assert error.message == "gave up"
    assert error.delivery is Delivery.NOT_SENT


def test_translation_keeps_requests_errors_rstsafe_does_not_own() -> None:
    """An SSLError, or a ConnectionError around a plain urllib3 error, is left as is."""
    failure = Failure(kind=FailureKind.RESET, delivery=Delivery.MAYBE_SENT)
    cause = rstsafe.urllib3.MaybeSentMaxRetryError(
        "why", failure=failure, host_args=(None, "/", None)
    )
    assert _translate(requests.exceptions.SSLError(cause)) is None
    assert _translate(requests.exceptions.ReadTimeout(cause)) is None
    assert _translate(requests.ConnectionError("plain")) is None
    plain_cause = urllib3.exceptions.ProtocolError("Connection aborted.")
    assert _translate(requests.ConnectionError(plain_cause)) is None


def test_translation_keeps_requests_args_and_picks_the_class_by_delivery() -> None:
    """requests' class and delivery pick rstsafe's subclass; args, request, response kept."""
    request = requests.Request("GET", "http://127.0.0.1/").prepare()
    cases: dict[tuple[type[requests.RequestException], Delivery], type[rstsafe.RstsafeError]] = {
        (requests.ConnectTimeout, Delivery.NOT_SENT): rstsafe.requests.ConnectTimeout,
        (requests.ConnectTimeout, Delivery.MAYBE_SENT): rstsafe.requests.MaybeSentConnectTimeout,
        (requests.ConnectionError, Delivery.NOT_SENT): rstsafe.requests.NotSentConnectionError,
        (requests.ConnectionError, Delivery.MAYBE_SENT): rstsafe.requests.MaybeSentConnectionError,
    }
    for (host_cls, delivery), cls in cases.items():
        failure = Failure(kind=FailureKind.RESET, delivery=delivery)
        urllib3_cls = (
            rstsafe.urllib3.NotSentMaxRetryError
            if delivery is Delivery.NOT_SENT
            else rstsafe.urllib3.MaybeSentMaxRetryError
        )
        cause = urllib3_cls("why", failure=failure, host_args=(None, "/", None))
        plain = host_cls(cause, request=request)
        error = _translate(plain)
        assert type(error) is cls
        assert isinstance(error, host_cls)
        assert error.args == plain.args
        assert error.args[0] is cause
        assert error.failure is failure
        assert error.request is request
        assert error.response is None


def test_a_retry_policy_with_status_retries_is_refused() -> None:
    """Status retries are urllib3's Retry: retry_statuses is a ValueError naming itself."""
    policy = rstsafe.RetryPolicy(retry_statuses=frozenset({503}))
    with pytest.raises(ValueError, match="retry_statuses"):
        rstsafe.urllib3.PoolManager(retry=policy)
    with pytest.raises(ValueError, match="retry_statuses"):
        rstsafe.urllib3.HTTPConnectionPool("127.0.0.1", 8080, retry=policy)
    with pytest.raises(ValueError, match="retry_statuses"):
        rstsafe.requests.HTTPAdapter(retry=policy)
    with pytest.raises(TypeError, match="retry"):
        rstsafe.requests.HTTPAdapter(retry=3)  # type: ignore[arg-type]


def test_the_session_mounts_one_adapter_per_prefix_sharing_one_registry() -> None:
    """http:// and https:// get their own adapter (closed once each), one keep-alive state."""
    with rstsafe.requests.Session() as session:
        http, https = session.adapters["http://"], session.adapters["https://"]
        assert isinstance(http, rstsafe.requests.HTTPAdapter)
        assert isinstance(https, rstsafe.requests.HTTPAdapter)
        assert http is not https
        assert http.keepalive_registry is https.keepalive_registry


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
