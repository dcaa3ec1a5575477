"""Contract variant: aiohttp's ClientSession and TCPConnector swapped for rstsafe's.

Meant to sit beside the other variants as ``contract/plugins/aiohttp_session.py`` (loaded
with ``-p contract.plugins.aiohttp_session``) with a ``Suite("aiohttp", tests=("tests",),
shadowing=("aiohttp",), ...)`` and a ``Variant`` naming it; see ``contract/suites.py``.

aiohttp's ``client.py`` imports ``TCPConnector`` by name, so both its module and the
package are swapped. Expected differences, to allow-list rather than fix: tests building a
session on a connector of another class (``UnixConnector``, a mock) get a ``TypeError``
(rstsafe's retries need its connector's byte counts); tests asserting the exact value of
``connector._keepalive_timeout`` (15 s) see rstsafe's backstop (3600 s); tests that count
middleware calls see rstsafe's, appended last.
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
