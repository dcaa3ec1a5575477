"""rstsafe's private touch points in urllib3 still match the installed urllib3."""

from __future__ import annotations

import importlib.metadata

import urllib3

from rstsafe._compat import urllib3 as compat


def test_every_overridden_urllib3_method_keeps_the_signature_rstsafe_was_written_for() -> None:
    """_new_conn, _get_conn, _put_conn, _make_request, _new_pool: names and parameters."""
    assert compat.problems() == []


def test_the_default_timeout_is_urllib3s_public_sentinel() -> None:
    """rstsafe uses Timeout.DEFAULT_TIMEOUT, the object urllib3 compares timeouts against."""
    assert compat.DEFAULT_TIMEOUT is urllib3.Timeout.DEFAULT_TIMEOUT
    pool = urllib3.HTTPConnectionPool("127.0.0.1", 8080, timeout=3.0)
    assert pool._get_timeout(compat.DEFAULT_TIMEOUT).connect_timeout == 3.0


def test_a_changed_signature_is_reported_with_the_version() -> None:
    """problems() names the class, the method and the version when a signature differs."""
    original = compat.OVERRIDDEN.copy()
    try:
        compat.OVERRIDDEN[(urllib3.HTTPConnectionPool, "_get_conn")] = ("self",)
        compat.OVERRIDDEN[(urllib3.HTTPConnectionPool, "_gone")] = ("self",)
        found = compat.problems()
    finally:
        compat.OVERRIDDEN.clear()
        compat.OVERRIDDEN.update(original)
    assert len(found) == 2
    version = importlib.metadata.version("urllib3")
    assert any("HTTPConnectionPool._get_conn" in p and version in p for p in found)
    assert any("_gone is gone" in p for p in found)
