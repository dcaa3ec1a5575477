"""Shared fixtures for the rstsafe.testing suite: every test must leave no thread behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail a test that leaves a thread running after its fixtures are torn down."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    leaked = set(threading.enumerate()) - before
    while leaked and time.monotonic() < deadline:  # a thread may be finishing its return
        time.sleep(0.01)
        leaked = {t for t in leaked if t.is_alive()}
    assert not leaked, f"leaked threads: {sorted(t.name for t in leaked)}"
