"""rstsafe.requests and rstsafe.urllib3 against every misbehaving-server behaviour.

Each scenario runs rstsafe and the plain libraries side by side, each client against
a server of its own (so the server's accounting is per client), concurrently.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
import urllib3

import rstsafe.core
import rstsafe.requests
import rstsafe.urllib3
from requests_helpers import Outcome, Send, Step, alternating, run_paced
from rstsafe import KeepAlive, RetryPolicy
from rstsafe.core import TTLSource
from rstsafe.testing import (
    AbortiveClose,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    Behaviour,
    BlackHole,
    CloseAfterRequests,
    ConnectionEnd,
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

# Fast backoff keeps the suite short; the retry budget is the default's shape.
FAST = RetryPolicy(retries=2, wait_initial=0.01, wait_max=0.05)
# The keep-alive race: the server stops reading after 0.3 s idle and closes 1.2 s
# later; requests 0.6 s apart land in that window with 0.3 s of margin either side.
RACE = IdleCloseWithLag(idle=0.3, lag=1.2)
PAUSE = 0.6
LARGE = b"u" * (8 * 1024 * 1024)

Factory = Callable[[contextlib.ExitStack, str], Send]


def rstsafe_requests(**kwargs: Any) -> Factory:
    """A factory of rstsafe.requests.Session senders (kwargs go to the Session)."""

    def make(stack: contextlib.ExitStack, base: str) -> Send:
        session = stack.enter_context(rstsafe.requests.Session(retry=FAST, **kwargs))
        return lambda step: _requests_send(session, base, step)

    return make


def plain_requests(stack: contextlib.ExitStack, base: str) -> Send:
    """A plain requests.Session sender."""
    session = stack.enter_context(requests.Session())
    return lambda step: _requests_send(session, base, step)


def _requests_send(session: requests.Session, base: str, step: Step) -> int:
    return session.request(step.method, base + step.path, data=step.body, timeout=5).status_code


def rstsafe_urllib3(**kwargs: Any) -> Factory:
    """A factory of rstsafe.urllib3.PoolManager senders."""

    def make(stack: contextlib.ExitStack, base: str) -> Send:
        manager = rstsafe.urllib3.PoolManager(retry=FAST, **kwargs)
        stack.callback(manager.clear)
        return lambda step: _urllib3_send(manager, base, step)

    return make


def plain_urllib3(stack: contextlib.ExitStack, base: str) -> Send:
    """A plain urllib3.PoolManager sender (its default Retry(3) included)."""
    manager = urllib3.PoolManager()
    stack.callback(manager.clear)
    return lambda step: _urllib3_send(manager, base, step)


def _urllib3_send(manager: urllib3.PoolManager, base: str, step: Step) -> int:
    return manager.request(step.method, base + step.path, body=step.body, timeout=5).status


def side_by_side(
    behaviour: Behaviour, steps: Sequence[Step], clients: dict[str, Factory]
) -> dict[str, tuple[Outcome, MisbehavingServer]]:
    """Run ``steps`` with every client, each against its own server, concurrently."""

    def run(factory: Factory) -> tuple[Outcome, MisbehavingServer]:
        with MisbehavingServer(behaviour) as server, contextlib.ExitStack() as stack:
            outcome = run_paced(factory(stack, server.url), steps)
        return outcome, server

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        futures = {name: pool.submit(run, factory) for name, factory in clients.items()}
    return {name: future.result() for name, future in futures.items()}


def posts_executed_at_most_once(server: MisbehavingServer, steps: Sequence[Step]) -> bool:
    """Every POST path was executed zero or one time."""
    return all(server.executions("POST", s.path) <= 1 for s in steps if s.method == "POST")


# -- healthy enough servers: zero errors ----------------------------------------------


def test_healthy_server_closing_idle_connections_costs_nothing() -> None:
    """A server closing idle connections (FIN) after 0.3 s: no errors, each POST once."""
    steps = alternating(6, 0.5)
    results = side_by_side(
        Healthy(keepalive=0.3),
        steps,
        {"rstsafe requests": rstsafe_requests(), "rstsafe urllib3": rstsafe_urllib3()},
    )
    for outcome, server in results.values():
        assert outcome.failed == []
        assert all(server.executions(s.method, s.path) == 1 for s in steps)


def test_keepalive_race_gets_are_retried_at_once_where_plain_requests_fails() -> None:
    """Idle close with lag: GETs never fail with rstsafe; plain requests fails them."""
    steps = alternating(4, PAUSE, methods=("GET",))
    results = side_by_side(
        RACE,
        steps,
        {
            "rstsafe requests": rstsafe_requests(),
            "rstsafe urllib3": rstsafe_urllib3(),
            "plain requests": plain_requests,
        },
    )
    for name in ("rstsafe requests", "rstsafe urllib3"):
        assert results[name][0].failed == []
    plain = results["plain requests"][0]
    assert plain.failed  # every reused connection was in the server's closing window
    assert all(isinstance(e, requests.ConnectionError) for e in plain.errors.values())


def test_keepalive_race_with_known_server_timeout_zero_errors_for_get_and_post() -> None:
    """With the server's 0.3 s keep-alive known, neither GET nor POST fails; plain ones do.

    IdleCloseWithLag cannot advertise a Keep-Alive header, so the timeout is configured
    (``server_keepalive``), which takes the same path as an announced one; the header
    itself is covered by the AdvertiseKeepAlive and nginx tests.
    """
    steps = alternating(6, PAUSE)
    known = KeepAlive(server_keepalive=0.3)
    results = side_by_side(
        RACE,
        steps,
        {
            "rstsafe requests": rstsafe_requests(keepalive=known),
            "rstsafe urllib3": rstsafe_urllib3(keepalive=known),
            "plain requests": plain_requests,
            "plain urllib3": plain_urllib3,
        },
    )
    for name in ("rstsafe requests", "rstsafe urllib3"):
        outcome, server = results[name]
        assert outcome.failed == []
        assert all(server.executions(s.method, s.path) == 1 for s in steps)
    plain_posts = [i for i in results["plain urllib3"][0].failed if steps[i].method == "POST"]
    assert plain_posts  # urllib3's Retry retries GETs, never POSTs
    assert results["plain requests"][0].failed


def test_keepalive_race_learner_stops_post_failures_after_the_first() -> None:
    """Without header or configuration, POST failures stop after the first observed close."""
    steps = alternating(8, PAUSE, methods=("POST",))
    results = side_by_side(
        RACE,
        steps,
        {
            "rstsafe requests": rstsafe_requests(),
            "rstsafe urllib3": rstsafe_urllib3(),
            "plain requests": plain_requests,
            "plain urllib3": plain_urllib3,
        },
    )
    first_few = 2  # K: a failure may only be one of the first K reuses
    urllib3_outcome, urllib3_server = results["rstsafe urllib3"]
    assert set(urllib3_outcome.failed) <= set(range(1, 1 + first_few))
    assert posts_executed_at_most_once(urllib3_server, steps)
    outcome, server = results["rstsafe requests"]
    assert set(outcome.failed) <= set(range(1, 1 + first_few))
    for index in outcome.failed:
        error = outcome.errors[index]
        # Not retried (a POST that may have been sent): requests' own error, unchanged.
        assert type(error) is requests.ConnectionError
        assert server.executions("POST", steps[index].path) == 0  # never read by the server
    assert all(server.executions("POST", steps[i].path) == 1 for i in outcome.statuses)
    for name in ("plain requests", "plain urllib3"):
        plain = results[name][0]
        assert [i for i in plain.failed if i > first_few]  # plain keeps failing


def test_idle_drop_gets_survive_and_posts_fail_at_most_once() -> None:
    """A middlebox that forgot idle connections: GETs never fail, POST at most the first."""
    steps = alternating(6, PAUSE)
    results = side_by_side(
        IdleDrop(idle=0.3),
        steps,
        {
            "rstsafe requests": rstsafe_requests(),
            "rstsafe urllib3": rstsafe_urllib3(),
            "plain requests": plain_requests,
            "plain urllib3": plain_urllib3,
        },
    )
    for name in ("rstsafe requests", "rstsafe urllib3"):
        outcome, server = results[name]
        assert set(outcome.failed) <= {1}
        assert posts_executed_at_most_once(server, steps)
    for name in ("plain requests", "plain urllib3"):  # every POST on a reused connection
        assert len(results[name][0].failed) >= 2


@pytest.mark.parametrize("reset", [False, True])
def test_close_after_requests_is_noticed_before_reuse(reset: bool) -> None:
    """A server closing (FIN or RST) after 2 requests unannounced: no errors."""
    steps = alternating(6, 0.2)
    results = side_by_side(
        CloseAfterRequests(count=2, reset=reset),
        steps,
        {"rstsafe requests": rstsafe_requests(), "rstsafe urllib3": rstsafe_urllib3()},
    )
    for outcome, server in results.values():
        assert outcome.failed == []
        assert posts_executed_at_most_once(server, steps)


def test_abortive_close_after_each_response_costs_nothing() -> None:
    """SO_LINGER 0 closes after every response: the RST is seen before reuse, no errors."""
    steps = alternating(6, 0.2)
    results = side_by_side(AbortiveClose(), steps, {"rstsafe requests": rstsafe_requests()})
    outcome, server = results["rstsafe requests"]
    assert outcome.failed == []
    assert all(server.executions(s.method, s.path) == 1 for s in steps)


def test_keepalive_header_sets_the_idle_ttl() -> None:
    """An honest Keep-Alive: timeout=0.5 sets the TTL: idle connections are not reused."""
    steps = alternating(4, 0.45)
    with (
        MisbehavingServer(AdvertiseKeepAlive(advertised=0.5, actual=0.5)) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        for step in steps:
            assert _paced_request(session, server.url, step) == 200
        state = session.adapter.keepalive_registry.for_origin(
            rstsafe.core.Origin("http", "127.0.0.1", server.port)
        )
        ttl = state.idle_ttl()
        assert ttl.source is TTLSource.HEADER
        assert ttl.server_timeout == 0.5
        # 0.45 s idle > TTL (0.5 s minus 25 %): each request opened a new connection.
        assert len(server.connections) == len(steps)


def test_lying_keepalive_header_costs_nothing() -> None:
    """A header announcing 5 s on a server that closes after 0.3 s: no errors."""
    steps = alternating(6, PAUSE)
    results = side_by_side(
        AdvertiseKeepAlive(advertised=5.0, actual=0.3),
        steps,
        {"rstsafe requests": rstsafe_requests(), "rstsafe urllib3": rstsafe_urllib3()},
    )
    for outcome, server in results.values():
        assert outcome.failed == []
        assert all(server.executions(s.method, s.path) == 1 for s in steps)


def _paced_request(session: requests.Session, base: str, step: Step) -> int:
    time.sleep(step.pause)
    return session.request(step.method, base + step.path, data=step.body, timeout=5).status_code


# -- servers that fail requests: never a duplicate, the right error --------------------


def test_process_then_reset_post_is_executed_once_and_raises_requests_error() -> None:
    """The server ran the POST and reset: requests' own error, and never sent again."""
    with (
        MisbehavingServer(ProcessThenReset()) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        with pytest.raises(requests.ConnectionError) as caught:
            session.post(server.url + "/orders", data=b"{}", timeout=5)
        assert server.executions("POST", "/orders") == 1
        assert type(caught.value) is requests.ConnectionError
        assert isinstance(caught.value.args[0], urllib3.exceptions.ProtocolError)
        assert caught.value.request is not None


@pytest.mark.parametrize(("max_retries", "executions"), [(0, 1), (urllib3.Retry(2), 3)])
def test_process_then_reset_get_is_retried_by_requests_max_retries(
    max_retries: int | urllib3.Retry, executions: int
) -> None:
    """A GET reset on a fresh connection is retried as max_retries says, no more."""
    with (
        MisbehavingServer(ProcessThenReset()) as server,
        rstsafe.requests.Session(retry=FAST, max_retries=max_retries) as session,
    ):
        with pytest.raises(requests.ConnectionError) as caught:
            session.get(server.url + "/items", timeout=5)
        assert not isinstance(caught.value, rstsafe.RstsafeError)
        assert server.executions("GET", "/items") == executions


def test_reset_unread_post_is_not_resent() -> None:
    """Reset on a fresh connection: requests' error, and only max_retries would resend."""
    with (
        MisbehavingServer(ResetUnread()) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        with pytest.raises(requests.ConnectionError):
            session.post(server.url + "/orders", data=b"{}", timeout=5)
        assert server.wait_until(lambda s: len(s.connections) >= 1)
        assert len(server.connections) == 1
        with pytest.raises(requests.ConnectionError):
            session.get(server.url + "/items", timeout=5)
        assert server.wait_until(lambda s: len(s.connections) == 2)
        assert server.executions() == 0


def test_early_response_is_returned_not_raised() -> None:
    """A 413 sent while the 8 MiB upload is still going out is the response (urllib3 2.2+).

    urllib3 before 2.2 gives up on the upload's reset instead: rstsafe then raises exactly
    what plain requests and urllib3 raise, and resends nothing.
    """
    version = importlib.metadata.version("urllib3")
    returns_early = tuple(int(p) for p in version.split(".")[:2]) >= (2, 2)
    with MisbehavingServer(EarlyResponse()) as server:
        outcomes: list[object] = []
        for session in (requests.Session(), rstsafe.requests.Session(retry=FAST)):
            with session:
                try:
                    response = session.post(server.url + "/upload", data=LARGE, timeout=10)
                except requests.ConnectionError as exc:
                    outcomes.append(type(exc))
                else:
                    outcomes.append(response.status_code)
        for manager in (urllib3.PoolManager(), rstsafe.urllib3.PoolManager(retry=FAST)):
            try:
                outcomes.append(
                    manager.request("POST", server.url + "/upload", body=LARGE, retries=0).status
                )
            except urllib3.exceptions.HTTPError as exc:
                outcomes.append(type(exc))
            finally:
                manager.clear()
        assert outcomes[0] == outcomes[1]
        assert outcomes[2] == outcomes[3]
        if returns_early:
            assert outcomes == [413, 413, 413, 413]
        assert server.executions() == 0


def test_truncated_body_keeps_requests_and_urllib3_semantics() -> None:
    """A truncated body: requests' ChunkedEncodingError, urllib3's own Retry for GET and POST."""
    with MisbehavingServer(TruncatedBody()) as server:
        with (
            rstsafe.requests.Session(retry=FAST) as session,
            pytest.raises(requests.exceptions.ChunkedEncodingError),
        ):
            session.get(server.url + "/a", timeout=5)
        assert server.executions("GET", "/a") == 1
        for name, manager in (
            ("plain", urllib3.PoolManager()),
            ("rstsafe", rstsafe.urllib3.PoolManager(retry=FAST)),
        ):
            try:
                with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
                    manager.request("GET", server.url + f"/b-{name}", timeout=5)
                assert type(caught.value) is urllib3.exceptions.MaxRetryError
                assert isinstance(caught.value.reason, urllib3.exceptions.ProtocolError)
                # urllib3's default Retry(3): 4 executions, rstsafe adds none.
                assert server.executions("GET", f"/b-{name}") == 4
                with pytest.raises(urllib3.exceptions.ProtocolError):
                    manager.request("POST", server.url + f"/c-{name}", body=b"x", timeout=5)
                assert server.executions("POST", f"/c-{name}") == 1
            finally:
                manager.clear()


def test_black_hole_read_timeout_is_requests_read_timeout_unchanged() -> None:
    """No answer: requests' own ReadTimeout, never retried, the POST not resent."""
    with (
        MisbehavingServer(BlackHole()) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        with pytest.raises(requests.exceptions.ReadTimeout) as caught:
            session.post(server.url + "/orders", data=b"{}", timeout=0.3)
        assert type(caught.value) is requests.exceptions.ReadTimeout
        assert server.wait_until(lambda s: s.received_unexecuted == 1)
        time.sleep(0.2)
        assert len(server.connections) == 1


def test_accept_queue_overflow_connect_timeout_is_requests_connect_timeout() -> None:
    """A full accept queue: requests' own ConnectTimeout (max_retries=0: one attempt)."""
    with (
        MisbehavingServer(AcceptQueueOverflow()) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        with pytest.raises(requests.exceptions.ConnectTimeout) as caught:
            session.post(server.url + "/orders", data=b"{}", timeout=(0.3, 5))
        assert type(caught.value) is requests.exceptions.ConnectTimeout
        assert server.executions() == 0


def test_refused_connection_is_requests_connection_error_unchanged() -> None:
    """Nothing listening: requests' ConnectionError around urllib3's MaxRetryError."""
    with (
        MisbehavingServer(Refuse()) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        with pytest.raises(requests.ConnectionError) as caught:
            session.post(server.url + "/orders", data=b"{}", timeout=2)
        error = caught.value
        assert type(error) is requests.ConnectionError
        assert type(error.args[0]) is urllib3.exceptions.MaxRetryError
        assert isinstance(error.args[0].reason, urllib3.exceptions.NewConnectionError)


def test_refused_connection_urllib3_error_is_urllib3s_max_retry_error() -> None:
    """rstsafe.urllib3 raises the MaxRetryError urllib3 raises, after urllib3's retries."""
    with MisbehavingServer(Refuse()) as server:
        manager = rstsafe.urllib3.PoolManager(retry=FAST)
        try:
            with pytest.raises(urllib3.exceptions.MaxRetryError) as caught:
                manager.request("GET", server.url + "/", timeout=2)
        finally:
            manager.clear()
    error = caught.value
    assert type(error) is urllib3.exceptions.MaxRetryError
    assert isinstance(error.reason, urllib3.exceptions.NewConnectionError)


def test_stale_failure_discards_idle_connections_at_least_as_old() -> None:
    """After a stale connection fails, older idle ones are discarded before reuse."""
    with (
        MisbehavingServer(IdleCloseWithLag(idle=0.3, lag=2.0)) as server,
        rstsafe.requests.Session(retry=FAST) as session,
    ):
        held = [session.get(server.url + f"/{i}", stream=True, timeout=5) for i in range(4)]
        for response in held:  # returned in order: the last is on top of the LIFO pool
            response.content  # noqa: B018 - reading the body returns the connection
        time.sleep(PAUSE)
        manager = session.adapter.poolmanager
        (key,) = manager.pools.keys()
        pool = manager.pools[key]
        assert isinstance(pool, rstsafe.urllib3.HTTPConnectionPool)
        assert pool.pool is not None
        idle = [c for c in list(pool.pool.queue) if c is not None and c.sock is not None]
        assert len(idle) == 4
        assert session.get(server.url + "/after", timeout=5).status_code == 200
        left = [c for c in idle if c.sock is not None and c is not idle[-1]]
        # Still open on the server's side (its close comes 2 s later), yet discarded:
        assert left
        assert not any(c.is_connected for c in left)
        assert server.ends().count(ConnectionEnd.RST) <= 1
