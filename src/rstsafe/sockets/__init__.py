"""Sockets and pools for any TCP protocol: graceful and abortive close, liveness checks,
keepalive socket options that keep the libraries' defaults, and ``Pool`` / ``AsyncPool``
with heartbeat validation after connect and after idle.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rstsafe import _lazy_attribute

if TYPE_CHECKING:
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

# Public name -> the module that defines it: imported on first use, so that an adapter
# needing one helper loads neither the pools nor asyncio.
_LAZY: dict[str, str] = {
    "AsyncPool": "rstsafe.sockets._pool",
    "CloseOutcome": "rstsafe.sockets._helpers",
    "CloseResult": "rstsafe.sockets._helpers",
    "DiscardReason": "rstsafe.sockets._pool",
    "HeartbeatTimeoutError": "rstsafe.sockets._pool",
    "Liveness": "rstsafe.sockets._helpers",
    "NoHealthyConnectionError": "rstsafe.sockets._pool",
    "Pool": "rstsafe.sockets._pool",
    "PoolClosedError": "rstsafe.sockets._pool",
    "PoolConfig": "rstsafe.sockets._pool",
    "PoolCounters": "rstsafe.sockets._pool",
    "PoolError": "rstsafe.sockets._pool",
    "PoolTimeoutError": "rstsafe.sockets._pool",
    "SocketHazard": "rstsafe.sockets._helpers",
    "SocketOption": "rstsafe.sockets._helpers",
    "abortive_close": "rstsafe.sockets._helpers",
    "apply_socket_options": "rstsafe.sockets._helpers",
    "check_socket": "rstsafe.sockets._helpers",
    "graceful_close": "rstsafe.sockets._helpers",
    "httpx_socket_options": "rstsafe.sockets._helpers",
    "is_alive": "rstsafe.sockets._helpers",
    "keepalive_options": "rstsafe.sockets._helpers",
    "probe_liveness": "rstsafe.sockets._helpers",
    "urllib3_socket_options": "rstsafe.sockets._helpers",
}

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


def __getattr__(name: str) -> Any:
    return _lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
