"""rstsafe for aiohttp: a ``ClientSession`` and a ``TCPConnector`` that survive resets.

``rstsafe.aiohttp.ClientSession`` takes every ``aiohttp.ClientSession`` argument plus
``keepalive=`` ([`rstsafe.KeepAlive`][rstsafe.KeepAlive]) and ``retry=``
([`rstsafe.RetryPolicy`][rstsafe.RetryPolicy],
``retries=0``): idle connections are given up before the server's keep-alive runs out,
per origin, and a request that met a stale reused connection is resent at once on a
fresh one when that is safe. ``rstsafe.aiohttp.TCPConnector`` is the connector it builds,
for code that builds its own. Errors rstsafe raises are subclasses of the exact aiohttp
exception (``NotSentClientOSError`` is an ``aiohttp.ClientOSError``) and of
[`rstsafe.RequestNotSentError`][rstsafe.RequestNotSentError] or
[`rstsafe.RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
"""

from __future__ import annotations

from rstsafe._compat.aiohttp import HAS_MIDDLEWARES
from rstsafe._compat.aiohttp import check as _check_host
from rstsafe._core.errors import publish_errors as _publish_errors

_check_host()

from rstsafe.aiohttp._connector import TCPConnector  # noqa: E402 - after the check
from rstsafe.aiohttp._errors import (  # noqa: E402
    ERROR_CLASSES,
    MaybeSentClientConnectionError,
    MaybeSentClientConnectionResetError,
    MaybeSentClientConnectorError,
    MaybeSentClientOSError,
    MaybeSentClientPayloadError,
    MaybeSentConnectionTimeoutError,
    MaybeSentServerDisconnectedError,
    MaybeSentServerTimeoutError,
    MaybeSentSocketTimeoutError,
    NotSentClientConnectionError,
    NotSentClientConnectionResetError,
    NotSentClientConnectorError,
    NotSentClientOSError,
    NotSentClientPayloadError,
    NotSentConnectionTimeoutError,
    NotSentServerDisconnectedError,
    NotSentServerTimeoutError,
    NotSentSocketTimeoutError,
)
from rstsafe.aiohttp._session import ClientSession  # noqa: E402

RETRIES_AVAILABLE = HAS_MIDDLEWARES
"""True when rstsafe's immediate stale-connection retry is available (aiohttp >= 3.12,
client middlewares); with older aiohttp the connector's expiry still applies."""

__all__ = (
    "ERROR_CLASSES",
    "RETRIES_AVAILABLE",
    "ClientSession",
    "MaybeSentClientConnectionError",
    "MaybeSentClientConnectionResetError",
    "MaybeSentClientConnectorError",
    "MaybeSentClientOSError",
    "MaybeSentClientPayloadError",
    "MaybeSentConnectionTimeoutError",
    "MaybeSentServerDisconnectedError",
    "MaybeSentServerTimeoutError",
    "MaybeSentSocketTimeoutError",
    "NotSentClientConnectionError",
    "NotSentClientConnectionResetError",
    "NotSentClientConnectorError",
    "NotSentClientOSError",
    "NotSentClientPayloadError",
    "NotSentConnectionTimeoutError",
    "NotSentServerDisconnectedError",
    "NotSentServerTimeoutError",
    "NotSentSocketTimeoutError",
    "TCPConnector",
)

# Tracebacks and pickles name the errors by this module, not the private one they live in.
_publish_errors(__name__, globals(), __all__)
