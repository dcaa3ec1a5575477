"""Contract variant: httpx Client / AsyncClient swapped for rstsafe's.

Loaded with ``-p contract.plugins.httpx_client``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "httpx:Client": "rstsafe.httpx:Client",
        "httpx:AsyncClient": "rstsafe.httpx:AsyncClient",
        "httpx._api:Client": "rstsafe.httpx:Client",
    }
)

__all__ = ("pytest_report_header",)
