"""Types of the pytest plugin's factory fixtures (importable without pytest)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from rstsafe.testing._behaviours import Behaviour
from rstsafe.testing._netns import NetworkNamespace
from rstsafe.testing._server import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    MisbehavingServer,
    ServerEvent,
)

__all__ = ("NamespaceFactory", "ServerFactory")


class ServerFactory(Protocol):
    """The ``misbehaving_server`` fixture: start a server; it is stopped at teardown."""

    def __call__(
        self,
        behaviour: Behaviour | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_body: int = DEFAULT_MAX_BODY,
        namespace: NetworkNamespace | None = None,
        on_event: Callable[[ServerEvent], None] | None = None,
    ) -> MisbehavingServer: ...


class NamespaceFactory(Protocol):
    """The ``network_namespace`` fixture: create a namespace; it is deleted at teardown."""

    def __call__(self, *, sysctls: Mapping[str, str] | None = None) -> NetworkNamespace: ...
