"""The tenacity building blocks of a `RetryPolicy`, for retries around user code.

Kept apart from `rstsafe._core.retry` so that tenacity is imported only by the code that
uses it: the adapters decide with `RetryPolicy.decide` and never load it, and an import
of an adapter stays cheap (issue 15).
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from typing import Any

import tenacity
from tenacity import retry_base
from tenacity.wait import wait_base

from rstsafe._core.classify import ConnectionFacts, classify
from rstsafe._core.idempotency import HeadersLike, replayability
from rstsafe._core.retry import RetryPolicy

__all__ = ("async_retrying", "policy_wait", "retry_if_safe", "retrying")


class _PolicyWait(wait_base):
    def __init__(self, policy: RetryPolicy, rng: random.Random | None) -> None:
        self._policy = policy
        self._rng = rng

    def __call__(self, retry_state: tenacity.RetryCallState) -> float:
        return self._policy.backoff(max(1, retry_state.attempt_number), self._rng)


def policy_wait(policy: RetryPolicy, rng: random.Random | None) -> wait_base:
    """A tenacity wait strategy giving ``policy``'s jittered backoff."""
    return _PolicyWait(policy, rng)


def _stop(policy: RetryPolicy) -> tenacity.stop.stop_base:
    stop: tenacity.stop.stop_base = tenacity.stop_after_attempt(policy.retries + 1)
    if policy.timeout is not None:
        stop = stop | tenacity.stop_after_delay(policy.timeout)
    return stop


def _arguments(
    policy: RetryPolicy,
    *,
    method: str,
    headers: HeadersLike | None,
    body: object,
    sleep: object,
    rng: random.Random | None,
) -> dict[str, Any]:
    """What `tenacity.Retrying` and `tenacity.AsyncRetrying` are built with, alike."""
    arguments: dict[str, Any] = {
        "stop": _stop(policy),
        "wait": _PolicyWait(policy, rng),
        "retry": retry_if_safe(method=method, headers=headers, body=body, policy=policy),
        "reraise": True,
    }
    if sleep is not None:
        arguments["sleep"] = sleep
    return arguments


def retrying(
    policy: RetryPolicy,
    *,
    method: str,
    headers: HeadersLike | None,
    body: object,
    sleep: Callable[[float], None] | None,
    rng: random.Random | None,
) -> tenacity.Retrying:
    """`RetryPolicy.retrying`'s body."""
    return tenacity.Retrying(
        **_arguments(policy, method=method, headers=headers, body=body, sleep=sleep, rng=rng)
    )


def async_retrying(
    policy: RetryPolicy,
    *,
    method: str,
    headers: HeadersLike | None,
    body: object,
    sleep: Callable[[float], Awaitable[None]] | None,
    rng: random.Random | None,
) -> tenacity.AsyncRetrying:
    """`RetryPolicy.async_retrying`'s body."""
    return tenacity.AsyncRetrying(
        **_arguments(policy, method=method, headers=headers, body=body, sleep=sleep, rng=rng)
    )


class retry_if_safe(retry_base):  # lower case, like tenacity's predicates
    """A tenacity retry predicate: true only for failures safe to retry for this request.

    Classifies the attempt's exception ([`rstsafe.classify`][rstsafe.classify]) and asks
    [`RetryPolicy.is_safe_to_retry`][rstsafe.RetryPolicy.is_safe_to_retry]: a transient failure
    kind, a replayable body,
    and either nothing sent or an idempotent request. Results (no exception) are never
    retried.

    Args:
        method: The request method.
        headers: The request headers (for idempotency keys).
        body: The body object or a [`BodyInfo`][rstsafe.core.BodyInfo].
        policy: The policy whose ``retry_on`` and ``rules`` apply.
        facts: Connection facts to classify with, when known.
    """

    def __init__(
        self,
        *,
        method: str,
        headers: HeadersLike | None = None,
        body: object = None,
        policy: RetryPolicy | None = None,
        facts: ConnectionFacts | None = None,
    ) -> None:
        self.policy = policy if policy is not None else RetryPolicy()
        self.replay = replayability(method, headers, body, rules=self.policy.rules)
        self.facts = facts

    def __call__(self, retry_state: tenacity.RetryCallState) -> bool:
        outcome = retry_state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        if exc is None:
            return False
        return self.policy.is_safe_to_retry(classify(exc, facts=self.facts), self.replay)
