"""Behaviour configs and server arguments: validated, named, registered."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from rstsafe.testing import (
    BEHAVIOURS,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    Behaviour,
    CloseAfterRequests,
    EarlyResponse,
    Healthy,
    IdleCloseWithLag,
    IdleDrop,
    MisbehavingServer,
    ProcessThenReset,
    TruncatedBody,
    behaviour_name,
)


@pytest.mark.parametrize(
    ("cls", "kwargs", "field"),
    [
        (Healthy, {"keepalive": 0}, "keepalive"),
        (Healthy, {"keepalive": float("inf")}, "keepalive"),
        (IdleCloseWithLag, {"idle": -1.0}, "idle"),
        (IdleCloseWithLag, {"lag": -0.1}, "lag"),
        (IdleCloseWithLag, {"lag": "1"}, "lag"),
        (IdleDrop, {"idle": 0.0}, "idle"),
        (CloseAfterRequests, {"count": 0}, "count"),
        (CloseAfterRequests, {"count": 1.5}, "count"),
        (CloseAfterRequests, {"reset": 1}, "reset"),
        (ProcessThenReset, {"reset": "yes"}, "reset"),
        (EarlyResponse, {"status": 99}, "status"),
        (EarlyResponse, {"status": 600}, "status"),
        (EarlyResponse, {"body_limit": -1}, "body_limit"),
        (TruncatedBody, {"missing": 0}, "missing"),
        (AcceptQueueOverflow, {"backlog": 0}, "backlog"),
        (AcceptQueueOverflow, {"backlog": True}, "backlog"),
        (AdvertiseKeepAlive, {"advertised": -5}, "advertised"),
        (AdvertiseKeepAlive, {"actual": float("nan")}, "actual"),
    ],
)
def test_bad_values_raise_value_error_naming_the_field(
    cls: type[Behaviour], kwargs: dict[str, Any], field: str
) -> None:
    """Every invalid behaviour field raises ValueError whose message starts with its name."""
    with pytest.raises(ValueError, match=rf"^{field} "):
        cls(**kwargs)


def test_behaviours_are_frozen_keyword_only_and_documented() -> None:
    """Each registered behaviour is a frozen kw-only dataclass naming its causes."""
    assert len(BEHAVIOURS) == 13
    for name, cls in BEHAVIOURS.items():
        assert name == name.lower()
        assert " " not in name
        instance = cls()
        assert dataclasses.is_dataclass(instance)
        for field in dataclasses.fields(instance):
            assert field.kw_only
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(instance, field.name, getattr(instance, field.name))
        assert behaviour_name(instance) == name
        assert behaviour_name(cls) == name
        doc = cls.__doc__ or ""
        assert cls is Healthy or all(cause in doc for cause in cls.causes), name
        assert cls is Healthy or cls.causes
    with pytest.raises(TypeError):
        IdleDrop(0.5)  # type: ignore[call-arg]


def test_variants_derive_with_replace() -> None:
    """dataclasses.replace derives a validated variant."""
    lag = IdleCloseWithLag(idle=0.3, lag=0.5)
    assert dataclasses.replace(lag, lag=1.0) == IdleCloseWithLag(idle=0.3, lag=1.0)
    with pytest.raises(ValueError, match=r"^lag "):
        dataclasses.replace(lag, lag=-1.0)


def test_unregistered_behaviour_has_no_name() -> None:
    """behaviour_name rejects a class that is not in the registry."""
    with pytest.raises(ValueError, match="behaviour"):
        behaviour_name(Behaviour)


@pytest.mark.parametrize("host", ["10.0.0.1", "0.0.0.0", "::", "192.168.1.1"])
def test_non_loopback_needs_explicit_permission(host: str) -> None:
    """Binding anything but loopback is refused unless allow_non_loopback=True."""
    with pytest.raises(ValueError, match="host"):
        MisbehavingServer(Healthy(), host=host)
    MisbehavingServer(Healthy(), host=host, allow_non_loopback=True)  # not started


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"host": "example.com"}, "host"),
        ({"port": -1}, "port"),
        ({"port": 70000}, "port"),
        ({"behaviour": "idle-drop"}, "behaviour"),
        ({"behaviour": Behaviour()}, "behaviour"),
    ],
)
def test_bad_server_arguments_name_the_field(kwargs: dict[str, Any], field: str) -> None:
    """Bad MisbehavingServer arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=field):
        MisbehavingServer(**kwargs)


def test_localhost_means_ipv4_loopback() -> None:
    """host='localhost' binds 127.0.0.1, so url never depends on name resolution."""
    assert MisbehavingServer(host="localhost").host == "127.0.0.1"
