"""rstsafe's httpx clients: ``httpx.Client`` / ``AsyncClient`` building rstsafe transports."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import httpx

from rstsafe._compat.httpx import client_transport_arguments
from rstsafe._core.keepalive import KeepAlive
from rstsafe._core.retry import RetryPolicy
from rstsafe.httpx._transport import AsyncTransport, Transport, checked_retry_policy

if TYPE_CHECKING:
    from rstsafe.sockets._helpers import SocketOption

__all__ = ("AsyncClient", "Client")


class _ClientMixin:
    """Builds every transport an httpx client makes for itself as an rstsafe transport.

    ``httpx.Client.__init__`` calls ``_init_transport`` for its default transport and
    ``_init_proxy_transport`` for each proxy (given, or from the environment with
    ``trust_env``), with ``verify``, ``cert``, ``http1``, ``http2``, ``limits`` and
    ``trust_env``; overriding those two private methods (``rstsafe._compat.httpx``)
    keeps httpx's own argument handling. Their arguments are bound to the host's own
    signatures, so they mean the same in every supported httpx. A ``transport=`` (or,
    in httpx 0.27, ``app=``) is httpx's to handle, as are ``mounts=``.
    """

    _transport_class: type[Transport] | type[AsyncTransport]
    _rstsafe: dict[str, Any]

    def __init__(
        self,
        *args: Any,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        **kwargs: Any,
    ) -> None:
        """Take rstsafe's settings; pass everything else to the httpx client."""
        checked_retry_policy(retry)  # refused here even when no transport is built
        if keepalive is not None and not isinstance(keepalive, KeepAlive):
            raise TypeError(
                f"keepalive must be a rstsafe.KeepAlive or None, got {type(keepalive).__name__}"
            )
        self._rstsafe = {
            "keepalive": keepalive,
            "retry": retry,
            "socket_options": None if socket_options is None else list(socket_options),
        }
        super().__init__(*args, **kwargs)

    def _init_transport(self, *args: Any, **kwargs: Any) -> Any:
        host = super()._init_transport  # type: ignore[misc]
        arguments = client_transport_arguments(host, args, kwargs)
        if arguments.pop("transport", None) is not None or arguments.pop("app", None) is not None:
            return host(*args, **kwargs)  # the caller's: used as is, as httpx does
        return self._transport_class(**arguments, **self._rstsafe)

    def _init_proxy_transport(self, *args: Any, **kwargs: Any) -> Any:
        host = super()._init_proxy_transport  # type: ignore[misc]
        arguments = client_transport_arguments(host, args, kwargs)
        return self._transport_class(**arguments, **self._rstsafe)


class Client(_ClientMixin, httpx.Client):
    """An ``httpx.Client`` whose own transports are rstsafe ``Transport`` objects.

    Takes every ``httpx.Client`` argument. The transports httpx builds itself (the
    default one and one per proxy, including proxies from the environment) are rstsafe
    transports, configured here in one place, with ``verify``, ``cert``, ``http1``,
    ``http2``, ``limits`` and ``trust_env`` passed as httpx passes them. A
    ``transport=`` or ``mounts=`` you give is used as is.

    Args:
        *args: Everything ``httpx.Client`` takes.
        keepalive: Idle TTL, lifetime and learning (default ``KeepAlive()``).
        retry: The stale resend's ``max_stale_retries`` and ``timeout`` (default
            ``RetryPolicy(retries=0)``); ``retries`` and ``retry_statuses`` must be unset.
        socket_options: Socket options for new connections (default TCP keepalive).
        **kwargs: Everything ``httpx.Client`` takes.
    """

    _transport_class = Transport


class AsyncClient(_ClientMixin, httpx.AsyncClient):
    """An ``httpx.AsyncClient`` whose own transports are rstsafe ``AsyncTransport`` objects.

    The async twin of ``Client`` (asyncio and trio); same arguments.
    """

    _transport_class = AsyncTransport
