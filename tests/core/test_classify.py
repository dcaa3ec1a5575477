"""Unit tests of classify(): the table, the chain walk and the facts override (no sockets)."""

from __future__ import annotations

import builtins
import errno
import http.client
import socket
import ssl
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rstsafe import ConnectionFacts, Delivery, Failure, FailureKind, classify
from rstsafe.core import Origin


def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    """Return ``outer`` as if raised with ``raise outer from inner``."""
    outer.__cause__ = inner
    return outer


@pytest.mark.parametrize(
    ("exc", "kind", "delivery"),
    [
        (ConnectionResetError(errno.ECONNRESET, "reset"), FailureKind.RESET, Delivery.MAYBE_SENT),
        (ConnectionAbortedError(errno.ECONNABORTED, "x"), FailureKind.RESET, Delivery.MAYBE_SENT),
        (ConnectionRefusedError(errno.ECONNREFUSED, "x"), FailureKind.REFUSED, Delivery.NOT_SENT),
        (BrokenPipeError(errno.EPIPE, "x"), FailureKind.BROKEN_PIPE, Delivery.MAYBE_SENT),
        (OSError(errno.EHOSTUNREACH, "x"), FailureKind.UNREACHABLE, Delivery.MAYBE_SENT),
        (OSError(errno.ETIMEDOUT, "x"), FailureKind.TIMEOUT, Delivery.MAYBE_SENT),
        (OSError(errno.EIO, "x"), FailureKind.NETWORK_ERROR, Delivery.MAYBE_SENT),
        (
            socket.gaierror(-2, "Name or service not known"),
            FailureKind.NAME_RESOLUTION,
            Delivery.NOT_SENT,
        ),
        (TimeoutError("timed out"), FailureKind.TIMEOUT, Delivery.MAYBE_SENT),
        (http.client.RemoteDisconnected("x"), FailureKind.CLOSED, Delivery.MAYBE_SENT),
        (http.client.IncompleteRead(b"ab", 5), FailureKind.TRUNCATED_BODY, Delivery.MAYBE_SENT),
        (http.client.BadStatusLine("x"), FailureKind.PROTOCOL_ERROR, Delivery.MAYBE_SENT),
        (ssl.SSLEOFError(8, "EOF occurred"), FailureKind.CLOSED, Delivery.MAYBE_SENT),
        (ssl.SSLCertVerificationError(1, "bad cert"), FailureKind.TLS, Delivery.NOT_SENT),
        (ssl.SSLError(1, "other"), FailureKind.TLS, Delivery.MAYBE_SENT),
        (ValueError("not ours"), FailureKind.UNKNOWN, Delivery.MAYBE_SENT),
    ],
)
def test_stdlib_exceptions(exc: BaseException, kind: FailureKind, delivery: Delivery) -> None:
    """Each standard-library exception maps to its kind and delivery."""
    failure = classify(exc)
    assert (failure.kind, failure.delivery) == (kind, delivery)
    assert failure.exception is exc


def test_errno_is_recorded_from_the_chain() -> None:
    """The errno of the innermost OSError is kept for messages."""
    failure = classify(_raised_from(RuntimeError("wrapper"), ConnectionResetError(104, "r")))
    assert failure.errno == 104
    assert failure.kind is FailureKind.RESET


def test_connect_phase_wrapper_makes_a_reset_not_sent() -> None:
    """A reset inside httpx.ConnectError (TLS handshake) is RESET but NOT_SENT."""
    import httpx

    exc = _raised_from(httpx.ConnectError("handshake"), ConnectionResetError(104, "r"))
    failure = classify(exc)
    assert failure.kind is FailureKind.RESET
    assert failure.delivery is Delivery.NOT_SENT


def test_requests_wrapping_through_args_is_followed() -> None:
    """requests.ConnectionError(ProtocolError('Connection aborted.', RemoteDisconnected))."""
    import requests
    import urllib3

    inner = http.client.RemoteDisconnected("Remote end closed connection without response")
    middle = urllib3.exceptions.ProtocolError("Connection aborted.", inner)
    failure = classify(requests.exceptions.ConnectionError(middle))
    assert failure.kind is FailureKind.CLOSED
    assert "RemoteDisconnected" in failure.detail


def test_urllib3_max_retry_reason_is_followed() -> None:
    """MaxRetryError.reason (NewConnectionError -> refused) is followed: REFUSED, NOT_SENT."""
    import urllib3

    refused = ConnectionRefusedError(111, "Connection refused")
    new_conn = _raised_from(
        urllib3.exceptions.NewConnectionError(None, "Failed to establish"),  # type: ignore[arg-type]
        refused,
    )
    exc = urllib3.exceptions.MaxRetryError(None, "/", new_conn)  # type: ignore[arg-type]
    failure = classify(exc)
    assert (failure.kind, failure.delivery) == (FailureKind.REFUSED, Delivery.NOT_SENT)


def test_urllib3_new_connection_error_is_not_a_connect_timeout() -> None:
    """NewConnectionError subclasses ConnectTimeoutError; the table puts it first."""
    import urllib3

    failure = classify(urllib3.exceptions.NewConnectionError(None, "x"))  # type: ignore[arg-type]
    assert failure.kind is FailureKind.CONNECT_ERROR
    assert failure.delivery is Delivery.NOT_SENT


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("Server disconnected without sending a response.", FailureKind.CLOSED),
        (
            "peer closed connection without sending complete message body (received 3 bytes)",
            FailureKind.TRUNCATED_BODY,
        ),
        ("illegal header line", FailureKind.PROTOCOL_ERROR),
    ],
)
def test_httpx_remote_protocol_error_is_refined_by_message(message: str, kind: FailureKind) -> None:
    """httpx has one RemoteProtocolError; its message tells closed from truncated."""
    import httpx

    assert classify(httpx.RemoteProtocolError(message)).kind is kind


def test_aiohttp_connector_error_follows_os_error() -> None:
    """aiohttp's ClientConnectorError carries the OSError as os_error: REFUSED, NOT_SENT."""
    import aiohttp
    from aiohttp.client_reqrep import ConnectionKey

    key = ConnectionKey("127.0.0.1", 1, False, True, None, None, None)
    exc = aiohttp.ClientConnectorError(key, ConnectionRefusedError(111, "refused"))
    failure = classify(exc)
    assert (failure.kind, failure.delivery) == (FailureKind.REFUSED, Delivery.NOT_SENT)


def test_cycles_in_the_chain_terminate() -> None:
    """An exception whose cause points back at itself is classified, not looped on."""
    a = ConnectionResetError(104, "a")
    b = RuntimeError("b")
    a.__cause__ = b
    b.__cause__ = a
    assert classify(b).kind is FailureKind.RESET


def test_context_of_an_earlier_attempt_proves_nothing() -> None:
    """A ReadError raised while handling an earlier ConnectError is not NOT_SENT."""
    import httpx

    earlier = httpx.ConnectError("refused")
    later = _raised_from(httpx.ReadError("reset"), ConnectionResetError(104, "r"))
    later.__context__ = earlier
    failure = classify(later)
    assert (failure.kind, failure.delivery) == (FailureKind.RESET, Delivery.MAYBE_SENT)


def test_unknown_exception_with_network_context_stays_unknown() -> None:
    """A bug (ValueError) raised in an except block of a reset is UNKNOWN, not a reset."""
    bug = ValueError("bug in a handler")
    bug.__context__ = ConnectionResetError(104, "r")
    assert classify(bug).kind is FailureKind.UNKNOWN


def test_context_fills_in_an_empty_container() -> None:
    """An empty requests.ConnectionError takes its context's kind, never its delivery."""
    import requests

    outer = requests.exceptions.ConnectionError("connection failed")
    outer.__context__ = ConnectionRefusedError(111, "refused")
    failure = classify(outer)
    assert (failure.kind, failure.delivery) == (FailureKind.REFUSED, Delivery.MAYBE_SENT)
    assert failure.errno == 111


def test_bytes_sent_zero_proves_not_sent() -> None:
    """facts.bytes_sent == 0 overrides a MAYBE_SENT reset to NOT_SENT."""
    facts = ConnectionFacts(reused=True, bytes_sent=0)
    failure = classify(ConnectionResetError(104, "r"), facts=facts)
    assert failure.delivery is Delivery.NOT_SENT
    assert failure.facts is facts


def test_bytes_sent_positive_means_maybe_sent() -> None:
    """facts.bytes_sent > 0 means MAYBE_SENT even for a table NOT_SENT."""
    failure = classify(ConnectionRefusedError(111, "r"), facts=ConnectionFacts(bytes_sent=10))
    assert failure.delivery is Delivery.MAYBE_SENT


def test_connection_facts_validation_names_the_field() -> None:
    """Negative or NaN facts are rejected with a ValueError naming the field."""
    with pytest.raises(ValueError, match="idle_seconds"):
        ConnectionFacts(idle_seconds=-1.0)
    with pytest.raises(ValueError, match="bytes_sent"):
        ConnectionFacts(bytes_sent=-1)
    with pytest.raises(ValueError, match="age_seconds"):
        ConnectionFacts(age_seconds=float("nan"))


def test_failure_is_frozen_and_compares_without_the_exception() -> None:
    """Failure is immutable; equality ignores the exception object."""
    one = classify(ConnectionResetError(104, "r"))
    two = classify(ConnectionResetError(104, "r"))
    assert one == two
    with pytest.raises(AttributeError):
        one.kind = FailureKind.CLOSED  # type: ignore[misc]
    assert isinstance(one, Failure)
    assert one.not_sent is False


def test_origin_formats_ipv6_in_brackets() -> None:
    """Origin prints host:port, with brackets around IPv6 hosts."""
    assert str(Origin("http", "127.0.0.1", 8080)) == "127.0.0.1:8080"
    assert str(Origin("https", "::1", 443)) == "[::1]:443"


@given(st.text(max_size=50), st.integers(min_value=-5, max_value=200))
def test_classify_never_raises_on_os_errors(text: str, code: int) -> None:
    """Any OSError (any errno, any text), wrapped or not, classifies without raising."""
    exc = OSError(code, text)
    wrapped = _raised_from(RuntimeError(text), exc)
    assert isinstance(classify(exc).kind, FailureKind)
    assert isinstance(classify(wrapped).kind, FailureKind)


def test_exception_groups_are_followed() -> None:
    """An ExceptionGroup (anyio, trio) is searched for its members."""
    group_type = vars(builtins)["BaseExceptionGroup"]  # Python >= 3.11 (the venv's)
    group = group_type("connect", [ConnectionRefusedError(111, "refused")])
    assert classify(group).kind is FailureKind.REFUSED


def test_import_is_lazy_and_the_table_grows_with_imports() -> None:
    """import rstsafe imports no optional HTTP library; classify() sees ones imported later."""
    code = (
        "import sys, rstsafe\n"
        "assert not {'httpx', 'httpcore', 'aiohttp', 'requests'} & set(sys.modules), sys.modules\n"
        "assert rstsafe.classify(TimeoutError()).kind is rstsafe.FailureKind.TIMEOUT\n"
        "import httpx\n"
        "kind = rstsafe.classify(httpx.ConnectTimeout('x')).kind\n"
        "assert kind is rstsafe.FailureKind.CONNECT_TIMEOUT, kind\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr


def test_a_broken_str_does_not_break_classification() -> None:
    """An exception whose __str__ raises is still classified (classify never raises)."""

    class Broken(ConnectionResetError):
        def __str__(self) -> str:
            raise RuntimeError("no text")

    failure = classify(Broken(104, "r"))
    assert failure.kind is FailureKind.RESET
    assert failure.detail == "Broken"


def test_a_module_still_being_imported_by_another_thread_does_not_break_classify(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A partly initialised host module in sys.modules: classify still works, caches nothing."""
    import sys
    import types

    from rstsafe._core import classify as classify_module

    monkeypatch.setitem(sys.modules, "h11", types.ModuleType("h11"))  # no classes defined yet
    monkeypatch.setattr(classify_module, "_table_cache", {})
    failure = classify_module.classify(ConnectionResetError(104, "Connection reset by peer"))
    assert failure.kind is classify_module.FailureKind.RESET
    assert classify_module._table_cache == {}
