"""``rstsafe doctor``: read the kernel's TCP counters and queues and explain the resets.

Linux only. Samples ``/proc/net/netstat`` and ``/proc/net/snmp`` twice, ``interval`` seconds
apart, and explains every counter that moved in terms of the field guide's causes
(ListenOverflows: the accept queue is full, C4; TCPAbortOnClose: a socket closed with unread
data, C6; TCPAbortOnData: an abortive close, C5; ...). Lists listening sockets whose accept
queue is near its backlog, flags backlogs at or above ``net.core.somaxconn``, and reports the
sysctls that matter (``tcp_abort_on_overflow``, ``tcp_tw_reuse``, ``tcp_tw_recycle`` ...).

The parsing functions are pure (text in, values out). What is read comes from a
:class:`ProcSource`: the host by default, or a ``rstsafe.testing.NetworkNamespace``, whose
counters are its own.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from rstsafe._core.clock import Clock, MonotonicClock

__all__ = (
    "COUNTERS",
    "SYSCTLS",
    "CounterDelta",
    "CounterInfo",
    "DoctorReport",
    "HostProc",
    "Listener",
    "ProcSource",
    "Snapshot",
    "diagnose",
    "doctor",
    "parse_netstat",
    "parse_proc_net_tcp",
    "parse_ss_listeners",
    "take_snapshot",
)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class CounterInfo:
    """What a kernel counter means, and the causes it points at."""

    causes: tuple[str, ...]
    meaning: str


# The counters doctor explains, keyed "Section.Name" as /proc/net/{netstat,snmp} name them.
# Meanings follow the kernel's sources (net/ipv4/tcp.c tcp_close(), tcp_input.c,
# inet_connection_sock.c) rather than the often-wrong folklore about them.
COUNTERS: Mapping[str, CounterInfo] = {
    "TcpExt.ListenOverflows": CounterInfo(
        ("C4",),
        "accept queue full: a handshake completed but the listener's queue "
        "(min(backlog, somaxconn)) had no room; the final ACK was dropped (or answered with "
        "RST when tcp_abort_on_overflow=1). The application accepts too slowly or the "
        "backlog is too small.",
    ),
    "TcpExt.ListenDrops": CounterInfo(
        ("C4",),
        "segments dropped at a listener, accept-queue overflows included: clients see "
        "stalled connects or resets on their first request.",
    ),
    "TcpExt.TCPReqQFullDrop": CounterInfo(
        ("C4",),
        "SYN dropped because the SYN queue was full and syncookies were off (tcp_max_syn_backlog).",
    ),
    "TcpExt.TCPReqQFullDoCookies": CounterInfo(
        ("C4",),
        "SYN queue full, answered with a syncookie instead: a SYN flood or a listener far behind.",
    ),
    "TcpExt.TCPAbortOnData": CounterInfo(
        ("C5",),
        "RST sent by an abortive close: a socket closed with SO_LINGER on and timeout 0, or "
        "data arrived after the application had closed its side.",
    ),
    "TcpExt.TCPAbortOnClose": CounterInfo(
        ("C6",),
        "RST sent because a socket was closed with unread data in its receive buffer (a "
        "server that answered early, or did not read the whole request).",
    ),
    "TcpExt.TCPAbortOnTimeout": CounterInfo(
        ("C3",),
        "connection given up after retransmissions or keepalive probes went unanswered: a "
        "peer or middlebox that vanished silently (no RST sent).",
    ),
    "TcpExt.TCPAbortOnMemory": CounterInfo(
        (),
        "RST sent because TCP memory was exhausted (tcp_mem) or too many orphaned sockets.",
    ),
    "TcpExt.TCPAbortOnLinger": CounterInfo(
        (),
        "connection dropped in FIN_WAIT2 after tcp_fin_timeout: the peer never closed its side.",
    ),
    "TcpExt.TCPAbortFailed": CounterInfo(
        (),
        "the kernel wanted to send an RST but could not (out of memory).",
    ),
    "TcpExt.TCPSynRetrans": CounterInfo(
        ("C4", "C9"),
        "SYNs retransmitted: lost SYNs or SYN-ACKs, or a listener dropping them; each costs "
        "at least a second, more than many connect timeouts.",
    ),
    "TcpExt.PAWSActive": CounterInfo(
        ("C11",),
        "SYN-ACKs rejected by timestamp (PAWS) on outgoing connects.",
    ),
    "TcpExt.PAWSEstab": CounterInfo(
        ("C11",),
        "segments rejected by timestamp (PAWS) on established connections: clients behind "
        "NAT with inconsistent timestamps.",
    ),
    "Tcp.EstabResets": CounterInfo(
        ("C1", "C2", "C3", "C5", "C6", "C7"),
        "established connections reset (RST received or sent): the symptom most causes end in.",
    ),
    "Tcp.OutRsts": CounterInfo(
        ("C4", "C5", "C6", "C8"),
        "RST segments sent by this host: to closed ports (C8), by abortive closes (C5, C6), "
        "or for accept-queue overflows with tcp_abort_on_overflow=1 (C4).",
    ),
    "Tcp.AttemptFails": CounterInfo(
        ("C4", "C8"),
        "connection attempts that failed: refused (nothing listening, C8) or reset during "
        "the handshake.",
    ),
}

# The sysctls doctor reads (the field guide's list, plus the TIME_WAIT ones of C11).
SYSCTLS: tuple[str, ...] = (
    "net.core.somaxconn",
    "net.ipv4.tcp_max_syn_backlog",
    "net.ipv4.tcp_abort_on_overflow",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.tcp_synack_retries",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_tw_reuse",
    "net.ipv4.tcp_tw_recycle",
)

# A listener whose accept queue holds this fraction of its backlog is "near full".
NEAR_FULL = 0.8
# The shortest common middlebox idle limit (Azure LB 4 min); keepalive probes must start
# before it for long-lived idle connections to survive (C3).
_SHORTEST_MIDDLEBOX_IDLE = 240


class ProcSource(Protocol):
    """Where doctor reads from: the host, or a ``NetworkNamespace`` (same three methods)."""

    def read_proc(self, relative: str) -> str:
        """Read ``/proc/thread-self/<relative>``, e.g. ``"net/netstat"``."""
        ...

    def get_sysctl(self, name: str) -> str:
        """Return a sysctl's value, e.g. ``"net.core.somaxconn"``."""
        ...

    def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call ``fn`` where the counters are (inside the namespace)."""
        ...


class HostProc:
    """The host's (this process's network namespace's) ``/proc``."""

    def read_proc(self, relative: str) -> str:
        """Read ``/proc/thread-self/<relative>`` (``/proc/self`` before Linux 3.17)."""
        base = Path("/proc/thread-self")
        return (base if base.exists() else Path("/proc/self")).joinpath(relative).read_text()

    def get_sysctl(self, name: str) -> str:
        """Read ``/proc/sys/<name with dots as slashes>``."""
        return Path("/proc/sys", *name.split(".")).read_text().strip()

    def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call ``fn`` here."""
        return fn(*args, **kwargs)


# --------------------------------------------------------------------------- parsing


def parse_netstat(text: str) -> dict[str, int]:
    """Parse ``/proc/net/netstat`` or ``/proc/net/snmp`` into ``{"Section.Name": value}``.

    Both files hold pairs of lines: ``Section: Name1 Name2 ...`` then ``Section: 1 2 ...``.

    Raises:
        ValueError: The text does not have that shape.
    """
    counters: dict[str, int] = {}
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) % 2:
        raise ValueError("expected pairs of header and value lines")
    for header, values in zip(lines[::2], lines[1::2], strict=True):
        section, sep, names = header.partition(":")
        value_section, value_sep, numbers = values.partition(":")
        if not sep or not value_sep or section != value_section:
            raise ValueError(f"mismatched lines for section {section!r}")
        name_list, number_list = names.split(), numbers.split()
        if len(name_list) != len(number_list):
            raise ValueError(
                f"section {section}: {len(name_list)} names, {len(number_list)} values"
            )
        for name, number in zip(name_list, number_list, strict=True):
            try:
                counters[f"{section}.{name}"] = int(number)
            except ValueError:
                raise ValueError(f"{section}.{name}: not an integer: {number!r}") from None
    return counters


@dataclass(frozen=True, slots=True, kw_only=True)
class Listener:
    """A listening TCP socket.

    Attributes:
        address: The local address (``"0.0.0.0"``, ``"::"``, ``"127.0.0.1"`` ...).
        port: The local port.
        queue: Connections waiting in the accept queue (``ss`` Recv-Q).
        backlog: The accept queue's size, ``min(backlog, somaxconn)`` at listen() time
            (``ss`` Send-Q); None when only ``/proc/net/tcp`` was available.
    """

    address: str
    port: int
    queue: int
    backlog: int | None = None

    @property
    def near_full(self) -> bool:
        """True when the queue holds at least 80 % of the backlog (or more than it)."""
        if self.backlog is None:
            return False
        return self.queue >= max(1, self.backlog * NEAR_FULL)


_LISTEN_STATE = "0A"


def _hex_address(text: str) -> tuple[str, int]:
    host_hex, _, port_hex = text.partition(":")
    port = int(port_hex, 16)
    raw = bytes.fromhex(host_hex)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1])), port
    if len(raw) == 16:
        # Four 32-bit words, each in host (little-endian) byte order.
        swapped = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
        return str(ipaddress.IPv6Address(swapped)), port
    raise ValueError(f"bad address {text!r}")


def parse_proc_net_tcp(text: str) -> list[Listener]:
    """Parse ``/proc/net/tcp`` or ``tcp6`` and return the listening sockets.

    For a listener the ``rx_queue`` column is the accept queue's length; the backlog is not
    in this file (see :func:`parse_ss_listeners`).

    Raises:
        ValueError: A line does not have the file's shape.
    """
    listeners: list[Listener] = []
    for number, line in enumerate(text.splitlines()):
        fields = line.split()
        if number == 0 or not fields:
            continue  # the header
        if len(fields) < 5 or ":" not in fields[4]:
            raise ValueError(f"line {number + 1}: unexpected shape: {line.strip()[:60]!r}")
        if fields[3] != _LISTEN_STATE:
            continue
        address, port = _hex_address(fields[1])
        _, _, rx_queue = fields[4].partition(":")
        listeners.append(Listener(address=address, port=port, queue=int(rx_queue, 16)))
    return listeners


def parse_ss_listeners(text: str) -> list[Listener]:
    """Parse ``ss -Hlnt`` (or ``ss -lnt``) output: Recv-Q is the queue, Send-Q the backlog.

    Raises:
        ValueError: A line does not have ss's shape.
    """
    listeners: list[Listener] = []
    for line in text.splitlines():
        fields = line.split()
        if not fields or fields[0] == "State" or fields[0] == "Recv-Q":
            continue
        if fields[0] == "LISTEN":
            fields = fields[1:]
        if len(fields) < 3:
            raise ValueError(f"unexpected ss line: {line.strip()[:60]!r}")
        queue, backlog, local = int(fields[0]), int(fields[1]), fields[2]
        host, sep, port = local.rpartition(":")
        if not sep:
            raise ValueError(f"unexpected local address in ss line: {local!r}")
        host = host.strip("[]").split("%", 1)[0]
        if host == "*":
            host = "0.0.0.0"
        listeners.append(
            Listener(
                address=host, port=int(port) if port != "*" else 0, queue=queue, backlog=backlog
            )
        )
    return listeners


# --------------------------------------------------------------------------- sampling


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Counters, sysctls and listeners read at one moment."""

    taken_at: float
    counters: Mapping[str, int]
    sysctls: Mapping[str, str | None]
    listeners: tuple[Listener, ...]
    unavailable: tuple[str, ...] = ()


def _ss_listeners(source: ProcSource) -> list[Listener] | None:
    if shutil.which("ss") is None:
        return None
    try:
        result = source.run(
            subprocess.run,
            ["ss", "-Hlnt"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return None
    try:
        return parse_ss_listeners(result.stdout)
    except ValueError:
        return None


def take_snapshot(source: ProcSource | None = None, *, clock: Clock | None = None) -> Snapshot:
    """Read counters, sysctls and listeners once; what cannot be read is listed, not raised."""
    source = HostProc() if source is None else source
    clock = MonotonicClock() if clock is None else clock
    unavailable: list[str] = []
    counters: dict[str, int] = {}
    for relative in ("net/netstat", "net/snmp"):
        try:
            counters.update(parse_netstat(source.read_proc(relative)))
        except (OSError, ValueError) as exc:
            unavailable.append(f"/proc/{relative}: {exc}")
    sysctls: dict[str, str | None] = {}
    for name in SYSCTLS:
        try:
            sysctls[name] = source.get_sysctl(name)
        except OSError:
            sysctls[name] = None  # absent on this kernel (tcp_tw_recycle since 4.12)
    listeners = _ss_listeners(source)
    if listeners is None:
        listeners = []
        for relative in ("net/tcp", "net/tcp6"):
            try:
                listeners.extend(parse_proc_net_tcp(source.read_proc(relative)))
            except FileNotFoundError:
                continue  # no IPv6
            except (OSError, ValueError) as exc:
                unavailable.append(f"/proc/{relative}: {exc}")
        unavailable.append("listen backlogs: `ss` is not available, only queue lengths are known")
    return Snapshot(
        taken_at=clock.now(),
        counters=counters,
        sysctls=sysctls,
        listeners=tuple(listeners),
        unavailable=tuple(unavailable),
    )


# --------------------------------------------------------------------------- diagnosis


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterDelta:
    """How much a counter moved over the interval, and what that means."""

    name: str
    before: int
    after: int
    causes: tuple[str, ...]
    meaning: str

    @property
    def delta(self) -> int:
        """``after - before``."""
        return self.after - self.before


@dataclass(frozen=True, slots=True, kw_only=True)
class ListenerStatus:
    """A listening socket with what is wrong with it, if anything."""

    listener: Listener
    near_full: bool
    at_somaxconn: bool
    above_somaxconn: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class DoctorReport:
    """What [`rstsafe.tools.doctor`][rstsafe.tools.doctor] found.

    Attributes:
        platform: ``sys.platform``.
        interval: Seconds between the two samples.
        counters: Every known counter's movement (including those that did not move).
        sysctls: The sysctls read (None: absent on this kernel).
        listeners: Every listening socket, with flags.
        advice: One line per problem found, naming the cause.
        unavailable: What could not be read, and why.
    """

    platform: str
    interval: float
    counters: tuple[CounterDelta, ...] = ()
    sysctls: Mapping[str, str | None] = field(default_factory=dict)
    listeners: tuple[ListenerStatus, ...] = ()
    advice: tuple[str, ...] = ()
    unavailable: tuple[str, ...] = ()

    @property
    def moved(self) -> tuple[CounterDelta, ...]:
        """The counters that moved during the interval."""
        return tuple(c for c in self.counters if c.delta > 0)

    def delta(self, name: str) -> int:
        """How much the counter ``name`` (``"TcpExt.ListenOverflows"``) moved; 0 if unknown."""
        for counter in self.counters:
            if counter.name == name:
                return counter.delta
        return 0


def _int_or_none(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.split()[0])
    except (ValueError, IndexError):
        return None


def _sysctl_advice(sysctls: Mapping[str, str | None]) -> list[str]:
    advice: list[str] = []
    if _int_or_none(sysctls.get("net.ipv4.tcp_tw_recycle")):
        advice.append(
            "C11: net.ipv4.tcp_tw_recycle=1 drops SYNs from clients behind NAT by timestamp; "
            "set it to 0 (it was removed in Linux 4.12)"
        )
    if _int_or_none(sysctls.get("net.ipv4.tcp_abort_on_overflow")) == 1:
        advice.append(
            "C4: net.ipv4.tcp_abort_on_overflow=1: an accept-queue overflow resets the "
            "client's connection instead of letting it retry the handshake"
        )
    keepalive_time = _int_or_none(sysctls.get("net.ipv4.tcp_keepalive_time"))
    if keepalive_time is not None and keepalive_time > _SHORTEST_MIDDLEBOX_IDLE:
        advice.append(
            f"C3: TCP keepalive probes start after {keepalive_time} s idle (tcp_keepalive_time), "
            "after NAT gateways and load balancers forget idle flows (240-350 s); long-lived "
            "connections need TCP_KEEPIDLE below that (rstsafe's socket options set it)"
        )
    return advice


def diagnose(before: Snapshot, after: Snapshot) -> DoctorReport:
    """Compare two snapshots and explain what moved. Pure."""
    interval = max(0.0, after.taken_at - before.taken_at)
    counters = tuple(
        CounterDelta(
            name=name,
            before=before.counters[name],
            after=after.counters[name],
            causes=info.causes,
            meaning=info.meaning,
        )
        for name, info in COUNTERS.items()
        if name in before.counters and name in after.counters
    )
    advice: list[str] = []
    for counter in counters:
        if counter.delta > 0:
            causes = ", ".join(counter.causes)
            prefix = f"{causes}: " if causes else ""
            advice.append(f"{prefix}{counter.name} +{counter.delta}: {counter.meaning}")
    somaxconn = _int_or_none(after.sysctls.get("net.core.somaxconn"))
    statuses: list[ListenerStatus] = []
    for listener in after.listeners:
        backlog = listener.backlog
        status = ListenerStatus(
            listener=listener,
            near_full=listener.near_full,
            at_somaxconn=somaxconn is not None and backlog == somaxconn,
            above_somaxconn=somaxconn is not None and backlog is not None and backlog > somaxconn,
        )
        statuses.append(status)
        where = f"{listener.address}:{listener.port}"
        if status.near_full:
            advice.append(
                f"C4: {where} has {listener.queue} connections waiting in an accept queue of "
                f"{backlog}: the application is not accepting fast enough"
            )
        if status.above_somaxconn:
            advice.append(
                f"C4: {where} listens with backlog {backlog}, above net.core.somaxconn "
                f"{somaxconn} (lowered after it started?); new listeners get at most {somaxconn}"
            )
    advice.extend(_sysctl_advice(after.sysctls))
    return DoctorReport(
        platform=sys.platform,
        interval=interval,
        counters=counters,
        sysctls=dict(after.sysctls),
        listeners=tuple(statuses),
        advice=tuple(advice),
        unavailable=tuple(dict.fromkeys((*before.unavailable, *after.unavailable))),
    )


def doctor(
    *,
    interval: float = 5.0,
    source: ProcSource | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Clock | None = None,
) -> DoctorReport:
    """Sample the kernel's TCP counters over ``interval`` seconds and explain what moved.

    Example:
        ```python
        report = rstsafe.tools.doctor(interval=10)
        for line in report.advice:
            print(line)
        ```

    Args:
        interval: Seconds between the two samples.
        source: Where to read from; the host by default, or a
            ``rstsafe.testing.NetworkNamespace`` (its counters are its own).
        sleep: Called once with ``interval`` between the samples.
        clock: The clock timestamps come from.

    Returns:
        A [`DoctorReport`][rstsafe.tools.DoctorReport]. On a platform other than Linux, it is empty
        apart from
        ``unavailable``, which says what could not be read.
    """
    if not interval >= 0:
        raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
    if source is None and not sys.platform.startswith("linux"):
        return DoctorReport(
            platform=sys.platform,
            interval=0.0,
            unavailable=(
                f"this is {sys.platform}: doctor reads Linux's /proc/net/netstat, "
                "/proc/net/snmp, /proc/net/tcp and /proc/sys/net; none exist here. "
                "Use `netstat -s` and `netstat -an` (macOS, BSD) to look at the same counters.",
            ),
        )
    before = take_snapshot(source, clock=clock)
    sleep(interval)
    after = take_snapshot(source, clock=clock)
    return diagnose(before, after)


def listeners_of(report: DoctorReport, *, only_flagged: bool) -> Sequence[ListenerStatus]:
    """The listeners to show: all, or only those near full or above somaxconn."""
    if not only_flagged:
        return report.listeners
    return [s for s in report.listeners if s.near_full or s.above_somaxconn]
