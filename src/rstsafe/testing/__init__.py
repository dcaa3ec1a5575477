"""rstsafe.testing: a misbehaving server that reproduces every reset cause on loopback.

[`MisbehavingServer`][rstsafe.testing.MisbehavingServer] is an HTTP/1.1 keep-alive server that
decides exactly when a
connection gets a FIN and when an RST; the behaviour classes say what it does wrong
([`BEHAVIOURS`][rstsafe.testing.BEHAVIOURS] maps their command-line names to them).
[`NetworkNamespace`][rstsafe.testing.NetworkNamespace]
gives a test (as root) its own loopback and sysctls. The pytest plugin (entry point
``rstsafe``) provides the ``misbehaving_server`` fixture.
"""

from __future__ import annotations

from rstsafe.testing._behaviours import (
    BEHAVIOURS,
    AbortiveClose,
    AcceptQueueOverflow,
    AdvertiseKeepAlive,
    Behaviour,
    BlackHole,
    CloseAfterRequests,
    EarlyResponse,
    Healthy,
    IdleCloseWithLag,
    IdleDrop,
    ProcessThenReset,
    Refuse,
    ResetUnread,
    TruncatedBody,
    behaviour_name,
)
from rstsafe.testing._fixtures import NamespaceFactory, ServerFactory
from rstsafe.testing._netns import NetworkNamespace
from rstsafe.testing._server import (
    ConnectionEnd,
    ConnectionRecord,
    Execution,
    MisbehavingServer,
    ServerEvent,
)

__all__ = (
    "BEHAVIOURS",
    "AbortiveClose",
    "AcceptQueueOverflow",
    "AdvertiseKeepAlive",
    "Behaviour",
    "BlackHole",
    "CloseAfterRequests",
    "ConnectionEnd",
    "ConnectionRecord",
    "EarlyResponse",
    "Execution",
    "Healthy",
    "IdleCloseWithLag",
    "IdleDrop",
    "MisbehavingServer",
    "NamespaceFactory",
    "NetworkNamespace",
    "ProcessThenReset",
    "Refuse",
    "ResetUnread",
    "ServerEvent",
    "ServerFactory",
    "TruncatedBody",
    "behaviour_name",
)
