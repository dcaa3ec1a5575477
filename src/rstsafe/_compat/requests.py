"""requests' private names that rstsafe.requests relies on (read from requests 2.34.2; 2.31+).

* ``HTTPAdapter._pool_connections`` / ``_pool_maxsize`` / ``_pool_block``: read (never
  written: requests' own ``init_poolmanager`` sets them) to build the proxy managers with the
  same sizes, as requests' own ``proxy_manager_for`` does (:func:`pool_settings`).
* ``HTTPAdapter.__attrs__``: requests' pickling protocol (the attributes ``__getstate__``
  keeps); rstsafe's adapter extends it.

``tests/test_compat_requests.py`` checks both against the installed requests.
"""

from __future__ import annotations

from typing import Any

import requests.adapters

__all__ = ("ATTRS", "pool_settings")

#: requests' pickled adapter attributes (``HTTPAdapter.__attrs__``, requests 2.34.2).
ATTRS: list[str] = list(requests.adapters.HTTPAdapter.__attrs__)


def pool_settings(adapter: requests.adapters.HTTPAdapter) -> tuple[int, int, bool]:
    """The adapter's pool count, pool size and blocking flag, as given to ``init_poolmanager``."""
    settings: Any = adapter
    return (settings._pool_connections, settings._pool_maxsize, settings._pool_block)
