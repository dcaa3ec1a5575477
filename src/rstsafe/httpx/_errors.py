"""The errors rstsafe.httpx raises when it acted on a request: static, picklable classes.

rstsafe acts on a request when an attempt met a stale *reused* connection (it resends it
at once when that is safe, or says why not). The error it raises then is a subclass of
the exact httpx class the last attempt raised, with httpx's ``args`` and ``request``,
and of ``rstsafe.RequestNotSentError`` (provably nothing reached the server) or
``rstsafe.RequestMaybeSentError``, carrying the facts (``failure``, ``history``,
``attempts``) and a message built from them (``str(error)``):

```python
NotSentReadError(rstsafe.RequestNotSentError, httpx.ReadError)
MaybeSentReadError(rstsafe.RequestMaybeSentError, httpx.ReadError)
```

One pair per httpx transport error that httpx maps httpcore's exceptions to. Any other
failure (not on a stale reused connection, and no earlier attempt resent) passes through
unchanged: the very exception httpx raised.
"""

from __future__ import annotations

from typing import Any

import httpx

from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError

__all__ = (
    "MaybeSentConnectError",
    "MaybeSentConnectTimeout",
    "MaybeSentLocalProtocolError",
    "MaybeSentNetworkError",
    "MaybeSentPoolTimeout",
    "MaybeSentProtocolError",
    "MaybeSentProxyError",
    "MaybeSentReadError",
    "MaybeSentReadTimeout",
    "MaybeSentRemoteProtocolError",
    "MaybeSentTimeoutException",
    "MaybeSentWriteError",
    "MaybeSentWriteTimeout",
    "NotSentConnectError",
    "NotSentConnectTimeout",
    "NotSentLocalProtocolError",
    "NotSentNetworkError",
    "NotSentPoolTimeout",
    "NotSentProtocolError",
    "NotSentProxyError",
    "NotSentReadError",
    "NotSentReadTimeout",
    "NotSentRemoteProtocolError",
    "NotSentTimeoutException",
    "NotSentWriteError",
    "NotSentWriteTimeout",
    "error_classes",
)


class _HttpxError(RstsafeError):
    """What every class here shares: pickling with the facts, httpx's ``args``.

    ``args`` are httpx's (the message of the exception rstsafe acted on); ``str()`` is
    rstsafe's message, which ends with that text in brackets.
    """

    def __reduce__(self) -> tuple[Any, ...]:
        # cls(*args) rebuilds the httpx part; the state restores message, failure,
        # history and httpx's request.
        return (type(self), self.args, dict(self.__dict__))


class NotSentConnectError(_HttpxError, RequestNotSentError, httpx.ConnectError):
    """httpx raised ``ConnectError``; rstsafe acted. Nothing was sent."""


class MaybeSentConnectError(_HttpxError, RequestMaybeSentError, httpx.ConnectError):
    """httpx raised ``ConnectError``; rstsafe acted. Maybe sent."""


class NotSentConnectTimeout(_HttpxError, RequestNotSentError, httpx.ConnectTimeout):
    """httpx raised ``ConnectTimeout``; rstsafe acted. Nothing was sent."""


class MaybeSentConnectTimeout(_HttpxError, RequestMaybeSentError, httpx.ConnectTimeout):
    """httpx raised ``ConnectTimeout``; rstsafe acted. Maybe sent."""


class NotSentReadError(_HttpxError, RequestNotSentError, httpx.ReadError):
    """httpx raised ``ReadError``; rstsafe acted. Nothing was sent."""


class MaybeSentReadError(_HttpxError, RequestMaybeSentError, httpx.ReadError):
    """httpx raised ``ReadError``; rstsafe acted. Maybe sent."""


class NotSentReadTimeout(_HttpxError, RequestNotSentError, httpx.ReadTimeout):
    """httpx raised ``ReadTimeout``; rstsafe acted. Nothing was sent."""


class MaybeSentReadTimeout(_HttpxError, RequestMaybeSentError, httpx.ReadTimeout):
    """httpx raised ``ReadTimeout``; rstsafe acted. Maybe sent."""


class NotSentWriteError(_HttpxError, RequestNotSentError, httpx.WriteError):
    """httpx raised ``WriteError``; rstsafe acted. Nothing was sent."""


class MaybeSentWriteError(_HttpxError, RequestMaybeSentError, httpx.WriteError):
    """httpx raised ``WriteError``; rstsafe acted. Maybe sent."""


class NotSentWriteTimeout(_HttpxError, RequestNotSentError, httpx.WriteTimeout):
    """httpx raised ``WriteTimeout``; rstsafe acted. Nothing was sent."""


class MaybeSentWriteTimeout(_HttpxError, RequestMaybeSentError, httpx.WriteTimeout):
    """httpx raised ``WriteTimeout``; rstsafe acted. Maybe sent."""


class NotSentPoolTimeout(_HttpxError, RequestNotSentError, httpx.PoolTimeout):
    """httpx raised ``PoolTimeout``; rstsafe acted. Nothing was sent."""


class MaybeSentPoolTimeout(_HttpxError, RequestMaybeSentError, httpx.PoolTimeout):
    """httpx raised ``PoolTimeout``; rstsafe acted. Maybe sent."""


class NotSentRemoteProtocolError(_HttpxError, RequestNotSentError, httpx.RemoteProtocolError):
    """httpx raised ``RemoteProtocolError``; rstsafe acted. Nothing was sent."""


class MaybeSentRemoteProtocolError(_HttpxError, RequestMaybeSentError, httpx.RemoteProtocolError):
    """httpx raised ``RemoteProtocolError``; rstsafe acted. Maybe sent."""


class NotSentLocalProtocolError(_HttpxError, RequestNotSentError, httpx.LocalProtocolError):
    """httpx raised ``LocalProtocolError``; rstsafe acted. Nothing was sent."""


class MaybeSentLocalProtocolError(_HttpxError, RequestMaybeSentError, httpx.LocalProtocolError):
    """httpx raised ``LocalProtocolError``; rstsafe acted. Maybe sent."""


class NotSentProxyError(_HttpxError, RequestNotSentError, httpx.ProxyError):
    """httpx raised ``ProxyError``; rstsafe acted. Nothing was sent."""


class MaybeSentProxyError(_HttpxError, RequestMaybeSentError, httpx.ProxyError):
    """httpx raised ``ProxyError``; rstsafe acted. Maybe sent."""


class NotSentNetworkError(_HttpxError, RequestNotSentError, httpx.NetworkError):
    """httpx raised ``NetworkError``; rstsafe acted. Nothing was sent."""


class MaybeSentNetworkError(_HttpxError, RequestMaybeSentError, httpx.NetworkError):
    """httpx raised ``NetworkError``; rstsafe acted. Maybe sent."""


class NotSentProtocolError(_HttpxError, RequestNotSentError, httpx.ProtocolError):
    """httpx raised ``ProtocolError``; rstsafe acted. Nothing was sent."""


class MaybeSentProtocolError(_HttpxError, RequestMaybeSentError, httpx.ProtocolError):
    """httpx raised ``ProtocolError``; rstsafe acted. Maybe sent."""


class NotSentTimeoutException(_HttpxError, RequestNotSentError, httpx.TimeoutException):
    """httpx raised ``TimeoutException``; rstsafe acted. Nothing was sent."""


class MaybeSentTimeoutException(_HttpxError, RequestMaybeSentError, httpx.TimeoutException):
    """httpx raised ``TimeoutException``; rstsafe acted. Maybe sent."""


_ERROR_CLASSES: dict[type[httpx.TransportError], tuple[type[RstsafeError], type[RstsafeError]]] = {
    httpx.ConnectError: (NotSentConnectError, MaybeSentConnectError),
    httpx.ConnectTimeout: (NotSentConnectTimeout, MaybeSentConnectTimeout),
    httpx.ReadError: (NotSentReadError, MaybeSentReadError),
    httpx.ReadTimeout: (NotSentReadTimeout, MaybeSentReadTimeout),
    httpx.WriteError: (NotSentWriteError, MaybeSentWriteError),
    httpx.WriteTimeout: (NotSentWriteTimeout, MaybeSentWriteTimeout),
    httpx.PoolTimeout: (NotSentPoolTimeout, MaybeSentPoolTimeout),
    httpx.RemoteProtocolError: (NotSentRemoteProtocolError, MaybeSentRemoteProtocolError),
    httpx.LocalProtocolError: (NotSentLocalProtocolError, MaybeSentLocalProtocolError),
    httpx.ProxyError: (NotSentProxyError, MaybeSentProxyError),
    httpx.NetworkError: (NotSentNetworkError, MaybeSentNetworkError),
    httpx.ProtocolError: (NotSentProtocolError, MaybeSentProtocolError),
    httpx.TimeoutException: (NotSentTimeoutException, MaybeSentTimeoutException),
}


def error_classes(
    base: type[httpx.TransportError],
) -> tuple[type[RstsafeError], type[RstsafeError]]:
    """The ``(not sent, maybe sent)`` classes rstsafe raises for the httpx class ``base``.

    For ``httpx.ReadError``: ``(NotSentReadError, MaybeSentReadError)``. An rstsafe
    class gives the pair of the httpx class under it.

    Raises:
        ValueError: ``base`` is not one of the httpx errors rstsafe raises a subclass of.
    """
    pair = _ERROR_CLASSES.get(base)
    if pair is None and isinstance(base, type) and issubclass(base, _HttpxError):
        pair = next((_ERROR_CLASSES[c] for c in base.__mro__ if c in _ERROR_CLASSES), None)
    if pair is None:
        raise ValueError(f"base must be one of httpx's transport errors, got {base!r}")
    return pair


def error_pair(exc: BaseException) -> tuple[type[RstsafeError], type[RstsafeError]] | None:
    """The pair for the exact class of ``exc``, or None (then ``exc`` passes through)."""
    cls: Any = type(exc)
    return _ERROR_CLASSES.get(cls)
