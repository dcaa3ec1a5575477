"""Every private aiohttp touch point of ``rstsafe.aiohttp``, in one place.

Read from aiohttp 3.10.11 and 3.14.5 (the oldest and newest supported); each one is
exercised by ``tests/test_compat_aiohttp.py``, which fails loudly when aiohttp changes it.
Everything else ``rstsafe.aiohttp`` uses is public: ``TCPConnector`` subclassing
(``connect()``, ``close()``), ``Connection.protocol``/``close()``,
client middlewares (aiohttp >= 3.12), the session's request methods (``request``,
``get`` ... overridden only to keep rstsafe's middleware when a request passes its own
``middlewares=``), ``ClientRequest.method``/``url``/``headers``/``body`` and the payload
classes of ``aiohttp.payload``.

1. ``ResponseHandler.transport`` (a slot of ``aiohttp.base_protocol.BaseProtocol``): aiohttp's
   ``StreamWriter`` writes every request byte through ``protocol.transport``, looked up at
   each write (``StreamWriter._write`` and ``_writelines`` in 3.14; ``_write`` in 3.10), and
   refuses the write, before calling the transport, when ``transport.is_closing()``.
   rstsafe puts a counting proxy there when a connection is created: a byte count of
   zero at a failure proves that nothing of the request reached the kernel. The public
   trace signals (``on_request_headers_sent``, ``on_request_chunk_sent``) fire *before*
   a write and also when aiohttp then refuses it, so they cannot prove "not sent", and
   they make every request pay for the tracing machinery.
2. ``ResponseHandler.closed`` (aiohttp >= 3.12; absent in 3.10 and 3.11, where the learning it
   feeds is skipped): a future completed when the connection is lost, used to learn
   from a server closing an idle connection.
3. ``ClientSession.__init_subclass__`` warns (``DeprecationWarning``) about subclassing, and
   in debug mode ``ClientSession.__setattr__`` warns about attributes missing from
   ``ClientSession.ATTRS``: rstsafe's subclass is created with that warning silenced and
   adds its one attribute to ``ATTRS``.
4. ``BaseConnector._release(key, protocol, *, should_close=False)``: called by
   ``Connection.release()`` and ``Connection.close()`` (and nowhere a connection is not
   given back), before the connection is pooled or closed. rstsafe's ``TCPConnector``
   overrides it to start a connection's idle clock. The public way,
   ``Connection.add_callback()``, costs every request six calls (aiohttp wraps each
   callback in a ``contextlib.suppress``) against one: about 2 % of the Python calls of
   a request (cProfile, 50 concurrent tasks; see docs/aiohttp.md, Performance).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import warnings
from collections.abc import Iterator
from typing import Any

import aiohttp
from aiohttp.base_protocol import BaseProtocol
from aiohttp.client_proto import ResponseHandler

__all__ = (
    "AIOHTTP_VERSION",
    "HAS_MIDDLEWARES",
    "SESSION_ATTRS",
    "check",
    "closed_future",
    "quiet_subclassing",
    "set_transport",
    "transport_of",
)


def _version(text: str) -> tuple[int, int]:
    parts = text.split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):  # pragma: no cover - a malformed version string
        return (0, 0)


AIOHTTP_VERSION = _version(aiohttp.__version__)

#: Client middlewares (``ClientSession(middlewares=...)``) exist from aiohttp 3.12 on;
#: rstsafe's immediate retry of a stale reused connection runs in one.
HAS_MIDDLEWARES = AIOHTTP_VERSION >= (3, 12)

#: The attributes a session may set without a warning in aiohttp's debug mode.
SESSION_ATTRS: frozenset[str] = frozenset(aiohttp.ClientSession.ATTRS) | {"_rstsafe"}


@contextlib.contextmanager
def quiet_subclassing() -> Iterator[None]:
    """Silence aiohttp's "Inheritance class ... from ClientSession is discouraged"."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Inheritance class", category=DeprecationWarning)
        yield


def transport_of(protocol: Any) -> Any:
    """The transport aiohttp writes a connection's requests through (touch point 1)."""
    return protocol.transport


def set_transport(protocol: Any, transport: Any) -> None:
    """Put ``transport`` where aiohttp's writer looks for it (touch point 1)."""
    protocol.transport = transport


def closed_future(protocol: Any) -> asyncio.Future[None] | None:
    """The future completed when the connection is lost, or None (touch point 2)."""
    closed = getattr(type(protocol), "closed", None)
    if not isinstance(closed, property):
        return None  # aiohttp 3.10: no such future
    future = protocol.closed
    return future if isinstance(future, asyncio.Future) else None


def check() -> None:
    """Fail loudly, naming the aiohttp version, when a touch point is gone."""
    problems = []
    if "transport" not in getattr(BaseProtocol, "__slots__", ()):
        problems.append("BaseProtocol has no 'transport' slot")
    if not issubclass(ResponseHandler, BaseProtocol):
        problems.append("ResponseHandler is not a BaseProtocol")
    if not isinstance(getattr(aiohttp.ClientSession, "ATTRS", None), frozenset):
        problems.append("ClientSession.ATTRS is not a frozenset")
    release = getattr(aiohttp.BaseConnector, "_release", None)
    if release is None or "should_close" not in inspect.signature(release).parameters:
        problems.append("BaseConnector has no _release(key, protocol, *, should_close)")
    if problems:
        raise RuntimeError(
            f"rstsafe.aiohttp does not support aiohttp {aiohttp.__version__}: "
            + "; ".join(problems)
        )
