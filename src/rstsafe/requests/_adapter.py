"""requests that survives resets: an ``HTTPAdapter`` on rstsafe's urllib3 pools, a Session.

The adapter only swaps the pool managers (``init_poolmanager``, ``proxy_manager_for``)
for :mod:`rstsafe.urllib3`'s, where the attempts loop runs, and translates the error
raised when rstsafe gives up into a requests exception that existing ``except``
clauses catch and that carries the facts:

==========================  ======================================================
failure                     raised
==========================  ======================================================
connect timeout             :class:`ConnectTimeout` (``requests.ConnectTimeout``)
read timeout                :class:`ReadTimeout` (``requests.ReadTimeout``)
other, nothing sent         :class:`NotSentConnectionError` (``requests.ConnectionError``)
other, maybe sent           :class:`MaybeSentConnectionError` (``requests.ConnectionError``)
==========================  ======================================================

Everything rstsafe does not handle keeps requests' own exception (``SSLError``,
``ProxyError``, ``InvalidURL``, ``RetryError``...).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import requests
import requests.adapters
from requests import PreparedRequest, Response
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, DEFAULT_RETRIES
from urllib3.util.retry import Retry

from rstsafe._core.classify import Delivery, FailureKind
from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry
from rstsafe._core.retry import RetryPolicy
from rstsafe.sockets._helpers import SocketOption
from rstsafe.urllib3._pools import PoolManager, ProxyManager

__all__ = (
    "ConnectTimeout",
    "HTTPAdapter",
    "MaybeSentConnectionError",
    "NotSentConnectionError",
    "ReadTimeout",
    "Session",
)


class NotSentConnectionError(RequestNotSentError, requests.exceptions.ConnectionError):
    """rstsafe gave up; provably nothing reached the server (a ``requests.ConnectionError``)."""


class MaybeSentConnectionError(RequestMaybeSentError, requests.exceptions.ConnectionError):
    """rstsafe gave up; the server may have received the request (``requests.ConnectionError``)."""


class ConnectTimeout(RequestNotSentError, requests.exceptions.ConnectTimeout):
    """rstsafe gave up after connect timeouts (a ``requests.ConnectTimeout``); nothing sent."""


class ReadTimeout(RequestMaybeSentError, requests.exceptions.ReadTimeout):
    """rstsafe gave up after a read timeout (a ``requests.ReadTimeout``); maybe sent."""


# requests' own classes that mean "the connection failed": rstsafe replaces these.
# Subclasses with a meaning of their own (SSLError, ProxyError, ...) are kept as is.
_REPLACEABLE = (
    requests.exceptions.ConnectionError,
    requests.exceptions.ConnectTimeout,
    requests.exceptions.ReadTimeout,
)


def _translate(exc: requests.RequestException, request: PreparedRequest) -> Exception | None:
    """The rstsafe requests error for ``exc``, or None to let ``exc`` through."""
    if type(exc) not in _REPLACEABLE:
        return None
    cause = next((a for a in exc.args if isinstance(a, RstsafeError)), None)
    if cause is None or cause.failure is None:
        return None
    failure = cause.failure
    cls: type[RstsafeError]
    if failure.kind is FailureKind.CONNECT_TIMEOUT and failure.delivery is Delivery.NOT_SENT:
        cls = ConnectTimeout
    elif failure.kind is FailureKind.READ_TIMEOUT:
        cls = ReadTimeout  # "maybe sent" is always a safe claim for a read timeout
    elif failure.delivery is Delivery.NOT_SENT:
        cls = NotSentConnectionError
    else:
        cls = MaybeSentConnectionError
    error = cls(cause.message, failure=failure, history=cause.history, request=request)
    error.__cause__ = cause
    return error


class HTTPAdapter(requests.adapters.HTTPAdapter):
    """requests' ``HTTPAdapter`` on rstsafe's urllib3 pools; mount it on any Session.

    Example:
        ``session.mount("https://", rstsafe.requests.HTTPAdapter(retry=RetryPolicy(retries=2)))``

    Args:
        pool_connections: As for requests.
        pool_maxsize: As for requests.
        max_retries: As for requests; urllib3's ``Retry`` keeps handling redirects and
            status retries, rstsafe's ``retry`` handles transport failures.
        pool_block: As for requests.
        keepalive: Keep-alive configuration (idle TTL, lifetime, requests per connection).
        retry: rstsafe's retry policy (default ``RetryPolicy()``).
        socket_options: Socket options for new connections; default urllib3's defaults
            (``TCP_NODELAY``) plus TCP keepalive (:func:`rstsafe.keepalive_options`).

    Attributes:
        keepalive: The keep-alive configuration.
        retry_policy: rstsafe's retry policy.
        keepalive_registry: The keep-alive state of every origin (learned TTLs, headers).
    """

    __attrs__ = [  # noqa: RUF012 - requests' pickling protocol
        *requests.adapters.HTTPAdapter.__attrs__,
        "keepalive",
        "retry_policy",
        "socket_options",
    ]

    def __init__(
        self,
        pool_connections: int = DEFAULT_POOLSIZE,
        pool_maxsize: int = DEFAULT_POOLSIZE,
        max_retries: int | Retry = DEFAULT_RETRIES,
        pool_block: bool = DEFAULT_POOLBLOCK,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        socket_options: Iterable[SocketOption] | None = None,
    ) -> None:
        self.keepalive = keepalive if keepalive is not None else KeepAlive()
        self.retry_policy = retry if retry is not None else RetryPolicy()
        self.socket_options = None if socket_options is None else list(socket_options)
        self.keepalive_registry = KeepAliveRegistry(self.keepalive)
        super().__init__(pool_connections, pool_maxsize, max_retries, pool_block)

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a pickled adapter with a new, empty keep-alive registry."""
        self.keepalive_registry = KeepAliveRegistry(state.get("keepalive"))
        super().__setstate__(state)  # type: ignore[misc]  # missing from types-requests

    def init_poolmanager(
        self,
        connections: int,
        maxsize: int,
        block: bool = DEFAULT_POOLBLOCK,
        **pool_kwargs: Any,
    ) -> None:
        """Build the rstsafe :class:`~rstsafe.urllib3.PoolManager` (requests' hook)."""
        self._pool_connections = connections
        self._pool_maxsize = maxsize
        self._pool_block = block
        if self.socket_options is not None:  # else the manager's default (keepalive added)
            pool_kwargs.setdefault("socket_options", self.socket_options)
        self.poolmanager = PoolManager(
            num_pools=connections,
            maxsize=maxsize,
            block=block,
            keepalive_registry=self.keepalive_registry,
            retry=self.retry_policy,
            **pool_kwargs,
        )

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        """The rstsafe :class:`~rstsafe.urllib3.ProxyManager` for an HTTP(S) proxy.

        SOCKS proxies keep requests' own manager (urllib3's ``SOCKSProxyManager``).
        """
        if proxy in self.proxy_manager or proxy.lower().startswith("socks"):
            return super().proxy_manager_for(proxy, **proxy_kwargs)
        if self.socket_options is not None:
            proxy_kwargs.setdefault("socket_options", self.socket_options)
        manager = ProxyManager(
            proxy,
            proxy_headers=self.proxy_headers(proxy),
            num_pools=self._pool_connections,
            maxsize=self._pool_maxsize,
            block=self._pool_block,
            keepalive_registry=self.keepalive_registry,
            retry=self.retry_policy,
            **proxy_kwargs,
        )
        self.proxy_manager[proxy] = manager
        return manager

    def send(  # noqa: PLR0917 - requests' signature
        self,
        request: PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: bool | str = True,
        cert: Any = None,
        proxies: Mapping[str, str] | None = None,
    ) -> Response:
        """Send as requests does; when rstsafe gave up, raise its error with the facts."""
        try:
            return super().send(
                request,
                stream=stream,
                timeout=timeout,
                verify=verify,
                cert=cert,
                proxies=proxies,
            )
        except requests.RequestException as exc:
            error = _translate(exc, request)
            if error is None:
                raise
            raise error from error.__cause__


class Session(requests.Session):
    """A ``requests.Session`` with rstsafe's :class:`HTTPAdapter` for http:// and https://.

    Example:
        ``with rstsafe.requests.Session() as session: session.get(url, timeout=10)``

    Args:
        keepalive: Keep-alive configuration for the adapter.
        retry: rstsafe's retry policy for the adapter.
        socket_options: Socket options for the adapter's new connections.
        **adapter_kwargs: Further :class:`HTTPAdapter` arguments (``pool_maxsize``...).
    """

    def __init__(
        self,
        *,
        keepalive: KeepAlive | None = None,
        retry: RetryPolicy | None = None,
        socket_options: Iterable[SocketOption] | None = None,
        **adapter_kwargs: Any,
    ) -> None:
        super().__init__()
        adapter = HTTPAdapter(
            keepalive=keepalive, retry=retry, socket_options=socket_options, **adapter_kwargs
        )
        self.mount("https://", adapter)
        self.mount("http://", adapter)

    @property
    def adapter(self) -> HTTPAdapter:
        """The rstsafe :class:`HTTPAdapter` mounted for http:// (survives pickling)."""
        adapter = self.adapters.get("http://")
        if not isinstance(adapter, HTTPAdapter):
            raise TypeError(f"http:// is mounted on {adapter!r}, not a rstsafe HTTPAdapter")
        return adapter
