"""Idempotency and replayability: may this request be sent a second time?

Two independent questions decide it:

1. Is the *method* safe to repeat? RFC 9110 section 9.2.2 names GET, HEAD, OPTIONS,
   TRACE, PUT and DELETE idempotent. A request of any other method becomes repeatable
   when it carries an idempotency key (``Idempotency-Key``, the IETF httpapi draft, or
   ``X-Idempotency-Key``), which is also what Go's ``isReplayable`` accepts.
2. Can the *body* be sent again? Bytes can; a seekable file can after a rewind to where
   it started; a generator, an iterator or a consumed stream cannot.

The rules are data (:class:`IdempotencyRules`), so users can widen or narrow them.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Iterable, Mapping
from typing import Protocol, TypeAlias, runtime_checkable

__all__ = (
    "DEFAULT_IDEMPOTENCY_RULES",
    "NO_BODY",
    "BodyInfo",
    "BodyKind",
    "HeadersLike",
    "IdempotencyRules",
    "Replayability",
    "describe_body",
    "replayability",
    "rewind_body",
)

# RFC 9110 section 9.2.2. Go's isReplayable is narrower (GET, HEAD, OPTIONS, TRACE
# only); urllib3's Retry.DEFAULT_ALLOWED_METHODS is exactly this set.
_RFC9110_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE"})
_IDEMPOTENCY_HEADERS = frozenset({"idempotency-key", "x-idempotency-key"})


class BodyKind(enum.Enum):
    """What a request body is, as far as sending it again goes."""

    NONE = "no body"
    """No body at all (or an empty one)."""
    BYTES = "in-memory bytes"
    """``bytes``, ``str``, ``bytearray``, ``memoryview``, or a re-iterable container."""
    SEEKABLE = "seekable file"
    """A file-like object that can be rewound to its start position."""
    STREAM = "stream"
    """A generator, iterator, async iterator or unseekable file: read once."""
    CONSUMED = "consumed stream"
    """A stream already (partly) read; can never be sent again."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class BodyInfo:
    """A description of a request body.

    Attributes:
        kind: What the body is.
        start: For ``SEEKABLE`` bodies, the position to rewind to before a resend.
        length: The body length in bytes when known.
    """

    kind: BodyKind
    start: int | None = None
    length: int | None = None

    def __post_init__(self) -> None:
        if self.kind is BodyKind.SEEKABLE and (self.start is None or self.start < 0):
            raise ValueError(f"start must be >= 0 for a seekable body, got {self.start!r}")
        if self.length is not None and self.length < 0:
            raise ValueError(f"length must be >= 0 or None, got {self.length!r}")

    @property
    def replayable(self) -> bool:
        """True when the body can be sent again (after [`rewind_body`][rstsafe.core.rewind_body] if
        seekable)."""
        return self.kind in (BodyKind.NONE, BodyKind.BYTES, BodyKind.SEEKABLE)


HeadersLike: TypeAlias = (
    Mapping[str, str] | Mapping[bytes, bytes] | Iterable[tuple[str | bytes, str | bytes]]
)
"""Request headers: a mapping, or an iterable of ``(name, value)`` pairs (str or bytes)."""

NO_BODY = BodyInfo(kind=BodyKind.NONE, length=0)


@runtime_checkable
class _Seekable(Protocol):
    def seek(self, offset: int, whence: int = ..., /) -> int: ...

    def tell(self) -> int: ...


def describe_body(body: object) -> BodyInfo:
    """Describe a common Python request body: can it be sent again?

    ``None`` and empty bytes are ``NONE``; ``bytes``, ``str``, ``bytearray``,
    ``memoryview``, ``dict`` (form fields) and ``list``/``tuple`` (re-iterable chunks)
    are ``BYTES``; an object with working ``seek()`` and ``tell()`` (and ``seekable()``
    not False) is ``SEEKABLE`` from its current position; anything else iterable,
    including generators, iterators and async iterators, is ``STREAM``. Unknown
    objects are ``STREAM``: when in doubt, not replayable. Never raises.

    Call it *before* the first attempt: the start position of a file is where it is now.

    Args:
        body: The body as the user passed it.

    Returns:
        The body's [`BodyInfo`][rstsafe.core.BodyInfo].
    """
    if body is None:
        return NO_BODY
    if isinstance(body, (bytes, bytearray, memoryview, str)):
        size = len(body) if not isinstance(body, memoryview) else body.nbytes
        return NO_BODY if size == 0 else BodyInfo(kind=BodyKind.BYTES, length=size)
    if isinstance(body, (dict, list, tuple)):
        return BodyInfo(kind=BodyKind.BYTES)
    if isinstance(body, _Seekable):
        try:
            seekable = getattr(body, "seekable", None)
            if callable(seekable) and not seekable():
                return BodyInfo(kind=BodyKind.STREAM)
            start = body.tell()
        except (OSError, ValueError, AttributeError):
            # ValueError: closed file; OSError: pipes and sockets ("Illegal seek").
            return BodyInfo(kind=BodyKind.STREAM)
        if isinstance(start, int) and start >= 0:
            return BodyInfo(kind=BodyKind.SEEKABLE, start=start)
    return BodyInfo(kind=BodyKind.STREAM)


def rewind_body(body: object, info: BodyInfo) -> None:
    """Rewind a ``SEEKABLE`` body to where it started, before sending it again.

    Args:
        body: The body object that [`describe_body`][rstsafe.core.describe_body] described as
            ``info``.
        info: Its description.

    Raises:
        ValueError: When the body is not replayable.
        OSError: When ``seek()`` fails.
    """
    if not info.replayable:
        raise ValueError(f"cannot rewind a body of kind {info.kind.value!r}")
    if info.kind is BodyKind.SEEKABLE and isinstance(body, _Seekable):
        assert info.start is not None  # checked in BodyInfo.__post_init__
        body.seek(info.start)


def _normalise_methods(name: str, values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        raise ValueError(f"{name} must be a collection of strings, not one string")
    out = frozenset(v.strip().upper() for v in values)
    if any(not v for v in out):
        raise ValueError(f"{name} must not contain empty names")
    return out


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class IdempotencyRules:
    """Which requests may be repeated (frozen; derive variants with ``dataclasses.replace``).

    Attributes:
        idempotent_methods: Methods safe to repeat; compared upper-case. Default: RFC 9110
            GET, HEAD, OPTIONS, TRACE, PUT, DELETE.
        idempotency_headers: Header names whose presence makes any method repeatable;
            compared case-insensitively. Default: ``Idempotency-Key``,
            ``X-Idempotency-Key``. An empty value still counts (as in Go).
    """

    idempotent_methods: frozenset[str] = _RFC9110_IDEMPOTENT
    idempotency_headers: frozenset[str] = _IDEMPOTENCY_HEADERS

    def __post_init__(self) -> None:
        object.__setattr__(
            self,
            "idempotent_methods",
            _normalise_methods("idempotent_methods", self.idempotent_methods),
        )
        given: object = self.idempotency_headers
        if isinstance(given, str):
            raise ValueError("idempotency_headers must be a collection of strings")
        headers = frozenset(h.strip().lower() for h in self.idempotency_headers)
        if any(not h for h in headers):
            raise ValueError("idempotency_headers must not contain empty names")
        object.__setattr__(self, "idempotency_headers", headers)

    def is_idempotent(
        self,
        method: str,
        headers: HeadersLike | None = None,
    ) -> bool:
        """True when the method is idempotent or the headers carry an idempotency key."""
        if method.strip().upper() in self.idempotent_methods:
            return True
        return self._idempotency_header(headers) is not None

    def _idempotency_header(self, headers: object) -> str | None:
        if headers is None:
            return None
        names: Iterable[object]
        if isinstance(headers, Mapping):
            names = headers.keys()
        elif isinstance(headers, Iterable):
            names = (pair[0] for pair in headers if isinstance(pair, tuple) and pair)
        else:
            return None
        for name in names:
            text = name.decode("latin-1") if isinstance(name, bytes) else str(name)
            if text.strip().lower() in self.idempotency_headers:
                return text
        return None


DEFAULT_IDEMPOTENCY_RULES = IdempotencyRules()
"""The default rules: RFC 9110 idempotent methods, ``Idempotency-Key``/``X-Idempotency-Key``."""


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Replayability:
    """Whether a request may be sent again, and why not.

    Attributes:
        method: The request method, upper-case.
        idempotent: The method is idempotent or the request carries an idempotency key.
        body: The body description.
        reason: Why the request is not replayable (``None`` when it is), phrased to
            follow "POST not retried: ".
    """

    method: str
    idempotent: bool
    body: BodyInfo
    reason: str | None = None

    @property
    def body_replayable(self) -> bool:
        """True when the body can be sent again."""
        return self.body.replayable

    @property
    def replayable(self) -> bool:
        """True when the request may be sent again even if the server received it."""
        return self.idempotent and self.body.replayable


def replayability(
    method: str,
    headers: HeadersLike | None = None,
    body: object = None,
    *,
    rules: IdempotencyRules = DEFAULT_IDEMPOTENCY_RULES,
) -> Replayability:
    """Decide whether a request may be sent again, and say why not.

    Args:
        method: The HTTP method (any case).
        headers: A mapping (``dict``, ``requests``' or ``httpx``' headers, urllib3's
            ``HTTPHeaderDict``) or an iterable of ``(name, value)`` pairs, ``str`` or
            ``bytes``.
        body: Either a [`BodyInfo`][rstsafe.core.BodyInfo], or the body object itself (described
            with
            [`describe_body`][rstsafe.core.describe_body]; do this before the first attempt for
            files).
        rules: Which methods and headers count as idempotent.

    Returns:
        A [`Replayability`][rstsafe.core.Replayability]; ``replayable`` is True only when both the
        method
        (or an idempotency key) and the body allow a resend.
    """
    upper = method.strip().upper()
    info = body if isinstance(body, BodyInfo) else describe_body(body)
    idempotent = rules.is_idempotent(upper, headers)
    reason: str | None = None
    if not idempotent:
        reason = f"{upper} is not idempotent and carries no idempotency key"
    elif not info.replayable:
        reason = f"its body is a {info.kind.value} that cannot be sent again"
    return Replayability(method=upper, idempotent=idempotent, body=info, reason=reason)
