"""What the misbehaving server does wrong: one frozen config class per behaviour.

Each class reproduces one or more of the reset causes of the field guide (C1 to C11) and
says which in its docstring. :data:`BEHAVIOURS` maps the command-line names used by
``rstsafe serve`` and ``rstsafe demo`` to the classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import ClassVar

__all__ = (
    "BEHAVIOURS",
    "AbortiveClose",
    "AcceptQueueOverflow",
    "AdvertiseKeepAlive",
    "Behaviour",
    "BlackHole",
    "CloseAfterRequests",
    "EarlyResponse",
    "Healthy",
    "IdleCloseWithLag",
    "IdleDrop",
    "ProcessThenReset",
    "Refuse",
    "ResetUnread",
    "TruncatedBody",
    "behaviour_name",
)


def _check_duration(field: str, value: float, *, allow_zero: bool = True) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{field} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{field} must be {bound} seconds, got {value!r}")


def _check_int(field: str, value: int, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{field} must be >= {minimum}, got {value!r}")


def _check_bool(field: str, value: bool) -> None:
    if not isinstance(value, bool):
        raise ValueError(f"{field} must be True or False, got {value!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Behaviour:
    """Base class of every behaviour; on its own it is not a behaviour."""

    #: Causes of the field guide that this behaviour reproduces.
    causes: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Healthy(Behaviour):
    """The baseline: answer every request and close idle connections with a FIN.

    Args:
        keepalive: Seconds a connection may stay idle before the server closes it
            (gracefully, FIN). ``None`` keeps idle connections open until the server
            stops. The default is uvicorn's (5 s); gunicorn uses 2 s, nginx 75 s.
    """

    keepalive: float | None = 5.0

    def __post_init__(self) -> None:
        if self.keepalive is not None:
            _check_duration("keepalive", self.keepalive, allow_zero=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleCloseWithLag(Behaviour):
    """C1, C2 (the keep-alive race): close idle connections, but the FIN leaves late.

    After ``idle`` seconds without a request the server decides to close the
    connection and stops reading it; the close happens ``lag`` seconds later, as if
    the FIN had to cross a network. A request that arrives in that window is never
    read, so the close becomes an RST and the client's read fails with
    ``ConnectionResetError``. If nothing arrived, the connection ends with a FIN.

    With ``advertised`` the responses carry ``Keep-Alive: timeout=<advertised>``, as
    nginx (``keepalive_timeout 75s 75s``) and Apache do: a client that honours the header
    with a margin never meets the race; one that ignores it does.

    Args:
        idle: Seconds of idleness after which the server decides to close.
        lag: Seconds between that decision and the actual close.
        advertised: Seconds to announce in a ``Keep-Alive`` header; None sends no header.
    """

    causes: ClassVar[tuple[str, ...]] = ("C1", "C2")
    idle: float = 1.0
    lag: float = 0.5
    advertised: float | None = None

    def __post_init__(self) -> None:
        _check_duration("idle", self.idle, allow_zero=False)
        _check_duration("lag", self.lag)
        if self.advertised is not None:
            _check_duration("advertised", self.advertised, allow_zero=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class IdleDrop(Behaviour):
    """C3, C7: forget an idle connection's state; no FIN, the next bytes get an RST.

    Like a NAT gateway or load balancer that dropped its entry, or a server that
    restarted: the client still believes in the connection, writes its request, and
    the answer is an RST. When the server stops it resets such connections too.

    Args:
        idle: Seconds of idleness after which the connection is forgotten.
    """

    causes: ClassVar[tuple[str, ...]] = ("C3", "C7")
    idle: float = 1.0

    def __post_init__(self) -> None:
        _check_duration("idle", self.idle, allow_zero=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseAfterRequests(Behaviour):
    """C1, C7: close a connection after ``count`` requests without ``Connection: close``.

    The response does not warn the client, so its pool keeps the connection and the
    next request on it finds it closed (FIN: ``RemoteDisconnected``) or reset (RST).

    Args:
        count: Requests served on a connection before it is closed.
        reset: Close with an RST (``SO_LINGER`` 0) instead of a FIN.
    """

    causes: ClassVar[tuple[str, ...]] = ("C1", "C7")
    count: int = 1
    reset: bool = False

    def __post_init__(self) -> None:
        _check_int("count", self.count, minimum=1)
        _check_bool("reset", self.reset)


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessThenReset(Behaviour):
    """C10 (the duplicate hazard): execute the request, then close without answering.

    The request is read in full and counted as executed; then the connection is
    reset (or closed with a FIN). A client that retries a non-idempotent request
    after this runs it twice.

    Args:
        reset: RST (``SO_LINGER`` 0) when true, FIN when false.
    """

    causes: ClassVar[tuple[str, ...]] = ("C10",)
    reset: bool = True

    def __post_init__(self) -> None:
        _check_bool("reset", self.reset)


@dataclass(frozen=True, slots=True, kw_only=True)
class ResetUnread(Behaviour):
    """C7, C2: reset the connection as soon as a request arrives, before reading it.

    The request is never processed (it is not counted as executed), so any method
    can be retried safely, which is what a classifier should conclude when it can
    prove nothing was read.
    """

    causes: ClassVar[tuple[str, ...]] = ("C7", "C2")


@dataclass(frozen=True, slots=True, kw_only=True)
class EarlyResponse(Behaviour):
    """C6: answer before the upload is finished, then close with unread data (RST).

    A request whose declared body is larger than ``body_limit`` bytes (or chunked)
    gets a ``status`` response with ``Connection: close`` right after its headers.
    The server waits until the response has left, then closes while the client is
    still uploading: the unread body turns the close into an RST, and the client
    usually sees the reset instead of the response. The request is not executed.

    Args:
        status: Status code of the early response (413 Content Too Large).
        body_limit: Largest body, in bytes, that is accepted and served normally.
    """

    causes: ClassVar[tuple[str, ...]] = ("C6",)
    status: int = 413
    body_limit: int = 1024

    def __post_init__(self) -> None:
        _check_int("status", self.status, minimum=200)
        if self.status > 599:
            raise ValueError(f"status must be between 200 and 599, got {self.status!r}")
        _check_int("body_limit", self.body_limit, minimum=0)


@dataclass(frozen=True, slots=True, kw_only=True)
class TruncatedBody(Behaviour):
    """C5, C7: execute the request, send fewer body bytes than Content-Length, close.

    Like a server that crashes (FIN) or aborts (RST) in the middle of a response.
    httpx reports ``RemoteProtocolError`` (incomplete body), requests a
    ``ChunkedEncodingError`` wrapping urllib3's ``ProtocolError``.

    Args:
        missing: Bytes announced in Content-Length but never sent.
        reset: Close with an RST (``SO_LINGER`` 0) instead of a FIN.
    """

    causes: ClassVar[tuple[str, ...]] = ("C5", "C7")
    missing: int = 16
    reset: bool = False

    def __post_init__(self) -> None:
        _check_int("missing", self.missing, minimum=1)
        _check_bool("reset", self.reset)


@dataclass(frozen=True, slots=True, kw_only=True)
class BlackHole(Behaviour):
    """C3: accept and read requests, never answer, never close (until the server stops).

    What a client sees behind a middlebox that silently dropped the connection: a
    hang that only a read timeout ends. Requests are read but not executed.
    """

    causes: ClassVar[tuple[str, ...]] = ("C3",)


@dataclass(frozen=True, slots=True, kw_only=True)
class AcceptQueueOverflow(Behaviour):
    """C4: a listener with a tiny backlog that never calls ``accept()``.

    The listener uses ``TCP_DEFER_ACCEPT`` (nginx's ``deferred``), so a client's
    handshake completes in the kernel only when its first data arrives. With
    ``prefill`` the server fills its own accept queue when it starts, so new
    clients' SYNs are dropped and ``connect()`` stalls while the client retransmits
    (``ListenOverflows`` grows). Without it, a test can connect first and call
    [`MisbehavingServer.fill_accept_queue`][rstsafe.testing.MisbehavingServer.fill_accept_queue]
    before the client writes: the
    client's first data then overflows the queue, and inside a namespace with
    ``net.ipv4.tcp_abort_on_overflow=1`` the kernel answers it with an RST
    (``ConnectionResetError`` on the client's read); otherwise it is dropped and the
    client waits.

    Args:
        backlog: The ``listen()`` backlog; the queue holds ``min(backlog, somaxconn) + 1``.
        prefill: Fill the accept queue when the server starts.
    """

    causes: ClassVar[tuple[str, ...]] = ("C4",)
    backlog: int = 1
    prefill: bool = True

    def __post_init__(self) -> None:
        _check_int("backlog", self.backlog, minimum=1)
        _check_bool("prefill", self.prefill)


@dataclass(frozen=True, slots=True, kw_only=True)
class AbortiveClose(Behaviour):
    """C5: answer one request, then close with ``SO_LINGER`` on, timeout 0 (RST).

    The response arrives intact; the connection is then reset instead of closed,
    so a client that reuses it gets ``ConnectionResetError`` on its next request.
    """

    causes: ClassVar[tuple[str, ...]] = ("C5",)


@dataclass(frozen=True, slots=True, kw_only=True)
class AdvertiseKeepAlive(Behaviour):
    """C1: send ``Keep-Alive: timeout=<advertised>`` but close idle connections after ``actual``.

    With ``actual`` below ``advertised`` the header lies, and a client that trusts
    it reuses connections the server has already closed (FIN). With the two equal
    it is an honest server a client can learn its idle TTL from.

    Args:
        advertised: Seconds announced in the ``Keep-Alive`` header.
        actual: Seconds of idleness after which the server really closes (FIN).
    """

    causes: ClassVar[tuple[str, ...]] = ("C1",)
    advertised: float = 5.0
    actual: float = 1.0

    def __post_init__(self) -> None:
        _check_duration("advertised", self.advertised, allow_zero=False)
        _check_duration("actual", self.actual, allow_zero=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Refuse(Behaviour):
    """C8: nothing listens on the port, so every connection attempt is refused.

    The server binds the port and keeps it bound without listening, so no other
    program can take it; a SYN to it is answered with an RST
    (``ConnectionRefusedError``). Nothing was sent, so any request may be retried.
    """

    causes: ClassVar[tuple[str, ...]] = ("C8",)


#: Behaviour classes by the kebab-case name ``rstsafe serve`` and ``rstsafe demo`` use.
BEHAVIOURS: Mapping[str, type[Behaviour]] = MappingProxyType(
    {
        "healthy": Healthy,
        "idle-close-with-lag": IdleCloseWithLag,
        "idle-drop": IdleDrop,
        "close-after-requests": CloseAfterRequests,
        "process-then-reset": ProcessThenReset,
        "reset-unread": ResetUnread,
        "early-response": EarlyResponse,
        "truncated-body": TruncatedBody,
        "black-hole": BlackHole,
        "accept-queue-overflow": AcceptQueueOverflow,
        "abortive-close": AbortiveClose,
        "advertise-keep-alive": AdvertiseKeepAlive,
        "refuse": Refuse,
    }
)
"""Every behaviour class by its command-line name (`rstsafe serve idle-drop`), read-only."""


def behaviour_name(behaviour: Behaviour | type[Behaviour]) -> str:
    """Return the kebab-case name of a behaviour (instance or class)."""
    cls = behaviour if isinstance(behaviour, type) else type(behaviour)
    for name, candidate in BEHAVIOURS.items():
        if candidate is cls:
            return name
    raise ValueError(f"behaviour: {cls.__name__} is not a registered behaviour")
