"""pytest plugin (registered through the ``pytest11`` entry point ``rstsafe``).

Fixtures:

- ``misbehaving_server``: a factory; ``misbehaving_server(IdleDrop(idle=0.3))`` returns a
  started :class:`~rstsafe.testing.MisbehavingServer`. Every server it started is
  stopped at teardown, so no thread or socket outlives the test.
- ``network_namespace``: a factory; ``network_namespace(sysctls={...})`` returns a
  :class:`~rstsafe.testing.NetworkNamespace` that is deleted at teardown. The test is
  skipped, with the reason, where namespaces cannot be created (not root, no ``ip``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping

import pytest

from rstsafe.testing._behaviours import Behaviour
from rstsafe.testing._fixtures import NamespaceFactory, ServerFactory
from rstsafe.testing._netns import NetworkNamespace
from rstsafe.testing._server import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    MisbehavingServer,
    ServerEvent,
)

__all__ = ("misbehaving_server", "network_namespace")


@pytest.fixture
def misbehaving_server() -> Iterator[ServerFactory]:
    """Start misbehaving servers for a test; all of them are stopped at teardown."""
    with contextlib.ExitStack() as stack:

        def start(
            behaviour: Behaviour | None = None,
            *,
            host: str = "127.0.0.1",
            port: int = 0,
            max_connections: int = DEFAULT_MAX_CONNECTIONS,
            max_body: int = DEFAULT_MAX_BODY,
            namespace: NetworkNamespace | None = None,
            on_event: Callable[[ServerEvent], None] | None = None,
        ) -> MisbehavingServer:
            server = MisbehavingServer(
                behaviour,
                host=host,
                port=port,
                max_connections=max_connections,
                max_body=max_body,
                namespace=namespace,
                on_event=on_event,
            )
            return stack.enter_context(server)

        yield start


@pytest.fixture
def network_namespace() -> Iterator[NamespaceFactory]:
    """Create network namespaces for a test (skipped where impossible); deleted at teardown."""
    ok, reason = NetworkNamespace.available()
    if not ok:
        pytest.skip(reason)
    with contextlib.ExitStack() as stack:

        def create(*, sysctls: Mapping[str, str] | None = None) -> NetworkNamespace:
            return stack.enter_context(NetworkNamespace(sysctls=sysctls))

        yield create
