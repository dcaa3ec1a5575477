"""Fixtures for the core tests (see helpers.py for the TLS listener)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .helpers import UntrustedTLSServer


@pytest.fixture
def untrusted_tls_server() -> Iterator[UntrustedTLSServer]:
    """A loopback TLS server no client trusts; stopped after the test."""
    server = UntrustedTLSServer()
    try:
        yield server
    finally:
        server.close()
