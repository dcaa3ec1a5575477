"""The contract (docs/contract.md) through rstsafe.requests and rstsafe.urllib3, on loopback.

rstsafe adds an idle expiry and the immediate retry of a stale reused connection; every other
retry, and every error rstsafe did not act on, is the host's, unchanged. Where it acted, its
error is a subclass of exactly what the host raised, with the host's args, and pickles.
"""

from __future__ import annotations

import contextlib
import pickle
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3

import rstsafe
import rstsafe.requests
import rstsafe.urllib3
from rstsafe import ConnectionFacts, Delivery, Failure, FailureKind
from rstsafe._core.retry import RetryAction, RetryDecision
from rstsafe.core import Origin, RetryHistory

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
# urllib3 < 2.1 puts the connection object's repr in its messages: rstsafe's connection
# class (a subclass) and address differ, nothing else may.
_OBJECT = re.compile(r"<[\w.]+ object at 0x[0-9a-f]+>")


def _same_text(args: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(_OBJECT.sub("<connection>", a) if isinstance(a, str) else a for a in args)


def _read_head(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


@contextlib.contextmanager
def silent_server() -> Iterator[str]:
    """A listener whose kernel accepts connections that nobody ever reads or answers."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"


@contextlib.contextmanager
def refused_port() -> Iterator[str]:
    """A loopback URL whose port refuses connections (bound, never listening)."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{holder.getsockname()[1]}"


@contextlib.contextmanager
def stale_then_gone() -> Iterator[str]:
    """Answers one request, reads the next on the same connection, stops listening, closes it.

    The second request meets a stale reused connection (closed without a response byte);
    rstsafe's immediate retry on a fresh connection is then refused.
    """
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            _read_head(conn)
            conn.sendall(OK)
            _read_head(conn)
            listener.close()  # refuse the retry's connection
            conn.shutdown(socket.SHUT_RDWR)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        listener.close()
        thread.join(5)


@contextlib.contextmanager
def resets_first_connection() -> Iterator[tuple[str, list[int]]]:
    """Closes its first connection after reading the request (no response); answers the rest."""
    listener = socket.create_server(("127.0.0.1", 0))
    accepted: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(1)
            with conn:
                _read_head(conn)
                if len(accepted) > 1:
                    conn.sendall(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
                    )

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join(5)
        listener.close()


# -- done-when checks --------------------------------------------------------------------


def test_requests_read_timeout_is_requests_own_within_the_read_timeout() -> None:
    """GET with timeout=(2, 0.5) to a silent server: requests' ReadTimeout, no retry storm."""
    with silent_server() as url, rstsafe.requests.Session() as session:
        started = time.monotonic()
        with pytest.raises(requests.exceptions.ReadTimeout) as caught:
            session.get(url + "/", timeout=(2, 0.5))
        elapsed = time.monotonic() - started
    assert type(caught.value) is requests.exceptions.ReadTimeout
    assert elapsed < 1.5  # a bound on retries (3 read timeouts would take 2 s), not speed


def test_urllib3_read_timeout_is_urllib3s_own_within_the_read_timeout() -> None:
    """rstsafe.urllib3 with retries=False: urllib3's ReadTimeoutError after one read timeout."""
    manager = rstsafe.urllib3.PoolManager()
    try:
        with silent_server() as url:
            started = time.monotonic()
            with pytest.raises(urllib3.exceptions.ReadTimeoutError) as caught:
                manager.request(
                    "GET", url + "/", timeout=urllib3.Timeout(connect=2, read=0.5), retries=False
                )
            elapsed = time.monotonic() - started
    finally:
        manager.clear()
    assert type(caught.value) is urllib3.exceptions.ReadTimeoutError
    assert elapsed < 1.5


@pytest.mark.parametrize(
    "retries",
    [False, 0, urllib3.Retry(0), urllib3.Retry(connect=False), urllib3.Retry(total=False)],
    ids=["False", "0", "Retry(0)", "Retry(connect=False)", "Retry(total=False)"],
)
def test_refused_port_raises_what_plain_urllib3_raises(retries: Any) -> None:
    """retries=False and friends on a refused port: the same class and args as plain urllib3."""
    raised = []
    with refused_port() as url:
        for manager in (urllib3.PoolManager(), rstsafe.urllib3.PoolManager()):
            try:
                with pytest.raises(urllib3.exceptions.HTTPError) as caught:
                    manager.request("GET", url + "/", retries=retries, timeout=2)
            finally:
                manager.clear()
            raised.append(caught.value)
    plain, swapped = raised
    assert type(swapped) is type(plain)
    assert _same_text(swapped.args) == _same_text(plain.args)
    if retries is False:
        assert type(swapped) is urllib3.exceptions.NewConnectionError


def test_a_callers_retry_recovers_a_protocol_error_as_in_plain_urllib3() -> None:
    """Retry(1) recovers a connection closed without a response, exactly as plain urllib3."""
    for manager in (urllib3.PoolManager(), rstsafe.urllib3.PoolManager()):
        with resets_first_connection() as (url, accepted):
            try:
                response = manager.request("GET", url + "/", retries=urllib3.Retry(1), timeout=5)
            finally:
                manager.clear()
            assert response.status == 200
            assert len(accepted) == 2


def test_requests_max_retries_zero_is_not_overridden() -> None:
    """max_retries=0 (requests' default): one attempt at a reset, requests' own error."""
    with resets_first_connection() as (url, accepted), rstsafe.requests.Session() as session:
        with pytest.raises(requests.ConnectionError) as caught:
            session.get(url + "/", timeout=5)
        assert type(caught.value) is requests.ConnectionError
        assert type(caught.value.args[0]) is urllib3.exceptions.ProtocolError
        assert caught.value.args[0].args[0] == "Connection aborted."
        assert len(accepted) == 1


# -- where rstsafe acted -------------------------------------------------------------------


def test_a_failed_stale_retry_is_urllib3s_max_retry_error_with_the_facts() -> None:
    """Stale connection retried, retry refused: MaybeSentMaxRetryError with urllib3's args."""
    manager = rstsafe.urllib3.PoolManager()
    try:
        with stale_then_gone() as url:
            assert manager.request("GET", url + "/1", retries=urllib3.Retry(0)).status == 200
            with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
                manager.request("GET", url + "/2", retries=urllib3.Retry(0))
    finally:
        manager.clear()
    error = caught.value
    assert type(error) is rstsafe.urllib3.MaybeSentMaxRetryError
    assert isinstance(error.reason, urllib3.exceptions.NewConnectionError)
    plain = urllib3.exceptions.MaxRetryError(error.pool, error.url, error.reason)
    assert error.args == plain.args
    assert error.delivery is Delivery.MAYBE_SENT
    assert error.attempts == 2
    assert error.history.attempts[0].decision.action is RetryAction.RETRY_NOW
    assert error.history.attempts[0].failure is not None
    assert error.history.attempts[0].failure.facts.reused is True
    assert str(error).startswith(str(plain))
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert again.args == error.args
    assert again.history == error.history
    assert again.pool is None  # as urllib3's own errors pickle


def test_a_failed_stale_retry_with_retries_false_keeps_urllib3s_class() -> None:
    """With retries=False the retry's refusal is urllib3's NewConnectionError, as raised."""
    manager = rstsafe.urllib3.PoolManager()
    try:
        with stale_then_gone() as url:
            assert manager.request("GET", url + "/1", retries=False).status == 200
            with pytest.raises(urllib3.exceptions.NewConnectionError) as caught:
                manager.request("GET", url + "/2", retries=False)
    finally:
        manager.clear()
    assert type(caught.value) is urllib3.exceptions.NewConnectionError


def test_a_failed_stale_retry_through_requests_keeps_requests_args() -> None:
    """requests: MaybeSentConnectionError whose args[0] is the urllib3 error, as requests has."""
    with stale_then_gone() as url, rstsafe.requests.Session() as session:
        assert session.get(url + "/1", timeout=5).status_code == 200
        with pytest.raises(requests.ConnectionError) as caught:
            session.get(url + "/2", timeout=5)
    error = caught.value
    assert type(error) is rstsafe.requests.MaybeSentConnectionError
    assert type(error.args[0]) is rstsafe.urllib3.MaybeSentMaxRetryError
    assert len(error.args) == 1
    assert error.args[0].args  # e.args[0].args works, as with plain requests
    assert error.request is not None
    assert error.request.url == url + "/2"
    assert error.reused is True or error.attempts == 2
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is type(error)
    assert type(again.args[0]) is type(error.args[0])
    assert again.history == error.history
    assert again.request is not None
    assert again.request.url == error.request.url


# -- pickling every public error -----------------------------------------------------------


def _failure(delivery: Delivery) -> Failure:
    facts = ConnectionFacts(
        origin=Origin("http", "127.0.0.1", 8080),
        reused=True,
        idle_seconds=4.98,
        requests_served=3,
        bytes_sent=0 if delivery is Delivery.NOT_SENT else 120,
        bytes_received=0,
    )
    return Failure(
        kind=FailureKind.RESET,
        delivery=delivery,
        facts=facts,
        errno=104,
        detail="ConnectionResetError: [Errno 104] Connection reset by peer",
        exception=ConnectionResetError(104, "Connection reset by peer"),
    )


def _history(failure: Failure) -> RetryHistory:
    retry = RetryDecision(action=RetryAction.RETRY_NOW, reason="stale")
    give_up = RetryDecision(action=RetryAction.GIVE_UP, reason="stale retries used")
    return RetryHistory().record(retry, failure=failure).record(give_up, failure=failure)


def _urllib3_errors() -> list[rstsafe.RstsafeError]:
    reason = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104))
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 8080)
    errors: list[rstsafe.RstsafeError] = []
    cls: type[rstsafe.RstsafeError]
    for cls, delivery in (
        (rstsafe.urllib3.NotSentMaxRetryError, Delivery.NOT_SENT),
        (rstsafe.urllib3.MaybeSentMaxRetryError, Delivery.MAYBE_SENT),
    ):
        failure = _failure(delivery)
        errors.append(
            cls("why", failure=failure, history=_history(failure), host_args=(pool, "/x", reason))
        )
    for cls, delivery in (
        (rstsafe.urllib3.NotSentProtocolError, Delivery.NOT_SENT),
        (rstsafe.urllib3.MaybeSentProtocolError, Delivery.MAYBE_SENT),
    ):
        failure = _failure(delivery)
        errors.append(cls("why", failure=failure, history=_history(failure), host_args=reason.args))
    return errors


def _requests_errors() -> list[rstsafe.RstsafeError]:
    request = requests.Request("GET", "http://127.0.0.1:8080/x").prepare()
    errors: list[rstsafe.RstsafeError] = []
    not_sent, maybe_sent = _urllib3_errors()[:2]
    for cls, cause in (
        (rstsafe.requests.NotSentConnectionError, not_sent),
        (rstsafe.requests.MaybeSentConnectionError, maybe_sent),
        (rstsafe.requests.ConnectTimeout, not_sent),
        (rstsafe.requests.MaybeSentConnectTimeout, maybe_sent),
    ):
        errors.append(
            cls(
                cause.message,
                failure=cause.failure,
                history=cause.history,
                host_args=(cause,),
                request=request,
            )
        )
    return errors


def test_every_public_error_is_exported_and_pickles_with_its_facts() -> None:
    """Each rstsafe.urllib3 / rstsafe.requests error round-trips through pickle, facts kept."""
    errors = _urllib3_errors() + _requests_errors()
    exported = {
        getattr(module, name)
        for module in (rstsafe.urllib3, rstsafe.requests)
        for name in module.__all__
        if isinstance(getattr(module, name), type)
        and issubclass(getattr(module, name), BaseException)
    }
    assert {type(e) for e in errors} == exported
    for error in errors:
        again = pickle.loads(pickle.dumps(error))
        assert type(again) is type(error)
        assert len(again.args) == len(error.args)
        for new, old in zip(again.args, error.args, strict=True):
            assert type(new) is type(old)
            if isinstance(old, str):
                assert new == old
        assert again.message == error.message
        assert again.failure == error.failure  # the exception object is not compared
        assert again.failure is not None
        assert again.failure.exception is None  # dropped: facts only
        assert again.history == error.history
        assert again.delivery is error.delivery
        assert again.attempts == error.attempts == 2
        assert again.reused is True
        assert again.idle_seconds == 4.98
        assert str(again) == str(error)
        if isinstance(error, requests.RequestException):
            assert isinstance(again, requests.RequestException)
            assert again.request is not None
            assert error.request is not None
            assert again.request.url == error.request.url
        if isinstance(error, urllib3.exceptions.MaxRetryError):
            assert isinstance(again, urllib3.exceptions.MaxRetryError)
            assert again.url == error.url
            assert type(again.reason) is type(error.reason)
