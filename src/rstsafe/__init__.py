"""rstsafe: HTTP and TCP clients that survive "Connection reset by peer".

The public surface is re-exported here; the implementation lives in private
``_modules``. Public subpackages exist only where users import them:
``rstsafe.testing`` (the misbehaving server and pytest plugin) and the adapters
``rstsafe.requests``, ``rstsafe.urllib3`` and ``rstsafe.httpx``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("rstsafe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = ("__version__",)
