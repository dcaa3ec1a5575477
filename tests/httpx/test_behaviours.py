"""rstsafe.httpx.Client against every misbehaving-server behaviour (sync).

Each test asserts what rstsafe returns or raises, and what the server executed: a
non-idempotent request is never executed twice.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator, Sequence

import httpx
import pytest

import rstsafe
import rstsafe.httpx
from rstsafe import FailureKind, KeepAlive, RetryPolicy
from rstsafe._cli.demo import Step, alternating, run_paced
from rstsafe.core import RetryAction, TTLSource
from rstsafe.testing import (
    AbortiveClose,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    Behaviour,
    BlackHole,
    CloseAfterRequests,
    EarlyResponse,
    Healthy,
    IdleCloseWithLag,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
)
from rstsafe.testing._fixtures import ServerFactory

PAUSE = 0.6  # past the servers' 0.3 s idle timers below, with 0.3 s to spare
LARGE_BODY = b"u" * (8 * 1024 * 1024)


def _closing(server: MisbehavingServer) -> bool:
    return any(r.closing_since is not None for r in server.connections)


def _send(client: httpx.Client, method: str, url: str) -> httpx.Response:
    body = b'{"order": 1}' if method == "POST" else None
    return client.request(method, url, content=body, timeout=5)


FOUR = alternating(4, PAUSE)  # GET, POST, GET, POST, each path unique


def _all_ok(client: httpx.Client, server: MisbehavingServer, steps: Sequence[Step]) -> None:
    """Send the paced steps; every one must get 200."""
    outcome = run_paced(
        lambda step: _send(client, step.method, server.url + step.path).status_code, steps
    )
    assert outcome.errors == {}
    assert list(outcome.statuses.values()) == [200] * len(steps)


def _body_chunks() -> Iterator[bytes]:
    yield b"streamed "
    yield b"body"


def test_healthy_server_paced_across_its_keepalive(misbehaving_server: ServerFactory) -> None:
    """Against a server closing idle connections (FIN), every GET and POST succeeds once."""
    server = misbehaving_server(Healthy(keepalive=0.3))
    with rstsafe.httpx.Client() as client:
        _all_ok(client, server, FOUR)
    assert server.executions(method="POST") == 2
    assert all(server.executions(path=step.path) == 1 for step in FOUR)


def test_keepalive_race_get_is_retried_on_a_fresh_connection(
    misbehaving_server: ServerFactory,
) -> None:
    """IdleCloseWithLag: a GET meeting the RST is resent at once on a new connection."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=2.0))
    with rstsafe.httpx.Client() as client:
        assert client.get(server.url + "/a").status_code == 200
        assert server.wait_until(_closing)
        response = client.get(server.url + "/b")
        assert response.status_code == 200
    assert server.executions(path="/b") == 1
    assert len(server.connections) == 2


def test_keepalive_race_post_fails_once_then_the_learner_avoids_it(
    misbehaving_server: ServerFactory,
) -> None:
    """Without header or config, only the first POST meeting the race fails; then none do."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    with rstsafe.httpx.Client() as client:
        assert client.get(server.url + "/first").status_code == 200
        time.sleep(PAUSE)
        with pytest.raises(httpx.ReadError) as caught:
            _send(client, "POST", server.url + "/orders/0")
        error = caught.value
        assert isinstance(error, rstsafe.RequestMaybeSentError)
        assert error.failure is not None
        assert error.failure.kind is FailureKind.RESET
        assert error.failure.facts.reused is True
        assert error.attempts == 1
        assert "not idempotent" in str(error)
        state = client._transport.keepalive_registry  # type: ignore[attr-defined]
        origin = next(iter(state))
        assert state.for_origin(origin).idle_ttl().source is TTLSource.LEARNED
        for index in range(1, 4):
            time.sleep(PAUSE)
            method = "GET" if index % 2 == 0 else "POST"
            assert _send(client, method, f"{server.url}/orders/{index}").status_code == 200
    assert server.executions(path="/orders/0") == 0  # the RST meant it was never read
    assert all(server.executions(path=f"/orders/{i}") == 1 for i in range(1, 4))


def test_keepalive_race_learned_from_a_get_protects_every_post(
    misbehaving_server: ServerFactory,
) -> None:
    """When a GET meets the first close, the learned TTL keeps every later POST safe."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    with rstsafe.httpx.Client() as client:
        for index in range(2):
            assert client.get(f"{server.url}/warm/{index}").status_code == 200
            time.sleep(PAUSE)
        for index in range(2):
            assert _send(client, "POST", f"{server.url}/orders/{index}").status_code == 200
            time.sleep(PAUSE)
    assert all(server.executions(path=f"/orders/{i}") == 1 for i in range(2))


def test_keepalive_race_with_configured_server_keepalive(
    misbehaving_server: ServerFactory,
) -> None:
    """IdleCloseWithLag with ``server_keepalive`` configured: no GET or POST ever fails."""
    server = misbehaving_server(IdleCloseWithLag(idle=0.3, lag=1.2))
    keepalive = KeepAlive(server_keepalive=0.3)
    with rstsafe.httpx.Client(keepalive=keepalive) as client:
        _all_ok(client, server, FOUR)
    assert all(server.executions(path=step.path) == 1 for step in FOUR)


def test_keep_alive_header_sets_the_ttl(misbehaving_server: ServerFactory) -> None:
    """An honest ``Keep-Alive: timeout=1`` header: TTL from the header, GET and POST all ok."""
    server = misbehaving_server(AdvertiseKeepAlive(advertised=1.0, actual=1.0))
    steps = [
        dataclasses.replace(step, pause=pause)
        for step, pause in zip(FOUR, (0.0, 1.2, 0.2, 1.2), strict=True)
    ]
    with rstsafe.httpx.Client() as client:
        _all_ok(client, server, steps)
        registry = client._transport.keepalive_registry  # type: ignore[attr-defined]
        state = registry.for_origin(next(iter(registry)))
        assert state.header_timeout == 1.0
        assert state.idle_ttl().source is TTLSource.HEADER
    assert all(server.executions(path=step.path) == 1 for step in steps)
    # Reused after 0.2 s idle, fresh after 1.2 s: three connections for four requests.
    assert len(server.connections) == 3


def test_lying_keep_alive_header_is_survived(misbehaving_server: ServerFactory) -> None:
    """A header promising 5 s on a server closing after 0.3 s: still no error (FIN seen)."""
    server = misbehaving_server(AdvertiseKeepAlive(advertised=5.0, actual=0.3))
    with rstsafe.httpx.Client() as client:
        _all_ok(client, server, FOUR)
    assert server.executions(method="POST") == 2


def test_idle_drop_get_retried_post_fails_only_before_learning(
    misbehaving_server: ServerFactory,
) -> None:
    """IdleDrop (NAT forgot the connection): GETs recover; one POST fails, never executed."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    with rstsafe.httpx.Client() as client:
        assert client.get(server.url + "/r/0").status_code == 200
        time.sleep(PAUSE)
        # ReadError (the RST) or RemoteProtocolError (EOF first), as httpx reports it.
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as caught:
            _send(client, "POST", server.url + "/r/1")
        for index in range(2, 5):
            time.sleep(PAUSE)
            method = "GET" if index % 2 == 0 else "POST"
            assert _send(client, method, f"{server.url}/r/{index}").status_code == 200
    error = caught.value
    assert isinstance(error, rstsafe.RequestMaybeSentError)
    assert error.failure is not None
    assert error.failure.stale
    assert server.executions(path="/r/1") == 0
    assert all(server.executions(path=f"/r/{i}") == 1 for i in (0, 2, 3, 4))


def test_stale_retry_closes_every_idle_connection_as_old(
    misbehaving_server: ServerFactory,
) -> None:
    """After one stale connection, the others idle as long are closed, not tried one by one."""
    server = misbehaving_server(IdleDrop(idle=0.3))
    policy = RetryPolicy(retries=0, max_stale_retries=1)
    with rstsafe.httpx.Client(retry=policy) as client:
        with (
            client.stream("GET", server.url + "/1") as first,
            client.stream("GET", server.url + "/2") as second,
            client.stream("GET", server.url + "/3") as third,
        ):
            for response in (first, second, third):
                response.read()
        assert len(server.connections) == 3
        assert server.wait_until(lambda s: all(r.closing_since for r in s.connections))
        # One stale retry allowed: succeeding proves the two other stale connections
        # were not tried.
        assert client.get(server.url + "/after").status_code == 200
    assert len(server.connections) == 4


@pytest.mark.parametrize(
    "behaviour",
    [CloseAfterRequests(count=2, reset=True), AbortiveClose()],
    ids=["close-after-requests", "abortive-close"],
)
def test_server_resets_after_responses(
    misbehaving_server: ServerFactory, behaviour: Behaviour
) -> None:
    """RST after every (second) response: seen before reuse; all succeed, once each."""
    server = misbehaving_server(behaviour)
    with rstsafe.httpx.Client() as client:
        for index in range(6):
            method = "GET" if index % 2 == 0 else "POST"
            assert _send(client, method, f"{server.url}/r/{index}").status_code == 200
            time.sleep(0.2)
    assert all(server.executions(path=f"/r/{i}") == 1 for i in range(6))


def test_process_then_reset_post_executed_exactly_once(
    misbehaving_server: ServerFactory, fast_retry: RetryPolicy
) -> None:
    """The duplicate hazard: a POST the server ran is not resent; the error says maybe sent."""
    server = misbehaving_server(ProcessThenReset())
    with rstsafe.httpx.Client(retry=fast_retry) as client, pytest.raises(httpx.ReadError) as caught:
        _send(client, "POST", server.url + "/pay")
    assert isinstance(caught.value, rstsafe.RequestMaybeSentError)
    assert caught.value.attempts == 1
    assert server.executions(method="POST", path="/pay") == 1


def test_process_then_reset_get_is_retried_with_backoff(
    misbehaving_server: ServerFactory, fast_retry: RetryPolicy
) -> None:
    """An idempotent GET is resent up to ``retries`` times, then the error carries them all."""
    server = misbehaving_server(ProcessThenReset())
    with rstsafe.httpx.Client(retry=fast_retry) as client, pytest.raises(httpx.ReadError) as caught:
        client.get(server.url + "/g")
    error = caught.value
    assert isinstance(error, rstsafe.RequestMaybeSentError)
    assert error.attempts == fast_retry.retries + 1
    actions = [a.decision.action for a in error.history.attempts]
    assert actions == [RetryAction.RETRY_AFTER] * fast_retry.retries + [RetryAction.GIVE_UP]
    assert error.request.url.path == "/g"
    assert server.executions(path="/g") == fast_retry.retries + 1


def test_idempotency_key_makes_a_post_retryable(
    misbehaving_server: ServerFactory, fast_retry: RetryPolicy
) -> None:
    """A POST with an Idempotency-Key is resent (the server deduplicates by key)."""
    server = misbehaving_server(ProcessThenReset())
    with rstsafe.httpx.Client(retry=fast_retry) as client, pytest.raises(httpx.ReadError):
        client.post(server.url + "/pay", content=b"1", headers={"Idempotency-Key": "k-1"})
    assert server.executions(idempotency_key="k-1") == fast_retry.retries + 1


def test_streamed_body_is_never_replayed(
    misbehaving_server: ServerFactory, fast_retry: RetryPolicy
) -> None:
    """A PUT (idempotent) with a generator body is sent once: the body cannot be replayed."""
    server = misbehaving_server(ProcessThenReset())
    with rstsafe.httpx.Client(retry=fast_retry) as client:
        with pytest.raises(rstsafe.RequestMaybeSentError, match="cannot be sent again"):
            client.put(server.url + "/doc", content=_body_chunks())
        with pytest.raises(rstsafe.RequestMaybeSentError):
            client.put(server.url + "/bytes", content=b"replayable")
    assert server.executions(path="/doc") == 1
    assert server.executions(path="/bytes") == fast_retry.retries + 1


def test_reset_unread(misbehaving_server: ServerFactory, fast_retry: RetryPolicy) -> None:
    """RST before reading: GET retried then given up; POST not retried (bytes were sent)."""
    server = misbehaving_server(ResetUnread())
    with rstsafe.httpx.Client(retry=fast_retry) as client:
        # The RST (ReadError), or EOF read first (RemoteProtocolError), as httpx reports.
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as get_error:
            client.get(server.url + "/g")
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)) as post_error:
            _send(client, "POST", server.url + "/p")
    assert isinstance(get_error.value, rstsafe.RequestMaybeSentError)
    assert get_error.value.attempts == fast_retry.retries + 1
    assert isinstance(post_error.value, rstsafe.RequestMaybeSentError)
    assert post_error.value.attempts == 1
    assert post_error.value.failure is not None
    assert post_error.value.failure.facts.bytes_sent
    assert server.executions() == 0


def test_early_response_is_returned(misbehaving_server: ServerFactory) -> None:
    """A 413 sent while the body is still uploading is returned as a response."""
    server = misbehaving_server(EarlyResponse())
    with rstsafe.httpx.Client() as client:
        for _ in range(2):
            response = client.post(server.url + "/upload", content=LARGE_BODY, timeout=10)
            assert response.status_code == 413
    assert server.executions() == 0


@pytest.mark.parametrize("reset", [False, True])
def test_truncated_body_is_httpx_error_and_not_retried(
    misbehaving_server: ServerFactory, reset: bool
) -> None:
    """A body cut short after the headers were returned: httpx's own error, ran once."""
    server = misbehaving_server(TruncatedBody(reset=reset))
    with rstsafe.httpx.Client() as client:
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)) as caught:
            client.get(server.url + "/t")
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post(server.url + "/p", content=b"1")
    assert not isinstance(caught.value, rstsafe.RstsafeError)
    assert server.executions(path="/t") == 1
    assert server.executions(path="/p") == 1


def test_black_hole_read_timeout(misbehaving_server: ServerFactory) -> None:
    """No answer: GET times out and is retried per policy; POST times out once, not resent."""
    server = misbehaving_server(BlackHole())
    policy = RetryPolicy(retries=1, wait_initial=0.01)
    timeout = httpx.Timeout(5, read=0.3)
    with rstsafe.httpx.Client(retry=policy, timeout=timeout) as client:
        with pytest.raises(httpx.ReadTimeout) as get_error:
            client.get(server.url + "/g")
        with pytest.raises(httpx.ReadTimeout) as post_error:
            client.post(server.url + "/p", content=b"1")
    assert isinstance(get_error.value, rstsafe.RequestMaybeSentError)
    assert get_error.value.attempts == 2
    assert isinstance(post_error.value, rstsafe.RequestMaybeSentError)
    assert post_error.value.attempts == 1
    assert server.wait_until(lambda s: s.received_unexecuted == 3)
    assert server.executions() == 0


def test_accept_queue_overflow_connect_timeout_is_not_sent(
    misbehaving_server: ServerFactory,
) -> None:
    """A full accept queue: connect times out; even a POST is retried (nothing was sent)."""
    server = misbehaving_server(AcceptQueueOverflow())
    policy = RetryPolicy(retries=1, wait_initial=0.01)
    timeout = httpx.Timeout(5, connect=0.3)
    with (
        rstsafe.httpx.Client(retry=policy, timeout=timeout) as client,
        pytest.raises(httpx.ConnectTimeout) as caught,
    ):
        client.post(server.url + "/p", content=b"1")
    assert isinstance(caught.value, rstsafe.RequestNotSentError)
    assert caught.value.attempts == 2
    assert server.connections == ()


def test_refused_is_retried_for_any_method(
    misbehaving_server: ServerFactory, fast_retry: RetryPolicy
) -> None:
    """Nothing listening: a POST is retried (not sent), then NotSent + httpx.ConnectError."""
    server = misbehaving_server(Refuse())
    with (
        rstsafe.httpx.Client(retry=fast_retry) as client,
        pytest.raises(httpx.ConnectError) as caught,
    ):
        client.post(server.url + "/p", content=b"1")
    error = caught.value
    assert isinstance(error, rstsafe.RequestNotSentError)
    assert type(error).__name__ == "NotSentConnectError"
    assert error.attempts == fast_retry.retries + 1
    assert error.failure is not None
    assert error.failure.kind is FailureKind.REFUSED


def test_status_503_retried_when_configured(misbehaving_server: ServerFactory) -> None:
    """``retry_statuses={503}``: a GET is resent per Retry-After; a POST is not resent."""
    server = misbehaving_server(Healthy())
    policy = RetryPolicy(retries=2, retry_statuses=frozenset({503}))
    with rstsafe.httpx.Client(retry=policy) as client:
        assert client.get(server.url + "/s?status=503&retry-after=0").status_code == 503
        assert client.post(server.url + "/p?status=503", content=b"1").status_code == 503
    assert server.executions(path="/s") == 3
    assert server.executions(path="/p") == 1
