"""Fixtures for the rstsafe.httpx suite: anyio back ends, no leaked threads."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Run every ``@pytest.mark.anyio`` test on asyncio and on trio."""
    backend: str = request.param
    return backend


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running after its fixtures are torn down.

    trio resolves names in worker threads of its process-wide thread cache, which stay
    idle for a while to be reused ("Trio thread N"): those are trio's, not leaks.
    """
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    leaked = {
        t for t in set(threading.enumerate()) - before if not t.name.startswith("Trio thread")
    }
    while leaked and time.monotonic() < deadline:
        time.sleep(0.01)
        leaked = {t for t in leaked if t.is_alive()}
    assert not leaked, f"leaked threads: {sorted(t.name for t in leaked)}"
