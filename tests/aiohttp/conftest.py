"""Fixtures for the rstsafe.aiohttp suite: asyncio only, a "slow client" trace, no leaks."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import aiohttp
import pytest

import rstsafe.aiohttp


@pytest.fixture
def anyio_backend() -> str:
    """aiohttp runs on asyncio only."""
    return "asyncio"


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running after its fixtures are torn down."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    leaked = set(threading.enumerate()) - before
    while leaked and time.monotonic() < deadline:
        time.sleep(0.01)
        leaked = {t for t in leaked if t.is_alive()}
    assert not leaked, f"leaked threads: {sorted(t.name for t in leaked)}"


async def _pause_before_write(
    session: aiohttp.ClientSession, context: SimpleNamespace, params: Any
) -> None:
    # trace_request_ctx={"delay": seconds}: once per request, between taking the
    # connection from the pool and writing the request (a busy event loop, a slow
    # middleware or a GC pause do the same). Popped: a retry is not delayed.
    request_ctx = context.trace_request_ctx
    if isinstance(request_ctx, dict) and "delay" in request_ctx:
        await asyncio.sleep(request_ctx.pop("delay"))


@pytest.fixture
def slow_client() -> aiohttp.TraceConfig:
    """A TraceConfig pausing a request (``trace_request_ctx={"delay": s}``) before its write."""
    config = aiohttp.TraceConfig()
    config.on_request_headers_sent.append(_pause_before_write)
    return config


@pytest.fixture
def retries_available() -> None:
    """Skip, saying why, where rstsafe's stale-connection retry cannot run."""
    if not rstsafe.aiohttp.RETRIES_AVAILABLE:
        pytest.skip(f"aiohttp {aiohttp.__version__} has no client middlewares (needs >= 3.12)")
