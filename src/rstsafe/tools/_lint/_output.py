"""Render a :class:`LintReport` as text, JSON or SARIF 2.1.0 (for code scanning in CI)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

from rstsafe.tools._lint._chain import format_seconds
from rstsafe.tools._lint._model import RULES, Finding, Hop, LintReport, Severity

__all__ = ("render", "to_json", "to_sarif", "to_text")

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


def _counts(report: LintReport) -> dict[str, int]:
    counts = {severity.value: 0 for severity in Severity}
    for finding in report.findings:
        counts[finding.severity.value] += 1
    return counts


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def _hop_summary(hop: Hop) -> str:
    parts: list[str] = []
    if hop.accepts or hop.kind.value == "middlebox":
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
    if report.hops:
        lines.append("chain: " + " -> ".join(_hop_summary(hop) for hop in report.hops))
    for finding in report.findings:
        where = ""
        if finding.file is not None:
            where = f" {finding.file}:{finding.line}" if finding.line else f" {finding.file}"
        hops = f" [{' -> '.join(finding.hops)}]" if finding.hops else ""
        lines.append("")
        lines.append(f"{finding.severity.value:<7} {finding.code}{where}{hops}")
        lines.append(f"        {finding.message}")
        lines.append(f"        fix: {finding.fix}")
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
        "causes": list(finding.rule.causes),
    }


def _seconds(value: float | None) -> float | str | None:
    if value is None:
        return None
    return "unbounded" if value == math.inf else value


def _hop_dict(hop: Hop) -> dict[str, Any]:
    return {
        "name": hop.name,
        "kind": hop.kind.value,
        "idle_timeout": _seconds(hop.idle_timeout),
        "upstream_idle_ttl": _seconds(hop.upstream_idle_ttl) if hop.reuses else None,
        "reuses_upstream": hop.reuses,
        "max_requests": hop.max_requests,
        "backlog": hop.backlog,
        "source": hop.source,
        "line": hop.line,
        "detail": hop.detail,
    }


def to_json(report: LintReport) -> str:
    """A JSON document: ``{"summary", "chain", "findings", "files"}``."""
    document = {
        "summary": {**_counts(report), "ok": report.ok},
        "chain": [_hop_dict(hop) for hop in report.hops],
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
        }
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
