"""Contract variant: requests HTTPAdapter swapped for rstsafe's.

Loaded with ``-p contract.plugins.requests_adapter``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "requests.adapters:HTTPAdapter": "rstsafe.requests:HTTPAdapter",
        "requests.sessions:HTTPAdapter": "rstsafe.requests:HTTPAdapter",
    }
)

__all__ = ("pytest_report_header",)
