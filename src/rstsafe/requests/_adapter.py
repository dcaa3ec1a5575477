"""requests that survives resets: an ``HTTPAdapter`` on rstsafe's urllib3 pools, a Session.

The adapter only swaps the pool managers (``init_poolmanager``, ``proxy_manager_for``)
for :mod:`rstsafe.urllib3`'s, where a stale reused connection is retried at once when that
is safe. Every other retry is requests' own (``max_retries``, a urllib3 ``Retry``), and so
is every error rstsafe did not act on: same class, same message, same ``args``.

When rstsafe did retry a stale connection and the request still failed, the error is a
subclass of exactly what requests raised, with requests' ``args`` (``e.args[0]`` is the
urllib3 error, itself rstsafe's subclass with the facts), ``request`` and ``response``:

==============================  ==============================================
requests raised                 rstsafe raises
==============================  ==============================================
``requests.ConnectionError``    :class:`NotSentConnectionError` / :class:`MaybeSentConnectionError`
``requests.ConnectTimeout``     :class:`ConnectTimeout` / :class:`MaybeSentConnectTimeout`
==============================  ==============================================

Anything else (``SSLError``, ``ProxyError``, ``RetryError``, ``ReadTimeout``...) is
requests' own. Private requests names used here are listed in :mod:`rstsafe._compat.requests`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import requests
import requests.adapters
from requests import PreparedRequest, Response
from requests.adapters import DEFAULT_POOLBLOCK, DEFAULT_POOLSIZE, DEFAULT_RETRIES
from urllib3.util.retry import Retry

from rstsafe._compat.requests import ATTRS, pool_settings
from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError
from rstsafe._core.keepalive import KeepAlive, KeepAliveRegistry
from rstsafe._core.retry import RetryPolicy
from rstsafe.urllib3._pools import PoolManager, ProxyManager, _stale_only

__all__ = (
    "ConnectTimeout",
    "HTTPAdapter",
    "MaybeSentConnectTimeout",
    "MaybeSentConnectionError",
    "NotSentConnectionError",
    "Session",
)

if TYPE_CHECKING:
    from rstsafe.sockets._helpers import SocketOption


class NotSentConnectionError(RequestNotSentError, requests.exceptions.ConnectionError):
    """requests' ``ConnectionError`` after rstsafe retried a stale connection; nothing sent."""


class MaybeSentConnectionError(RequestMaybeSentError, requests.exceptions.ConnectionError):
    """requests' ``ConnectionError`` after a stale retry; the server may have the request."""


class ConnectTimeout(RequestNotSentError, requests.exceptions.ConnectTimeout):
    """requests' ``ConnectTimeout`` after rstsafe retried a stale connection; nothing sent."""


class MaybeSentConnectTimeout(RequestMaybeSentError, requests.exceptions.ConnectTimeout):
    """requests' ``ConnectTimeout`` after a stale retry whose first attempt may have been sent."""


# requests' exact class -> rstsafe's (not sent, maybe sent). Subclasses with a meaning of
# their own (SSLError, ProxyError, ReadTimeout, ...) are not in it: they stay requests'.
_CLASSES: dict[type[Exception], tuple[type[RstsafeError], type[RstsafeError]]] = {
    requests.exceptions.ConnectionError: (NotSentConnectionError, MaybeSentConnectionError),
    requests.exceptions.ConnectTimeout: (ConnectTimeout, MaybeSentConnectTimeout),
}


def _translate(exc: requests.RequestException) -> RstsafeError | None:
    """rstsafe's subclass of requests' ``exc`` with the facts, or None to let ``exc`` through.

    Only when requests wrapped an error of rstsafe.urllib3 (rstsafe acted on the request):
    the new error has requests' ``args``, ``request`` and ``response`` unchanged.
    """
    classes = _CLASSES.get(type(exc))
    if classes is None or not exc.args:
        return None
    cause = exc.args[0]
    if not isinstance(cause, RstsafeError):
        return None
    cls = classes[0] if isinstance(cause, RequestNotSentError) else classes[1]
    return cls(
        cause.message,
        failure=cause.failure,
        history=cause.history,
        host_args=exc.args,
        request=exc.request,
        response=exc.response,
    )


class HTTPAdapter(requests.adapters.HTTPAdapter):
    """requests' ``HTTPAdapter`` on rstsafe's urllib3 pools; mount it on any Session.

    Example:
        ```python
        session.mount("https://", rstsafe.requests.HTTPAdapter(max_retries=Retry(2)))
        ```

    Args:
        pool_connections: As for requests.
        pool_maxsize: As for requests.
        max_retries: As for requests: it decides every retry except rstsafe's immediate
            retry of a stale reused connection.
        pool_block: As for requests.
        keepalive: Keep-alive configuration (idle TTL, lifetime, requests per connection).
        retry: rstsafe's retry policy (default ``RetryPolicy()``); only its stale-retry
            part applies (``max_stale_retries``, ``retry_on``, ``rules``);
            ``retry_statuses`` is refused (use ``max_retries=Retry(status_forcelist=...)``).
        socket_options: Socket options for new connections; default urllib3's defaults
            (``TCP_NODELAY``) plus TCP keepalive
            ([`rstsafe.keepalive_options`][rstsafe.keepalive_options]).
        keepalive_registry: Per-origin keep-alive state to share with other adapters
            (instead of ``keepalive``).

    Raises:
        ValueError: ``retry`` has ``retry_statuses``, or both ``keepalive`` and a
            ``keepalive_registry`` with another configuration were given.

    Attributes:
        keepalive: The keep-alive configuration.
        retry_policy: rstsafe's retry policy.
        keepalive_registry: The keep-alive state of every origin (learned TTLs, headers).
    """

    __attrs__ = [  # noqa: RUF012 - requests' pickling protocol
        *ATTRS,
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
        keepalive_registry: KeepAliveRegistry | None = None,
    ) -> None:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry must be a rstsafe.RetryPolicy, got {retry!r}")
        self.retry_policy = retry if retry is not None else RetryPolicy()
        _stale_only(self.retry_policy)  # ValueError for retry_statuses, at construction
        if keepalive_registry is None:
            self.keepalive = keepalive if keepalive is not None else KeepAlive()
            keepalive_registry = KeepAliveRegistry(self.keepalive)
        elif keepalive is not None and keepalive != keepalive_registry.config:
            raise ValueError("keepalive: give either keepalive or keepalive_registry, not both")
        else:
            self.keepalive = keepalive_registry.config
        self.socket_options = None if socket_options is None else list(socket_options)
        self.keepalive_registry = keepalive_registry
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
        """Build the rstsafe [`PoolManager`][rstsafe.urllib3.PoolManager] (requests' hook)."""
        # requests' own hook records the settings (its private _pool_* fields, which
        # proxy_manager_for reads); the plain manager it builds holds no connection yet.
        super().init_poolmanager(connections, maxsize, block, **pool_kwargs)
        self.poolmanager.clear()
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
        """The rstsafe [`ProxyManager`][rstsafe.urllib3.ProxyManager] for an HTTP(S) proxy.

        SOCKS proxies keep requests' own manager (urllib3's ``SOCKSProxyManager``).
        """
        if proxy in self.proxy_manager or proxy.lower().startswith("socks"):
            return super().proxy_manager_for(proxy, **proxy_kwargs)
        if self.socket_options is not None:
            proxy_kwargs.setdefault("socket_options", self.socket_options)
        connections, maxsize, block = pool_settings(self)
        manager = ProxyManager(
            proxy,
            proxy_headers=self.proxy_headers(proxy),
            num_pools=connections,
            maxsize=maxsize,
            block=block,
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
        """Send as requests does; after a stale retry that failed, its error with the facts."""
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
            error = _translate(exc)
            if error is None:
                raise
            raise error from exc.args[0]


class Session(requests.Session):
    """A ``requests.Session`` with rstsafe's [`HTTPAdapter`][rstsafe.requests.HTTPAdapter] for
    http:// and https://.

    One adapter object per prefix, as requests mounts them (closing the session closes
    each once); both share one keep-alive registry.

    Example:
        ```python
        with rstsafe.requests.Session() as session:
            session.get(url, timeout=10)
        ```

    Args:
        keepalive: Keep-alive configuration for the adapter.
        retry: rstsafe's retry policy for the adapter.
        socket_options: Socket options for the adapter's new connections.
        **adapter_kwargs: Further [`HTTPAdapter`][rstsafe.requests.HTTPAdapter] arguments
            (``pool_maxsize``...).
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
        registry = adapter_kwargs.pop("keepalive_registry", None)
        if registry is None:
            registry = KeepAliveRegistry(keepalive)
            keepalive = None
        for prefix in ("https://", "http://"):
            adapter = HTTPAdapter(
                keepalive=keepalive,
                retry=retry,
                socket_options=socket_options,
                keepalive_registry=registry,
                **adapter_kwargs,
            )
            self.mount(prefix, adapter)

    @property
    def adapter(self) -> HTTPAdapter:
        """The rstsafe [`HTTPAdapter`][rstsafe.requests.HTTPAdapter] mounted for http:// (survives
        pickling)."""
        adapter = self.adapters.get("http://")
        if not isinstance(adapter, HTTPAdapter):
            raise TypeError(f"http:// is mounted on {adapter!r}, not a rstsafe HTTPAdapter")
        return adapter
