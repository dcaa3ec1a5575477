"""urllib3's private names that rstsafe.urllib3 relies on (read from urllib3 2.8.0; 2.0+).

rstsafe's pools and managers extend urllib3 through methods urllib3 itself documents as the
way to customise a pool (``ConnectionCls``, ``_new_conn``, ``_get_conn``, ``_put_conn``) but
whose names are private, plus ``_make_request`` (where one request is sent on one
connection: rstsafe retries a stale connection there, on a fresh socket of the same
connection object, without touching urllib3's own retry loop in ``urlopen``) and the
manager's ``_new_pool`` (where pools get their keyword arguments). :data:`OVERRIDDEN` lists
each with the parameters rstsafe's override takes and passes on; :func:`problems` compares
them with the installed urllib3 (``tests/test_compat_urllib3.py``).

Public names used instead of private ones: ``urllib3.Timeout.DEFAULT_TIMEOUT`` (not
``urllib3.util.timeout._DEFAULT_TIMEOUT``), ``urllib3.util.wait.wait_for_read``.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any, Final, TypeAlias

import urllib3
import urllib3.connectionpool

if TYPE_CHECKING:
    # Type-only: urllib3's sentinel type for "the pool's default timeout" (urllib3 2.0+).
    from urllib3.util.timeout import _TYPE_DEFAULT

__all__ = ("DEFAULT_TIMEOUT", "OVERRIDDEN", "DefaultTimeoutType", "problems")

DefaultTimeoutType: TypeAlias = "_TYPE_DEFAULT"

#: urllib3's sentinel for "use the pool's timeout" (public since urllib3 2.0).
DEFAULT_TIMEOUT: Final[Any] = urllib3.Timeout.DEFAULT_TIMEOUT

#: (class, method) -> parameter names, as in urllib3 2.8.0 (unchanged since 2.0.0).
OVERRIDDEN: Final[dict[tuple[type[Any], str], tuple[str, ...]]] = {
    (urllib3.HTTPConnectionPool, "_new_conn"): ("self",),
    (urllib3.HTTPConnectionPool, "_get_conn"): ("self", "timeout"),
    (urllib3.HTTPConnectionPool, "_put_conn"): ("self", "conn"),
    (urllib3.HTTPConnectionPool, "_make_request"): (
        "self",
        "conn",
        "method",
        "url",
        "body",
        "headers",
        "retries",
        "timeout",
        "chunked",
        "response_conn",
        "preload_content",
        "decode_content",
        "enforce_content_length",
    ),
    (urllib3.PoolManager, "_new_pool"): ("self", "scheme", "host", "port", "request_context"),
}


def problems() -> list[str]:
    """What no longer matches in the installed urllib3 (empty when everything does)."""
    import importlib.metadata  # here, not at import

    version = importlib.metadata.version("urllib3")
    found = []
    for (cls, name), expected in OVERRIDDEN.items():
        method = getattr(cls, name, None)
        if method is None:
            found.append(f"urllib3 {version}: {cls.__name__}.{name} is gone")
            continue
        params = tuple(inspect.signature(method).parameters)
        if params != expected:
            found.append(
                f"urllib3 {version}: {cls.__name__}.{name}{params} "
                f"is not {expected}, as in urllib3 2.8.0"
            )
    return found
