"""Contract variant: aiohttp's ClientSession and TCPConnector swapped for rstsafe's.

Loaded with ``-p contract.plugins.aiohttp_session``. aiohttp's ``client.py`` imports
``TCPConnector`` by name (a session without ``connector=`` builds one there), so both its
module and the package are swapped. The deliberate differences are listed, with their
reasons, in ``contract/allowed.toml``.
"""

from __future__ import annotations

import pytest

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


def pytest_configure(config: pytest.Config) -> None:
    """aiohttp's pytest.ini ignores its own "Unclosed client session" warning: ours too.

    Its filter matches the plain class's repr (``<aiohttp.client.ClientSession object at
    0x...``); the same warning about the swapped class names rstsafe's module instead.
    """
    config.addinivalue_line(
        "filterwarnings",
        "ignore:Unclosed client session <rstsafe.aiohttp._session.ClientSession object at 0x"
        ":ResourceWarning",
    )


__all__ = ("pytest_configure", "pytest_report_header")
