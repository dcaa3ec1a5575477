"""What rstsafe.httpx needs from httpx and httpcore beyond their public API, in one place.

Read from httpx 0.27.2, 0.28.1 and 0.29.0 with httpcore 1.0.x (1.0.0 to 1.0.9).
``tests/test_compat_httpx.py`` fails loudly when a host release changes any of it.

Public pieces used as they are documented: ``httpcore.ConnectionPool``, ``HTTPProxy``
and ``SOCKSProxy`` (and their async twins) with ``network_backend=``,
``httpcore.SyncBackend``, ``AnyIOBackend``, ``TrioBackend``, ``httpx.Proxy`` and
``httpx.create_ssl_context``.

The touch points:

1. :func:`build_pool` mirrors the body of ``httpx.HTTPTransport.__init__`` (and the async
   one): which httpcore pool class serves which proxy scheme, and which arguments each
   one gets. httpx does not take ``network_backend=``, so rstsafe builds the same pool
   itself with its backend; ``HTTPTransport._pool`` is then the very object httpx would
   have built, with the same class and settings (the test compares them field by field).
2. :func:`transport_arguments` and :func:`client_transport_arguments` bind call
   arguments to the host's own signatures (``HTTPTransport.__init__``,
   ``Client._init_transport``, ``Client._init_proxy_transport``), so positional calls
   mean what they mean in the installed httpx (0.27 orders ``trust_env`` after
   ``limits``; 0.28 after ``cert``). ``_init_transport`` / ``_init_proxy_transport``
   are private methods httpx's ``Client.__init__`` calls for its default and proxy
   transports; rstsafe's clients override them.
3. :data:`POLLED_STREAMS`: httpcore's own stream classes (``httpcore._backends``), only
   to recognise them: their ``is_readable`` is a poll of the socket they also return as
   ``get_extra_info("socket")``, which rstsafe then polls directly (see
   ``rstsafe.httpx._network``). Should they move, every stream is simply asked. Read on
   first use: httpcore (and with it anyio, trio and h2 when installed) is imported at the
   first transport built, as httpx imports it, never at ``import rstsafe.httpx``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:
    import httpcore

__all__ = (
    "POLLED_STREAMS",
    "SOCKS_SCHEMES",
    "build_pool",
    "client_transport_arguments",
    "transport_arguments",
)

if TYPE_CHECKING:
    POLLED_STREAMS: frozenset[type]


def _polled_streams() -> frozenset[type]:
    try:  # httpcore's own stream classes, only to recognise them (touch point 3)
        from httpcore._backends.anyio import AnyIOStream
        from httpcore._backends.sync import SyncStream
    except ImportError:  # pragma: no cover - a future httpcore: always ask the stream
        return frozenset()
    return frozenset({AnyIOStream, SyncStream})


def __getattr__(name: str) -> Any:
    # httpcore (with anyio, trio and h2 when installed) is imported when first needed, as
    # httpx imports it: at the first transport built, not at ``import rstsafe.httpx``.
    if name == "POLLED_STREAMS":
        value = globals()["POLLED_STREAMS"] = _polled_streams()
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# httpx 0.27 accepts "socks5" only; 0.28 added "socks5h" (resolved by the proxy, which
# httpcore's SOCKS client does for both anyway).
SOCKS_SCHEMES: frozenset[str] = (
    frozenset({"socks5"})
    if tuple(int(p) for p in httpx.__version__.split(".")[:2]) < (0, 28)
    else frozenset({"socks5", "socks5h"})
)


def _bind(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """``function``'s arguments for this call, defaults applied (``self`` dropped)."""
    signature = inspect.signature(function)
    parameters = list(signature.parameters.values())
    if parameters and parameters[0].name == "self":
        signature = signature.replace(parameters=parameters[1:])
    bound = signature.bind(*args, **kwargs)
    bound.apply_defaults()
    return dict(bound.arguments)


def transport_arguments(
    host_class: type[httpx.HTTPTransport] | type[httpx.AsyncHTTPTransport],
    args: tuple[Any, ...],
    kwargs: Mapping[str, Any],
) -> dict[str, Any]:
    """The host transport's constructor arguments, by name, as the host would read them.

    Raises TypeError for an argument the host transport does not take, as it would.
    """
    return _bind(host_class.__init__, args, kwargs)


def client_transport_arguments(
    method: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    """The arguments of a call to the host client's ``_init_transport`` or
    ``_init_proxy_transport`` (``method``, the host's own), by name."""
    return _bind(method, args, kwargs)


def _ssl_context(verify: Any, cert: Any, trust_env: bool, http2: bool) -> Any:
    # httpx 0.27's create_ssl_context takes http2 (it set the ALPN protocols from it);
    # 0.28 dropped it (httpcore sets ALPN itself).
    if "http2" in inspect.signature(httpx.create_ssl_context).parameters:
        return httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env, http2=http2)  # type: ignore[call-arg]
    return httpx.create_ssl_context(verify=verify, cert=cert, trust_env=trust_env)


def _proxy_url(proxy: httpx.Proxy) -> httpcore.URL:
    import httpcore

    return httpcore.URL(
        scheme=proxy.url.raw_scheme,
        host=proxy.url.raw_host,
        port=proxy.url.port,
        target=proxy.url.raw_path,
    )


def build_pool(
    *,
    is_async: bool,
    network_backend: Any,
    verify: Any = True,
    cert: Any = None,
    trust_env: bool = True,
    http1: bool = True,
    http2: bool = False,
    limits: httpx.Limits,
    proxy: Any = None,
    uds: str | None = None,
    local_address: str | None = None,
    retries: int = 0,
    socket_options: Any = None,
) -> Any:
    """The httpcore pool ``httpx.HTTPTransport(...)`` builds, with ``network_backend``.

    The same class for each proxy scheme and the same arguments as httpx's own
    ``__init__`` (touch point 1): ``uds``, ``local_address`` and ``retries`` go to a
    direct pool only; ``socket_options`` to a direct or HTTP proxy pool, not SOCKS;
    ``proxy_headers`` and ``proxy_ssl_context`` to an HTTP proxy only.
    """
    import httpcore  # as httpx: at the first transport built, not at import

    proxy = httpx.Proxy(url=proxy) if isinstance(proxy, (str, httpx.URL)) else proxy
    ssl_context = _ssl_context(verify, cert, trust_env, http2)
    common: dict[str, Any] = {
        "ssl_context": ssl_context,
        "max_connections": limits.max_connections,
        "max_keepalive_connections": limits.max_keepalive_connections,
        "keepalive_expiry": limits.keepalive_expiry,
        "http1": http1,
        "http2": http2,
        "network_backend": network_backend,
    }
    if proxy is None:
        pool_class: Any = httpcore.AsyncConnectionPool if is_async else httpcore.ConnectionPool
        return pool_class(
            uds=uds,
            local_address=local_address,
            retries=retries,
            socket_options=socket_options,
            **common,
        )
    scheme = proxy.url.scheme
    if scheme in ("http", "https"):
        pool_class = httpcore.AsyncHTTPProxy if is_async else httpcore.HTTPProxy
        return pool_class(
            proxy_url=_proxy_url(proxy),
            proxy_auth=proxy.raw_auth,
            proxy_headers=proxy.headers.raw,
            proxy_ssl_context=proxy.ssl_context,
            socket_options=socket_options,
            **common,
        )
    if scheme in SOCKS_SCHEMES:
        try:
            import socksio  # noqa: F401 - as httpx: only needed for SOCKS
        except ImportError:  # pragma: no cover - socksio is in the test extra
            raise ImportError(
                "Using SOCKS proxy, but the 'socksio' package is not installed. "
                "Make sure to install httpx using `pip install httpx[socks]`."
            ) from None
        pool_class = httpcore.AsyncSOCKSProxy if is_async else httpcore.SOCKSProxy
        return pool_class(proxy_url=_proxy_url(proxy), proxy_auth=proxy.raw_auth, **common)
    schemes = ", ".join(repr(s) for s in ("http", "https", *sorted(SOCKS_SCHEMES)))
    raise ValueError(f"Proxy protocol must be one of {schemes}, but got {scheme!r}.")
