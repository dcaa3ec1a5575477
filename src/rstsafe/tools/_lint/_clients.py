"""Inspect live client objects: how long does this pool keep an idle connection?

Supported: ``requests.Session``, ``urllib3.PoolManager`` (and a single connection pool),
``httpx.Client`` and ``httpx.AsyncClient``, and anything exposing an ``rstsafe_keepalive``
attribute (rstsafe's own adapters; see :class:`SupportsKeepAlive`). Nothing is sent: the
objects' configuration is read, including a few private attributes of httpx/httpcore where
there is no public accessor (``HTTPTransport._pool._keepalive_expiry``).
"""

from __future__ import annotations

import math
import socket
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry, OriginKeepAlive
from rstsafe.tools._lint._model import Finding, Hop, HopKind, Severity
from rstsafe.tools._lint._source import NON_IDEMPOTENT

__all__ = ("ClientFacts", "SupportsKeepAlive", "inspect_client", "policy_idle_ttl")


@runtime_checkable
class SupportsKeepAlive(Protocol):
    """A client that manages its idle TTL the rstsafe way and says how.

    ``rstsafe_keepalive`` is the client's keep-alive policy (an ``rstsafe.KeepAlive``, or
    a ``KeepAliveRegistry``). lint checks the idle TTL that policy applies before it has
    learned anything about the server (see :func:`policy_idle_ttl`).
    """

    rstsafe_keepalive: Any


@dataclass(slots=True)
class ClientFacts:
    """What lint learned from a client object: its hop and findings about its settings."""

    hop: Hop
    findings: list[Finding] = field(default_factory=list)


_RSTSAFE_PUBLIC_MODULES = ("rstsafe.requests", "rstsafe.urllib3", "rstsafe.httpx", "rstsafe")


def _type_name(obj: object) -> str:
    """The name users know a client's class by: ``requests.Session``, ``rstsafe.httpx.Client``."""
    cls = type(obj)
    module = cls.__module__.split(".")[0]
    if module == "rstsafe":
        # rstsafe's classes live in private modules; name the public one that exports them.
        for public in _RSTSAFE_PUBLIC_MODULES:
            exported = getattr(sys.modules.get(public), cls.__qualname__, None)
            if exported is cls:
                return f"{public}.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


def _retry_findings(retry: Any, owner: str) -> list[Finding]:
    """RST102 for a urllib3 ``Retry`` whose allowed_methods include a non-idempotent one."""
    if retry is None or isinstance(retry, bool | int):
        return []
    allowed = getattr(retry, "allowed_methods", ())
    total = getattr(retry, "total", None)
    if total == 0 or total is False:
        return []
    if allowed is None:
        methods = "every method"
    else:
        risky = sorted({str(m).upper() for m in allowed} & NON_IDEMPOTENT)
        if not risky:
            return []
        methods = ", ".join(risky)
    return [
        Finding(
            code="RST102",
            severity=Severity.ERROR,
            message=f"{owner} retries {methods}: a request the server executed may be "
            "executed twice",
            fix="drop POST/PATCH from Retry(allowed_methods=...), or send an Idempotency-Key",
            hops=(owner,),
        )
    ]


def _socket_option_findings(options: Any, owner: str) -> list[Finding]:
    if options is None:
        return []
    has_nodelay = any(
        isinstance(option, tuple) and len(option) >= 2 and option[1] == socket.TCP_NODELAY
        for option in options
    )
    if has_nodelay:
        return []
    return [
        Finding(
            code="RST104",
            severity=Severity.WARNING,
            message=f"{owner}'s socket_options replace urllib3's defaults and drop TCP_NODELAY",
            fix="use HTTPConnection.default_socket_options + [...your options]",
            hops=(owner,),
        )
    ]


def _urllib3_pool_kw(pool_kw: dict[str, Any], owner: str) -> list[Finding]:
    findings = _retry_findings(pool_kw.get("retries"), owner)
    findings.extend(_socket_option_findings(pool_kw.get("socket_options"), owner))
    return findings


def _unbounded(name: str, detail: str) -> Hop:
    return Hop(name=name, kind=HopKind.CLIENT, upstream_idle_ttl=math.inf, detail=detail)


def policy_idle_ttl(policy: object) -> float | None:
    """The idle TTL an rstsafe keep-alive policy applies before it has learned anything.

    ``policy`` is a ``KeepAlive`` (or a ``KeepAliveRegistry``, whose configuration is
    used). The TTL comes from the core (configured ``server_keepalive`` minus the margin,
    or the default TTL), capped by ``max_lifetime``: a connection is never idle for
    longer than it has existed.
    """
    from rstsafe._core.keepalive import KeepAliveRegistry

    if isinstance(policy, KeepAliveRegistry):
        policy = policy.config
    if not isinstance(policy, KeepAlive):
        return None
    ttl = OriginKeepAlive(policy).idle_ttl().before_jitter
    if policy.max_lifetime is not None:
        ttl = min(ttl, policy.max_lifetime)
    return ttl


def _rstsafe_policy(obj: object) -> object | None:
    """The keep-alive policy of an rstsafe client or transport, if ``obj`` is one.

    ``rstsafe_keepalive`` is the documented hook; rstsafe's httpx transports expose their
    ``keepalive_registry``.
    """
    policy: object | None = getattr(obj, "rstsafe_keepalive", None)
    if policy is not None:
        return policy
    registry = getattr(obj, "keepalive_registry", None)
    return registry if isinstance(registry, KeepAliveRegistry) else None


def _inspect_rstsafe(policy: object, name: str) -> ClientFacts:
    ttl = policy_idle_ttl(policy)
    detail = "rstsafe keep-alive policy" if ttl is not None else "rstsafe_keepalive not recognised"
    return ClientFacts(
        hop=Hop(name=name, kind=HopKind.CLIENT, upstream_idle_ttl=ttl, detail=detail)
    )


def _inspect_requests(client: Any, name: str) -> ClientFacts:
    findings: list[Finding] = []
    for prefix, adapter in getattr(client, "adapters", {}).items():
        policy = _rstsafe_policy(adapter)
        if policy is not None:
            return _inspect_rstsafe(policy, name)
        findings.extend(_retry_findings(getattr(adapter, "max_retries", None), name))
        manager = getattr(adapter, "poolmanager", None)
        if manager is not None:
            findings.extend(
                _socket_option_findings(
                    manager.connection_pool_kw.get("socket_options"), f"{name} ({prefix})"
                )
            )
    return ClientFacts(
        hop=_unbounded(name, "requests/urllib3: no idle TTL"), findings=_dedupe(findings)
    )


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str]] = set()
    unique: list[Finding] = []
    for finding in findings:
        key = (finding.code, finding.message)
        if key not in seen:
            seen.add(key)
            unique.append(finding)
    return unique


def _httpx_transports(client: Any) -> list[Any]:
    transports = [getattr(client, "_transport", None)]
    transports.extend(getattr(client, "_mounts", {}).values())
    return [t for t in transports if t is not None]


def _inspect_httpx(client: Any, name: str) -> ClientFacts:
    expiries: list[float] = []
    for transport in _httpx_transports(client):
        policy = _rstsafe_policy(transport)
        if policy is not None:
            return _inspect_rstsafe(policy, name)
        pool = getattr(transport, "_pool", None)
        if pool is None or not hasattr(pool, "_keepalive_expiry"):
            continue
        expiry = pool._keepalive_expiry
        expiries.append(math.inf if expiry is None else float(expiry))
    if not expiries:
        return ClientFacts(
            hop=Hop(name=name, kind=HopKind.CLIENT, detail="httpx transport not recognised")
        )
    worst = max(expiries)
    detail = "httpx keepalive_expiry=None" if worst == math.inf else f"keepalive_expiry={worst:g}"
    return ClientFacts(
        hop=Hop(name=name, kind=HopKind.CLIENT, upstream_idle_ttl=worst, detail=detail)
    )


def _is_instance(obj: object, module: str, *names: str) -> bool:
    """isinstance against classes of an optional library, only if it is already imported."""
    loaded = sys.modules.get(module)
    classes = tuple(getattr(loaded, n) for n in names if hasattr(loaded, n)) if loaded else ()
    return bool(classes) and isinstance(obj, classes)


def inspect_client(client: object) -> ClientFacts:
    """Read a client object's idle TTL and hazardous settings.

    Raises:
        TypeError: ``client`` is not a supported client.
    """
    name = _type_name(client)
    policy = _rstsafe_policy(client)
    if policy is not None:
        return _inspect_rstsafe(policy, name)
    if _is_instance(client, "requests", "Session"):
        return _inspect_requests(
            client, "requests.Session" if name.startswith("requests.") else name
        )
    if _is_instance(client, "httpx", "Client", "AsyncClient"):
        return _inspect_httpx(client, name)
    if _is_instance(client, "urllib3", "PoolManager"):
        kw: dict[str, Any] = dict(getattr(client, "connection_pool_kw", {}))
        return ClientFacts(
            hop=_unbounded(name, "urllib3: no idle TTL"), findings=_urllib3_pool_kw(kw, name)
        )
    if _is_instance(client, "urllib3", "HTTPConnectionPool"):
        retry_findings = _retry_findings(getattr(client, "retries", None), name)
        return ClientFacts(hop=_unbounded(name, "urllib3: no idle TTL"), findings=retry_findings)
    raise TypeError(
        f"lint cannot inspect {name}: expected a requests.Session, urllib3.PoolManager, "
        "httpx.Client/AsyncClient, or an object with an rstsafe_keepalive attribute"
    )
