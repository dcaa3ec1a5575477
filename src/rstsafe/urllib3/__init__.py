"""rstsafe.urllib3: urllib3 that survives "Connection reset by peer".

Drop-in subclasses of urllib3's pool manager, pools and connections with idle TTLs
below the server's keep-alive (configured, ``Keep-Alive`` header, or learned), max
lifetime and requests per connection, and safe retries (a stale reused connection is
retried at once on a fresh one; nothing that may have reached the server is resent
unless idempotent):

```python
import rstsafe.urllib3

http = rstsafe.urllib3.PoolManager()
response = http.request("GET", "https://example.org/")
```
"""

from __future__ import annotations

from rstsafe._core.errors import publish_errors as _publish_errors
from rstsafe.urllib3._pools import (
    HTTPConnection,
    HTTPConnectionPool,
    HTTPSConnection,
    HTTPSConnectionPool,
    MaybeSentMaxRetryError,
    MaybeSentProtocolError,
    NotSentMaxRetryError,
    NotSentProtocolError,
    PoolManager,
    ProxyManager,
    proxy_from_url,
)

__all__ = (
    "HTTPConnection",
    "HTTPConnectionPool",
    "HTTPSConnection",
    "HTTPSConnectionPool",
    "MaybeSentMaxRetryError",
    "MaybeSentProtocolError",
    "NotSentMaxRetryError",
    "NotSentProtocolError",
    "PoolManager",
    "ProxyManager",
    "proxy_from_url",
)

# Tracebacks and pickles name the errors by this module, not the private one they live in.
_publish_errors(__name__, globals(), __all__)
