"""rstsafe: HTTP and TCP clients that survive "Connection reset by peer".

The public surface is re-exported here; the implementation lives in private
``_modules``. Public subpackages exist only where users import them:
``rstsafe.testing`` (the misbehaving server and pytest plugin) and the adapters
``rstsafe.requests``, ``rstsafe.urllib3`` and ``rstsafe.httpx``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from rstsafe._core.budget import RetryBudget
from rstsafe._core.classify import ConnectionFacts, Delivery, Failure, FailureKind, Origin, classify
from rstsafe._core.errors import (
    RequestMaybeSentError,
    RequestNotSentError,
    RstsafeError,
    describe_failure,
    error_for,
)
from rstsafe._core.idempotency import (
    BodyInfo,
    BodyKind,
    IdempotencyRules,
    Replayability,
    describe_body,
    replayability,
    rewind_body,
)
from rstsafe._core.keepalive import (
    IdleTTL,
    KeepAlive,
    KeepAliveHeader,
    KeepAliveRegistry,
    OriginKeepAlive,
    TTLSource,
    parse_keep_alive,
)
from rstsafe._core.retry import (
    Attempt,
    RetryAction,
    RetryDecision,
    RetryHistory,
    RetryPolicy,
    parse_retry_after,
    retry_if_safe,
)
from rstsafe.sockets._helpers import (
    CloseOutcome,
    CloseResult,
    Liveness,
    SocketHazard,
    SocketOption,
    abortive_close,
    apply_socket_options,
    check_socket,
    graceful_close,
    httpx_socket_options,
    is_alive,
    keepalive_options,
    probe_liveness,
    urllib3_socket_options,
)
from rstsafe.sockets._pool import (
    AsyncPool,
    DiscardReason,
    HeartbeatTimeoutError,
    NoHealthyConnectionError,
    Pool,
    PoolClosedError,
    PoolConfig,
    PoolCounters,
    PoolError,
    PoolTimeoutError,
)
from rstsafe.tools._doctor import DoctorReport, doctor
from rstsafe.tools._lint import Finding, Hop, HopKind, LintInputError, LintReport, Severity, lint
from rstsafe.tools._probe import IdleCloseKind, ProbeError, ProbeResult, probe

try:
    __version__ = version("rstsafe")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without install
    __version__ = "0.0.0"

__all__ = (
    "AsyncPool",
    "Attempt",
    "BodyInfo",
    "BodyKind",
    "CloseOutcome",
    "CloseResult",
    "ConnectionFacts",
    "Delivery",
    "DiscardReason",
    "DoctorReport",
    "Failure",
    "FailureKind",
    "Finding",
    "HeartbeatTimeoutError",
    "Hop",
    "HopKind",
    "IdempotencyRules",
    "IdleCloseKind",
    "IdleTTL",
    "KeepAlive",
    "KeepAliveHeader",
    "KeepAliveRegistry",
    "LintInputError",
    "LintReport",
    "Liveness",
    "NoHealthyConnectionError",
    "Origin",
    "OriginKeepAlive",
    "Pool",
    "PoolClosedError",
    "PoolConfig",
    "PoolCounters",
    "PoolError",
    "PoolTimeoutError",
    "ProbeError",
    "ProbeResult",
    "Replayability",
    "RequestMaybeSentError",
    "RequestNotSentError",
    "RetryAction",
    "RetryBudget",
    "RetryDecision",
    "RetryHistory",
    "RetryPolicy",
    "RstsafeError",
    "Severity",
    "SocketHazard",
    "SocketOption",
    "TTLSource",
    "__version__",
    "abortive_close",
    "apply_socket_options",
    "check_socket",
    "classify",
    "describe_body",
    "describe_failure",
    "doctor",
    "error_for",
    "graceful_close",
    "httpx_socket_options",
    "is_alive",
    "keepalive_options",
    "lint",
    "parse_keep_alive",
    "parse_retry_after",
    "probe",
    "probe_liveness",
    "replayability",
    "retry_if_safe",
    "rewind_body",
    "urllib3_socket_options",
)
