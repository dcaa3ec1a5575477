"""Unit tests of the error hierarchy, its messages and mixins with library exceptions."""

from __future__ import annotations

import pickle

import pytest

from rstsafe import (
    ConnectionFacts,
    Delivery,
    Failure,
    FailureKind,
    RequestMaybeSentError,
    RequestNotSentError,
    RetryPolicy,
    RstsafeError,
    classify,
    replayability,
)
from rstsafe.core import (
    Origin,
    RetryAction,
    RetryDecision,
    RetryHistory,
    describe_failure,
    error_for,
)

ORIGIN = Origin("http", "127.0.0.1", 8080)


def _reset_post() -> tuple[Failure, RetryHistory]:
    facts = ConnectionFacts(origin=ORIGIN, reused=True, idle_seconds=4.98, requests_served=3)
    failure = classify(ConnectionResetError(104, "Connection reset by peer"), facts=facts)
    decision = RetryPolicy().decide(failure, replayability("POST", {}, b"x"))
    return failure, RetryHistory().record(decision, failure=failure)


def test_message_a_person_can_act_on() -> None:
    """The message names the origin, the facts, the keep-alive and why it was not retried."""
    failure, history = _reset_post()
    error = error_for(failure, history=history, keepalive="server keep-alive learned: 5 s")
    assert str(error) == (
        "connection reset by 127.0.0.1:8080 after 3 requests, idle 4.98 s"
        " (server keep-alive learned: 5 s); POST not retried: not idempotent and the"
        " request may have been sent [ConnectionResetError: [Errno 104] Connection reset by peer]"
    )
    assert isinstance(error, RequestMaybeSentError)
    assert error.delivery is Delivery.MAYBE_SENT
    assert error.history is history
    assert error.attempts == 1


def test_not_sent_failures_get_request_not_sent_error() -> None:
    """A refused connection builds a RequestNotSentError; the attempt count is in the message."""
    failure = classify(ConnectionRefusedError(111, "refused"), facts=ConnectionFacts(origin=ORIGIN))
    history = RetryHistory()
    for _ in range(3):
        history = history.record(RetryDecision(action=RetryAction.RETRY_AFTER), failure=failure)
    history = history.record(
        RetryDecision(action=RetryAction.GIVE_UP, reason="GET not retried: retries exhausted"),
        failure=failure,
    )
    error = error_for(failure, history=history)
    assert isinstance(error, RequestNotSentError)
    assert str(error).startswith("connection refused by 127.0.0.1:8080; GET not retried")
    assert "(4 attempts)" in str(error)
    assert error.attempts == 4


def test_builtins_are_not_shadowed() -> None:
    """rstsafe errors are not builtins ConnectionError/TimeoutError, only Exception."""
    assert not issubclass(RstsafeError, (ConnectionError, TimeoutError))
    assert issubclass(RequestNotSentError, RstsafeError)
    assert issubclass(RequestMaybeSentError, RstsafeError)


def test_default_message_without_failure() -> None:
    """An error without facts still has a message and an empty history."""
    error = RstsafeError()
    assert str(error) == "request failed"
    assert error.attempts == 0
    assert error.delivery is None


def test_describe_failure_fresh_connection_bytes() -> None:
    """A fresh connection's byte counts appear; unknown counts show as '?'."""
    failure = Failure(
        kind=FailureKind.READ_TIMEOUT,
        delivery=Delivery.MAYBE_SENT,
        facts=ConnectionFacts(origin=ORIGIN, reused=False, bytes_sent=120),
    )
    assert describe_failure(failure, reason="GET retried") == (
        "read timeout from 127.0.0.1:8080 on a fresh connection, 120 bytes sent, ? received;"
        " GET retried"
    )


def test_requests_mixin_keeps_except_clauses_working() -> None:
    """A subclass mixing RequestMaybeSentError with requests' ConnectionError works both ways."""
    import requests

    class MaybeSentConnectionError(RequestMaybeSentError, requests.exceptions.ConnectionError):
        pass

    failure, history = _reset_post()
    request = requests.Request("POST", "http://127.0.0.1:8080/").prepare()
    error = error_for(
        failure,
        history=history,
        maybe_sent_cls=MaybeSentConnectionError,
        not_sent_cls=RequestNotSentError,
        request=request,
    )
    assert isinstance(error, MaybeSentConnectionError)
    with pytest.raises(requests.exceptions.ConnectionError) as caught:
        raise error
    assert caught.value.request is request
    assert isinstance(caught.value, RstsafeError)
    assert caught.value.failure is failure
    assert "POST not retried" in str(caught.value)


def test_httpx_mixin_keeps_except_clauses_working() -> None:
    """A subclass mixing RequestNotSentError with httpx.ConnectError carries the request."""
    import httpx

    class NotSentConnectError(RequestNotSentError, httpx.ConnectError):
        pass

    failure = classify(ConnectionRefusedError(111, "refused"))
    request = httpx.Request("GET", "http://127.0.0.1:8080/")
    error = NotSentConnectError(None, failure=failure, request=request)
    with pytest.raises(httpx.TransportError) as caught:
        raise error
    assert caught.value.request is request
    assert str(caught.value).startswith("connection refused")


def test_errors_survive_pickling_of_their_message() -> None:
    """Errors built with a message round-trip through pickle (for multiprocessing)."""
    error = RequestNotSentError("nothing sent")
    clone = pickle.loads(pickle.dumps(error))
    assert str(clone) == "nothing sent"
    assert isinstance(clone, RequestNotSentError)
