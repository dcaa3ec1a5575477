"""Contract variant: urllib3 PoolManager / ProxyManager swapped for rstsafe's.

Loaded with ``-p contract.plugins.urllib3_poolmanager``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "urllib3:PoolManager": "rstsafe.urllib3:PoolManager",
        "urllib3.poolmanager:PoolManager": "rstsafe.urllib3:PoolManager",
        "urllib3:ProxyManager": "rstsafe.urllib3:ProxyManager",
        "urllib3.poolmanager:ProxyManager": "rstsafe.urllib3:ProxyManager",
        "urllib3:proxy_from_url": "rstsafe.urllib3:proxy_from_url",
        "urllib3.poolmanager:proxy_from_url": "rstsafe.urllib3:proxy_from_url",
    }
)

__all__ = ("pytest_report_header",)
