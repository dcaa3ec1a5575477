"""The facts lint works on (hops) and what it reports (findings), with no I/O.

A *hop* is one component on the way from the client to the origin: the client's own pool,
a NAT gateway, a load balancer, a reverse proxy, the application server. Each hop may
*accept* connections (and close them after ``idle_timeout`` seconds idle) and may *reuse*
connections to the next hop (and give them up after ``upstream_idle_ttl`` seconds idle).
A *middlebox* (NAT gateway, NLB, Azure LB) does neither: it forwards a TCP flow it does not
terminate, and forgets it after ``idle_timeout`` seconds idle.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

__all__ = (
    "RULES",
    "Finding",
    "Hop",
    "HopKind",
    "LintInputError",
    "LintReport",
    "Rule",
    "Severity",
)


class Severity(str, enum.Enum):
    """How bad a finding is. The values are SARIF's ``level`` names."""

    ERROR = "error"
    WARNING = "warning"
    NOTE = "note"


class HopKind(str, enum.Enum):
    """What a hop does with connections."""

    CLIENT = "client"
    """Reuses connections to the next hop; accepts none (your pool)."""
    MIDDLEBOX = "middlebox"
    """Forwards TCP flows without terminating them; forgets idle ones (NAT, NLB)."""
    PROXY = "proxy"
    """Accepts connections and opens its own to the next hop (nginx, ALB, HAProxy)."""
    SERVER = "server"
    """Accepts connections and answers; the end of the chain (gunicorn, uvicorn)."""


# "No idle TTL at all": the pool keeps an idle connection until the peer's close is noticed.
UNBOUNDED = math.inf


@dataclass(frozen=True, slots=True, kw_only=True)
class Hop:
    """One component between the client and the origin, with its idle timeouts.

    Args:
        name: A label used in findings ("nginx", "alb", "client").
        kind: What the hop does with connections (see [`HopKind`][rstsafe.tools.HopKind]).
        idle_timeout: Seconds an idle connection it *accepted* (or, for a middlebox, an
            idle flow through it) is kept. ``0`` means keep-alive is off: it closes after
            every response. ``None`` means unknown.
        upstream_idle_ttl: Seconds it keeps an idle connection it *reuses* to the next hop;
            ``math.inf`` means no idle TTL at all (urllib3, requests). ``None`` means unknown.
        reuses_upstream: Whether it reuses connections to the next hop at all.
        max_requests: Requests it serves on one accepted connection before closing it.
        backlog: The listen backlog it asks for, when known.
        source: The file the hop was read from, if any.
        line: The line in ``source`` that defines it (its accepting side's idle timeout).
        upstream_source: The file that sets ``upstream_idle_ttl``, when not ``source``.
        upstream_line: The line that sets ``upstream_idle_ttl``.
        detail: A short note on where the values came from ("nginx default").
        idle_timeout_setting: What sets ``idle_timeout`` where the hop was read from, in
            the input's own terms (``"timeout http-keep-alive in haproxy.cfg"``); used in
            fixes. None: lint names the topology key or the ``Hop`` argument.
        upstream_idle_ttl_setting: The same for ``upstream_idle_ttl``.
    """

    name: str
    kind: HopKind
    idle_timeout: float | None = None
    upstream_idle_ttl: float | None = None
    reuses_upstream: bool = True
    max_requests: int | None = None
    backlog: int | None = None
    source: str | None = None
    line: int | None = None
    upstream_source: str | None = None
    upstream_line: int | None = None
    detail: str = ""
    idle_timeout_setting: str | None = None
    upstream_idle_ttl_setting: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("name must not be empty")
        if self.idle_timeout is not None and not (0 <= self.idle_timeout < math.inf):
            raise ValueError(
                f"idle_timeout must be a finite number >= 0, got {self.idle_timeout!r}"
            )
        if self.upstream_idle_ttl is not None and not self.upstream_idle_ttl > 0:
            raise ValueError(f"upstream_idle_ttl must be > 0, got {self.upstream_idle_ttl!r}")
        if self.max_requests is not None and self.max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {self.max_requests!r}")
        if self.backlog is not None and self.backlog < 0:
            raise ValueError(f"backlog must be >= 0, got {self.backlog!r}")

    @property
    def accepts(self) -> bool:
        """Whether this hop terminates the TCP connection coming from the previous hop."""
        return self.kind in (HopKind.PROXY, HopKind.SERVER)

    @property
    def reuses(self) -> bool:
        """Whether this hop keeps idle connections to the next hop for reuse."""
        return self.kind in (HopKind.CLIENT, HopKind.PROXY) and self.reuses_upstream


@dataclass(frozen=True, slots=True)
class Rule:
    """A finding code: what it means, why it matters, and the cause it leads to."""

    code: str
    severity: Severity
    title: str
    explanation: str
    causes: tuple[str, ...]


# The catalogue. Codes are stable: never renumber, only add. RST0xx are about the chain of
# hops and configuration files, RST1xx about Python source and live client objects.
RULES: dict[str, Rule] = {
    rule.code: rule
    for rule in (
        Rule(
            "RST001",
            Severity.ERROR,
            "pool has no idle TTL",
            "The pool keeps an idle connection until it notices the peer closed it, so it "
            "will hand out connections the next hop has already closed or forgotten.",
            ("C1", "C2", "C3"),
        ),
        Rule(
            "RST002",
            Severity.ERROR,
            "reuser outlives the next hop's idle timeout",
            "The side that reuses a connection keeps it idle longer than the side that "
            "accepted it (or a middlebox on the way) does, so requests are written onto "
            "connections that are already closed: resets and RemoteDisconnected.",
            ("C1", "C2", "C3"),
        ),
        Rule(
            "RST003",
            Severity.WARNING,
            "idle TTL too close to the next hop's idle timeout",
            "The reuser gives the connection up first, but by less than the margin rstsafe "
            "uses; the close and the next request can still cross on the wire.",
            ("C2",),
        ),
        Rule(
            "RST004",
            Severity.NOTE,
            "idle timeout unknown",
            "A hop's idle timeout (or a reuser's idle TTL) could not be determined, so the "
            "rule could not be checked for it. Set it where the hop is configured.",
            (),
        ),
        Rule(
            "RST010",
            Severity.WARNING,
            "listen backlog above net.core.somaxconn",
            "The kernel silently caps the accept queue at somaxconn; bursts above it "
            "overflow the queue and the client's first request is dropped or reset.",
            ("C4",),
        ),
        Rule(
            "RST011",
            Severity.NOTE,
            "value not known statically",
            "A setting is computed at run time; lint does not execute configuration, so it "
            "assumed the documented default.",
            (),
        ),
        Rule(
            "RST012",
            Severity.NOTE,
            "include outside the configuration root not read",
            "An include resolves outside the directory of the configuration lint was "
            "given (or include_root), so lint did not open it: settings in it were not "
            "checked. Files outside the root are never read unless allowed, so that a "
            "configuration cannot make lint read, or quote, arbitrary files.",
            (),
        ),
        Rule(
            "RST013",
            Severity.NOTE,
            "setting has no effect",
            "A setting is present but the server ignores it in the mode it runs in (gunicorn's "
            "keepalive with the sync worker, which closes after every response), so the value "
            "written there is not what happens.",
            (),
        ),
        Rule(
            "RST101",
            Severity.ERROR,
            "SO_LINGER with a zero timeout",
            "close() then sends RST instead of FIN and throws unsent data away; the peer "
            "logs 'Connection reset by peer'.",
            ("C5", "C11"),
        ),
        Rule(
            "RST102",
            Severity.ERROR,
            "retries include non-idempotent methods",
            "A POST (or PATCH) that reached the server may be executed twice when retried.",
            ("C10",),
        ),
        Rule(
            "RST103",
            Severity.WARNING,
            "request without a timeout",
            "A connection a middlebox dropped silently never answers: without a timeout the "
            "call hangs forever.",
            ("C3",),
        ),
        Rule(
            "RST104",
            Severity.WARNING,
            "socket_options replaces urllib3's defaults",
            "socket_options replaces HTTPConnection.default_socket_options, which sets "
            "TCP_NODELAY; small requests then wait for Nagle's algorithm.",
            (),
        ),
        Rule(
            "RST105",
            Severity.WARNING,
            "httpx Limits built with only keepalive_expiry",
            "httpx.Limits() defaults to no connection limits at all; the client's usual "
            "defaults (100 connections, 20 kept alive) are lost.",
            (),
        ),
        Rule(
            "RST106",
            Severity.WARNING,
            "timeout too tight to connect",
            "A connect or read timeout below a round trip plus a SYN retransmission makes the "
            "client abort handshakes that would have succeeded.",
            ("C9",),
        ),
    )
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One problem lint found.

    Args:
        code: The stable rule code, e.g. ``"RST002"`` (see `RULES`).
        severity: How bad it is; usually the rule's default.
        message: What is wrong, with the numbers.
        fix: One line saying what to change.
        hops: The names of the hops concerned, in chain order.
        file: The file it was found in, when it came from one.
        line: The 1-based line in ``file``.
        client: The client whose chain it is about, when several clients were checked
            (or the finding is about a client object); None: it holds for every client.
    """

    code: str
    severity: Severity
    message: str
    fix: str
    hops: tuple[str, ...] = ()
    file: str | None = None
    line: int | None = None
    client: str | None = None

    def __post_init__(self) -> None:
        if self.code not in RULES:
            raise ValueError(f"code must be one of the RULES, got {self.code!r}")

    @property
    def rule(self) -> Rule:
        """The rule this finding belongs to."""
        return RULES[self.code]


@dataclass(frozen=True, slots=True, kw_only=True)
class LintReport:
    """Everything [`rstsafe.tools.lint`][rstsafe.tools.lint] found, and the hops it checked.

    Args:
        findings: The findings, errors first.
        hops: Every hop checked, each once: the clients first, then the hops they share.
        files: The files read.
        chains: One chain per client, client first, each to the end; clients share the
            hops after their own. Empty: ``hops`` is the one chain.
    """

    findings: tuple[Finding, ...] = ()
    hops: tuple[Hop, ...] = ()
    files: tuple[str, ...] = field(default=())
    chains: tuple[tuple[Hop, ...], ...] = ()

    @property
    def all_chains(self) -> tuple[tuple[Hop, ...], ...]:
        """``chains``, or ``(hops,)`` when none were given (no client, or one)."""
        if self.chains:
            return self.chains
        return (self.hops,) if self.hops else ()

    @property
    def errors(self) -> tuple[Finding, ...]:
        """The findings of severity error."""
        return tuple(f for f in self.findings if f.severity is Severity.ERROR)

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings and notes do not fail a build)."""
        return not self.errors

    @property
    def exit_code(self) -> int:
        """1 when there are errors, else 0: what ``rstsafe lint`` exits with."""
        return 0 if self.ok else 1


class LintInputError(ValueError):
    """A file lint was given cannot be read or parsed; names the file and line.

    Nothing from the file was executed. ``rstsafe lint`` reports it as one line and exits 2.
    """

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None):
        self.file = file
        self.line = line
        self.reason = message
        where = ""
        if file is not None:
            where = f"{file}:{line}: " if line is not None else f"{file}: "
        super().__init__(f"{where}{message}")
