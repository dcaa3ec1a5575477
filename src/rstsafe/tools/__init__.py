"""Tools for pools and servers: ``lint`` (check pool settings against the proxies and
servers in front of them), ``probe`` (measure a server's real idle timeout) and
``doctor`` (explain the kernel's reset and accept-queue counters).
"""

from __future__ import annotations

from rstsafe._core.errors import publish_errors as _publish_errors
from rstsafe.tools._doctor import DoctorReport, doctor
from rstsafe.tools._lint import Finding, Hop, HopKind, LintInputError, LintReport, Severity, lint
from rstsafe.tools._probe import IdleCloseKind, ProbeError, ProbeResult, probe

__all__ = (
    "DoctorReport",
    "Finding",
    "Hop",
    "HopKind",
    "IdleCloseKind",
    "LintInputError",
    "LintReport",
    "ProbeError",
    "ProbeResult",
    "Severity",
    "doctor",
    "lint",
    "probe",
)

# Tracebacks and pickles name the errors by this module, not the private one they live in.
_publish_errors(__name__, globals(), __all__)
