"""NetworkNamespace: a private loopback, private sysctls and counters, entered per thread."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Callable
from typing import TypeVar

import pytest
import requests

from rstsafe.testing import AcceptQueueOverflow, Healthy, MisbehavingServer, NetworkNamespace

AVAILABLE, WHY_NOT = NetworkNamespace.available()
_F = TypeVar("_F", bound=Callable[..., object])


def needs_netns(test: _F) -> _F:
    """Mark a test as needing root and skip it, with the reason, when namespaces don't work."""
    marked: _F = pytest.mark.root(pytest.mark.skipif(not AVAILABLE, reason=WHY_NOT or "n/a")(test))
    return marked


def _namespaces() -> str:
    return subprocess.run(
        ["ip", "netns", "list"], capture_output=True, text=True, check=True
    ).stdout


def test_available_explains_itself() -> None:
    """available() returns a bool and, when False, a non-empty reason."""
    ok, reason = NetworkNamespace.available()
    assert isinstance(ok, bool)
    assert ok or reason


@needs_netns
def test_namespace_is_created_and_deleted() -> None:
    """The namespace exists inside the with block and is gone after it."""
    with NetworkNamespace() as ns:
        assert ns.path.exists()
        assert ns.name in _namespaces()
    assert not ns.path.exists()
    assert ns.name not in _namespaces()
    ns.delete()  # idempotent


@needs_netns
def test_sysctls_apply_inside_only() -> None:
    """A sysctl set for the namespace is visible inside and unchanged outside."""
    with open("/proc/sys/net/ipv4/tcp_abort_on_overflow") as f:
        outside_before = f.read().strip()
    wanted = "0" if outside_before == "1" else "1"
    with NetworkNamespace(sysctls={"net.ipv4.tcp_abort_on_overflow": wanted}) as ns:
        assert ns.get_sysctl("net.ipv4.tcp_abort_on_overflow") == wanted
        seen_by_ip = subprocess.run(
            ["ip", "netns", "exec", ns.name, "cat", "/proc/sys/net/ipv4/tcp_abort_on_overflow"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert seen_by_ip == wanted
        with open("/proc/sys/net/ipv4/tcp_abort_on_overflow") as f:
            assert f.read().strip() == outside_before


@needs_netns
def test_socket_made_inside_is_unreachable_from_outside() -> None:
    """A listener created with ns.socket() is reachable from inside and refused from outside."""
    with NetworkNamespace() as ns:
        listener = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        with listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            address = listener.getsockname()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=5).close()
            with ns.create_connection(address, timeout=5) as client:
                server_side, _ = listener.accept()
                with server_side:
                    client.sendall(b"ping")
                    assert server_side.recv(4) == b"ping"


@needs_netns
def test_read_proc_shows_the_namespace_counters() -> None:
    """read_proc reads /proc/thread-self/net from inside: the namespace's own socket table."""
    with NetworkNamespace() as ns:
        listener = ns.socket()
        with listener:
            listener.bind(("127.0.0.1", 0))
            listener.listen()
            port_hex = f"{listener.getsockname()[1]:04X}"
            assert f"0100007F:{port_hex}" in ns.read_proc("net/tcp")
            assert "TcpExt:" in ns.read_proc("net/netstat")
        with open("/proc/thread-self/net/tcp") as f:
            assert f"0100007F:{port_hex} 00000000:0000 0A" not in f.read()


@needs_netns
def test_run_returns_results_and_reraises() -> None:
    """run() returns fn's result, re-raises its exception and leaves no thread behind."""
    before = set(threading.enumerate())
    with NetworkNamespace() as ns:
        assert ns.run(lambda a, b: a + b, 2, 3) == 5
        with pytest.raises(KeyError, match="boom"):
            ns.run({}.__getitem__, "boom")
    assert set(threading.enumerate()) == before


def test_bad_sysctl_names_the_field() -> None:
    """Only net.* sysctls are accepted; the ValueError names the field."""
    with pytest.raises(ValueError, match="sysctls"):
        NetworkNamespace(sysctls={"kernel.panic": "1"})
    with pytest.raises(ValueError, match="sysctls"):
        NetworkNamespace(sysctls={"net.ipv4.tcp_abort_on_overflow": ""})
    with pytest.raises(ValueError, match="name_prefix"):
        NetworkNamespace(name_prefix="bad name")


@needs_netns
def test_run_outside_the_block_is_an_error() -> None:
    """run() on a namespace that does not exist raises RuntimeError."""
    ns = NetworkNamespace()
    with pytest.raises(RuntimeError, match="does not exist"):
        ns.run(int)


def _tcp_ext(ns: NetworkNamespace) -> dict[str, int]:
    lines = [line.split() for line in ns.read_proc("net/netstat").splitlines()]
    for names, values in zip(lines[::2], lines[1::2], strict=True):
        if names[0] == "TcpExt:":
            return {n: int(v) for n, v in zip(names[1:], values[1:], strict=True)}
    raise AssertionError("no TcpExt counters")


@needs_netns
def test_server_inside_a_namespace() -> None:
    """namespace= puts the listener inside; clients there connect, the host is refused."""
    with (
        NetworkNamespace() as ns,
        MisbehavingServer(Healthy(), namespace=ns) as server,
    ):
        response = ns.run(requests.get, server.url + "/inside", timeout=10)
        assert response.text == "GET /inside body=0\n"
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(server.address, timeout=5).close()
        assert server.executions(path="/inside") == 1


@needs_netns
def test_accept_queue_overflow_with_abort_on_overflow_resets_the_first_write() -> None:
    """C4 with tcp_abort_on_overflow=1: connect succeeds, the first write is answered by RST."""
    with (
        NetworkNamespace(sysctls={"net.ipv4.tcp_abort_on_overflow": "1"}) as ns,
        MisbehavingServer(AcceptQueueOverflow(backlog=1, prefill=False), namespace=ns) as server,
    ):
        with ns.create_connection(server.address, timeout=10) as client:
            assert server.fill_accept_queue() == 2
            before = _tcp_ext(ns)["ListenOverflows"]
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(ConnectionResetError):
                client.recv(4096)
        assert _tcp_ext(ns)["ListenOverflows"] > before
        assert server.connections == ()


@needs_netns
def test_accept_queue_overflow_without_abort_stalls_the_first_write() -> None:
    """C4 with tcp_abort_on_overflow=0: the first write is silently dropped; the read waits."""
    with (
        NetworkNamespace(sysctls={"net.ipv4.tcp_abort_on_overflow": "0"}) as ns,
        MisbehavingServer(AcceptQueueOverflow(backlog=1, prefill=False), namespace=ns) as server,
    ):
        with ns.create_connection(server.address, timeout=0.5) as client:
            assert server.fill_accept_queue() == 2
            before = _tcp_ext(ns)["ListenOverflows"]
            client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            with pytest.raises(TimeoutError):
                client.recv(4096)
        assert _tcp_ext(ns)["ListenOverflows"] > before


def test_available_reasons_without_root_or_ip(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without root, or without `ip`, available() says so (uncached check)."""
    from rstsafe.testing._netns import _available

    check = _available.__wrapped__
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    assert check() == (False, "network namespaces need root (ip netns add, setns)")
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda name: None)
    assert check() == (False, "iproute2's `ip` command is not installed")
