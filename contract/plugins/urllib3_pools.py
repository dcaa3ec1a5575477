"""Contract variant: urllib3 HTTPConnectionPool / HTTPSConnectionPool swapped for rstsafe's.

Loaded with ``-p contract.plugins.urllib3_pools``.
"""

from __future__ import annotations

from contract.plugins._swap import pytest_report_header, swap

swap(
    {
        "urllib3:HTTPConnectionPool": "rstsafe.urllib3:HTTPConnectionPool",
        "urllib3:HTTPSConnectionPool": "rstsafe.urllib3:HTTPSConnectionPool",
        "urllib3.connectionpool:HTTPConnectionPool": "rstsafe.urllib3:HTTPConnectionPool",
        "urllib3.connectionpool:HTTPSConnectionPool": "rstsafe.urllib3:HTTPSConnectionPool",
        "urllib3.poolmanager:pool_classes_by_scheme[http]": "rstsafe.urllib3:HTTPConnectionPool",
        "urllib3.poolmanager:pool_classes_by_scheme[https]": "rstsafe.urllib3:HTTPSConnectionPool",
    }
)

__all__ = ("pytest_report_header",)
