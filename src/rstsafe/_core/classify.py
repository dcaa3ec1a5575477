"""Classification: what went wrong, and could the server have received the request?

One table maps exception types to a :class:`FailureKind` and a delivery hint, in the
spirit of httpcore's ``map_exceptions``: no chain of ``except`` blocks. :func:`classify`
walks everything an exception wraps (``__cause__``, urllib3's ``reason``, aiohttp's
``os_error``, exceptions passed as ``args`` by requests and urllib3; ``__context__`` only
as a last resort for the kind) and keeps the most specific answer found.

Rows for optional libraries (urllib3, requests, httpx, httpcore, aiohttp) and for
``ssl``/``http.client`` are only built when that module is already in ``sys.modules``:
an exception raised by a library means the library is imported, so classification never
imports anything and ``import rstsafe`` stays cheap.
"""

from __future__ import annotations

import builtins
import dataclasses
import enum
import errno
import math
import socket
import sys
from collections.abc import Callable, Iterator
from typing import NamedTuple

__all__ = (
    "ConnectionFacts",
    "Delivery",
    "Failure",
    "FailureKind",
    "Origin",
    "classify",
)


class FailureKind(enum.Enum):
    """What happened to an attempt, as far as the exception (chain) tells."""

    RESET = "connection reset"
    """The peer answered with RST (``ECONNRESET``, ``ECONNABORTED``)."""
    CLOSED = "connection closed without a response"
    """The peer closed (FIN) before any response byte: ``RemoteDisconnected``,
    httpx "Server disconnected without sending a response", aiohttp
    ``ServerDisconnectedError``, a TLS EOF."""
    REFUSED = "connection refused"
    """Nothing listening: the SYN was answered with RST (``ECONNREFUSED``)."""
    CONNECT_TIMEOUT = "connect timeout"
    """The TCP (or TLS) handshake did not finish in time."""
    READ_TIMEOUT = "read timeout"
    """No (more) response bytes arrived in time."""
    WRITE_TIMEOUT = "write timeout"
    """The request could not be written in time."""
    POOL_TIMEOUT = "pool timeout"
    """No connection became available in the client's pool; nothing was attempted."""
    TIMEOUT = "timeout"
    """A timeout whose phase is unknown (a bare ``TimeoutError``, ``ETIMEDOUT``)."""
    TRUNCATED_BODY = "truncated response body"
    """The response started but ended before its announced length or final chunk."""
    TLS = "TLS failure"
    """A TLS handshake or certificate failure, or another ``ssl.SSLError``."""
    NAME_RESOLUTION = "name resolution failure"
    """DNS lookup failed (``socket.gaierror``)."""
    BROKEN_PIPE = "broken pipe"
    """Writing to a connection the peer had already closed (``EPIPE``)."""
    UNREACHABLE = "host or network unreachable"
    """``EHOSTUNREACH``, ``ENETUNREACH``, ``ENETDOWN``, ``EHOSTDOWN``."""
    CONNECT_ERROR = "connect failed"
    """The connection could not be established, reason not more specific."""
    NETWORK_ERROR = "network error"
    """Another ``OSError`` on the connection."""
    PROTOCOL_ERROR = "protocol error"
    """The peer (or the client) broke HTTP framing rules."""
    UNKNOWN = "unknown failure"
    """Nothing in the exception chain is known to rstsafe."""


# Kinds that, on a reused connection before any response byte, mean "the server had
# already closed it": the stale keep-alive connection of C1/C2/C7.
_STALE_KINDS = frozenset({FailureKind.RESET, FailureKind.CLOSED, FailureKind.BROKEN_PIPE})


class Delivery(enum.Enum):
    """Could the server have received (part of) the request?"""

    NOT_SENT = "not sent"
    """Provably nothing of the request reached the server: a connect-phase failure,
    or the adapter counted zero request bytes written."""
    MAYBE_SENT = "maybe sent"
    """The server may have received and even processed the request."""


class Origin(NamedTuple):
    """Where a connection goes: scheme, host and port, the key of per-origin state."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def _check_non_negative(name: str, value: float | None) -> None:
    if value is not None and (math.isnan(value) or value < 0):
        raise ValueError(f"{name} must be >= 0 or None, got {value!r}")


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionFacts:
    """What an adapter knew about the connection an attempt used; every field optional.

    Attributes:
        origin: Scheme, host and port the connection goes to.
        reused: True when the connection had served earlier requests (taken from a
            pool), False for a connection opened for this attempt, None if unknown.
        idle_seconds: How long the connection sat idle before this attempt.
        requests_served: Requests the connection completed before this attempt.
        age_seconds: Time since the connection was established.
        bytes_sent: Bytes of this request written to the socket in this attempt
            (application data, not TLS handshake). ``0`` proves the request was not sent.
        bytes_received: Response bytes read in this attempt.
    """

    origin: Origin | None = None
    reused: bool | None = None
    idle_seconds: float | None = None
    requests_served: int | None = None
    age_seconds: float | None = None
    bytes_sent: int | None = None
    bytes_received: int | None = None

    def __post_init__(self) -> None:
        _check_non_negative("idle_seconds", self.idle_seconds)
        _check_non_negative("age_seconds", self.age_seconds)
        _check_non_negative("requests_served", self.requests_served)
        _check_non_negative("bytes_sent", self.bytes_sent)
        _check_non_negative("bytes_received", self.bytes_received)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Failure:
    """The classification of one failed attempt (frozen).

    Attributes:
        kind: What happened.
        delivery: Whether the server could have received the request.
        facts: What the adapter knew about the connection (may be empty).
        errno: The OS error number found in the chain, if any.
        detail: A short text from the most specific exception, for messages.
        exception: The exception that was classified (not compared, not in repr).
    """

    kind: FailureKind
    delivery: Delivery
    facts: ConnectionFacts = dataclasses.field(default_factory=ConnectionFacts)
    errno: int | None = None
    detail: str = ""
    exception: BaseException | None = dataclasses.field(default=None, compare=False, repr=False)

    @property
    def not_sent(self) -> bool:
        """True when provably nothing of the request reached the server."""
        return self.delivery is Delivery.NOT_SENT

    @property
    def stale(self) -> bool:
        """True for a stale keep-alive connection: the server had closed it before answering.

        A *reused* connection (``facts.reused is True``) failing with a reset, a close
        without response or a broken pipe before any response byte
        (``facts.bytes_received`` 0 or unknown): C1, C2, C3 and C7 of the field guide.
        """
        return (
            self.facts.reused is True
            and self.kind in _STALE_KINDS
            and not self.facts.bytes_received  # None (unknown) or 0
        )


# ---------------------------------------------------------------------------------------
# The table.
#
# A row: (exception type, kind or function of the exception returning a kind,
# delivery hint, rank). The first row whose type matches (isinstance, in table order, so
# subclasses come before their bases) describes one exception of the chain. Over the
# whole chain, the row with the highest rank gives the kind (ties: the outermost
# exception, whose library knew the phase); the delivery is NOT_SENT if any exception in
# the chain proves a connect phase (an httpx.ConnectError wrapping a reset during the
# TLS handshake is still "not sent").
#
# Ranks: 3 = precise (an errno, a typed timeout, "server disconnected"), 2 = knows the
# phase or family but not the cause (urllib3 SSLError), 1 = generic wrapper, 0 = a
# container with no information of its own (MaxRetryError, requests.ConnectionError).

_KindSpec = FailureKind | Callable[[BaseException], FailureKind]


class _Row:
    # A plain slotted class, not a NamedTuple: cheaper to define at import (issue 15).
    __slots__ = ("delivery", "exc_type", "kind", "rank")

    def __init__(
        self, exc_type: type[BaseException], kind: _KindSpec, delivery: Delivery | None, rank: int
    ) -> None:
        self.exc_type = exc_type
        self.kind = kind
        self.delivery = delivery
        self.rank = rank


_NOT = Delivery.NOT_SENT
_MAYBE = Delivery.MAYBE_SENT

_ERRNO_KINDS: dict[int, FailureKind] = {
    errno.ECONNRESET: FailureKind.RESET,
    errno.ECONNABORTED: FailureKind.RESET,
    errno.ECONNREFUSED: FailureKind.REFUSED,
    errno.EPIPE: FailureKind.BROKEN_PIPE,
    errno.ESHUTDOWN: FailureKind.BROKEN_PIPE,
    errno.ETIMEDOUT: FailureKind.TIMEOUT,
    errno.EHOSTUNREACH: FailureKind.UNREACHABLE,
    errno.ENETUNREACH: FailureKind.UNREACHABLE,
    errno.ENETDOWN: FailureKind.UNREACHABLE,
    errno.EHOSTDOWN: FailureKind.UNREACHABLE,
}


def _errno_kind(exc: BaseException) -> FailureKind:
    code = getattr(exc, "errno", None)
    if isinstance(code, int):
        return _ERRNO_KINDS.get(code, FailureKind.NETWORK_ERROR)
    return FailureKind.NETWORK_ERROR


def _message_kind(default: FailureKind) -> Callable[[BaseException], FailureKind]:
    """Refine a protocol error by its message (httpcore/h11/urllib3 have no subtypes)."""

    def kind(exc: BaseException) -> FailureKind:
        text = _safe_str(exc).lower()
        if "without sending a response" in text or "peer unexpectedly closed" in text:
            return FailureKind.CLOSED
        if text.rstrip(".") == "server disconnected":  # httpcore's HTTP/2 connection: EOF
            return FailureKind.CLOSED
        if (
            "without sending complete message body" in text
            or "ended prematurely" in text
            or "incompleteread" in text
            or "connection broken" in text
        ):
            return FailureKind.TRUNCATED_BODY
        return default

    return kind


_GENERIC_KINDS = frozenset(
    {FailureKind.NETWORK_ERROR, FailureKind.PROTOCOL_ERROR, FailureKind.UNKNOWN}
)


def _refined_rank(kind: FailureKind, rank: int) -> int:
    """The rank of a row whose kind was computed from the exception itself.

    A protocol error refined to "closed" or "truncated" by its message is precise; an
    ``OSError`` without a known errno (anyio's "All connection attempts failed") is not.
    """
    if kind in (FailureKind.CLOSED, FailureKind.TRUNCATED_BODY):
        return max(rank, 3)
    if kind in _GENERIC_KINDS:
        return min(rank, 1)
    return rank


def _stdlib_rows() -> list[_Row]:
    rows: list[_Row] = []
    http_client = sys.modules.get("http.client")
    if http_client is not None:
        rows += [
            _Row(http_client.RemoteDisconnected, FailureKind.CLOSED, None, 3),
            _Row(http_client.IncompleteRead, FailureKind.TRUNCATED_BODY, _MAYBE, 3),
            _Row(http_client.HTTPException, FailureKind.PROTOCOL_ERROR, None, 1),
        ]
    ssl = sys.modules.get("ssl")
    if ssl is not None:
        rows += [
            _Row(ssl.SSLCertVerificationError, FailureKind.TLS, _NOT, 3),
            _Row(ssl.SSLEOFError, FailureKind.CLOSED, None, 3),
            _Row(ssl.SSLZeroReturnError, FailureKind.CLOSED, None, 3),
            _Row(ssl.SSLError, FailureKind.TLS, None, 2),
        ]
    rows += [
        # gaierror is an OSError subclass: before the errno rows.
        _Row(socket.gaierror, FailureKind.NAME_RESOLUTION, _NOT, 3),
        _Row(builtins.ConnectionRefusedError, FailureKind.REFUSED, _NOT, 3),
        _Row(builtins.BrokenPipeError, FailureKind.BROKEN_PIPE, None, 3),
        _Row(builtins.TimeoutError, FailureKind.TIMEOUT, None, 1),
    ]
    aio = sys.modules.get("asyncio")
    if aio is not None and aio.TimeoutError is not builtins.TimeoutError:  # Python 3.10
        rows.append(_Row(aio.TimeoutError, FailureKind.TIMEOUT, None, 1))
    rows += [
        _Row(builtins.OSError, _errno_kind, None, 3),
        _Row(EOFError, FailureKind.CLOSED, None, 2),
    ]
    return rows


def _urllib3_rows() -> list[_Row]:
    exc = sys.modules.get("urllib3.exceptions")
    if exc is None:
        return []
    return [
        _Row(exc.NameResolutionError, FailureKind.NAME_RESOLUTION, _NOT, 3),
        # NewConnectionError subclasses ConnectTimeoutError (history): before it.
        _Row(exc.NewConnectionError, FailureKind.CONNECT_ERROR, _NOT, 1),
        _Row(exc.ConnectTimeoutError, FailureKind.CONNECT_TIMEOUT, _NOT, 3),
        _Row(exc.ReadTimeoutError, FailureKind.READ_TIMEOUT, _MAYBE, 3),
        _Row(exc.IncompleteRead, FailureKind.TRUNCATED_BODY, _MAYBE, 3),
        _Row(exc.InvalidChunkLength, FailureKind.TRUNCATED_BODY, _MAYBE, 3),
        _Row(exc.ProxyError, FailureKind.CONNECT_ERROR, _NOT, 1),
        _Row(exc.SSLError, FailureKind.TLS, None, 2),
        # "Connection aborted." (urlopen) has no information of its own; "Connection
        # broken:" / "Response ended prematurely" happen while reading the body.
        _Row(exc.ProtocolError, _message_kind(FailureKind.PROTOCOL_ERROR), None, 0),
        _Row(exc.TimeoutError, FailureKind.TIMEOUT, None, 1),
        _Row(exc.HTTPError, FailureKind.UNKNOWN, None, 0),
    ]


def _requests_rows() -> list[_Row]:
    exc = sys.modules.get("requests.exceptions")
    if exc is None:
        return []
    return [
        _Row(exc.ConnectTimeout, FailureKind.CONNECT_TIMEOUT, _NOT, 3),
        _Row(exc.ReadTimeout, FailureKind.READ_TIMEOUT, _MAYBE, 3),
        _Row(exc.SSLError, FailureKind.TLS, None, 2),
        _Row(exc.ProxyError, FailureKind.CONNECT_ERROR, _NOT, 1),
        # Raised while iterating the body: the response had started.
        _Row(exc.ChunkedEncodingError, FailureKind.TRUNCATED_BODY, _MAYBE, 3),
        _Row(exc.Timeout, FailureKind.TIMEOUT, None, 1),
        _Row(exc.RequestException, FailureKind.UNKNOWN, None, 0),
    ]


def _httpx_like_rows(module_name: str) -> list[_Row]:
    mod = sys.modules.get(module_name)
    if mod is None:
        return []
    return [
        _Row(mod.ConnectTimeout, FailureKind.CONNECT_TIMEOUT, _NOT, 3),
        _Row(mod.ReadTimeout, FailureKind.READ_TIMEOUT, _MAYBE, 3),
        _Row(mod.WriteTimeout, FailureKind.WRITE_TIMEOUT, _MAYBE, 3),
        _Row(mod.PoolTimeout, FailureKind.POOL_TIMEOUT, _NOT, 3),
        _Row(mod.ConnectError, FailureKind.CONNECT_ERROR, _NOT, 1),
        _Row(mod.ProxyError, FailureKind.CONNECT_ERROR, _NOT, 1),
        _Row(mod.ReadError, FailureKind.NETWORK_ERROR, _MAYBE, 1),
        _Row(mod.WriteError, FailureKind.NETWORK_ERROR, _MAYBE, 1),
        _Row(mod.RemoteProtocolError, _message_kind(FailureKind.PROTOCOL_ERROR), None, 1),
        _Row(mod.LocalProtocolError, FailureKind.PROTOCOL_ERROR, None, 1),
        _Row(mod.TimeoutException, FailureKind.TIMEOUT, None, 1),
        _Row(mod.NetworkError, FailureKind.NETWORK_ERROR, None, 1),
        _Row(mod.ProtocolError, FailureKind.PROTOCOL_ERROR, None, 1),
    ]


def _h11_rows() -> list[_Row]:
    mod = sys.modules.get("h11")
    if mod is None:
        return []
    return [_Row(mod.RemoteProtocolError, _message_kind(FailureKind.PROTOCOL_ERROR), None, 1)]


def _aiohttp_rows() -> list[_Row]:
    exc = sys.modules.get("aiohttp.client_exceptions")
    if exc is None:
        return []
    rows: list[_Row] = []
    dns = getattr(exc, "ClientConnectorDNSError", None)  # aiohttp >= 3.11
    if dns is not None:
        rows.append(_Row(dns, FailureKind.NAME_RESOLUTION, _NOT, 3))
    rows += [
        _Row(exc.ClientConnectorCertificateError, FailureKind.TLS, _NOT, 3),
        _Row(exc.ClientConnectorSSLError, FailureKind.TLS, _NOT, 3),
        _Row(exc.ClientSSLError, FailureKind.TLS, None, 2),
        # Carries the OSError as ``os_error`` (followed): the errno decides the kind.
        _Row(exc.ClientConnectorError, FailureKind.CONNECT_ERROR, _NOT, 1),
    ]
    connect_timeout = getattr(exc, "ConnectionTimeoutError", None)  # aiohttp >= 3.10
    socket_timeout = getattr(exc, "SocketTimeoutError", None)
    if connect_timeout is not None:
        rows.append(_Row(connect_timeout, FailureKind.CONNECT_TIMEOUT, _NOT, 3))
    if socket_timeout is not None:
        rows.append(_Row(socket_timeout, FailureKind.READ_TIMEOUT, _MAYBE, 3))
    rows += [
        _Row(exc.ServerTimeoutError, FailureKind.TIMEOUT, None, 1),
        _Row(exc.ServerDisconnectedError, FailureKind.CLOSED, None, 3),
        _Row(exc.ClientPayloadError, FailureKind.TRUNCATED_BODY, _MAYBE, 3),
    ]
    reset = getattr(exc, "ClientConnectionResetError", None)  # aiohttp >= 3.10.6
    if reset is not None:
        rows.append(_Row(reset, FailureKind.RESET, None, 3))
    # ClientOSError is an OSError: the errno rows further down handle it.
    rows.append(_Row(exc.ServerConnectionError, FailureKind.NETWORK_ERROR, None, 1))
    return rows


_OPTIONAL_MODULES = (
    "asyncio",
    "http.client",
    "ssl",
    "urllib3.exceptions",
    "requests.exceptions",
    "httpx",
    "httpcore",
    "h11",
    "aiohttp.client_exceptions",
)

_table_cache: dict[frozenset[str], tuple[_Row, ...]] = {}


def _table() -> tuple[_Row, ...]:
    """The table for the optional modules imported so far (cached per set of modules)."""
    present = frozenset(name for name in _OPTIONAL_MODULES if name in sys.modules)
    table = _table_cache.get(present)
    if table is None:
        builders: tuple[Callable[[], list[_Row]], ...] = (
            _requests_rows,  # requests' exceptions subclass OSError: before the errno rows
            _urllib3_rows,
            lambda: _httpx_like_rows("httpx"),
            lambda: _httpx_like_rows("httpcore"),
            _h11_rows,
            _aiohttp_rows,
            _stdlib_rows,
        )
        rows: list[_Row] = []
        complete = True
        for build in builders:
            try:
                rows += build()
            except AttributeError:
                # A module another thread is still importing is in sys.modules, partly
                # initialised: its classes are not all defined yet. Classify without it,
                # and cache nothing until it is complete.
                complete = False
        table = tuple(rows)
        if not complete:
            return table
        _table_cache[present] = table
    return table


_MAX_CHAIN = 32


def _links(exc: BaseException, *, context: bool) -> Iterator[BaseException]:
    """Exceptions that ``exc`` wraps, most direct first; the implicit context last."""
    if exc.__cause__ is not None:
        yield exc.__cause__
    for attr in ("reason", "os_error", "original_error"):
        value = getattr(exc, attr, None)
        if isinstance(value, BaseException):
            yield value
    for arg in exc.args:
        if isinstance(arg, BaseException):
            yield arg
    grouped = getattr(exc, "exceptions", None)  # ExceptionGroup (anyio, trio)
    if isinstance(grouped, tuple):
        yield from (e for e in grouped if isinstance(e, BaseException))
    if context and exc.__context__ is not None and not exc.__suppress_context__:
        yield exc.__context__


def _chain(exc: BaseException, *, context: bool) -> list[BaseException]:
    """The exception and everything it wraps, breadth first, outermost first, no repeats."""
    seen: set[int] = set()
    order: list[BaseException] = []
    queue = [exc]
    while queue and len(order) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        order.append(current)
        queue.extend(_links(current, context=context))
    return order


class _Match:
    __slots__ = ("exc", "kind", "rank")

    def __init__(self, rank: int, kind: FailureKind, exc: BaseException) -> None:
        self.rank = rank
        self.kind = kind
        self.exc = exc


def _scan(
    links: list[BaseException], table: tuple[_Row, ...]
) -> tuple[_Match | None, bool, int | None]:
    """The best match among ``links``, whether one proves NOT_SENT, and the first errno."""
    best: _Match | None = None
    proves_not_sent = False
    found_errno: int | None = None
    for link in links:
        if found_errno is None and isinstance(link, OSError) and isinstance(link.errno, int):
            found_errno = link.errno
        for row in table:
            if isinstance(link, row.exc_type):
                kind = row.kind if isinstance(row.kind, FailureKind) else row.kind(link)
                rank = _refined_rank(kind, row.rank) if callable(row.kind) else row.rank
                if row.delivery is Delivery.NOT_SENT:
                    proves_not_sent = True
                # Strictly greater: on ties the outermost (earliest) exception wins.
                if best is None or rank > best.rank:
                    best = _Match(rank, kind, link)
                break
    return best, proves_not_sent, found_errno


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not break classification
        return ""


def _detail(exc: BaseException) -> str:
    text = _safe_str(exc)
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


def classify(exc: BaseException, *, facts: ConnectionFacts | None = None) -> Failure:
    """Classify a failed attempt: what happened, and could the server have received it?

    Walks ``exc`` and everything it explicitly wraps (``__cause__``, urllib3's
    ``reason``, aiohttp's ``os_error``, exceptions passed in ``args`` as requests and
    urllib3 do, exception-group members) and looks each one up in one table of known
    exception types from the standard library (``socket``, ``ssl``, ``http.client``),
    urllib3, requests, httpx, httpcore, h11 and aiohttp. Libraries that are not imported
    are skipped, never imported. The most specific match gives the kind; any exception
    proving a connect phase makes the delivery ``NOT_SENT``; anything unknown is
    ``MAYBE_SENT``.

    The implicit ``__context__`` ("during handling of ... another exception occurred")
    is not causation: a driver retrying inside an ``except`` block would otherwise see
    the previous attempt's refused connection in this attempt's failure. It is
    consulted only for the kind, only when the explicit chain found nothing but
    information-less containers (``requests.ConnectionError("...")``), and never proves
    ``NOT_SENT``. An unknown outer exception stays ``UNKNOWN``.

    ``facts`` from the adapter override the delivery: ``bytes_sent == 0`` proves
    ``NOT_SENT``, ``bytes_sent > 0`` means ``MAYBE_SENT``.

    Args:
        exc: The exception raised by the attempt.
        facts: What the adapter knows about the connection and this attempt.

    Returns:
        A frozen [`Failure`][rstsafe.Failure]. Never raises.
    """
    table = _table()
    explicit = _chain(exc, context=False)
    best, proves_not_sent, found_errno = _scan(explicit, table)
    if best is not None and best.rank == 0:
        known = {id(e) for e in explicit}
        implicit = [e for e in _chain(exc, context=True) if id(e) not in known]
        from_context, _, context_errno = _scan(implicit, table)
        if from_context is not None and from_context.rank > 0:
            best = from_context
            found_errno = found_errno if found_errno is not None else context_errno
    if best is None:
        kind, detail_exc = FailureKind.UNKNOWN, exc
    else:
        kind, detail_exc = best.kind, best.exc
    delivery = Delivery.NOT_SENT if proves_not_sent else Delivery.MAYBE_SENT
    facts = facts if facts is not None else ConnectionFacts()
    if facts.bytes_sent is not None:
        delivery = Delivery.NOT_SENT if facts.bytes_sent == 0 else Delivery.MAYBE_SENT
    return Failure(
        kind=kind,
        delivery=delivery,
        facts=facts,
        errno=found_errno,
        detail=_detail(detail_exc),
        exception=exc,
    )
