"""rstsafe's private touch points in requests still match the installed requests."""

from __future__ import annotations

import pickle

import requests
import requests.adapters

import rstsafe.requests
import rstsafe.urllib3
from rstsafe._compat import requests as compat


def test_pool_settings_are_read_from_requests_own_fields() -> None:
    """_pool_connections / _pool_maxsize / _pool_block hold what init_poolmanager was given."""
    plain = requests.adapters.HTTPAdapter(pool_connections=3, pool_maxsize=4, pool_block=True)
    assert compat.pool_settings(plain) == (3, 4, True)
    ours = rstsafe.requests.HTTPAdapter(pool_connections=5, pool_maxsize=6, pool_block=False)
    assert compat.pool_settings(ours) == (5, 6, False)
    assert ours.poolmanager.connection_pool_kw["maxsize"] == 6


def test_adapter_pickling_attributes_are_requests_own_plus_rstsafes() -> None:
    """HTTPAdapter.__attrs__ is still requests' pickling list, and a pickled adapter works."""
    assert requests.adapters.HTTPAdapter.__attrs__ == compat.ATTRS
    assert "max_retries" in compat.ATTRS
    adapter = rstsafe.requests.HTTPAdapter(pool_maxsize=7)
    again = pickle.loads(pickle.dumps(adapter))
    assert isinstance(again, rstsafe.requests.HTTPAdapter)
    assert compat.pool_settings(again)[1] == 7
    assert isinstance(again.poolmanager, rstsafe.urllib3.PoolManager)
