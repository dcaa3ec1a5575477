"""rstsafe: HTTP and TCP clients that survive "Connection reset by peer".

The root holds what an application needs: the configuration objects, the errors and
what they carry, and the pools for any TCP protocol. The rest is in public modules by
audience:

- ``rstsafe.requests``, ``rstsafe.urllib3``, ``rstsafe.httpx``, ``rstsafe.aiohttp``: the
  drop-in adapters;
- ``rstsafe.sockets``: socket helpers (graceful close, liveness, keepalive options) and
  the pools;
- ``rstsafe.tools``: ``lint``, ``probe``, ``doctor`` and their results;
- ``rstsafe.testing``: the misbehaving server and the pytest plugin;
- ``rstsafe.core``: the decision core, for adapter authors.

Names are imported on first use, so ``import rstsafe`` loads no tool, no pool and no
asyncio.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from rstsafe._core.budget import RetryBudget
    from rstsafe._core.classify import ConnectionFacts, Delivery, Failure, FailureKind, classify
    from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError
    from rstsafe._core.idempotency import IdempotencyRules, replayability
    from rstsafe._core.keepalive import KeepAlive
    from rstsafe._core.retry import RetryPolicy
    from rstsafe._core.retry_tenacity import retry_if_safe
    from rstsafe.sockets._helpers import graceful_close, keepalive_options
    from rstsafe.sockets._pool import AsyncPool, Pool, PoolConfig

    __version__: str

# Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    "AsyncPool": "rstsafe.sockets._pool",
    "ConnectionFacts": "rstsafe._core.classify",
    "Delivery": "rstsafe._core.classify",
    "Failure": "rstsafe._core.classify",
    "FailureKind": "rstsafe._core.classify",
    "IdempotencyRules": "rstsafe._core.idempotency",
    "KeepAlive": "rstsafe._core.keepalive",
    "Pool": "rstsafe.sockets._pool",
    "PoolConfig": "rstsafe.sockets._pool",
    "RequestMaybeSentError": "rstsafe._core.errors",
    "RequestNotSentError": "rstsafe._core.errors",
    "RetryBudget": "rstsafe._core.budget",
    "RetryPolicy": "rstsafe._core.retry",
    "RstsafeError": "rstsafe._core.errors",
    "classify": "rstsafe._core.classify",
    "graceful_close": "rstsafe.sockets._helpers",
    "keepalive_options": "rstsafe.sockets._helpers",
    "replayability": "rstsafe._core.idempotency",
    "retry_if_safe": "rstsafe._core.retry_tenacity",
}

__all__ = (
    "AsyncPool",
    "ConnectionFacts",
    "Delivery",
    "Failure",
    "FailureKind",
    "IdempotencyRules",
    "KeepAlive",
    "Pool",
    "PoolConfig",
    "RequestMaybeSentError",
    "RequestNotSentError",
    "RetryBudget",
    "RetryPolicy",
    "RstsafeError",
    "__version__",
    "classify",
    "graceful_close",
    "keepalive_options",
    "replayability",
    "retry_if_safe",
)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rstsafe")
    except PackageNotFoundError:  # pragma: no cover - a source tree without install
        return "0.0.0"


def _lazy_attribute(
    module_name: str, lazy: Mapping[str, str], namespace: dict[str, Any], name: str
) -> Any:
    """A lazy module's ``__getattr__``: import the module ``lazy`` names for ``name``.

    The value is bound in ``namespace`` (the lazy module's globals), so later lookups skip
    ``__getattr__``. Shared by the root and ``rstsafe.sockets``.
    """
    module = lazy.get(name)
    if module is None:
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    namespace[name] = value
    return value


def __getattr__(name: str) -> Any:
    if name == "__version__":
        version: str = _version()
        globals()[name] = version  # later lookups skip __getattr__
        return version
    return _lazy_attribute(__name__, _LAZY, globals(), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
