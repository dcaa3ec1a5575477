"""rstsafe._compat.httpx still matches the installed httpx and httpcore (fails loudly if not)."""

from __future__ import annotations

import inspect
import ssl
from typing import Any

import httpcore
import httpx
import pytest

from rstsafe._compat import httpx as compat

# What rstsafe's build_pool takes besides network_backend/is_async: every argument of
# httpx.HTTPTransport.__init__ (read from httpx 0.27.2, 0.28.1 and 0.29.0).
TRANSPORT_ARGUMENTS = {
    "verify",
    "cert",
    "trust_env",
    "http1",
    "http2",
    "limits",
    "proxy",
    "uds",
    "local_address",
    "retries",
    "socket_options",
}
PROXIES = [None, "http://127.0.0.1:3128", "https://u:p@127.0.0.1:3128", "socks5://127.0.0.1:1080"]
if "socks5h" in compat.SOCKS_SCHEMES:
    PROXIES.append("socks5h://127.0.0.1:1080")


@pytest.mark.parametrize("host", [httpx.HTTPTransport, httpx.AsyncHTTPTransport])
def test_transport_arguments_are_the_ones_build_pool_takes(host: Any) -> None:
    """httpx's transports take exactly the arguments build_pool mirrors."""
    names = set(inspect.signature(host.__init__).parameters) - {"self"}
    assert names == TRANSPORT_ARGUMENTS
    pool_names = set(inspect.signature(compat.build_pool).parameters)
    assert pool_names == TRANSPORT_ARGUMENTS | {"is_async", "network_backend"}


def _comparable(pool: Any) -> dict[str, Any]:
    """The pool's settings that can be compared by value (no locks, no back end)."""
    simple = (int, float, bool, str, bytes, tuple, list, type(None), httpcore.URL)
    return {
        name: value
        for name, value in vars(pool).items()
        if isinstance(value, simple) and name not in {"_connections", "_requests"}
    }


@pytest.mark.parametrize("proxy", PROXIES)
@pytest.mark.parametrize("is_async", [False, True])
def test_build_pool_builds_httpx_own_pool(proxy: str | None, is_async: bool) -> None:
    """Same class, same attributes and same settings as the pool httpx builds itself."""
    host = httpx.AsyncHTTPTransport if is_async else httpx.HTTPTransport
    limits = httpx.Limits(max_connections=9, max_keepalive_connections=4, keepalive_expiry=3)
    options = [(6, 1, 1)]
    plain = host(proxy=proxy, limits=limits, retries=2, socket_options=options, http2=True)
    backend = httpcore.AnyIOBackend() if is_async else httpcore.SyncBackend()
    mine = compat.build_pool(
        is_async=is_async,
        network_backend=backend,
        **compat.transport_arguments(
            host,
            (),
            {
                "proxy": proxy,
                "limits": limits,
                "retries": 2,
                "socket_options": options,
                "http2": True,
            },
        ),
    )
    theirs = plain._pool
    assert type(mine) is type(theirs)
    assert set(vars(mine)) == set(vars(theirs))
    assert _comparable(mine) == _comparable(theirs)
    assert getattr(mine, "_network_backend") is backend  # noqa: B009
    context = getattr(mine, "_ssl_context")  # noqa: B009
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == getattr(theirs, "_ssl_context").verify_mode  # noqa: B009


def test_unknown_proxy_scheme_is_refused_as_httpx_does() -> None:
    """A scheme httpx refuses is refused (ValueError) by the same path."""
    with pytest.raises(ValueError, match="proxy"):
        compat.build_pool(
            is_async=False, network_backend=None, limits=httpx.Limits(), proxy="ftp://127.0.0.1"
        )


@pytest.mark.parametrize("client", [httpx.Client, httpx.AsyncClient])
def test_client_transport_hooks_exist_with_their_arguments(client: Any) -> None:
    """httpx's Client.__init__ hooks rstsafe overrides still exist and take these arguments."""
    shared = {"verify", "cert", "trust_env", "http1", "http2", "limits"}
    init = set(inspect.signature(client._init_transport).parameters)
    proxy = set(inspect.signature(client._init_proxy_transport).parameters)
    assert shared | {"transport"} <= init
    assert shared | {"proxy"} <= proxy
    # The rest of each hook's arguments are ones rstsafe's Transport takes too (0.27: app).
    assert init - {"self", "transport", "app"} <= TRANSPORT_ARGUMENTS
    assert proxy - {"self"} <= TRANSPORT_ARGUMENTS
    source = inspect.getsource(client.__init__)
    assert "self._init_transport(" in source
    assert "self._init_proxy_transport(" in source


def test_polled_streams_are_httpcore_streams_answering_with_a_socket_poll() -> None:
    """The stream classes whose is_readable rstsafe answers itself are httpcore's own."""
    assert compat.POLLED_STREAMS
    for stream_class in compat.POLLED_STREAMS:
        assert issubclass(stream_class, (httpcore.NetworkStream, httpcore.AsyncNetworkStream))
        source = inspect.getsource(stream_class.get_extra_info)
        assert 'info == "socket"' in source
        assert "is_socket_readable(" in source
