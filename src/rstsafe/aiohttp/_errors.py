"""The errors rstsafe.aiohttp raises: each one is also the exact aiohttp exception.

One static pair per aiohttp exception type rstsafe acts on, ``NotSent<Name>`` and
``MaybeSent<Name>``: ``MaybeSentClientOSError`` is a :class:`rstsafe.RequestMaybeSentError`
and an :class:`aiohttp.ClientOSError`, so ``except aiohttp.ClientOSError`` (and
``except aiohttp.ClientError``) keeps working while ``except rstsafe.RequestNotSentError``
sees the facts. ``args`` are aiohttp's own (``errno``, ``os_error``, ``host`` ... work as
on the original); ``str()`` is rstsafe's message; ``failure`` and ``history`` carry the
facts. A failure of a type outside :data:`ERROR_CLASSES` is raised unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp

from rstsafe._core.classify import Delivery, Failure
from rstsafe._core.errors import RequestMaybeSentError, RequestNotSentError, RstsafeError
from rstsafe._core.retry import Attempt, RetryHistory

__all__ = (
    "ERROR_CLASSES",
    "MaybeSentClientConnectionError",
    "MaybeSentClientConnectionResetError",
    "MaybeSentClientConnectorError",
    "MaybeSentClientOSError",
    "MaybeSentClientPayloadError",
    "MaybeSentConnectionTimeoutError",
    "MaybeSentServerDisconnectedError",
    "MaybeSentServerTimeoutError",
    "MaybeSentSocketTimeoutError",
    "NotSentClientConnectionError",
    "NotSentClientConnectionResetError",
    "NotSentClientConnectorError",
    "NotSentClientOSError",
    "NotSentClientPayloadError",
    "NotSentConnectionTimeoutError",
    "NotSentServerDisconnectedError",
    "NotSentServerTimeoutError",
    "NotSentSocketTimeoutError",
    "build_error",
)


def _without_exception(failure: Failure | None) -> Failure | None:
    # The classified exception can hold sockets, SSL contexts, the request: not pickled.
    return None if failure is None else dataclasses.replace(failure, exception=None)


def _history_without_exceptions(history: RetryHistory) -> RetryHistory:
    return RetryHistory(
        tuple(
            Attempt(decision=a.decision, failure=_without_exception(a.failure), status=a.status)
            for a in history.attempts
        )
    )


def _rebuild(
    cls: type[_AiohttpError],
    args: tuple[Any, ...],
    message: str,
    failure: Failure | None,
    history: RetryHistory,
) -> _AiohttpError:
    return cls(*args, message=message, failure=failure, history=history)


class _AiohttpError(RstsafeError):
    """Construction and pickling shared by every class below.

    ``__init__`` takes aiohttp's own arguments positionally (they go to the aiohttp
    class, so its attributes are set as aiohttp sets them) and rstsafe's as keywords.
    """

    _aiohttp_class: type[aiohttp.ClientError]

    def __init__(
        self,
        *args: Any,
        message: str,
        failure: Failure | None = None,
        history: RetryHistory | None = None,
    ) -> None:
        self._aiohttp_class.__init__(self, *args)
        # ServerDisconnectedError keeps its own text in ``message``; rstsafe's replaces
        # it (aiohttp's stays in ``args``).
        self.message = message
        self.failure = failure
        self.history = history if history is not None else RetryHistory()

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild,
            (
                type(self),
                tuple(self.args),
                self.message,
                _without_exception(self.failure),
                _history_without_exceptions(self.history),
            ),
        )


class NotSentClientConnectionError(
    _AiohttpError, RequestNotSentError, aiohttp.ClientConnectionError
):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ClientConnectionError`` and a [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ClientConnectionError


class MaybeSentClientConnectionError(
    _AiohttpError, RequestMaybeSentError, aiohttp.ClientConnectionError
):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ClientConnectionError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ClientConnectionError


class NotSentClientOSError(_AiohttpError, RequestNotSentError, aiohttp.ClientOSError):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ClientOSError`` and a [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ClientOSError


class MaybeSentClientOSError(_AiohttpError, RequestMaybeSentError, aiohttp.ClientOSError):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ClientOSError`` and a [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ClientOSError


class NotSentClientConnectionResetError(
    _AiohttpError, RequestNotSentError, aiohttp.ClientConnectionResetError
):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ClientConnectionResetError`` and a
    [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ClientConnectionResetError


class MaybeSentClientConnectionResetError(
    _AiohttpError, RequestMaybeSentError, aiohttp.ClientConnectionResetError
):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ClientConnectionResetError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ClientConnectionResetError


class NotSentClientConnectorError(_AiohttpError, RequestNotSentError, aiohttp.ClientConnectorError):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ClientConnectorError`` and a [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ClientConnectorError


class MaybeSentClientConnectorError(
    _AiohttpError, RequestMaybeSentError, aiohttp.ClientConnectorError
):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ClientConnectorError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ClientConnectorError


class NotSentServerDisconnectedError(  # type: ignore[misc] # message: str, see __init__
    _AiohttpError, RequestNotSentError, aiohttp.ServerDisconnectedError
):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ServerDisconnectedError`` and a
    [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ServerDisconnectedError


class MaybeSentServerDisconnectedError(  # type: ignore[misc] # message: str, see __init__
    _AiohttpError, RequestMaybeSentError, aiohttp.ServerDisconnectedError
):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ServerDisconnectedError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ServerDisconnectedError


class NotSentServerTimeoutError(_AiohttpError, RequestNotSentError, aiohttp.ServerTimeoutError):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ServerTimeoutError`` and a [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ServerTimeoutError


class MaybeSentServerTimeoutError(_AiohttpError, RequestMaybeSentError, aiohttp.ServerTimeoutError):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ServerTimeoutError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ServerTimeoutError


class NotSentConnectionTimeoutError(
    _AiohttpError, RequestNotSentError, aiohttp.ConnectionTimeoutError
):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ConnectionTimeoutError`` and a
    [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ConnectionTimeoutError


class MaybeSentConnectionTimeoutError(
    _AiohttpError, RequestMaybeSentError, aiohttp.ConnectionTimeoutError
):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ConnectionTimeoutError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ConnectionTimeoutError


class NotSentSocketTimeoutError(_AiohttpError, RequestNotSentError, aiohttp.SocketTimeoutError):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.SocketTimeoutError`` and a [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.SocketTimeoutError


class MaybeSentSocketTimeoutError(_AiohttpError, RequestMaybeSentError, aiohttp.SocketTimeoutError):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.SocketTimeoutError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.SocketTimeoutError


class NotSentClientPayloadError(_AiohttpError, RequestNotSentError, aiohttp.ClientPayloadError):
    """rstsafe gave up on a request that provably never reached the server.

    An ``aiohttp.ClientPayloadError`` and a [`RequestNotSentError`][rstsafe.RequestNotSentError].
    """

    _aiohttp_class = aiohttp.ClientPayloadError


class MaybeSentClientPayloadError(_AiohttpError, RequestMaybeSentError, aiohttp.ClientPayloadError):
    """rstsafe gave up on a request the server may have received.

    An ``aiohttp.ClientPayloadError`` and a
    [`RequestMaybeSentError`][rstsafe.RequestMaybeSentError].
    """

    _aiohttp_class = aiohttp.ClientPayloadError


ERROR_CLASSES: dict[type[BaseException], tuple[type[_AiohttpError], type[_AiohttpError]]] = {
    aiohttp.ClientConnectionError: (NotSentClientConnectionError, MaybeSentClientConnectionError),
    aiohttp.ClientOSError: (NotSentClientOSError, MaybeSentClientOSError),
    aiohttp.ClientConnectionResetError: (
        NotSentClientConnectionResetError,
        MaybeSentClientConnectionResetError,
    ),
    aiohttp.ClientConnectorError: (NotSentClientConnectorError, MaybeSentClientConnectorError),
    aiohttp.ServerDisconnectedError: (
        NotSentServerDisconnectedError,
        MaybeSentServerDisconnectedError,
    ),
    aiohttp.ServerTimeoutError: (NotSentServerTimeoutError, MaybeSentServerTimeoutError),
    aiohttp.ConnectionTimeoutError: (
        NotSentConnectionTimeoutError,
        MaybeSentConnectionTimeoutError,
    ),
    aiohttp.SocketTimeoutError: (NotSentSocketTimeoutError, MaybeSentSocketTimeoutError),
    aiohttp.ClientPayloadError: (NotSentClientPayloadError, MaybeSentClientPayloadError),
}
"""``(not sent, maybe sent)`` classes by the exact aiohttp exception type they extend."""


def build_error(
    exc: BaseException, failure: Failure, history: RetryHistory, message: str
) -> RstsafeError | None:
    """rstsafe's error for ``exc`` (the last attempt's), or None when its type has no pair.

    The class is chosen by the exact type of ``exc`` and the failure's delivery.
    """
    pair = ERROR_CLASSES.get(type(exc))
    if pair is None:
        return None
    cls = pair[0] if failure.delivery is Delivery.NOT_SENT else pair[1]
    return cls(*exc.args, message=message, failure=failure, history=history)
