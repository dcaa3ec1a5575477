"""``rstsafe lint``: check connection reuse against the hops in front of it, statically.

The rule at its core (see :mod:`rstsafe.tools._lint._chain`): at every hop, the side that reuses a
connection gives it up before the side that accepted it, or any middlebox on the way, does,
with margin. Inputs are live client objects, a topology file, server configuration files
and Python source; nothing from a file is executed, and files are read within limits
(:mod:`rstsafe.tools._lint._inputs`): regular files only, a size cap per file and in
total, includes inside the configuration's root, nesting at most ``MAX_DEPTH`` deep.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from pathlib import Path

from rstsafe._core.keepalive import KeepAlive
from rstsafe.tools._lint._chain import check_chain
from rstsafe.tools._lint._clients import SupportsKeepAlive, inspect_client
from rstsafe.tools._lint._configs import (
    ConfigResult,
    read_gunicorn,
    read_haproxy,
    read_hypercorn,
    read_nginx,
    read_uvicorn,
)
from rstsafe.tools._lint._inputs import (
    DEFAULT_MAX_FILE_SIZE,
    DEFAULT_MAX_TOTAL_SIZE,
    MAX_DEPTH,
    MAX_FILES,
    Inputs,
)
from rstsafe.tools._lint._model import (
    RULES,
    Finding,
    Hop,
    HopKind,
    LintInputError,
    LintReport,
    Rule,
    Severity,
)
from rstsafe.tools._lint._output import render
from rstsafe.tools._lint._source import iter_python_files, scan_file
from rstsafe.tools._lint._topology import (
    CLIENT_PRESETS,
    HOP_PRESETS,
    hop_from_preset,
    load_topology,
)

__all__ = (
    "CLIENT_PRESETS",
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_TOTAL_SIZE",
    "HOP_PRESETS",
    "MAX_DEPTH",
    "MAX_FILES",
    "RULES",
    "Finding",
    "Hop",
    "HopKind",
    "LintInputError",
    "LintReport",
    "Rule",
    "Severity",
    "SupportsKeepAlive",
    "lint",
    "recommended_ttl",
    "render",
)

Upstream = Hop | str | float


def recommended_ttl(idle_timeout: float) -> float:
    """The idle TTL rstsafe uses in front of a peer with this idle timeout (default margin)."""

    return KeepAlive().ttl_below(idle_timeout)


def _upstream_hops(upstream: Upstream | Sequence[Upstream] | None) -> list[Hop]:
    if upstream is None:
        return []
    items: Sequence[Upstream] = (
        [upstream] if isinstance(upstream, Hop | str | int | float) else list(upstream)
    )
    hops: list[Hop] = []
    for index, item in enumerate(items):
        if isinstance(item, Hop):
            hops.append(item)
        elif isinstance(item, str):
            hops.append(hop_from_preset(item))
        elif isinstance(item, int | float) and not isinstance(item, bool):
            hops.append(
                Hop(
                    name=f"server{index + 1 if len(items) > 1 else ''}",
                    kind=HopKind.SERVER,
                    idle_timeout=float(item),
                    detail="idle timeout given to lint()",
                )
            )
        else:
            raise TypeError(
                f"upstream items must be Hop, a preset name or seconds, got {type(item).__name__}"
            )
    return hops


def _severity_order(finding: Finding) -> tuple[int, str, int]:
    rank = {Severity.ERROR: 0, Severity.WARNING: 1, Severity.NOTE: 2}[finding.severity]
    return rank, finding.file or "", finding.line or 0


def lint(
    *clients: object,
    upstream: Upstream | Sequence[Upstream] | None = None,
    topology: str | Path | None = None,
    nginx: str | Path | None = None,
    gunicorn: str | Path | None = None,
    uvicorn: str | Path | None = None,
    hypercorn: str | Path | None = None,
    haproxy: str | Path | None = None,
    sources: Iterable[str | Path] = (),
    somaxconn: int | None = None,
    max_file_size: int = DEFAULT_MAX_FILE_SIZE,
    max_total_size: int = DEFAULT_MAX_TOTAL_SIZE,
    include_root: str | Path | None = None,
) -> LintReport:
    """Check clients and configuration for reset hazards; nothing is sent or executed.

    The chain checked is: each client, then the topology file's hops, then ``upstream``,
    then the configuration files in the order HAProxy, nginx, and the application server
    (gunicorn, uvicorn, hypercorn). With no client, a topology file's ``[client]`` table
    starts the chain. Several clients are several chains that share the hops after them
    (``report.chains``); findings about one client's link name it (``finding.client``),
    and two clients of one type are told apart as ``requests.Session`` and
    ``requests.Session#2``.

    Example:
        ```python
        report = rstsafe.tools.lint(requests.Session(), upstream=["aws-alb", "gunicorn-gthread"])
        for finding in report.findings:
            print(finding.code, finding.message)
        ```

    Args:
        *clients: Live client objects: ``requests.Session``, ``urllib3.PoolManager``,
            ``httpx.Client``/``AsyncClient``, or any object with ``rstsafe_keepalive``.
        upstream: What is in front of the clients: hops, preset names (``"aws-alb"``,
            ``"aws-nat-gateway"``, ``"gcp-lb"``, ``"azure-lb"``, ``"cloudflare"``,
            ``"uvicorn"`` ...; see ``HOP_PRESETS``) or a server's idle timeout in seconds.
        topology: A topology file (TOML; needs Python 3.11+).
        nginx: An nginx.conf (``include`` is followed).
        gunicorn: A gunicorn config file (Python, read with ``ast``).
        uvicorn: A uvicorn command line, or a file (Procfile, Dockerfile) running uvicorn.
        hypercorn: A hypercorn config (TOML or Python) or command line.
        haproxy: An haproxy.cfg.
        sources: Python files or directories to scan for hazards.
        somaxconn: The servers' ``net.core.somaxconn``, to check listen backlogs against
            (a topology file's ``somaxconn`` wins). None: backlogs are not checked.
        max_file_size: Bytes one file may have (default 1 MiB).
        max_total_size: Bytes all files read may have together (default 64 MiB).
        include_root: The directory that files named by a configuration (nginx
            ``include``, a topology file's ``nginx = ...``) must be in. None: the
            directory of the file given. ``"/"`` allows every file.

    Returns:
        A [`LintReport`][rstsafe.tools.LintReport]; ``report.ok`` is False when there are errors.

    Raises:
        LintInputError: A file is missing, not a regular file, too large, unreadable or
            malformed, nested more than ``MAX_DEPTH`` deep, or names a file outside
            ``include_root`` (names file and line). Nothing else is raised for any
            content of any file.
        TypeError: A client object is not supported, or a limit is not an integer.
        ValueError: A limit is not positive (the message names it).
    """
    inputs = Inputs(
        max_file_size=max_file_size,
        max_total_size=max_total_size,
        include_root=include_root,
    )
    findings: list[Finding] = []
    files: list[str] = []
    client_hops: list[Hop] = []
    names: dict[str, int] = {}
    for client in clients:
        facts = inspect_client(client)
        hop = facts.hop
        names[hop.name] = names.get(hop.name, 0) + 1
        if names[hop.name] > 1:  # two clients of one type: findings must tell them apart
            hop = replace(hop, name=f"{hop.name}#{names[hop.name]}")
        client_hops.append(hop)
        findings.extend(
            replace(
                f,
                client=hop.name,
                hops=tuple(hop.name if h == facts.hop.name else h for h in f.hops),
            )
            for f in facts.findings
        )
    rest: list[Hop] = []
    if topology is not None:
        loaded = load_topology(topology, somaxconn=somaxconn, inputs=inputs)
        somaxconn = loaded.somaxconn
        if not client_hops and loaded.client is not None:
            client_hops.append(loaded.client)
        rest.extend(loaded.hops)
        findings.extend(loaded.findings)
        files.extend(loaded.files)
    rest.extend(_upstream_hops(upstream))
    results: list[ConfigResult] = []
    if haproxy is not None:
        results.append(read_haproxy(haproxy, inputs=inputs))
    if nginx is not None:
        results.append(read_nginx(nginx, somaxconn=somaxconn, inputs=inputs))
    if gunicorn is not None:
        results.append(read_gunicorn(gunicorn, somaxconn=somaxconn, inputs=inputs))
    if uvicorn is not None:
        results.append(read_uvicorn(uvicorn, somaxconn=somaxconn, inputs=inputs))
    if hypercorn is not None:
        results.append(read_hypercorn(hypercorn, somaxconn=somaxconn, inputs=inputs))
    for result in results:
        rest.append(result.hop)
        findings.extend(result.findings)
        files.extend(result.files)
    for path in iter_python_files(sources):
        findings.extend(scan_file(path, inputs=inputs))
        files.append(str(path))
    findings.extend(check_chain(rest, recommended_ttl=recommended_ttl))
    # Each client is its own chain up to the hops they share; the shared part is checked
    # once (above), each client's own link once per client, and named after it.
    several = len(client_hops) > 1
    for client_hop in client_hops:
        findings.extend(
            replace(f, client=client_hop.name)
            for f in check_chain([client_hop, *rest], recommended_ttl=recommended_ttl)
            if f.hops[:1] == (client_hop.name,)
        )
    return LintReport(
        findings=tuple(sorted(findings, key=_severity_order)),
        hops=(*client_hops, *rest),
        files=tuple(dict.fromkeys(files)),
        chains=tuple((client_hop, *rest) for client_hop in client_hops) if several else (),
    )
