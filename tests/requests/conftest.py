"""Fixtures for the requests/urllib3 adapter tests: TLS material, a TLS front, an app server.

This folder has no ``__init__.py`` on purpose: ``tests`` is on ``sys.path`` and a
regular package named ``requests`` here would shadow the real library.
"""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from requests_helpers import AppHandler, TLSFront


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority (trustme)."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server TLS context with a certificate for 127.0.0.1 and localhost."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


@pytest.fixture(scope="session")
def ca_bundle(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The CA certificate as a PEM file, for ``verify=``/``ca_certs=``."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_front(
    server_context: ssl.SSLContext,
) -> Iterator[Callable[[tuple[str, int]], TLSFront]]:
    """Factory: a TLS front for a plain backend address; stopped after the test."""
    fronts: list[TLSFront] = []

    def make(backend: tuple[str, int]) -> TLSFront:
        front = TLSFront(backend, server_context)
        fronts.append(front)
        return front

    try:
        yield make
    finally:
        for front in fronts:
            front.close()


@pytest.fixture
def app_server() -> Iterator[str]:
    """A small keep-alive app (redirects, cookies, auth, streaming); yields its base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), AppHandler)
    server.daemon_threads = False
    server.block_on_close = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)
