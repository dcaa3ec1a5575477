"""Errors, organised by the question that matters for retry: could the server have
received the request?

::

    RstsafeError(Exception)
    ├── RequestNotSentError      provably nothing reached the server: safe to resend
    └── RequestMaybeSentError    the server may have received (and acted on) it

Builtins (``ConnectionError``, ``TimeoutError``) are not shadowed. Each error carries
the last :class:`~rstsafe.Failure` (kind, delivery, connection facts) and the
:class:`~rstsafe.core.RetryHistory` of every attempt.

Adapters combine these with their library's own exception so that existing ``except``
clauses keep working::

    class NotSentConnectionError(rstsafe.RequestNotSentError,
                                 requests.exceptions.ConnectionError):
        pass

    raise NotSentConnectionError(message, failure=failure, history=history,
                                 request=prepared_request) from exc

``__init__`` is cooperative: it takes ``message`` first, its own facts as keyword-only
arguments, and passes every other argument on to the next class in the MRO (here
requests' ``RequestException``, which takes ``request=``/``response=``; for httpx,
``httpx.TransportError`` takes ``request=``). :func:`error_for` picks the class from
the failure's delivery.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from rstsafe._core.classify import Delivery, Failure, FailureKind
from rstsafe._core.retry import RetryHistory

__all__ = (
    "RequestMaybeSentError",
    "RequestNotSentError",
    "RstsafeError",
    "describe_failure",
    "error_for",
    "publish_errors",
)

_PREPOSITION = {
    FailureKind.RESET: "by",
    FailureKind.CLOSED: "by",
    FailureKind.REFUSED: "by",
    FailureKind.CONNECT_TIMEOUT: "to",
    FailureKind.CONNECT_ERROR: "to",
    FailureKind.UNREACHABLE: "for",
    FailureKind.NAME_RESOLUTION: "for",
    FailureKind.READ_TIMEOUT: "from",
    FailureKind.TRUNCATED_BODY: "from",
    FailureKind.WRITE_TIMEOUT: "to",
    FailureKind.BROKEN_PIPE: "to",
}


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def describe_failure(
    failure: Failure,
    *,
    history: RetryHistory | None = None,
    reason: str | None = None,
    keepalive: str | None = None,
) -> str:
    """A message a person can act on, built from the facts.

    For example: ``connection reset by 127.0.0.1:8080 after 3 requests, idle 4.98 s
    (server keep-alive learned: 5 s); POST not retried: not idempotent and the request
    may have been sent [ConnectionResetError: [Errno 104] Connection reset by peer]``.

    Args:
        failure: The last failure.
        history: Every attempt; its last decision's reason is used when ``reason`` is None.
        reason: Why the request was not retried (or is being retried).
        keepalive: A keep-alive summary, e.g. ``OriginKeepAlive.describe()``.

    Returns:
        One line of text.
    """
    facts = failure.facts
    text = failure.kind.value
    if facts.origin is not None:
        text += f" {_PREPOSITION.get(failure.kind, 'with')} {facts.origin}"
    details: list[str] = []
    if facts.reused is True:
        if facts.requests_served is not None:
            details.append(f"after {_plural(facts.requests_served, 'request')}")
        else:
            details.append("on a reused connection")
    elif facts.reused is False:
        details.append("on a fresh connection")
    if facts.idle_seconds is not None:
        details.append(f"idle {facts.idle_seconds:.2f} s")
    if facts.age_seconds is not None:
        details.append(f"age {facts.age_seconds:.2f} s")
    if facts.bytes_sent is not None or facts.bytes_received is not None:
        sent = "?" if facts.bytes_sent is None else str(facts.bytes_sent)
        received = "?" if facts.bytes_received is None else str(facts.bytes_received)
        details.append(f"{sent} bytes sent, {received} received")
    if details:
        text += " " + ", ".join(details)
    if keepalive:
        text += f" ({keepalive})"
    if reason is None and history is not None and history.last is not None:
        reason = history.last.decision.reason
    if reason:
        text += f"; {reason}"
    if history is not None and len(history) > 1:
        text += f" ({_plural(len(history), 'attempt')})"
    if failure.detail:
        text += f" [{failure.detail}]"
    return text


def _without_exception(failure: Failure | None) -> Failure | None:
    """``failure`` without the exception object it was classified from (for pickling)."""
    if failure is None or failure.exception is None:
        return failure
    return dataclasses.replace(failure, exception=None)


def _picklable_history(history: RetryHistory) -> RetryHistory:
    return RetryHistory(
        tuple(
            dataclasses.replace(attempt, failure=_without_exception(attempt.failure))
            for attempt in history.attempts
        )
    )


def _picklable(value: Any) -> Any:
    """``value`` if it pickles, else None (a host exception holding a socket or a pool)."""
    import pickle  # here (loaded by then when pickling): ``import rstsafe.requests`` needs none

    try:
        pickle.dumps(value)
    except Exception:
        return None
    return value


def _restore(cls: type[RstsafeError], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Unpickle an rstsafe error: the host's ``args`` as they were, then the attributes."""
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class RstsafeError(Exception):
    """Base of rstsafe's errors: a request failed and was not (or no longer) retried.

    Two ways to build one:

    * ``RstsafeError(message, *args, failure=..., history=...)``: rstsafe's own error;
      ``args`` is ``(message, *args)`` and ``str()`` is the message.
    * ``Cls(message, failure=..., history=..., host_args=(...), **kwargs)`` for an adapter
      class that also inherits from a host library's exception: the host's constructor gets
      exactly ``host_args`` and ``kwargs``, so ``args`` (and every attribute the host sets)
      are the host's, as if the host had raised it; ``str()`` is the host's text followed by
      ``[rstsafe: message]``.

    Every rstsafe error pickles with its facts (``failure`` without the exception object it
    was classified from, ``history``, ``message`` and the host's ``args``); attributes named
    in ``_unpicklable`` (urllib3's ``pool``) become None, as urllib3 does for its own errors,
    and so does any other attribute that does not pickle.

    Attributes:
        message: The human-readable message (rstsafe's explanation).
        failure: The last attempt's classification, if any.
        history: Every failed attempt with the decision taken.
    """

    message: str
    failure: Failure | None
    history: RetryHistory
    _unpicklable: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        message: str | None = None,
        *args: Any,
        failure: Failure | None = None,
        history: RetryHistory | None = None,
        host_args: tuple[Any, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        """Create the error; extra arguments go to the next class in the MRO.

        Args:
            message: The message; built with [`describe_failure`][rstsafe.core.describe_failure]
                when None.
            *args: Passed on after the message (for mixins with library exceptions).
            failure: The last failure.
            history: Every attempt made.
            host_args: The host exception's own positional arguments, passed on instead
                of ``(message, *args)``: ``args`` is then exactly the host's.
            **kwargs: Passed on (e.g. ``request=`` for requests' and httpx' exceptions).

        Raises:
            TypeError: Both ``*args`` and ``host_args`` were given.
        """
        history = history if history is not None else RetryHistory()
        if message is None:
            message = (
                describe_failure(failure, history=history)
                if failure is not None
                else "request failed"
            )
        self.message = message
        self.failure = failure
        self.history = history
        if host_args is not None:
            if args:
                raise TypeError("host_args: give either positional arguments or host_args")
            self._host_args = True
            super().__init__(*host_args, **kwargs)
        else:
            self._host_args = False
            super().__init__(message, *args, **kwargs)

    @property
    def delivery(self) -> Delivery | None:
        """Whether the server could have received the request, if known."""
        return self.failure.delivery if self.failure is not None else None

    @property
    def attempts(self) -> int:
        """How many attempts failed (at least 1 when a failure is known)."""
        return max(len(self.history), 1 if self.failure is not None else 0)

    @property
    def reused(self) -> bool | None:
        """Whether the last attempt's connection had served earlier requests, if known."""
        return self.failure.facts.reused if self.failure is not None else None

    @property
    def idle_seconds(self) -> float | None:
        """How long the last attempt's connection had been idle, if known."""
        return self.failure.facts.idle_seconds if self.failure is not None else None

    def __str__(self) -> str:
        if self.__dict__.get("_host_args"):
            text = super().__str__()
            if self.args and isinstance(self.args[0], RstsafeError):
                return text  # the wrapped rstsafe error's text already says it
            return f"{text} [rstsafe: {self.message}]"
        return self.message

    def __reduce__(self) -> tuple[Any, ...]:
        state = dict(self.__dict__)
        state["failure"] = _without_exception(state.get("failure"))
        if isinstance(state.get("history"), RetryHistory):
            state["history"] = _picklable_history(state["history"])
        for name in self._unpicklable:
            if name in state:
                state[name] = None
        # What the host attached may not pickle on every version (urllib3 2.0's
        # NewConnectionError keeps its connection): such a value is dropped, not the error.
        state = {name: _picklable(value) for name, value in state.items()}
        return (_restore, (type(self), self.args, state))


class RequestNotSentError(RstsafeError):
    """Provably nothing of the request reached the server; resending is safe."""


class RequestMaybeSentError(RstsafeError):
    """The server may have received the request, and may have acted on it."""


def error_for(
    failure: Failure,
    *,
    history: RetryHistory | None = None,
    keepalive: str | None = None,
    message: str | None = None,
    not_sent_cls: type[RstsafeError] = RequestNotSentError,
    maybe_sent_cls: type[RstsafeError] = RequestMaybeSentError,
    **kwargs: Any,
) -> RstsafeError:
    """Build the error for a failure, choosing the class by its delivery.

    Adapters pass their mixin subclasses, e.g.
    ``raise error_for(failure, history=h, not_sent_cls=MyNotSent,
    maybe_sent_cls=MyMaybeSent, request=request) from exc``.

    Args:
        failure: The last failure.
        history: Every attempt.
        keepalive: A keep-alive summary for the message.
        message: The message (default: [`describe_failure`][rstsafe.core.describe_failure]).
        not_sent_cls: The class for ``NOT_SENT`` failures.
        maybe_sent_cls: The class for ``MAYBE_SENT`` failures.
        **kwargs: Passed to the class (e.g. ``request=``).

    Returns:
        An instance of ``not_sent_cls`` or ``maybe_sent_cls`` (not raised).
    """
    if message is None:
        message = describe_failure(failure, history=history, keepalive=keepalive)
    cls = not_sent_cls if failure.delivery is Delivery.NOT_SENT else maybe_sent_cls
    return cls(message, failure=failure, history=history, **kwargs)


def publish_errors(module: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Give the exception classes among ``names`` the public module that exports them.

    A traceback's last line and a pickle name a class by its ``__module__``: with this,
    users read (and pickles refer to) ``rstsafe.requests.NotSentConnectionError``, not the
    private module it is written in. Only classes of a private submodule of ``module``
    are renamed; each must be exported by ``module`` under its own name, so that pickle
    finds it there.
    """
    for name in names:
        obj = namespace[name]
        if (
            isinstance(obj, type)
            and issubclass(obj, BaseException)
            and obj.__module__.startswith(module + "._")
            and obj.__qualname__ == name
        ):
            obj.__module__ = module


# The root exports these (lazily: pickle's lookup of rstsafe.RstsafeError imports them).
publish_errors(
    "rstsafe", globals(), ("RstsafeError", "RequestNotSentError", "RequestMaybeSentError")
)
