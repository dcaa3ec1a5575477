"""The decision core, for adapter authors: what every rstsafe adapter is built from.

Users of the adapters need none of this (``rstsafe.requests``, ``rstsafe.urllib3``,
``rstsafe.httpx``, ``rstsafe.aiohttp`` and the configuration objects at the root are the
whole story for them). Write an adapter for another client, or drive retries by hand,
with these pieces; none of them does I/O:

- classify a failure: [`classify`][rstsafe.classify] turns an exception (chain) and the
  connection's [`ConnectionFacts`][rstsafe.ConnectionFacts] into a
  [`Failure`][rstsafe.Failure] ([`FailureKind`][rstsafe.FailureKind],
  [`Delivery`][rstsafe.Delivery]: was the request sent?);
- may it be sent again: [`replayability`][rstsafe.replayability] (method,
  ``Idempotency-Key``, body: [`describe_body`][rstsafe.core.describe_body],
  [`rewind_body`][rstsafe.core.rewind_body]);
- may this idle connection be reused now:
  [`KeepAliveRegistry`][rstsafe.core.KeepAliveRegistry] /
  [`OriginKeepAlive`][rstsafe.core.OriginKeepAlive] per origin, and
  [`ConnectionLife`][rstsafe.core.ConnectionLife] per connection (its lease), reporting
  what happened (``observe_*``,
  [`OriginKeepAlive.offer_witness`][rstsafe.core.OriginKeepAlive.offer_witness]);
- what to do after a failed attempt: [`RequestAttempts`][rstsafe.core.RequestAttempts]
  per request (classify, learn, decide with [`RetryPolicy`][rstsafe.RetryPolicy], draw
  from the [`RetryBudget`][rstsafe.RetryBudget], build the error with
  [`error_for`][rstsafe.core.error_for]).

The driver loop of an adapter is short; ``rstsafe.httpx``'s ``handle_request`` is the model.
"""

from __future__ import annotations

from rstsafe._core.attempts import ConnectionLife, RequestAttempts
from rstsafe._core.budget import RetryBudget, RetryBudgetState
from rstsafe._core.classify import ConnectionFacts, Delivery, Failure, FailureKind, Origin, classify
from rstsafe._core.clock import Clock, ManualClock, MonotonicClock
from rstsafe._core.errors import describe_failure, error_for
from rstsafe._core.idempotency import (
    BodyInfo,
    BodyKind,
    IdempotencyRules,
    Replayability,
    describe_body,
    replayability,
    rewind_body,
)
from rstsafe._core.keepalive import (
    IdleTTL,
    KeepAlive,
    KeepAliveHeader,
    KeepAliveRegistry,
    OriginKeepAlive,
    TTLSource,
    parse_keep_alive,
)
from rstsafe._core.retry import (
    Attempt,
    RetryAction,
    RetryDecision,
    RetryHistory,
    RetryPolicy,
    parse_retry_after,
)

__all__ = (
    "Attempt",
    "BodyInfo",
    "BodyKind",
    "Clock",
    "ConnectionFacts",
    "ConnectionLife",
    "Delivery",
    "Failure",
    "FailureKind",
    "IdempotencyRules",
    "IdleTTL",
    "KeepAlive",
    "KeepAliveHeader",
    "KeepAliveRegistry",
    "ManualClock",
    "MonotonicClock",
    "Origin",
    "OriginKeepAlive",
    "Replayability",
    "RequestAttempts",
    "RetryAction",
    "RetryBudget",
    "RetryBudgetState",
    "RetryDecision",
    "RetryHistory",
    "RetryPolicy",
    "TTLSource",
    "classify",
    "describe_body",
    "describe_failure",
    "error_for",
    "parse_keep_alive",
    "parse_retry_after",
    "replayability",
    "rewind_body",
)
