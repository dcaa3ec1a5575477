"""Render a :class:`LintReport` as text, JSON or SARIF 2.1.0 (for code scanning in CI)."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from rstsafe.tools._lint._chain import format_seconds
from rstsafe.tools._lint._model import RULES, Finding, Hop, HopKind, LintReport, Severity

__all__ = ("DOCS_URL", "FINGERPRINT_KEY", "help_uri", "render", "to_json", "to_sarif", "to_text")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# The documentation's root, as in pyproject.toml's [project.urls] Documentation (a test
# keeps the two equal); SARIF's informationUri, and each rule's helpUri below it.
DOCS_URL = "https://rstsafe.readthedocs.io/en/latest/"
# partialFingerprints key: bump the version if what is hashed changes.
FINGERPRINT_KEY = "rstsafeFinding/v1"


def help_uri(code: str) -> str:
    """The documentation of finding ``code``: its anchor on the tools page."""
    return f"{DOCS_URL}tools/#{code.lower()}"


def _counts(report: LintReport) -> dict[str, int]:
    counts = {severity.value: 0 for severity in Severity}
    for finding in report.findings:
        counts[finding.severity.value] += 1
    return counts


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _hop_summary(hop: Hop) -> str:
    parts: list[str] = []
    if hop.accepts and hop.idle_timeout == 0:
        parts.append("closes after every response")
    elif hop.accepts or hop.kind is HopKind.MIDDLEBOX:
        parts.append(
            "idle ?" if hop.idle_timeout is None else f"idle {format_seconds(hop.idle_timeout)}"
        )
    if hop.reuses:
        ttl = hop.upstream_idle_ttl
        parts.append("reuse ?" if ttl is None else f"reuse {format_seconds(ttl)}")
    return f"{hop.name} ({', '.join(parts)})" if parts else hop.name


def to_text(report: LintReport) -> str:
    """A human-readable report: the chain, then one block per finding."""
    counts = _counts(report)
    lines = [
        "rstsafe lint: "
        + ", ".join(
            (
                _plural(counts["error"], "error"),
                _plural(counts["warning"], "warning"),
                _plural(counts["note"], "note"),
            )
        )
    ]
    chains = report.all_chains
    if len(chains) == 1:
        lines.append("chain: " + " -> ".join(_hop_summary(hop) for hop in chains[0]))
    elif chains:
        lines.append("chains:")
        seen: dict[int, int] = {}  # id(hop) -> the chain that drew it first
        for number, chain in enumerate(chains, start=1):
            drawn: list[str] = []
            for hop in chain:
                if id(hop) in seen:
                    drawn.append(f"{hop.name} (shared: chain {seen[id(hop)]} from here)")
                    break
                seen[id(hop)] = number
                drawn.append(_hop_summary(hop))
            lines.append(f"  {number}: " + " -> ".join(drawn))
    for finding in report.findings:
        where = ""
        if finding.file is not None:
            where = f" {finding.file}:{finding.line}" if finding.line else f" {finding.file}"
        hops = f" [{' -> '.join(finding.hops)}]" if finding.hops else ""
        lines.append("")
        lines.append(f"{finding.severity.value:<7} {finding.code}{where}{hops}")
        lines.append(f"        {finding.message}")
        lines.append(f"        fix: {finding.fix}")
        if finding.client is not None and len(chains) > 1:
            lines.append(f"        client: {finding.client}")
    return "\n".join(lines) + "\n"


def _finding_dict(finding: Finding) -> dict[str, Any]:
    return {
        "code": finding.code,
        "severity": finding.severity.value,
        "title": finding.rule.title,
        "message": finding.message,
        "fix": finding.fix,
        "hops": list(finding.hops),
        "file": finding.file,
        "line": finding.line,
        "client": finding.client,
        "causes": list(finding.rule.causes),
    }


def _idle_state(hop: Hop) -> str:
    if not (hop.accepts or hop.kind is HopKind.MIDDLEBOX):
        return "not-accepting"
    if hop.idle_timeout is None:
        return "unknown"
    return "closes-after-response" if hop.idle_timeout == 0 and hop.accepts else "seconds"


def _ttl_state(hop: Hop) -> str:
    if not hop.reuses:
        return "not-reused"
    if hop.upstream_idle_ttl is None:
        return "unknown"
    return "unbounded" if hop.upstream_idle_ttl == math.inf else "seconds"


def _hop_dict(hop: Hop) -> dict[str, Any]:
    ttl_state = _ttl_state(hop)
    idle_state = _idle_state(hop)
    return {
        "name": hop.name,
        "kind": hop.kind.value,
        # Numbers or null, never strings; the *_state fields say what a null means.
        "idle_timeout": hop.idle_timeout
        if idle_state in ("seconds", "closes-after-response")
        else None,
        "idle_timeout_state": idle_state,
        "upstream_idle_ttl": hop.upstream_idle_ttl if ttl_state == "seconds" else None,
        "upstream_idle_ttl_state": ttl_state,
        "reuses_upstream": hop.reuses,
        "max_requests": hop.max_requests,
        "backlog": hop.backlog,
        "source": hop.source,
        "line": hop.line,
        "detail": hop.detail,
    }


def _chain_dict(chain: tuple[Hop, ...]) -> dict[str, Any]:
    first = chain[0] if chain else None
    return {
        "client": first.name if first is not None and first.kind is HopKind.CLIENT else None,
        "hops": [hop.name for hop in chain],
    }


def to_json(report: LintReport) -> str:
    """A JSON document: ``{"summary", "chain", "chains", "findings", "files"}``.

    ``chain`` lists every hop once (clients first); ``chains`` gives each client's chain
    by hop name. Every duration is a number of seconds or ``null``; the hop's
    ``idle_timeout_state`` and ``upstream_idle_ttl_state`` say what a null means.
    """
    document = {
        "summary": {**_counts(report), "ok": report.ok},
        "chain": [_hop_dict(hop) for hop in report.hops],
        "chains": [_chain_dict(chain) for chain in report.all_chains],
        "findings": [_finding_dict(finding) for finding in report.findings],
        "files": list(report.files),
    }
    return json.dumps(document, indent=2) + "\n"


def _artifact_uri(file: str) -> str:
    path = Path(file)
    if path.is_absolute():
        try:
            return path.relative_to(Path.cwd()).as_posix()
        except ValueError:
            return path.as_uri()
    return path.as_posix()


def fingerprint(finding: Finding) -> str:
    """A stable identity of ``finding``: its rule, location and hops, not its message.

    The message carries numbers that change with the configuration (a TTL, a timeout);
    the fingerprint stays the same across runs as long as the same rule fires at the same
    place for the same hops, so code scanning tracks one alert rather than a new one.
    """
    uri = _artifact_uri(finding.file) if finding.file is not None else ""
    key = "\0".join((finding.code, uri, str(finding.line or 0), *finding.hops))
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def to_sarif(report: LintReport, *, tool_version: str = "0") -> str:
    """A SARIF 2.1.0 log with one run; every rule is described in ``tool.driver.rules``."""
    codes = sorted(RULES)
    rules = [
        {
            "id": code,
            "name": "".join(
                word.capitalize()
                for word in re.sub(r"[^A-Za-z0-9 ]", "", RULES[code].title).split()
            ),
            "shortDescription": {"text": RULES[code].title},
            "fullDescription": {"text": RULES[code].explanation},
            "help": {"text": RULES[code].explanation},
            "helpUri": help_uri(code),
            "defaultConfiguration": {"level": RULES[code].severity.value},
            "properties": {"causes": list(RULES[code].causes)},
        }
        for code in codes
    ]
    results: list[dict[str, Any]] = []
    for finding in report.findings:
        result: dict[str, Any] = {
            "ruleId": finding.code,
            "ruleIndex": codes.index(finding.code),
            "level": finding.severity.value,
            "message": {"text": f"{finding.message}. Fix: {finding.fix}"},
            "properties": {"hops": list(finding.hops), "fix": finding.fix},
            "partialFingerprints": {FINGERPRINT_KEY: fingerprint(finding)},
        }
        if finding.client is not None:
            result["properties"]["client"] = finding.client
        if finding.file is not None:
            location: dict[str, Any] = {"artifactLocation": {"uri": _artifact_uri(finding.file)}}
            if finding.line:
                location["region"] = {"startLine": finding.line}
            result["locations"] = [{"physicalLocation": location}]
        results.append(result)
    log = {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "rstsafe lint",
                        "version": tool_version,
                        "informationUri": DOCS_URL,
                        "rules": rules,
                    }
                },
                "results": results,
            }
        ],
    }
    return json.dumps(log, indent=2) + "\n"


def render(report: LintReport, output_format: str) -> str:
    """Render ``report`` as ``"text"``, ``"json"`` or ``"sarif"``."""
    if output_format == "text":
        return to_text(report)
    if output_format == "json":
        return to_json(report)
    if output_format == "sarif":
        from rstsafe import __version__

        return to_sarif(report, tool_version=__version__)
    raise ValueError(f"output_format must be text, json or sarif, got {output_format!r}")
