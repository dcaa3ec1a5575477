"""Unit and property tests of RetryPolicy decisions, backoff, Retry-After and tenacity helpers."""

from __future__ import annotations

import asyncio
import dataclasses
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rstsafe import (
    ConnectionFacts,
    Delivery,
    Failure,
    FailureKind,
    RetryPolicy,
    classify,
    replayability,
    retry_if_safe,
)
from rstsafe.core import (
    BodyInfo,
    BodyKind,
    Replayability,
    RetryAction,
    RetryDecision,
    RetryHistory,
    parse_retry_after,
)

GET = replayability("GET")
POST = replayability("POST", {}, b"order")
POST_WITH_KEY = replayability("POST", {"Idempotency-Key": "k1"}, b"order")
PUT_STREAM = replayability("PUT", {}, BodyInfo(kind=BodyKind.STREAM))


def _failure(
    kind: FailureKind,
    delivery: Delivery = Delivery.MAYBE_SENT,
    **facts: object,
) -> Failure:
    return Failure(kind=kind, delivery=delivery, facts=ConnectionFacts(**facts))  # type: ignore[arg-type]


def test_stale_reused_connection_retries_now_uncharged() -> None:
    """A reset on a reused connection before any response byte: RETRY_NOW, not charged."""
    policy = RetryPolicy()
    failure = _failure(FailureKind.RESET, reused=True, idle_seconds=4.98, bytes_received=0)
    decision = policy.decide(failure, GET)
    assert decision.action is RetryAction.RETRY_NOW
    assert decision.fresh_connection
    assert decision.delay == 0.0
    history = RetryHistory().record(decision, failure=failure)
    assert (history.retries_used, history.stale_retries_used) == (0, 1)


def test_stale_retries_are_bounded_then_charged() -> None:
    """After max_stale_retries immediate retries, stale failures use the backoff budget."""
    policy = RetryPolicy(max_stale_retries=1, retries=1)
    failure = _failure(FailureKind.CLOSED, reused=True)
    history = RetryHistory()
    actions = []
    for _ in range(3):
        decision = policy.decide(failure, GET, history, rng=random.Random(0))
        actions.append(decision.action)
        history = history.record(decision, failure=failure)
    assert actions == [RetryAction.RETRY_NOW, RetryAction.RETRY_AFTER, RetryAction.GIVE_UP]
    assert "retries exhausted (1 of 1 used)" in history.attempts[-1].decision.reason


def test_step_decides_and_records() -> None:
    """step() returns the decision and a new history; the old history is unchanged."""
    policy = RetryPolicy()
    failure = _failure(FailureKind.REFUSED, Delivery.NOT_SENT)
    empty = RetryHistory()
    decision, history = policy.step(failure, POST, empty, rng=random.Random(0))
    assert decision.action is RetryAction.RETRY_AFTER
    assert len(empty) == 0
    assert history.last is not None
    assert (history.last.decision, history.last.failure) == (decision, failure)


def test_timeout_gives_up_when_the_next_delay_would_exceed_it() -> None:
    """With timeout=1, a retry whose delay would end past 1 s since the start gives up."""
    policy = RetryPolicy(timeout=1.0, jitter=0.0, wait_initial=0.5)
    failure = _failure(FailureKind.REFUSED, Delivery.NOT_SENT)
    assert policy.decide(failure, GET, elapsed=0.4).action is RetryAction.RETRY_AFTER
    decision = policy.decide(failure, GET, elapsed=0.6)
    assert decision.action is RetryAction.GIVE_UP
    assert "exceeds timeout 1 s" in decision.reason
    assert policy.decide(failure, GET).action is RetryAction.RETRY_AFTER  # elapsed unknown
    stale = _failure(FailureKind.RESET, reused=True)
    assert policy.decide(stale, GET, elapsed=1.5).action is RetryAction.GIVE_UP
    status_policy = dataclasses.replace(policy, retry_statuses=frozenset({503}))
    late = status_policy.decide_status(503, GET, retry_after="1", now=0.0, elapsed=0.5)
    assert late.action is RetryAction.GIVE_UP


def test_reset_on_fresh_connection_backs_off() -> None:
    """A reset on a fresh connection is a server problem: RETRY_AFTER with a backoff."""
    decision = RetryPolicy().decide(
        _failure(FailureKind.RESET, reused=False), GET, rng=random.Random(0)
    )
    assert decision.action is RetryAction.RETRY_AFTER
    assert 0.05 <= decision.delay <= 0.1


def test_reset_after_response_bytes_is_not_stale() -> None:
    """A reset after response bytes arrived is not a stale connection: no RETRY_NOW."""
    failure = _failure(FailureKind.RESET, reused=True, bytes_received=100)
    assert RetryPolicy().decide(failure, GET).action is RetryAction.RETRY_AFTER


@pytest.mark.parametrize(
    "kind", [FailureKind.REFUSED, FailureKind.CONNECT_TIMEOUT, FailureKind.NAME_RESOLUTION]
)
def test_not_sent_failures_retry_any_method(kind: FailureKind) -> None:
    """Refused, connect timeout, DNS: nothing was sent, so even POST is retried."""
    decision = RetryPolicy().decide(_failure(kind, Delivery.NOT_SENT), POST)
    assert decision.action is RetryAction.RETRY_AFTER


def test_post_maybe_sent_is_never_retried() -> None:
    """POST that may have been sent: GIVE_UP with a reason a person can act on."""
    decision = RetryPolicy().decide(_failure(FailureKind.RESET, reused=True), POST)
    assert decision.action is RetryAction.GIVE_UP
    assert decision.reason == "POST not retried: not idempotent and the request may have been sent"


def test_post_with_idempotency_key_is_retried() -> None:
    """An Idempotency-Key makes a maybe-sent POST retryable."""
    decision = RetryPolicy().decide(_failure(FailureKind.RESET, reused=True), POST_WITH_KEY)
    assert decision.action is RetryAction.RETRY_NOW


def test_stream_body_is_never_resent() -> None:
    """A stream body is not resent, even when nothing was sent."""
    decision = RetryPolicy().decide(_failure(FailureKind.REFUSED, Delivery.NOT_SENT), PUT_STREAM)
    assert decision.action is RetryAction.GIVE_UP
    assert "stream" in decision.reason


@pytest.mark.parametrize(
    "kind",
    [FailureKind.TLS, FailureKind.PROTOCOL_ERROR, FailureKind.UNKNOWN, FailureKind.POOL_TIMEOUT],
)
def test_non_transient_kinds_give_up(kind: FailureKind) -> None:
    """TLS, protocol errors, pool timeouts and unknown failures are not retried by default."""
    decision = RetryPolicy().decide(_failure(kind, Delivery.NOT_SENT), GET)
    assert decision.action is RetryAction.GIVE_UP
    assert "not a transient failure" in decision.reason


def test_retry_on_is_configurable() -> None:
    """retry_on narrows the retried kinds."""
    policy = RetryPolicy(retry_on=frozenset({FailureKind.REFUSED}))
    assert policy.decide(_failure(FailureKind.READ_TIMEOUT), GET).action is RetryAction.GIVE_UP


@given(
    kind=st.sampled_from(FailureKind),
    facts=st.builds(
        ConnectionFacts,
        reused=st.sampled_from([True, False, None]),
        bytes_received=st.sampled_from([None, 0, 10]),
        idle_seconds=st.sampled_from([None, 0.0, 4.98]),
    ),
    request=st.tuples(
        st.sampled_from(["POST", "PATCH", "CONNECT"]),
        st.sampled_from([None, b"x", BodyInfo(kind=BodyKind.STREAM)]),
    ),
    used=st.tuples(st.integers(0, 3), st.integers(0, 5)),
)
def test_non_idempotent_maybe_sent_never_retried(
    kind: FailureKind,
    facts: ConnectionFacts,
    request: tuple[str, object],
    used: tuple[int, int],
) -> None:
    """PROPERTY: a non-idempotent request that may have been sent is never retried."""
    failure = Failure(kind=kind, delivery=Delivery.MAYBE_SENT, facts=facts)
    method, body = request
    stale_used, retries_used = used
    history = RetryHistory()
    for action, count in (
        (RetryAction.RETRY_NOW, stale_used),
        (RetryAction.RETRY_AFTER, retries_used),
    ):
        for _ in range(count):
            history = history.record(RetryDecision(action=action), failure=failure)
    policy = RetryPolicy(retry_on=frozenset(FailureKind), retry_statuses=frozenset({429, 503}))
    replay = replayability(method, {}, body)
    assert policy.decide(failure, replay, history).action is RetryAction.GIVE_UP
    assert policy.decide_status(503, replay, history, now=0.0).action is RetryAction.GIVE_UP
    assert not policy.is_safe_to_retry(failure, replay)


# -- backoff ------------------------------------------------------------------------


def test_backoff_is_exponential_capped_and_jittered_down() -> None:
    """Backoff doubles from wait_initial, caps at wait_max, jitter only shortens."""
    exact = RetryPolicy(wait_initial=0.1, wait_max=1.0, jitter=0.0)
    assert [exact.backoff(n) for n in range(1, 7)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    jittered = dataclasses.replace(exact, jitter=0.5)
    rng = random.Random(3)
    for n in range(1, 7):
        assert exact.backoff(n) * 0.5 <= jittered.backoff(n, rng) <= exact.backoff(n)
    assert jittered.backoff(4, random.Random(9)) == jittered.backoff(4, random.Random(9))


@given(
    wait_initial=st.floats(min_value=0.0, max_value=10.0),
    wait_max=st.floats(min_value=0.0, max_value=60.0),
    wait_exp_base=st.floats(min_value=1.0, max_value=10.0),
    retry_number=st.integers(min_value=1, max_value=5000),
)
def test_backoff_matches_tenacity_wait_exponential(
    wait_initial: float, wait_max: float, wait_exp_base: float, retry_number: int
) -> None:
    """backoff() computes what tenacity's wait_exponential gives, without importing it."""
    import tenacity

    policy = RetryPolicy(
        wait_initial=wait_initial, wait_max=wait_max, wait_exp_base=wait_exp_base, jitter=0.0
    )
    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = retry_number
    assert policy.backoff(retry_number) == pytest.approx(policy.wait_strategy()(state))


def test_policy_validation_names_the_field() -> None:
    """Invalid RetryPolicy values raise ValueError naming the field."""
    for field, value in [
        ("retries", -1),
        ("wait_initial", -0.1),
        ("wait_max", float("inf")),
        ("wait_exp_base", 0.5),
        ("jitter", 1.0),
        ("retry_statuses", frozenset({42})),
        ("timeout", -1.0),
    ]:
        with pytest.raises(ValueError, match=field):
            RetryPolicy(**{field: value})  # type: ignore[arg-type]


# -- status retries and Retry-After --------------------------------------------------

NOW = 1_700_000_000.0  # 2023-11-14T22:13:20Z


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("Tue, 14 Nov 2023 22:13:50 GMT", 30.0),
        ("Tue, 14 Nov 2023 22:00:00 GMT", 0.0),
        (b"3", 3.0),
        ("-5", None),
        ("1.5", None),
        ("soon", None),
        ("", None),
        (None, None),
        ("9" * 100, None),
    ],
)
def test_parse_retry_after(value: str | bytes | None, seconds: float | None) -> None:
    """Delta-seconds and HTTP-dates relative to an injected now; junk is None."""
    assert parse_retry_after(value, now=NOW) == seconds


@given(st.text(max_size=80))
def test_parse_retry_after_never_raises(value: str) -> None:
    """parse_retry_after never raises and never returns a negative delay."""
    result = parse_retry_after(value, now=NOW)
    assert result is None or result >= 0.0


def test_status_retries_are_off_by_default() -> None:
    """A 503 is not retried unless retry_statuses contains it."""
    decision = RetryPolicy().decide_status(503, GET, now=NOW)
    assert decision.action is RetryAction.GIVE_UP


def test_status_retry_honours_retry_after_date() -> None:
    """503 with an HTTP-date Retry-After waits exactly until that date."""
    policy = RetryPolicy(retry_statuses=frozenset({429, 503}))
    decision = policy.decide_status(503, GET, retry_after="Tue, 14 Nov 2023 22:13:30 GMT", now=NOW)
    assert decision == RetryDecision(
        action=RetryAction.RETRY_AFTER,
        delay=10.0,
        reason="GET retried after Retry-After 10 s (status 503)",
    )


def test_status_retry_too_long_retry_after_gives_up() -> None:
    """A Retry-After longer than max_retry_after gives up."""
    policy = RetryPolicy(retry_statuses=frozenset({429}), max_retry_after=30.0)
    decision = policy.decide_status(429, GET, retry_after="3600", now=NOW)
    assert decision.action is RetryAction.GIVE_UP
    assert "exceeds max_retry_after" in decision.reason


def test_status_retry_without_retry_after_backs_off_and_is_charged() -> None:
    """Without Retry-After the backoff applies; status retries use the retries budget."""
    policy = RetryPolicy(retry_statuses=frozenset({503}), retries=1, jitter=0.0)
    first = policy.decide_status(503, GET, now=NOW)
    assert (first.action, first.delay) == (RetryAction.RETRY_AFTER, 0.1)
    history = RetryHistory().record(first, status=503)
    assert policy.decide_status(503, GET, history, now=NOW).action is RetryAction.GIVE_UP


# -- tenacity building blocks --------------------------------------------------------


def test_tenacity_retrying_retries_only_safe_failures() -> None:
    """policy.retrying(): a GET is retried after resets; a POST is not, and re-raises."""
    policy = RetryPolicy(retries=2)
    sleeps: list[float] = []
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionResetError(104, "Connection reset by peer")
        return "ok"

    retrying = policy.retrying(method="GET", sleep=sleeps.append, rng=random.Random(0))
    assert retrying(flaky) == "ok"
    assert calls == 3
    assert len(sleeps) == 2
    assert all(0.0 < s <= 0.2 for s in sleeps)

    calls = 0
    with pytest.raises(ConnectionResetError):
        policy.retrying(method="POST", sleep=sleeps.append)(flaky)
    assert calls == 1


def test_tenacity_retrying_retries_post_when_refused() -> None:
    """A refused POST (nothing sent) is retried by the tenacity helper."""
    calls = 0

    def refused_once() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionRefusedError(111, "Connection refused")
        return "ok"

    assert RetryPolicy().retrying(method="POST", sleep=lambda _: None)(refused_once) == "ok"
    assert calls == 2


def test_tenacity_async_retrying() -> None:
    """policy.async_retrying() drives an async function with the same rules."""
    calls = 0
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError(104, "reset")
        return "ok"

    async def main() -> str:
        retrying = RetryPolicy().async_retrying(method="DELETE", sleep=fake_sleep)
        return await retrying(flaky)

    assert asyncio.run(main()) == "ok"
    assert (calls, len(sleeps)) == (2, 1)


def test_retry_if_safe_predicate_with_plain_tenacity() -> None:
    """retry_if_safe works inside a user's own tenacity.Retrying."""
    import tenacity

    predicate = retry_if_safe(method="PATCH", headers={"Idempotency-Key": "1"})
    assert isinstance(predicate.replay, Replayability)
    calls = 0

    def flaky() -> int:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionResetError(104, "reset")
        if calls == 2:
            raise ValueError("a bug, not a network failure")
        return calls

    retrying = tenacity.Retrying(retry=predicate, stop=tenacity.stop_after_attempt(5), reraise=True)
    with pytest.raises(ValueError, match="a bug"):
        retrying(flaky)
    assert calls == 2
    assert classify(ValueError()).kind is FailureKind.UNKNOWN


def test_tenacity_retrying_honours_timeout() -> None:
    """policy.retrying() with timeout=0 stops after the first failed attempt."""
    calls = 0

    def always_reset() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionResetError(104, "reset")

    retrying = RetryPolicy(retries=5, timeout=0.0).retrying(method="GET", sleep=lambda _: None)
    with pytest.raises(ConnectionResetError):
        retrying(always_reset)
    assert calls == 1
