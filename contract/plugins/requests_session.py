"""Contract variant: requests Session swapped for rstsafe's.

Loaded with ``-p contract.plugins.requests_session``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "requests:Session": "rstsafe.requests:Session",
        "requests.sessions:Session": "rstsafe.requests:Session",
    }
)

__all__ = ("pytest_report_header",)
