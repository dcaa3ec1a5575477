"""Contract variant: httpx HTTPTransport / AsyncHTTPTransport swapped for rstsafe's.

Loaded with ``-p contract.plugins.httpx_transport``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "httpx:HTTPTransport": "rstsafe.httpx:Transport",
        "httpx:AsyncHTTPTransport": "rstsafe.httpx:AsyncTransport",
        "httpx._client:HTTPTransport": "rstsafe.httpx:Transport",
        "httpx._client:AsyncHTTPTransport": "rstsafe.httpx:AsyncTransport",
    }
)

__all__ = ("pytest_report_header",)
