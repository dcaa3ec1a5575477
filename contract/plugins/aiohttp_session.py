"""Contract variant: aiohttp's ClientSession and TCPConnector swapped for rstsafe's.

Loaded with ``-p contract.plugins.aiohttp_session``. aiohttp's ``client.py`` imports
``TCPConnector`` by name (a session without ``connector=`` builds one there), so both its
module and the package are swapped. The deliberate differences are listed, with their
reasons, in ``contract/allowed.toml``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "aiohttp:ClientSession": "rstsafe.aiohttp:ClientSession",
        "aiohttp.client:ClientSession": "rstsafe.aiohttp:ClientSession",
        "aiohttp:TCPConnector": "rstsafe.aiohttp:TCPConnector",
        "aiohttp.connector:TCPConnector": "rstsafe.aiohttp:TCPConnector",
        "aiohttp.client:TCPConnector": "rstsafe.aiohttp:TCPConnector",
    }
)

__all__ = ("pytest_report_header",)
