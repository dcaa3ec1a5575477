"""Shared pieces of the benchmark sections: the clients, statistics, plot setup.

The clients are the columns of every table: plain requests, plain httpx, rstsafe
requests and rstsafe httpx, each behind the same small interface so a workload can be
written once; plus plain httpx async and rstsafe httpx async (``httpx.AsyncClient`` and
``rstsafe.httpx.AsyncClient`` on asyncio), driven through the same interface by an event
loop of their own (:data:`ASYNC_CLIENT_NAMES`); and plain aiohttp and rstsafe aiohttp,
the same way (:data:`AIOHTTP_CLIENT_NAMES`, for the scenario matrix). The rstsafe ones
(but aiohttp's) expose their keep-alive
registry (public API: ``HTTPAdapter.keepalive_registry`` and
``Transport.keepalive_registry`` / ``AsyncTransport.keepalive_registry``) so a section
can sample the idle TTL they apply.
"""

from __future__ import annotations

import asyncio
import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import httpx
import requests

import rstsafe
import rstsafe.aiohttp
import rstsafe.core
import rstsafe.httpx
import rstsafe.requests

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = (
    "AIOHTTP_CLIENT_NAMES",
    "ALL_CLIENT_NAMES",
    "ASYNC_CLIENT_NAMES",
    "CLIENT_NAMES",
    "MATRIX_CLIENT_NAMES",
    "Client",
    "error_name",
    "make_async_client",
    "make_client",
    "median",
    "new_figure",
    "percentile",
    "save_figure",
)

#: The four columns, in table order.
CLIENT_NAMES: tuple[str, ...] = (
    "plain requests",
    "plain httpx",
    "rstsafe requests",
    "rstsafe httpx",
)
#: The async clients (httpx.AsyncClient on asyncio), plain and rstsafe.
ASYNC_CLIENT_NAMES: tuple[str, ...] = ("plain httpx async", "rstsafe httpx async")
#: Every client :func:`make_client` builds but aiohttp's (the reuse and learning sections).
ALL_CLIENT_NAMES: tuple[str, ...] = CLIENT_NAMES + ASYNC_CLIENT_NAMES
#: aiohttp's ClientSession, plain and rstsafe (the scenario matrix's real servers).
AIOHTTP_CLIENT_NAMES: tuple[str, ...] = ("plain aiohttp", "rstsafe aiohttp")
#: The real-server matrix's columns.
MATRIX_CLIENT_NAMES: tuple[str, ...] = CLIENT_NAMES + AIOHTTP_CLIENT_NAMES


class Client(Protocol):
    """One client under test."""

    name: str

    def request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        """Send one request, read the whole response, return its status."""
        ...

    def registry(self) -> rstsafe.core.KeepAliveRegistry | None:
        """The rstsafe keep-alive registry, or None for a plain client."""
        ...

    def close(self) -> None:
        """Close every connection."""
        ...


class _Requests:
    def __init__(self, name: str, session: requests.Session) -> None:
        self.name = name
        self._session = session

    def request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        response = self._session.request(method, url, data=body, timeout=timeout)
        return int(response.status_code)

    def registry(self) -> rstsafe.core.KeepAliveRegistry | None:
        if isinstance(self._session, rstsafe.requests.Session):
            return self._session.adapter.keepalive_registry
        return None

    def close(self) -> None:
        self._session.close()


class _Httpx:
    def __init__(
        self,
        name: str,
        client: httpx.Client,
        transport: rstsafe.httpx.Transport | None,
    ) -> None:
        self.name = name
        self._client = client
        self._transport = transport

    def request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        response = self._client.request(method, url, content=body, timeout=timeout)
        return response.status_code

    def registry(self) -> rstsafe.core.KeepAliveRegistry | None:
        return None if self._transport is None else self._transport.keepalive_registry

    def close(self) -> None:
        self._client.close()


class _AsyncHttpx:
    """An ``httpx.AsyncClient`` driven request by request on an event loop of its own.

    One loop for the client's whole life, so its pooled connections are reused from one
    request to the next as in an async program that awaits its requests in turn.
    """

    def __init__(
        self,
        name: str,
        client: httpx.AsyncClient,
        transport: rstsafe.httpx.AsyncTransport | None,
    ) -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._client = client
        self._transport = transport

    async def _request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        response = await self._client.request(method, url, content=body, timeout=timeout)
        return response.status_code

    def request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        return self._loop.run_until_complete(self._request(method, url, body, timeout))

    def registry(self) -> rstsafe.core.KeepAliveRegistry | None:
        return None if self._transport is None else self._transport.keepalive_registry

    def close(self) -> None:
        try:
            self._loop.run_until_complete(self._client.aclose())
        finally:
            self._loop.close()


class _Aiohttp:
    """An ``aiohttp.ClientSession`` driven request by request on an event loop of its own.

    The session is made in that loop at the first request (aiohttp binds a session to
    the loop it is made in); the loop lives as long as the client.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._loop = asyncio.new_event_loop()
        self._session: aiohttp.ClientSession | None = None

    async def _request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        if self._session is None:
            if self.name == "plain aiohttp":
                self._session = aiohttp.ClientSession()
            else:
                self._session = rstsafe.aiohttp.ClientSession()
        limit = aiohttp.ClientTimeout(total=timeout)
        async with self._session.request(method, url, data=body, timeout=limit) as response:
            await response.read()
            return response.status

    def request(self, method: str, url: str, body: bytes | None, timeout: float) -> int:
        return self._loop.run_until_complete(self._request(method, url, body, timeout))

    def registry(self) -> rstsafe.core.KeepAliveRegistry | None:
        return None  # not read for aiohttp (the matrix counts failures and duplicates)

    def close(self) -> None:
        try:
            if self._session is not None:
                self._loop.run_until_complete(self._session.close())
        finally:
            self._loop.close()


def make_async_client(
    name: str,
    keepalive: rstsafe.KeepAlive | None = None,
    *,
    limits: httpx.Limits | None = None,
) -> tuple[httpx.AsyncClient, rstsafe.httpx.AsyncTransport | None]:
    """Build the async client called ``name`` (one of :data:`ASYNC_CLIENT_NAMES`).

    ``limits`` sizes the pool (None: httpx's default, 100 connections of which 20 are
    kept idle). Returns the client and, for rstsafe, its transport (whose registry can
    be read).
    """
    pool: dict[str, Any] = {} if limits is None else {"limits": limits}
    if name == "plain httpx async":
        return httpx.AsyncClient(**pool), None
    if name == "rstsafe httpx async":
        transport = rstsafe.httpx.AsyncTransport(keepalive=keepalive, **pool)
        return rstsafe.httpx.AsyncClient(transport=transport), transport
    raise ValueError(f"unknown async client {name!r}; expected one of {ASYNC_CLIENT_NAMES}")


def make_client(name: str, keepalive: rstsafe.KeepAlive | None = None) -> Client:
    """Build the client called ``name`` (one of :data:`ALL_CLIENT_NAMES` or
    :data:`AIOHTTP_CLIENT_NAMES`).

    ``keepalive`` configures the rstsafe clients (ignored by the plain ones and by
    aiohttp's, which run with defaults); None means rstsafe's defaults.
    """
    if name == "plain requests":
        return _Requests(name, requests.Session())
    if name == "rstsafe requests":
        return _Requests(name, rstsafe.requests.Session(keepalive=keepalive))
    if name == "plain httpx":
        return _Httpx(name, httpx.Client(), None)
    if name == "rstsafe httpx":
        # The transport is built here (public API) so its registry can be read.
        transport = rstsafe.httpx.Transport(keepalive=keepalive)
        return _Httpx(name, rstsafe.httpx.Client(transport=transport), transport)
    if name in ASYNC_CLIENT_NAMES:
        return _AsyncHttpx(name, *make_async_client(name, keepalive))
    if name in AIOHTTP_CLIENT_NAMES:
        return _Aiohttp(name)
    raise ValueError(f"unknown client {name!r}; expected one of {MATRIX_CLIENT_NAMES}")


def error_name(exc: BaseException) -> str:
    """The exception class a user catches, e.g. ``ConnectionError``."""
    return type(exc).__name__


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) by linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    position = fraction * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def median(values: Sequence[float]) -> float:
    """The median; NaN for no values."""
    return statistics.median(values) if values else math.nan


def new_figure(width: float = 8.0, height: float = 4.5) -> Figure:
    """A new matplotlib figure on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def save_figure(figure: Figure, path: str) -> None:
    """Write ``figure`` as PNG to ``path``."""
    figure.savefig(path, format="png")
