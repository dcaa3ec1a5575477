"""rstsafe.requests: requests that survives "Connection reset by peer".

[`Session`][rstsafe.requests.Session] is a ``requests.Session`` with rstsafe's
[`HTTPAdapter`][rstsafe.requests.HTTPAdapter] mounted
for http:// and https://; mount the adapter on an existing session instead if you
prefer. Everything else behaves as in requests (cookies, auth, redirects, streaming,
timeouts, proxies):

```python
import rstsafe.requests

with rstsafe.requests.Session() as session:
    response = session.get("https://example.org/", timeout=10)
```
"""

from __future__ import annotations

from rstsafe._core.errors import publish_errors as _publish_errors
from rstsafe.requests._adapter import (
    ConnectTimeout,
    HTTPAdapter,
    MaybeSentConnectionError,
    MaybeSentConnectTimeout,
    NotSentConnectionError,
    Session,
)

__all__ = (
    "ConnectTimeout",
    "HTTPAdapter",
    "MaybeSentConnectTimeout",
    "MaybeSentConnectionError",
    "NotSentConnectionError",
    "Session",
)

# Tracebacks and pickles name the errors by this module, not the private one they live in.
_publish_errors(__name__, globals(), __all__)
