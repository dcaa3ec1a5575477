"""rstsafe for httpx: ``Client``, ``AsyncClient`` and their transports.

Drop-in replacements that survive "Connection reset by peer":

```python
import rstsafe.httpx

with rstsafe.httpx.Client() as client:            # an httpx.Client
    client.get("https://example.org/")

async with rstsafe.httpx.AsyncClient() as client:  # an httpx.AsyncClient
    await client.get("https://example.org/")
```

or put a transport (an ``httpx.HTTPTransport``) under an existing client:

```python
client = httpx.Client(transport=rstsafe.httpx.Transport())
```

rstsafe adds an idle expiry and the immediate resend of a request that met a stale
reused connection, when safe; everything else is httpx's (see ``Transport``).
When rstsafe acted on a request and gives up, it raises a subclass of the httpx error
(``MaybeSentReadError(rstsafe.RequestMaybeSentError, httpx.ReadError)`` ...); every
other failure is httpx's own exception, unchanged.
"""

from __future__ import annotations

from rstsafe._core.errors import publish_errors as _publish_errors
from rstsafe.httpx._client import AsyncClient, Client
from rstsafe.httpx._errors import (
    MaybeSentConnectError,
    MaybeSentConnectTimeout,
    MaybeSentLocalProtocolError,
    MaybeSentNetworkError,
    MaybeSentPoolTimeout,
    MaybeSentProtocolError,
    MaybeSentProxyError,
    MaybeSentReadError,
    MaybeSentReadTimeout,
    MaybeSentRemoteProtocolError,
    MaybeSentTimeoutException,
    MaybeSentWriteError,
    MaybeSentWriteTimeout,
    NotSentConnectError,
    NotSentConnectTimeout,
    NotSentLocalProtocolError,
    NotSentNetworkError,
    NotSentPoolTimeout,
    NotSentProtocolError,
    NotSentProxyError,
    NotSentReadError,
    NotSentReadTimeout,
    NotSentRemoteProtocolError,
    NotSentTimeoutException,
    NotSentWriteError,
    NotSentWriteTimeout,
    error_classes,
)
from rstsafe.httpx._transport import AsyncTransport, Transport

__all__ = (
    "AsyncClient",
    "AsyncTransport",
    "Client",
    "MaybeSentConnectError",
    "MaybeSentConnectTimeout",
    "MaybeSentLocalProtocolError",
    "MaybeSentNetworkError",
    "MaybeSentPoolTimeout",
    "MaybeSentProtocolError",
    "MaybeSentProxyError",
    "MaybeSentReadError",
    "MaybeSentReadTimeout",
    "MaybeSentRemoteProtocolError",
    "MaybeSentTimeoutException",
    "MaybeSentWriteError",
    "MaybeSentWriteTimeout",
    "NotSentConnectError",
    "NotSentConnectTimeout",
    "NotSentLocalProtocolError",
    "NotSentNetworkError",
    "NotSentPoolTimeout",
    "NotSentProtocolError",
    "NotSentProxyError",
    "NotSentReadError",
    "NotSentReadTimeout",
    "NotSentRemoteProtocolError",
    "NotSentTimeoutException",
    "NotSentWriteError",
    "NotSentWriteTimeout",
    "Transport",
    "error_classes",
)

# Tracebacks and pickles name the errors by this module, not the private one they live in.
_publish_errors(__name__, globals(), __all__)
