"""Sockets and pools for any TCP protocol: graceful and abortive close, liveness checks,
keepalive socket options that keep the libraries' defaults, and ``Pool`` / ``AsyncPool``
with heartbeat validation after connect and after idle.
"""

from __future__ import annotations

from rstsafe.sockets._helpers import (
    CloseOutcome,
    CloseResult,
    Liveness,
    SocketHazard,
    SocketOption,
    abortive_close,
    apply_socket_options,
    check_socket,
    graceful_close,
    httpx_socket_options,
    is_alive,
    keepalive_options,
    probe_liveness,
    urllib3_socket_options,
)
from rstsafe.sockets._pool import (
    AsyncPool,
    DiscardReason,
    HeartbeatTimeoutError,
    NoHealthyConnectionError,
    Pool,
    PoolClosedError,
    PoolConfig,
    PoolCounters,
    PoolError,
    PoolTimeoutError,
)

__all__ = (
    "AsyncPool",
    "CloseOutcome",
    "CloseResult",
    "DiscardReason",
    "HeartbeatTimeoutError",
    "Liveness",
    "NoHealthyConnectionError",
    "Pool",
    "PoolClosedError",
    "PoolConfig",
    "PoolCounters",
    "PoolError",
    "PoolTimeoutError",
    "SocketHazard",
    "SocketOption",
    "abortive_close",
    "apply_socket_options",
    "check_socket",
    "graceful_close",
    "httpx_socket_options",
    "is_alive",
    "keepalive_options",
    "probe_liveness",
    "urllib3_socket_options",
)
