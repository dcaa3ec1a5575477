"""ClientShared: the per-origin bookkeeping the httpx and aiohttp adapters share."""

from __future__ import annotations

import pytest

from rstsafe import KeepAlive, RetryPolicy
from rstsafe._core import shared as shared_module
from rstsafe._core.clock import ManualClock
from rstsafe._core.shared import ClientShared, origin_for
from rstsafe.core import Origin


def _shared() -> ClientShared:
    return ClientShared(KeepAlive(), RetryPolicy(retries=0), ManualClock(100.0))


def test_origin_for_lowers_case_and_fills_the_default_port() -> None:
    assert origin_for("HTTPS", "Example.COM", None) == Origin("https", "example.com", 443)
    assert origin_for("http", "h", 8080) == Origin("http", "h", 8080)
    assert origin_for("ws", None, None) == Origin("ws", "", 80)
    assert origin_for("gopher", "h", None) == Origin("gopher", "h", 0)


def test_state_is_the_registrys_and_the_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    shared = _shared()
    origin = Origin("http", "a", 80)
    assert shared.state(origin) is shared.registry.for_origin(origin)
    assert shared.state(origin) is shared.state(origin)
    monkeypatch.setattr(shared_module, "MAX_CACHED_ORIGINS", 3)
    for port in range(10):
        shared.state(Origin("http", "b", port))
    assert len(shared.states) <= 3
    assert shared.state(origin) is shared.registry.for_origin(origin)  # the same state


def test_reused_ok_reports_only_what_is_news_until_the_epoch_changes() -> None:
    shared = _shared()
    origin = Origin("http", "a", 80)
    shared.reused_ok(origin, 2.0)
    shared.reused_ok(origin, 1.0)
    assert shared.ok_idle[origin] == (0, 2.0)
    assert shared.state(origin).lower_bound == 2.0
    shared.saw_header(origin, "timeout=5")
    assert shared.epoch == 1
    shared.saw_header(origin, "timeout=5")  # the same header again: nothing changed
    assert shared.epoch == 1
    shared.reused_ok(origin, 1.0)
    assert shared.ok_idle[origin] == (1, 1.0)
    assert shared.state(origin).lower_bound == 2.0  # the state keeps the largest


def test_expire_idle_keeps_the_latest_cutoff_and_bumps_the_epoch() -> None:
    shared = _shared()
    origin = Origin("http", "a", 80)
    shared.expire_idle(origin, 50.0)
    shared.expire_idle(origin, 40.0)
    assert shared.stale_before[origin] == 50.0
    assert shared.epoch == 2
    shared.expire_idle(None, 60.0)  # no origin known: nothing to expire
    assert shared.epoch == 2
