"""The core rule, checked hop by hop: the side that reuses a connection gives it up first.

Pure: hops in, findings out. For every hop that reuses connections (the client's pool, a
proxy's upstream pool), the connection it reuses passes through zero or more middleboxes
and ends at the next hop that accepts it. Each of those forgets an idle connection after
its own idle timeout; the smallest is the *bound*. The reuser's idle TTL must be below the
bound by at least the margin rstsafe itself would use (``recommended_ttl(bound)``), or the
close and the next request can cross on the wire (C2) or the request lands on a connection
already gone (C1, C3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

from rstsafe.tools._lint._model import Finding, Hop, HopKind, Severity

__all__ = ("check_chain", "format_seconds", "link_bound", "link_path")


def format_seconds(value: float) -> str:
    """Return ``value`` as a short duration: ``"60 s"``, ``"2.5 s"``, ``"no TTL"``."""
    if value == math.inf:
        return "no TTL"
    if value == int(value):
        return f"{int(value)} s"
    return f"{value:.3g} s"


def check_chain(hops: Sequence[Hop], *, recommended_ttl: Callable[[float], float]) -> list[Finding]:
    """Check every reusing hop against what lies between it and the next accepting hop.

    Args:
        hops: The chain, client side first.
        recommended_ttl: The idle TTL rstsafe would use in front of a peer whose idle
            timeout is the argument (the core's margin rule).

    Returns:
        The findings, in chain order.
    """
    findings: list[Finding] = []
    for index, reuser in enumerate(hops):
        if not reuser.reuses:
            continue
        path = link_path(hops[index + 1 :])
        if not path:
            continue
        terminal = path[-1]
        if terminal.accepts and terminal.idle_timeout == 0:
            # Keep-alive is off there: every response says `Connection: close`, so nothing
            # is ever reused across this link.
            continue
        findings.extend(_check_link(reuser, path, recommended_ttl))
    return findings


def link_path(after: Sequence[Hop]) -> list[Hop]:
    """The hops a reused connection crosses: middleboxes up to the first accepting hop."""
    path: list[Hop] = []
    for later in after:
        path.append(later)
        if later.accepts:
            break
    return path


def link_bound(after: Sequence[Hop]) -> Hop | None:
    """The hop on the link that forgets an idle connection first, if any idle timeout is known."""
    bounded = [h for h in link_path(after) if h.idle_timeout is not None and h.idle_timeout > 0]
    return min(bounded, key=lambda hop: hop.idle_timeout or 0.0) if bounded else None


def _how_to_set(hop: Hop, key: str, setting: str | None) -> str:
    """Where the user sets ``key`` of ``hop``, in the terms of the input it came from.

    A setting the reader knew (a config file's directive, a command line's flag, a
    topology key) is named; a live client is told what lint can read; a ``Hop`` built in
    Python is told its argument. A topology key is named only for a topology file's hop.
    """
    if setting is not None:
        return setting
    if hop.kind is HopKind.CLIENT and key == "upstream_idle_ttl":
        return (
            f"an idle TTL lint can read on {hop.name} (an rstsafe adapter or transport, "
            "httpx's Limits(keepalive_expiry=...), or an rstsafe_keepalive attribute)"
        )
    return f"{key}= on the Hop for {hop.name}"


def _fix_ttl(reuser: Hop, target: str) -> str:
    """The fix for an unknown idle TTL: where to set it, and the value to stay under."""
    how = _how_to_set(reuser, "upstream_idle_ttl", reuser.upstream_idle_ttl_setting)
    if "{target}" in how:  # the setting's text says where the value goes
        return "set " + how.replace("{target}", target)
    return f"set {how} (at most {target})"


def _check_link(
    reuser: Hop, path: Sequence[Hop], recommended_ttl: Callable[[float], float]
) -> list[Finding]:
    findings: list[Finding] = []
    for hop in path:
        if hop.idle_timeout is None:
            findings.append(
                Finding(
                    code="RST004",
                    severity=Severity.NOTE,
                    message=f"idle timeout of {hop.name} is unknown; "
                    f"{reuser.name} could not be checked against it",
                    fix="set " + _how_to_set(hop, "idle_timeout", hop.idle_timeout_setting),
                    hops=(reuser.name, hop.name),
                    file=hop.source,
                    line=hop.line,
                )
            )
    bound_hop = link_bound(path)
    if bound_hop is None:
        return findings
    bound = bound_hop.idle_timeout
    assert bound is not None  # filtered above
    what = "forgets an idle flow" if bound_hop.kind is HopKind.MIDDLEBOX else "closes idle ones"
    ttl = reuser.upstream_idle_ttl
    target = recommended_ttl(bound)
    # Point at what sets the reuser's TTL; failing that, at the bound's timeout.
    reuser_file = reuser.upstream_source or reuser.source
    reuser_line = reuser.upstream_line if reuser.upstream_source else reuser.line
    file, line = (reuser_file, reuser_line) if reuser_file else (bound_hop.source, bound_hop.line)
    hops = (reuser.name, bound_hop.name)
    if ttl is None:
        findings.append(
            Finding(
                code="RST004",
                severity=Severity.NOTE,
                message=f"idle TTL of {reuser.name} is unknown; "
                f"{bound_hop.name} {what} after {format_seconds(bound)}",
                fix=_fix_ttl(reuser, format_seconds(target)),
                hops=hops,
                file=file,
                line=line,
            )
        )
    elif ttl == math.inf:
        findings.append(
            Finding(
                code="RST001",
                severity=Severity.ERROR,
                message=f"{reuser.name} keeps idle connections with no idle TTL, but "
                f"{bound_hop.name} {what} after {format_seconds(bound)}",
                fix=f"give {reuser.name} an idle TTL of at most {format_seconds(target)} "
                "(rstsafe's adapters do)",
                hops=hops,
                file=file,
                line=line,
            )
        )
    elif ttl >= bound:
        findings.append(
            Finding(
                code="RST002",
                severity=Severity.ERROR,
                message=f"{reuser.name} keeps idle connections {format_seconds(ttl)}, but "
                f"{bound_hop.name} {what} after {format_seconds(bound)}",
                fix=f"lower {reuser.name}'s idle TTL to at most {format_seconds(target)}, "
                f"or raise {bound_hop.name}'s idle timeout above {format_seconds(ttl)}",
                hops=hops,
                file=file,
                line=line,
            )
        )
    elif ttl > target:
        findings.append(
            Finding(
                code="RST003",
                severity=Severity.WARNING,
                message=f"{reuser.name} keeps idle connections {format_seconds(ttl)}, only "
                f"{format_seconds(bound - ttl)} below {bound_hop.name}'s "
                f"{format_seconds(bound)}",
                fix=f"lower {reuser.name}'s idle TTL to at most {format_seconds(target)}",
                hops=hops,
                file=file,
                line=line,
            )
        )
    return findings
