"""The host suites and their variants: what the runner downloads, installs and runs.

To add a host: add a
:class:`Suite` (its distribution name, where its tests sit in the sdist, what its tests need),
then a plugin in ``contract/plugins/`` that calls ``swap({...})`` with the host's public names,
and a :class:`Variant` naming that plugin. Nothing else in the runner changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Suite:
    """One host library whose own sdist test suite is run."""

    name: str  # distribution name on PyPI, also the installed version's name
    tests: tuple[str, ...]  # test paths inside the extracted sdist
    # Extra requirements for this suite's tests, installed into the contract venv together
    # with the host at its installed version; the shared ones are in pyproject's `contract` extra.
    extras: tuple[str, ...] = ()
    # Folders removed from the extracted sdist so that its tests import the *installed*
    # package (httpx's sdist has httpx/ at its top level, which would shadow it).
    shadowing: tuple[str, ...] = ()
    pytest_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Variant:
    """A run of a suite with some of the host's public names swapped for rstsafe's."""

    name: str
    suite: str
    plugin: str | None  # a module under contract.plugins; None for the plain run
    title: str = ""
    requires: tuple[str, ...] = field(default=())  # rstsafe modules the plugin imports


AIOHTTP_CLIENT_TESTS = tuple(
    f"tests/{name}.py"
    for name in (
        "test_client_connection",
        "test_client_exceptions",
        "test_client_fingerprint",
        "test_client_functional",
        "test_client_middleware",
        "test_client_middleware_digest_auth",
        "test_client_proto",
        "test_client_request",
        "test_client_response",
        "test_client_session",
        "test_client_ws",
        "test_client_ws_functional",
        "test_connector",
        "test_proxy",
    )
)

SUITES: dict[str, Suite] = {
    suite.name: suite
    for suite in (
        Suite(
            "requests",
            tests=("tests",),
            extras=("requests[socks]",),
        ),
        Suite(
            "urllib3",
            tests=("test",),
            extras=("urllib3[brotli,zstd,socks,h2]",),
        ),
        Suite(
            "httpx",
            tests=("tests",),
            extras=("httpx[brotli,zstd,socks,http2,cli]",),
            shadowing=("httpx",),
        ),
        Suite(
            "aiohttp",
            # The client's tests only (the server's are most of the suite and never touch
            # ClientSession or TCPConnector); the benchmarks (pytest-codspeed) are left out.
            tests=AIOHTTP_CLIENT_TESTS,
            # What tests/conftest.py and the client tests import (requirements/test*.in in
            # the sdist): brotli and zstd via the speedups extra, blockbuster (its autouse
            # fixture fails a test that blocks the event loop), freezegun, and the zlib
            # backends that its compression tests are parametrized over.
            extras=("aiohttp[speedups]", "blockbuster", "coverage", "freezegun", "isal", "zlib-ng"),
            shadowing=("aiohttp",),
            # aiohttp's pytest.ini addopts ask for pytest-xdist and pytest-cov: replaced by
            # its marker selection alone.
            pytest_args=("-o", "addopts=", "-m", "not dev_mode and not autobahn and not internal"),
        ),
    )
}

VARIANTS: tuple[Variant, ...] = (
    Variant("requests", "requests", None, "plain"),
    Variant("requests-session", "requests", "requests_session", "Session swapped"),
    Variant("requests-adapter", "requests", "requests_adapter", "HTTPAdapter swapped"),
    Variant("urllib3", "urllib3", None, "plain"),
    Variant("urllib3-poolmanager", "urllib3", "urllib3_poolmanager", "PoolManager swapped"),
    Variant("urllib3-pools", "urllib3", "urllib3_pools", "pools swapped"),
    Variant("httpx", "httpx", None, "plain"),
    Variant("httpx-client", "httpx", "httpx_client", "Client swapped"),
    Variant("httpx-transport", "httpx", "httpx_transport", "Transport swapped"),
    Variant("aiohttp", "aiohttp", None, "plain"),
    Variant("aiohttp-session", "aiohttp", "aiohttp_session", "ClientSession swapped"),
)
