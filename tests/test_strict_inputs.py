"""Strict inputs: a wrong type is a TypeError, a bad value a ValueError, both naming the field.

Every field of ``KeepAlive``, ``RetryPolicy`` and ``PoolConfig`` and every argument of
``Pool`` and ``AsyncPool`` has a wrong-type case here; the completeness tests fail when a
field is added without one. Everything is checked at construction, before any I/O.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any

import pytest

from rstsafe import KeepAlive, RetryPolicy
from rstsafe._core.classify import FailureKind
from rstsafe._core.clock import ManualClock
from rstsafe.sockets import AsyncPool, Pool, PoolConfig

# -- KeepAlive ------------------------------------------------------------------------------

KEEPALIVE_WRONG_TYPES: list[tuple[str, object]] = [
    ("server_keepalive", "5"),
    ("server_keepalive", True),
    ("default_idle_ttl", "4"),
    ("default_idle_ttl", None),
    ("margin", None),
    ("margin_fraction", "0.25"),
    ("jitter", True),
    ("max_lifetime", "300"),
    ("max_requests", 2.5),
    ("max_requests", True),
    ("learn", 1),
    ("learn_memory", "600"),
    ("use_header", "yes"),
    ("probe", None),
    ("witness", "no"),
]

KEEPALIVE_BAD_VALUES: list[tuple[str, object]] = [
    ("server_keepalive", 0),
    ("server_keepalive", 0.0),
    ("server_keepalive", -1.0),
    ("server_keepalive", float("nan")),
    ("server_keepalive", float("inf")),
    ("default_idle_ttl", 0.0),
    ("default_idle_ttl", float("inf")),
    ("margin", -0.1),
    ("margin_fraction", 1.0),
    ("margin_fraction", -0.5),
    ("jitter", 1.0),
    ("jitter", -0.1),
    ("max_lifetime", 0.0),
    ("max_lifetime", -1.0),
    ("max_requests", 0),
    ("learn_memory", 0.0),
    ("learn_memory", -1.0),
]


@pytest.mark.parametrize(("field", "value"), KEEPALIVE_WRONG_TYPES)
def test_keepalive_wrong_type_is_a_type_error(field: str, value: Any) -> None:
    """KeepAlive raises TypeError naming the field for a value of the wrong type."""
    with pytest.raises(TypeError, match=rf"^{field} must be"):
        KeepAlive(**{field: value})


@pytest.mark.parametrize(("field", "value"), KEEPALIVE_BAD_VALUES)
def test_keepalive_bad_value_is_a_value_error(field: str, value: Any) -> None:
    """KeepAlive raises ValueError naming the field for a number out of range (0 included)."""
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        KeepAlive(**{field: value})


def test_keepalive_zeros_that_mean_something_are_accepted() -> None:
    """Zero margins and zero jitter mean none: the TTL is the server's timeout exactly."""
    config = KeepAlive(server_keepalive=5, margin=0, margin_fraction=0.0, jitter=0.0)
    assert config.ttl_below(5.0) == 5.0
    assert KeepAlive(max_lifetime=None, learn_memory=None, max_requests=None).max_lifetime is None


# -- RetryPolicy ----------------------------------------------------------------------------

POLICY_WRONG_TYPES: list[tuple[str, object]] = [
    ("retries", "3"),
    ("retries", 1.0),
    ("max_stale_retries", 1.5),
    ("max_stale_retries", True),
    ("wait_initial", "0.1"),
    ("wait_max", None),
    ("wait_exp_base", "2"),
    ("jitter", None),
    ("retry_on", "reset"),
    ("retry_on", frozenset({"reset"})),
    ("retry_statuses", 503),
    ("retry_statuses", "503"),
    ("retry_statuses", frozenset({"503"})),
    ("retry_statuses", frozenset({True})),
    ("max_retry_after", "60"),
    ("timeout", "1"),
    ("rules", {"idempotent_methods": {"GET"}}),
    ("budget", 10),
]

POLICY_BAD_VALUES: list[tuple[str, object]] = [
    ("retries", -1),
    ("max_stale_retries", -1),
    ("wait_initial", -0.1),
    ("wait_max", float("inf")),
    ("wait_exp_base", 0.5),
    ("jitter", 1.0),
    ("jitter", -0.1),
    ("retry_statuses", frozenset({200})),
    ("retry_statuses", frozenset({204, 503})),
    ("retry_statuses", frozenset({302})),
    ("retry_statuses", frozenset({100})),
    ("retry_statuses", frozenset({600})),
    ("retry_statuses", frozenset({42})),
    ("max_retry_after", -1.0),
    ("timeout", -1.0),
    ("timeout", float("nan")),
]


@pytest.mark.parametrize(("field", "value"), POLICY_WRONG_TYPES)
def test_policy_wrong_type_is_a_type_error(field: str, value: Any) -> None:
    """RetryPolicy raises TypeError naming the field for a value of the wrong type."""
    with pytest.raises(TypeError, match=rf"^{field} must be"):
        RetryPolicy(**{field: value})


@pytest.mark.parametrize(("field", "value"), POLICY_BAD_VALUES)
def test_policy_bad_value_is_a_value_error(field: str, value: Any) -> None:
    """RetryPolicy raises ValueError naming the field; retry_statuses holds only 4xx/5xx."""
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        RetryPolicy(**{field: value})


def test_policy_accepts_collections_and_zeros_that_mean_something() -> None:
    """Sets, lists and tuples of statuses become a frozenset; zero waits mean no wait."""
    policy = RetryPolicy(
        retries=0,
        wait_initial=0,
        wait_max=0.0,
        jitter=0.0,
        retry_statuses=[429, 503],  # type: ignore[arg-type]
    )
    assert policy.retry_statuses == frozenset({429, 503})
    assert policy.backoff(1) == 0.0
    statuses: Any = {408, 599}  # a set, not a frozenset: converted
    assert RetryPolicy(retry_statuses=statuses).retry_statuses == frozenset({408, 599})
    kinds: Any = [FailureKind.RESET]
    assert RetryPolicy(retry_on=kinds).retry_on == frozenset({FailureKind.RESET})


# -- PoolConfig -----------------------------------------------------------------------------

POOL_CONFIG_WRONG_TYPES: list[tuple[str, object]] = [
    ("max_size", 2.0),
    ("max_size", True),
    ("wait_timeout", "10"),
    ("wait_timeout", None),
    ("idle_ttl", "55"),
    ("max_lifetime", [1800]),
    ("lifetime_jitter", "0.1"),
    ("validate_new", 1),
    ("validate_after_idle", None),
    ("heartbeat_timeout", "5"),
    ("heartbeat_interval", "1"),
    ("max_connect_attempts", 3.0),
    ("connect_backoff", "0.05"),
    ("close_timeout", "1"),
    ("discard_on", OSError),
    ("discard_on", [OSError]),
    ("discard_on", (OSError, int)),
]

POOL_CONFIG_BAD_VALUES: list[tuple[str, object]] = [
    ("max_size", 0),
    ("wait_timeout", -1.0),
    ("idle_ttl", 0.0),
    ("max_lifetime", -5.0),
    ("max_lifetime", float("inf")),
    ("lifetime_jitter", 1.0),
    ("lifetime_jitter", -0.1),
    ("validate_after_idle", -0.1),
    ("heartbeat_timeout", 0.0),
    ("heartbeat_interval", 0.0),
    ("max_connect_attempts", 0),
    ("connect_backoff", -1.0),
    ("close_timeout", float("nan")),
]


@pytest.mark.parametrize(("field", "value"), POOL_CONFIG_WRONG_TYPES)
def test_pool_config_wrong_type_is_a_type_error(field: str, value: Any) -> None:
    """PoolConfig raises TypeError naming the field for a value of the wrong type."""
    with pytest.raises(TypeError, match=rf"^{field} must be"):
        PoolConfig(**{field: value})


@pytest.mark.parametrize(("field", "value"), POOL_CONFIG_BAD_VALUES)
def test_pool_config_bad_value_is_a_value_error(field: str, value: Any) -> None:
    """PoolConfig raises ValueError naming the field for a number out of range."""
    with pytest.raises(ValueError, match=rf"^{field} must be"):
        PoolConfig(**{field: value})


def test_pool_config_zeros_that_mean_something_are_accepted() -> None:
    """wait_timeout, validate_after_idle, connect_backoff and close_timeout may be 0."""
    config = PoolConfig(
        wait_timeout=0, validate_after_idle=0.0, connect_backoff=0.0, close_timeout=0.0
    )
    assert (config.wait_timeout, config.validate_after_idle) == (0, 0.0)


# -- Pool and AsyncPool ---------------------------------------------------------------------


def _connect() -> object:
    return object()


async def _aconnect() -> object:
    return object()


POOL_WRONG_ARGUMENTS: list[tuple[str, dict[str, Any]]] = [
    ("connect", {"connect": "notcallable"}),
    ("connect", {"connect": None}),
    ("heartbeat", {"heartbeat": "PING"}),
    ("close", {"close": 5}),
    ("config", {"config": {"max_size": 1}}),
    ("clock", {"clock": 12.0}),
    ("rng", {"rng": 42}),
]


@pytest.mark.parametrize(("name", "arguments"), POOL_WRONG_ARGUMENTS)
def test_pool_wrong_argument_is_a_type_error(name: str, arguments: dict[str, Any]) -> None:
    """Pool raises TypeError naming the argument at construction, before any connect."""
    arguments = {"connect": _connect, **arguments}
    with pytest.raises(TypeError, match=rf"^{name} must"):
        Pool(**arguments)


@pytest.mark.parametrize(("name", "arguments"), POOL_WRONG_ARGUMENTS)
def test_async_pool_wrong_argument_is_a_type_error(name: str, arguments: dict[str, Any]) -> None:
    """AsyncPool raises TypeError naming the argument at construction, outside any loop."""
    arguments = {"connect": _aconnect, **arguments}
    with pytest.raises(TypeError, match=rf"^{name} must"):
        AsyncPool(**arguments)


def test_pools_accept_their_documented_arguments() -> None:
    """Callables, a PoolConfig, a clock with now() and a random.Random are accepted."""
    clock = ManualClock()
    with Pool(
        _connect,
        heartbeat=lambda conn: None,
        close=lambda conn: None,
        config=PoolConfig(max_size=1),
        clock=clock,
        rng=random.Random(1),
    ) as pool:
        assert pool.config.max_size == 1
    assert AsyncPool(_aconnect, rng=random.Random(2)).closed is False


# -- completeness ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cls", "cases"),
    [
        (KeepAlive, KEEPALIVE_WRONG_TYPES),
        (RetryPolicy, POLICY_WRONG_TYPES),
        (PoolConfig, POOL_CONFIG_WRONG_TYPES),
    ],
)
def test_every_field_has_a_wrong_type_case(cls: type, cases: list[tuple[str, object]]) -> None:
    """A field added to a config class without a type check fails this test."""
    assert {f.name for f in dataclasses.fields(cls)} == {field for field, _ in cases}


def test_every_pool_argument_has_a_wrong_type_case() -> None:
    """Pool and AsyncPool take the same arguments, and each has a wrong-type case."""
    import inspect

    for cls in (Pool, AsyncPool):
        parameters = set(inspect.signature(cls).parameters)
        assert parameters == {name for name, _ in POOL_WRONG_ARGUMENTS}, cls
