"""Presets for common infrastructure and clients, and the topology file (TOML).

A topology file lists the hops from the client to the origin, in order::

    somaxconn = 4096            # optional: the servers' net.core.somaxconn

    [client]
    library = "httpx"           # or: idle_ttl = 30

    [[hops]]
    preset = "aws-nat-gateway"

    [[hops]]
    name = "edge"
    preset = "aws-alb"
    idle_timeout = 120          # overrides the preset

    [[hops]]
    nginx = "deploy/nginx.conf" # read from a config file (relative to this file)

    [[hops]]
    name = "app"
    kind = "server"
    idle_timeout = 5
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from rstsafe.tools._lint import _configs
from rstsafe.tools._lint._inputs import MAX_SECONDS, Inputs, shown
from rstsafe.tools._lint._model import Finding, Hop, HopKind, LintInputError

__all__ = ("CLIENT_PRESETS", "HOP_PRESETS", "Topology", "hop_from_preset", "load_topology")

# Infrastructure idle limits (seconds), from each vendor's documentation:
# - AWS ALB: idle timeout 60 s by default, applied to the client side and to the connections
#   it keeps to targets (AWS asks targets for a keep-alive above it).
# - AWS NLB and NAT gateway: 350 s idle, then the flow is forgotten and the next packet gets RST.
# - GCP external HTTP(S) LB: client keep-alive 610 s, backend keep-alive 600 s.
# - Azure Load Balancer: 4 min idle by default, then the flow is dropped silently.
# - Cloudflare: 400 s keep-alive to clients; "Proxy Idle Timeout" 900 s to the origin.
HOP_PRESETS: Mapping[str, Hop] = {
    "aws-alb": Hop(
        name="aws-alb",
        kind=HopKind.PROXY,
        idle_timeout=60.0,
        upstream_idle_ttl=60.0,
        detail="AWS ALB: 60 s idle, both sides",
    ),
    "aws-nlb": Hop(
        name="aws-nlb",
        kind=HopKind.MIDDLEBOX,
        idle_timeout=350.0,
        detail="AWS NLB: forgets a flow after 350 s idle (RST after)",
    ),
    "aws-nat-gateway": Hop(
        name="aws-nat-gateway",
        kind=HopKind.MIDDLEBOX,
        idle_timeout=350.0,
        detail="AWS NAT gateway: forgets a flow after 350 s idle (RST after)",
    ),
    "gcp-lb": Hop(
        name="gcp-lb",
        kind=HopKind.PROXY,
        idle_timeout=610.0,
        upstream_idle_ttl=600.0,
        detail="GCP HTTP(S) LB: 610 s to clients, 600 s to backends",
    ),
    "azure-lb": Hop(
        name="azure-lb",
        kind=HopKind.MIDDLEBOX,
        idle_timeout=240.0,
        detail="Azure LB: drops a flow silently after 4 min idle",
    ),
    "cloudflare": Hop(
        name="cloudflare",
        kind=HopKind.PROXY,
        idle_timeout=400.0,
        upstream_idle_ttl=900.0,
        detail="Cloudflare: 400 s to clients, 900 s to the origin",
    ),
    "nginx": Hop(
        name="nginx",
        kind=HopKind.PROXY,
        idle_timeout=75.0,
        reuses_upstream=False,
        detail="nginx defaults: keepalive_timeout 75s, no upstream keepalive",
    ),
    "gunicorn": Hop(
        name="gunicorn",
        kind=HopKind.SERVER,
        idle_timeout=0.0,
        detail="gunicorn sync worker: no keep-alive",
    ),
    "gunicorn-gthread": Hop(
        name="gunicorn",
        kind=HopKind.SERVER,
        idle_timeout=2.0,
        detail="gunicorn gthread: 2 s",
    ),
    "uvicorn": Hop(name="uvicorn", kind=HopKind.SERVER, idle_timeout=5.0, detail="uvicorn: 5 s"),
    "hypercorn": Hop(
        name="hypercorn", kind=HopKind.SERVER, idle_timeout=5.0, detail="hypercorn: 5 s"
    ),
    "node": Hop(name="node", kind=HopKind.SERVER, idle_timeout=5.0, detail="Node.js http: 5 s"),
    "apache": Hop(name="apache", kind=HopKind.SERVER, idle_timeout=5.0, detail="Apache httpd: 5 s"),
}

# Client pools' idle TTLs by default (seconds; math.inf: none at all):
# urllib3 and requests keep idle connections until they notice the close; httpx/httpcore
# expire them after 5 s; aiohttp 15 s; Go's net/http 90 s; OkHttp 5 min; undici 4 s.
CLIENT_PRESETS: Mapping[str, float] = {
    "requests": math.inf,
    "urllib3": math.inf,
    "httpx": 5.0,
    "aiohttp": 15.0,
    "go": 90.0,
    "okhttp": 300.0,
    "undici": 4.0,
}

_HOP_KEYS = frozenset(
    {
        "name",
        "preset",
        "kind",
        "idle_timeout",
        "upstream_idle_ttl",
        "upstream_keepalive",
        "max_requests",
        "nginx",
        "gunicorn",
        "uvicorn",
        "hypercorn",
        "haproxy",
    }
)
_CONFIG_KEYS = ("nginx", "gunicorn", "uvicorn", "hypercorn", "haproxy")


def hop_from_preset(preset: str, *, name: str | None = None) -> Hop:
    """Return the hop a preset describes, optionally renamed.

    Raises:
        ValueError: ``preset`` is not one of :data:`HOP_PRESETS`.
    """
    try:
        hop = HOP_PRESETS[preset]
    except KeyError:
        known = ", ".join(sorted(HOP_PRESETS))
        raise ValueError(f"unknown preset {shown(preset)}; known presets: {known}") from None
    return replace(hop, name=name or hop.name)


class Topology:
    """The hops read from a topology file, the findings reading produced, and the files read."""

    __slots__ = ("client", "files", "findings", "hops", "somaxconn")

    def __init__(
        self,
        *,
        client: Hop | None,
        hops: list[Hop],
        findings: list[Finding],
        files: list[str],
        somaxconn: int | None,
    ) -> None:
        self.client = client
        self.hops = hops
        self.findings = findings
        self.files = files
        self.somaxconn = somaxconn


def _table_lines(text: str, header: str) -> list[int]:
    pattern = re.compile(rf"^\s*\[\[\s*{re.escape(header)}\s*\]\]")
    return [n for n, line in enumerate(text.splitlines(), start=1) if pattern.match(line)]


def _number(
    table: Mapping[str, Any],
    key: str,
    file: str,
    line: int | None,
    *,
    maximum: float = MAX_SECONDS,
) -> float | None:
    """A finite number in 0..maximum, or None if absent; NaN, inf and huge ints are refused."""
    if key not in table:
        return None
    value = table[key]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= maximum  # False for NaN; int vs float compares without overflow
    ):
        bound = maximum if isinstance(maximum, int) else f"{maximum:g}"
        raise LintInputError(
            f"{key} must be a number in 0..{bound}, got {shown(value)}",
            file=file,
            line=line,
        )
    return float(value)


def load_topology(
    path: str | Path, *, somaxconn: int | None = None, inputs: Inputs | None = None
) -> Topology:
    """Read a topology file (TOML) into hops; config files it names are read too.

    The config files must be inside the topology file's root (``inputs``; by default its
    directory), and so must their includes.

    Raises:
        LintInputError: the file is unreadable, not TOML, or holds unknown keys or values.
    """
    path = Path(path)
    file = str(path)
    inputs = (inputs if inputs is not None else Inputs()).rooted_at(path)
    data, text = _configs._load_toml(path, inputs)
    files = [file]
    findings: list[Finding] = []
    unknown = set(data) - {"client", "hops", "somaxconn"}
    if unknown:
        key = sorted(unknown)[0]
        raise LintInputError(
            f"unknown key {shown(key)} (expected client, hops, somaxconn)",
            file=file,
            line=_configs._line_of_key(text, key),
        )
    if "somaxconn" in data:
        value = data["somaxconn"]
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**31:
            raise LintInputError(
                f"somaxconn must be a positive 32-bit integer, got {shown(value)}",
                file=file,
                line=_configs._line_of_key(text, "somaxconn"),
            )
        somaxconn = value
    client = _read_client(data.get("client"), file, text)
    raw_hops = data.get("hops", [])
    if not isinstance(raw_hops, list) or not all(isinstance(h, dict) for h in raw_hops):
        raise LintInputError("hops must be an array of tables ([[hops]])", file=file)
    lines = _table_lines(text, "hops")
    hops: list[Hop] = []
    for index, table in enumerate(raw_hops):
        line = lines[index] if index < len(lines) else None
        hop, extra_findings, extra_files = _read_hop(table, path, line, somaxconn, inputs)
        hops.append(hop)
        findings.extend(extra_findings)
        files.extend(extra_files)
    return Topology(client=client, hops=hops, findings=findings, files=files, somaxconn=somaxconn)


def _read_client(table: Any, file: str, text: str) -> Hop | None:
    if table is None:
        return None
    line = next(
        (n for n, row in enumerate(text.splitlines(), 1) if row.strip() == "[client]"), None
    )
    if not isinstance(table, dict):
        raise LintInputError("client must be a table ([client])", file=file, line=line)
    unknown = set(table) - {"name", "library", "idle_ttl"}
    if unknown:
        raise LintInputError(
            f"unknown client key {shown(sorted(unknown)[0])} (expected name, library, idle_ttl)",
            file=file,
            line=line,
        )
    for key in ("name", "library"):
        if key in table and not (isinstance(table[key], str) and table[key]):
            raise LintInputError(f"{key} must be a non-empty string", file=file, line=line)
    name = str(table.get("name", table.get("library", "client")))
    ttl = _number(table, "idle_ttl", file, line)
    detail = "idle_ttl from the topology file"
    if ttl is None and "library" in table:
        library = table["library"]
        if library not in CLIENT_PRESETS:
            known = ", ".join(sorted(CLIENT_PRESETS))
            raise LintInputError(
                f"unknown client library {shown(library)}; known: {known}", file=file, line=line
            )
        ttl = CLIENT_PRESETS[library]
        detail = f"{library} default"
    if ttl == 0:
        raise LintInputError("idle_ttl must be > 0", file=file, line=line)
    return Hop(
        name=name,
        kind=HopKind.CLIENT,
        upstream_idle_ttl=ttl,
        source=file,
        line=line,
        detail=detail,
        upstream_idle_ttl_setting=f"idle_ttl (or library) in the [client] table of {file}",
    )


def _in_topology(hop: Hop, file: str, line: int | None) -> Hop:
    """``hop`` as defined in the topology file ``file``: its values are set there."""
    return replace(
        hop,
        source=file,
        line=line,
        idle_timeout_setting=f"idle_timeout for {hop.name} in {file}",
        upstream_idle_ttl_setting=f"upstream_idle_ttl for {hop.name} in {file}",
    )


def _read_hop(
    table: Mapping[str, Any],
    path: Path,
    line: int | None,
    somaxconn: int | None,
    inputs: Inputs,
) -> tuple[Hop, list[Finding], list[str]]:
    file = str(path)
    unknown = set(table) - _HOP_KEYS
    if unknown:
        raise LintInputError(
            f"unknown hop key {shown(sorted(unknown)[0])} "
            f"(expected one of {', '.join(sorted(_HOP_KEYS))})",
            file=file,
            line=line,
        )
    configs = [key for key in _CONFIG_KEYS if key in table]
    if len(configs) > 1:
        raise LintInputError(
            f"a hop reads at most one config file, got {' and '.join(configs)}",
            file=file,
            line=line,
        )
    name = table.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        raise LintInputError("name must be a non-empty string", file=file, line=line)
    findings: list[Finding] = []
    files: list[str] = []
    hop: Hop
    if configs:
        key = configs[0]
        value = table[key]
        if not isinstance(value, str):
            raise LintInputError(f"{key} must be a string", file=file, line=line)
        target: str | Path = value
        # uvicorn/hypercorn accept a command line; anything else is a path next to this file.
        if key in ("nginx", "gunicorn", "haproxy") or (
            " " not in value and _configs._names_a_file(str(path.parent / value))
        ):
            target = path.parent / value
            if not inputs.within_root(target):
                raise LintInputError(
                    f"{key} = {shown(value)} is outside the configuration root "
                    f"{inputs.include_root}; pass include_root= (--include-root) to read it",
                    file=file,
                    line=line,
                )
        result = _read_config(key, target, name or key, somaxconn, inputs)
        hop, findings, files = result.hop, result.findings, result.files
    elif "preset" in table:
        preset = table["preset"]
        if not isinstance(preset, str):
            raise LintInputError("preset must be a string", file=file, line=line)
        try:
            hop = hop_from_preset(preset, name=name)
        except ValueError as exc:
            raise LintInputError(str(exc), file=file, line=line) from None
        hop = _in_topology(hop, file, line)
    else:
        if "kind" not in table:
            raise LintInputError(
                "a hop needs a preset, a config file (nginx = ...) or a kind", file=file, line=line
            )
        hop = _in_topology(Hop(name=name or f"hop{line or ''}", kind=HopKind.SERVER), file, line)
    changes: dict[str, Any] = {}
    if "kind" in table:
        kinds = ", ".join(kind.value for kind in HopKind if kind is not HopKind.CLIENT)
        kind = table["kind"]
        if not isinstance(kind, str) or kind not in {k.value for k in HopKind}:
            raise LintInputError(
                f"unknown kind {shown(kind)}; expected {kinds}", file=file, line=line
            )
        changes["kind"] = HopKind(kind)
        if changes["kind"] is HopKind.CLIENT:
            raise LintInputError("the client goes in the [client] table", file=file, line=line)
    idle = _number(table, "idle_timeout", file, line)
    if idle is not None:
        changes["idle_timeout"] = idle
    upstream = _number(table, "upstream_idle_ttl", file, line)
    if upstream is not None:
        if upstream == 0:
            raise LintInputError("upstream_idle_ttl must be > 0", file=file, line=line)
        changes["upstream_idle_ttl"] = upstream
        changes["reuses_upstream"] = True
    if "upstream_keepalive" in table:
        if not isinstance(table["upstream_keepalive"], bool):
            raise LintInputError("upstream_keepalive must be true or false", file=file, line=line)
        changes["reuses_upstream"] = table["upstream_keepalive"]
    requests = _number(table, "max_requests", file, line, maximum=2**63 - 1)
    if requests is not None:
        if requests < 1 or requests != int(requests):
            raise LintInputError("max_requests must be an integer >= 1", file=file, line=line)
        changes["max_requests"] = int(requests)
    if changes:
        hop = replace(hop, **changes)
    return hop, findings, files


def _read_config(
    key: str, target: str | Path, name: str, somaxconn: int | None, inputs: Inputs
) -> _configs.ConfigResult:
    if key == "nginx":
        return _configs.read_nginx(target, name=name, somaxconn=somaxconn, inputs=inputs)
    if key == "gunicorn":
        return _configs.read_gunicorn(target, name=name, somaxconn=somaxconn, inputs=inputs)
    if key == "uvicorn":
        return _configs.read_uvicorn(target, name=name, somaxconn=somaxconn, inputs=inputs)
    if key == "hypercorn":
        return _configs.read_hypercorn(target, name=name, somaxconn=somaxconn, inputs=inputs)
    return _configs.read_haproxy(target, name=name, inputs=inputs)
