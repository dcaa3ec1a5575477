"""rstsafe for httpx: ``Client``, ``AsyncClient`` and their transports.

Drop-in replacements that survive "Connection reset by peer":

```python
import rstsafe.httpx

with rstsafe.httpx.Client() as client:            # an httpx.Client
    client.get("https://example.org/")

async with rstsafe.httpx.AsyncClient() as client:  # an httpx.AsyncClient
    await client.get("https://example.org/")
```

or put a transport under an existing client:

```python
client = httpx.Client(transport=rstsafe.httpx.Transport())
```

See [`Transport`][rstsafe.httpx.Transport] for what is retried and why. The errors raised when
rstsafe
gives up are subclasses of the httpx error ([`error_classes`][rstsafe.httpx.error_classes]).
"""

from __future__ import annotations

from rstsafe.httpx._transport import AsyncClient, AsyncTransport, Client, Transport, error_classes

__all__ = ("AsyncClient", "AsyncTransport", "Client", "Transport", "error_classes")
