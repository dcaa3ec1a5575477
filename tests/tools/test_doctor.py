"""rstsafe.tools.doctor: parsing /proc samples, and real counters moving in our own namespace."""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

import rstsafe
import rstsafe.tools
from rstsafe._cli.doctor import format_report
from rstsafe.testing import NetworkNamespace
from rstsafe.testing._fixtures import NamespaceFactory
from rstsafe.tools._doctor import (
    COUNTERS,
    Listener,
    Snapshot,
    diagnose,
    parse_netstat,
    parse_proc_net_tcp,
    parse_ss_listeners,
    take_snapshot,
)

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]

NETSTAT = """\
TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPAbortOnData TCPAbortOnClose
TcpExt: 0 12 14 3 5
IpExt: InNoRoutes InOctets
IpExt: 0 123456
"""
SNMP = """\
Tcp: RtoAlgorithm ActiveOpens AttemptFails EstabResets OutRsts
Tcp: 1 100 2 7 9
"""
PROC_NET_TCP = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000:07E8 00000000:0000 0A 00000000:00000005 00:00000000 00000000     0        0 1135
   1: 0100007F:C2B3 0100007F:A86A 06 00000000:00000000 03:000009C2 00000000     0        0 0
   2: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 11
"""
PROC_NET_TCP6 = (
    "  sl  local_address                         remote_address"
    "                        st tx_queue rx_queue\n"
    "   0: 00000000000000000000000001000000:1F90 00000000000000000000000000000000:0000"
    " 0A 00000000:00000002\n"
)
SS_OUTPUT = """\
LISTEN 0      128    0.0.0.0:2024 0.0.0.0:*
LISTEN 7      8      127.0.0.1:8080 0.0.0.0:*
LISTEN 0      4096   [::1]:9000 [::]:*
LISTEN 0      511    127.0.0.53%lo:53 0.0.0.0:*
"""


def test_parse_netstat_pairs_of_lines() -> None:
    """/proc/net/netstat header/value line pairs become Section.Name counters."""
    counters = parse_netstat(NETSTAT)
    assert counters["TcpExt.ListenOverflows"] == 12
    assert counters["TcpExt.TCPAbortOnClose"] == 5
    assert counters["IpExt.InOctets"] == 123456
    assert parse_netstat(SNMP)["Tcp.EstabResets"] == 7


@pytest.mark.parametrize(
    "text",
    [
        "TcpExt: A B\n",
        "TcpExt: A B\nTcpExt: 1\n",
        "TcpExt: A B\nIpExt: 1 2\n",
        "TcpExt: A\nTcpExt: x\n",
    ],
)
def test_parse_netstat_rejects_malformed(text: str) -> None:
    """Odd line counts, mismatched sections or non-numbers raise ValueError."""
    with pytest.raises(ValueError, match=r"."):
        parse_netstat(text)


@given(st.text(max_size=300))
def test_parse_netstat_raises_only_value_error(text: str) -> None:
    """Whatever the text, the parser returns counters or raises ValueError, nothing else."""
    try:
        counters = parse_netstat(text)
    except ValueError:
        return
    assert all(isinstance(v, int) for v in counters.values())


def test_parse_proc_net_tcp_listeners_only() -> None:
    """Only LISTEN (0A) rows are returned; addresses decode from little-endian hex."""
    listeners = parse_proc_net_tcp(PROC_NET_TCP)
    assert listeners == [
        Listener(address="0.0.0.0", port=2024, queue=5),
        Listener(address="127.0.0.1", port=8080, queue=0),
    ]
    (v6,) = parse_proc_net_tcp(PROC_NET_TCP6)
    assert v6 == Listener(address="::1", port=8080, queue=2)


def test_parse_ss_listeners_queue_and_backlog() -> None:
    """ss -Hlnt: Recv-Q is the accept queue, Send-Q the backlog; scopes and brackets go."""
    listeners = parse_ss_listeners(SS_OUTPUT)
    assert listeners[1] == Listener(address="127.0.0.1", port=8080, queue=7, backlog=8)
    assert listeners[2].address == "::1"
    assert listeners[3].address == "127.0.0.53"
    assert listeners[1].near_full
    assert not listeners[0].near_full
    with_header = "State Recv-Q Send-Q Local Address:Port Peer Address:Port\n" + SS_OUTPUT
    assert parse_ss_listeners(with_header) == listeners


def _snapshot(
    at: float,
    counters: dict[str, int],
    *,
    listeners: tuple[Listener, ...] = (),
    sysctls: dict[str, str | None] | None = None,
) -> Snapshot:
    return Snapshot(
        taken_at=at,
        counters=counters,
        sysctls=sysctls or {"net.core.somaxconn": "4096"},
        listeners=listeners,
    )


def test_diagnose_explains_each_delta() -> None:
    """Counters that moved are explained with their cause; unmoved ones are not advice."""
    before = _snapshot(0.0, {"TcpExt.ListenOverflows": 10, "TcpExt.TCPAbortOnClose": 1})
    after = _snapshot(5.0, {"TcpExt.ListenOverflows": 13, "TcpExt.TCPAbortOnClose": 1})
    report = diagnose(before, after)
    assert report.interval == 5.0
    assert report.delta("TcpExt.ListenOverflows") == 3
    assert report.delta("TcpExt.TCPAbortOnClose") == 0
    assert [c.name for c in report.moved] == ["TcpExt.ListenOverflows"]
    assert any(
        a.startswith("C4: TcpExt.ListenOverflows +3: accept queue full") for a in report.advice
    )
    assert not any("TCPAbortOnClose" in a for a in report.advice)


def test_diagnose_listeners_and_sysctls() -> None:
    """Near-full queues, backlogs above somaxconn, tw_recycle and abort_on_overflow are flagged."""
    listeners = (
        Listener(address="127.0.0.1", port=8080, queue=7, backlog=8),
        Listener(address="0.0.0.0", port=80, queue=0, backlog=8192),
        Listener(address="0.0.0.0", port=81, queue=0, backlog=128),
    )
    sysctls: dict[str, str | None] = {
        "net.core.somaxconn": "4096",
        "net.ipv4.tcp_tw_recycle": "1",
        "net.ipv4.tcp_abort_on_overflow": "1",
        "net.ipv4.tcp_keepalive_time": "7200",
    }
    after = _snapshot(1.0, {}, listeners=listeners, sysctls=sysctls)
    report = diagnose(_snapshot(0.0, {}), after)
    flags = {(s.listener.port, s.near_full, s.above_somaxconn) for s in report.listeners}
    assert flags == {(8080, True, False), (80, False, True), (81, False, False)}
    text = "\n".join(report.advice)
    assert "127.0.0.1:8080 has 7 connections waiting in an accept queue of 8" in text
    assert "backlog 8192, above net.core.somaxconn 4096" in text
    assert "C11: net.ipv4.tcp_tw_recycle=1" in text
    assert "C4: net.ipv4.tcp_abort_on_overflow=1" in text
    assert "C3: TCP keepalive probes start after 7200 s" in text


def test_every_counter_names_a_meaning() -> None:
    """Every counter in the table has a meaning, and its causes are field-guide causes."""
    for name, info in COUNTERS.items():
        assert name.split(".")[0] in ("TcpExt", "Tcp")
        assert info.meaning
        assert all(c in {f"C{i}" for i in range(1, 12)} for c in info.causes)


def test_host_doctor_reads_this_machine() -> None:
    """On Linux the host's counters and sysctls are read and the text report renders."""
    report = rstsafe.tools.doctor(interval=0.0)
    assert report.counters
    assert report.sysctls["net.core.somaxconn"] is not None
    text = format_report(report, all_listeners=True)
    assert "rstsafe doctor: TCP counters over" in text
    assert "net.core.somaxconn" in text


def test_other_platforms_say_what_cannot_be_read(monkeypatch: pytest.MonkeyPatch) -> None:
    """Off Linux, doctor reads nothing and says plainly why (the text report too)."""
    monkeypatch.setattr(sys, "platform", "darwin")
    report = rstsafe.tools.doctor(interval=5.0)
    assert report.counters == ()
    assert report.interval == 0.0
    (reason,) = report.unavailable
    assert "this is darwin" in reason
    assert "/proc/net/netstat" in reason
    text = format_report(report)
    assert text.startswith("rstsafe doctor: cannot read the kernel's TCP counters here")


def test_cli_doctor_json(run_cli: RunCli) -> None:
    """`rstsafe doctor --interval 0 --format json` emits the counters and sysctls."""
    code, out, err = run_cli(["doctor", "--interval", "0", "--format", "json"])
    assert code == 0, err
    document = json.loads(out)
    names = {c["name"] for c in document["counters"]}
    assert "TcpExt.ListenOverflows" in names
    assert "net.ipv4.tcp_tw_reuse" in document["sysctls"]


def test_cli_doctor_bad_interval(run_cli: RunCli) -> None:
    """A bad --interval is a usage error with exit code 2."""
    code, _, err = run_cli(["doctor", "--interval", "soon"])
    assert code == 2
    assert "expected seconds" in err


# --------------------------------------------------------------------------- real counters


def _linger_zero_close(ns: NetworkNamespace) -> None:
    """Close a connected socket with SO_LINGER on, timeout 0 (sends RST)."""
    with ns.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        client = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
        client.connect(listener.getsockname())
        server, _ = listener.accept()
        with server:
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            server.settimeout(5)
            with pytest.raises(ConnectionResetError):
                server.recv(10)


def _unread_close(ns: NetworkNamespace) -> None:
    """Close a socket that has unread data in its receive buffer (sends RST)."""
    with ns.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        with ns.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
            client.connect(listener.getsockname())
            server, _ = listener.accept()
            client.sendall(b"x" * 5000)
            server.recv(100)  # read part of it, like the server of C6
            time.sleep(0.1)
            server.close()
            client.settimeout(5)
            failure: OSError | None = None
            for _ in range(20):
                try:
                    client.sendall(b"more")
                except OSError as exc:
                    failure = exc
                    break
                time.sleep(0.05)
            assert isinstance(failure, ConnectionResetError | BrokenPipeError)


def _overflow_accept_queue(ns: NetworkNamespace, listener: socket.socket, count: int) -> None:
    """Connect ``count`` clients to a listener that never accepts."""
    clients = []
    try:
        for _ in range(count):
            client = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
            clients.append(client)
            client.setblocking(False)
            client.connect_ex(listener.getsockname())
        time.sleep(0.5)  # let handshakes complete or be dropped
    finally:
        for client in clients:
            client.close()


@pytest.mark.root
def test_linger_zero_moves_abort_on_data(network_namespace: NamespaceFactory) -> None:
    """A linger-0 close in our namespace shows as TCPAbortOnData (C5) and EstabResets."""
    ns = network_namespace()
    before = take_snapshot(ns)
    _linger_zero_close(ns)
    report = diagnose(before, take_snapshot(ns))
    assert report.delta("TcpExt.TCPAbortOnData") == 1
    assert report.delta("Tcp.EstabResets") >= 1
    assert report.delta("Tcp.OutRsts") >= 1
    assert any(a.startswith("C5: TcpExt.TCPAbortOnData +1") for a in report.advice)
    assert report.delta("TcpExt.ListenOverflows") == 0


@pytest.mark.root
def test_unread_close_moves_abort_on_close(network_namespace: NamespaceFactory) -> None:
    """Closing with unread data in our namespace shows as TCPAbortOnClose (C6)."""
    ns = network_namespace()
    before = take_snapshot(ns)
    _unread_close(ns)
    report = diagnose(before, take_snapshot(ns))
    assert report.delta("TcpExt.TCPAbortOnClose") == 1
    assert any(a.startswith("C6: TcpExt.TCPAbortOnClose +1") for a in report.advice)
    assert report.delta("TcpExt.TCPAbortOnData") == 0


@pytest.mark.root
def test_accept_overflow_moves_listen_overflows(network_namespace: NamespaceFactory) -> None:
    """A listener that never accepts overflows: ListenOverflows moves and its queue is flagged."""
    ns = network_namespace(sysctls={"net.core.somaxconn": "4096"})
    with ns.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(2)
        port = listener.getsockname()[1]
        calls: list[float] = []

        def sleep(seconds: float) -> None:
            calls.append(seconds)
            _overflow_accept_queue(ns, listener, 8)

        report = rstsafe.tools.doctor(interval=0.25, source=ns, sleep=sleep)
        assert calls == [0.25]
        assert report.delta("TcpExt.ListenOverflows") >= 1
        assert any(a.startswith("C4: TcpExt.ListenOverflows") for a in report.advice)
        (status,) = [s for s in report.listeners if s.listener.port == port]
        assert status.listener.backlog == 2
        assert status.near_full
        assert f"127.0.0.1:{port} has" in "\n".join(report.advice)


@pytest.mark.root
def test_namespace_sysctls_are_reported(network_namespace: NamespaceFactory) -> None:
    """tcp_abort_on_overflow set in our namespace is read from it and explained (C4)."""
    ns = network_namespace(sysctls={"net.ipv4.tcp_abort_on_overflow": "1"})
    report = rstsafe.tools.doctor(interval=0.0, source=ns)
    assert report.sysctls["net.ipv4.tcp_abort_on_overflow"] == "1"
    assert any(a.startswith("C4: net.ipv4.tcp_abort_on_overflow=1") for a in report.advice)


def test_namespaces_skip_reason_is_explained() -> None:
    """Where namespaces are unavailable, the reason given to skipped tests is not empty."""
    ok, reason = NetworkNamespace.available()
    assert ok or reason
