"""The pytest plugin: registered as entry point ``rstsafe``; fixtures start and clean up."""

from __future__ import annotations

from importlib.metadata import entry_points

import pytest

from rstsafe.testing import NetworkNamespace

pytest_plugins = ["pytester"]


def test_plugin_is_registered_as_pytest11_entry_point() -> None:
    """pyproject registers rstsafe.testing.pytest_plugin under the pytest11 group."""
    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("rstsafe") == "rstsafe.testing.pytest_plugin"


def test_misbehaving_server_fixture_starts_and_stops_servers(pytester: pytest.Pytester) -> None:
    """The factory fixture returns started servers and stops all of them at teardown."""
    pytester.makepyfile(
        """
        import requests
        import pytest
        from rstsafe.testing import ConnectionEnd, IdleDrop, ProcessThenReset

        STARTED = []

        def test_factory(misbehaving_server):
            server = misbehaving_server(ProcessThenReset())
            healthy = misbehaving_server()
            STARTED.extend([server, healthy])
            assert server.port != healthy.port
            assert requests.get(healthy.url + "/ok", timeout=10).status_code == 200
            with pytest.raises(requests.ConnectionError):
                requests.post(server.url + "/orders", data=b"1", timeout=10)
            assert server.executions(method="POST", path="/orders") == 1
            assert server.wait_until(lambda s: s.ends() == (ConnectionEnd.RST,))

        def test_previous_servers_were_stopped():
            assert [repr(s).endswith("stopped)") for s in STARTED] == [True, True]
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error")
    result.assert_outcomes(passed=2)


def test_network_namespace_fixture(pytester: pytest.Pytester) -> None:
    """network_namespace creates namespaces (or skips with the reason) and deletes them."""
    pytester.makepyfile(
        """
        import os

        CREATED = []

        def test_create(network_namespace):
            ns = network_namespace(sysctls={"net.ipv4.tcp_abort_on_overflow": "1"})
            CREATED.append(ns)
            assert ns.get_sysctl("net.ipv4.tcp_abort_on_overflow") == "1"

        def test_deleted():
            assert all(not ns.path.exists() for ns in CREATED)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-W", "error", "-rs")
    ok, reason = NetworkNamespace.available()
    if ok:
        result.assert_outcomes(passed=2)
    else:
        result.assert_outcomes(passed=1, skipped=1)
        result.stdout.fnmatch_lines([f"*{reason}*"])
