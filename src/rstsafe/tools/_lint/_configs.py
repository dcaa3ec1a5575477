"""Readers for server configuration files: nginx, gunicorn, uvicorn, hypercorn, HAProxy.

Nothing here executes what it reads. nginx and HAProxy files are tokenised; gunicorn and
hypercorn Python configs are parsed with :mod:`ast` and only literal values are used
(:func:`ast.literal_eval`); anything computed at run time is reported (RST011) and the
documented default assumed. Each reader returns the :class:`Hop` the file describes plus
findings about the file itself (a listen backlog above ``somaxconn``, RST010).

Files are read through :class:`~rstsafe.tools._lint._inputs.Inputs` (regular files only,
size limits, includes inside the configuration's root); every parser here is iterative or
stops at :data:`~rstsafe.tools._lint._inputs.MAX_DEPTH` levels of nesting, and every
duration is checked to be a finite number of seconds, so that hostile input ends in a
:class:`LintInputError` and never in another exception or a hang.
"""

from __future__ import annotations

import ast
import glob
import json
import math
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rstsafe.tools._lint._inputs import (
    MAX_DEPTH,
    MAX_FILES,
    MAX_SECONDS,
    Inputs,
    finite_seconds,
    shown,
)
from rstsafe.tools._lint._model import Finding, Hop, HopKind, LintInputError, Severity
from rstsafe.tools._lint._source import parse_python

__all__ = (
    "ConfigResult",
    "parse_duration_haproxy",
    "parse_duration_nginx",
    "read_gunicorn",
    "read_haproxy",
    "read_hypercorn",
    "read_nginx",
    "read_uvicorn",
)

# Defaults, from each server's documentation and source:
# - nginx: keepalive_timeout 75s, keepalive_requests 1000 (100 before 1.19.10), listen
#   backlog 511 on Linux (NGX_LISTEN_BACKLOG), upstream keepalive_timeout 60s.
# - gunicorn: keepalive 2 s, but only the threaded and async workers keep connections alive
#   (the default sync worker answers `Connection: close`); backlog 2048.
# - uvicorn: --timeout-keep-alive 5 s, --backlog 2048.
# - hypercorn: keep_alive_timeout 5 s, backlog 100.
# - HAProxy: times are in milliseconds unless a unit is given; the client side's idle
#   keep-alive is `timeout http-keep-alive`, else `timeout http-request`, else `timeout client`.
NGINX_KEEPALIVE_TIMEOUT = 75.0
NGINX_KEEPALIVE_REQUESTS = 1000
NGINX_BACKLOG = 511
NGINX_UPSTREAM_KEEPALIVE_TIMEOUT = 60.0
GUNICORN_KEEPALIVE = 2.0
GUNICORN_BACKLOG = 2048
UVICORN_KEEPALIVE = 5.0
UVICORN_BACKLOG = 2048
HYPERCORN_KEEPALIVE = 5.0
HYPERCORN_BACKLOG = 100

_MAX_INCLUDE_DEPTH = 16
# Directory levels in an include pattern: Linux's PATH_MAX (4096) allows about 2000, and
# glob recurses once per level with a wildcard; no real path has more than a few dozen.
_MAX_INCLUDE_COMPONENTS = MAX_DEPTH
# The longest command line read from a Procfile or Dockerfile: Linux's MAX_ARG_STRLEN, the
# most one argument of execve() may have (32 pages), so a longer line cannot run anyway.
# shlex splits about 2 MB/s; this keeps one line well under a second.
MAX_COMMAND_LINE = 128 * 1024
# Integers in configuration files (backlog, keepalive_requests) beyond a signed 64-bit
# value are out of range for every server read here.
_MAX_INT = 2**63 - 1
# A listen backlog is a C int in listen(2).
_MAX_BACKLOG = 2**31 - 1


@dataclass(slots=True)
class ConfigResult:
    """What one configuration file says: the hop it describes, and findings about the file."""

    hop: Hop
    findings: list[Finding] = field(default_factory=list)
    files: list[str] = field(default_factory=list)


def _rooted(inputs: Inputs | None, path: Path) -> Inputs:
    """The inputs for a file given to a reader: a fresh budget if none, rooted at ``path``."""
    return (inputs if inputs is not None else Inputs()).rooted_at(path)


def _backlog_finding(
    *,
    hop_name: str,
    backlog: int,
    somaxconn: int | None,
    file: str,
    line: int | None,
    default: bool,
) -> list[Finding]:
    if somaxconn is None or backlog <= somaxconn:
        return []
    origin = " (the default)" if default else ""
    return [
        Finding(
            code="RST010",
            severity=Severity.WARNING,
            message=f"{hop_name} listens with backlog {backlog}{origin}, but net.core.somaxconn "
            f"is {somaxconn}: the kernel caps the accept queue at {somaxconn}",
            fix=f"raise net.core.somaxconn to at least {backlog}, or lower the backlog",
            hops=(hop_name,),
            file=file,
            line=line,
        )
    ]


# --------------------------------------------------------------------------- nginx

_NGINX_UNITS = {
    "ms": 0.001,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
    "w": 604800.0,
    "M": 2592000.0,
    "y": 31536000.0,
}
_NGINX_TIME = re.compile(r"([0-9]+)(ms|s|m|h|d|w|M|y)?")
# Digits in one number of a time: nginx keeps times in a 64-bit integer (19 digits) and
# refuses more (ngx_parse_time); more than 18 would only be refused below.
_MAX_TIME_DIGITS = 18


def parse_duration_nginx(text: str) -> float:
    """Parse an nginx time (``75``, ``75s``, ``1m``, ``1m30s``, ``500ms``) into seconds.

    Raises:
        ValueError: ``text`` is not an nginx time.
    """
    compact = text.replace(" ", "")
    if not compact:
        raise ValueError(f"invalid time {shown(text)}")
    total = 0.0
    position = 0
    while position < len(compact):
        match = _NGINX_TIME.match(compact, position)
        if match is None:
            raise ValueError(f"invalid time {shown(text)}")
        if len(match.group(1)) > _MAX_TIME_DIGITS:
            raise ValueError(f"time {shown(text)} is out of range")
        total += int(match.group(1)) * _NGINX_UNITS[match.group(2) or "s"]
        position = match.end()
    return finite_seconds(total, f"time {shown(text)}")


@dataclass(slots=True)
class _Directive:
    name: str
    args: list[str]
    file: str
    line: int
    block: list[_Directive] | None = None


def _nginx_tokens(text: str, file: str) -> Iterator[tuple[str, int, bool]]:
    """Yield ``(token, line, quoted)``; ``{``, ``}`` and ``;`` are their own tokens."""
    line = 1
    i = 0
    n = len(text)
    while i < n:
        char = text[i]
        if char == "\n":
            line += 1
            i += 1
        elif char.isspace():
            i += 1
        elif char == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif char in "{};":
            yield char, line, False
            i += 1
        elif char in "\"'":
            start_line = line
            i += 1
            chunk: list[str] = []
            while i < n and text[i] != char:
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                if text[i] == "\n":
                    line += 1
                chunk.append(text[i])
                i += 1
            if i >= n:
                raise LintInputError("unterminated quoted string", file=file, line=start_line)
            i += 1
            yield "".join(chunk), start_line, True
        else:
            start = i
            while i < n and not text[i].isspace() and text[i] not in "{};\"'":
                if text[i] == "\\" and i + 1 < n:
                    i += 1
                i += 1
            yield text[start:i], line, False


def _nginx_parse(text: str, file: str) -> list[_Directive]:
    """Parse nginx text into directives, iteratively; blocks nest at most MAX_DEPTH deep."""
    root: list[_Directive] = []
    stack: list[tuple[list[_Directive], int]] = []
    current = root
    words: list[str] = []
    word_line = 0
    for token, line, quoted in _nginx_tokens(text, file):
        if quoted or token not in "{};":
            if not words:
                word_line = line
            words.append(token)
        elif token == ";":
            if not words:
                raise LintInputError("unexpected ';'", file=file, line=line)
            current.append(_Directive(words[0], words[1:], file, word_line))
            words = []
        elif token == "{":
            if not words:
                raise LintInputError("unexpected '{'", file=file, line=line)
            if len(stack) >= MAX_DEPTH:
                raise LintInputError(
                    f"blocks nested more than {MAX_DEPTH} deep", file=file, line=line
                )
            directive = _Directive(words[0], words[1:], file, word_line, [])
            current.append(directive)
            stack.append((current, line))
            assert directive.block is not None
            current = directive.block
            words = []
        else:
            if words:
                raise LintInputError(f"missing ';' after {shown(words[0])}", file=file, line=line)
            if not stack:
                raise LintInputError("unexpected '}'", file=file, line=line)
            current, _ = stack.pop()
    if words:
        raise LintInputError(
            f"unexpected end of file: missing ';' after {shown(words[0])}",
            file=file,
            line=word_line,
        )
    if stack:
        _, open_line = stack[-1]
        raise LintInputError(
            f"unexpected end of file: the '{{' on line {open_line} is never closed",
            file=file,
            line=open_line,
        )
    return root


@dataclass(slots=True)
class _Includes:
    """The state of following nginx includes: the files open above, what was skipped."""

    inputs: Inputs
    files: list[str]
    active: list[str] = field(default_factory=list)  # real paths, outermost first
    skipped: list[Finding] = field(default_factory=list)


def _nginx_load(path: Path, state: _Includes, nesting: int) -> list[_Directive]:
    state.files.append(str(path))
    real = os.path.realpath(path)
    state.active.append(real)
    included = bool(state.active[:-1])  # the file given to lint is not an include
    directives = _nginx_parse(state.inputs.read_text(path, included=included), str(path))
    expanded = _nginx_expand(directives, path.parent, state, nesting)
    state.active.pop()
    return expanded


def _glob_base(pattern: str) -> str:
    """The directory part of ``pattern`` before its first wildcard."""
    parts = Path(pattern).parts
    fixed: list[str] = []
    for part in parts[:-1]:
        if glob.has_magic(part):
            break
        fixed.append(part)
    return str(Path(*fixed)) if fixed else "."


def _include_outside(directive: _Directive, pattern: str, state: _Includes) -> None:
    root = state.inputs.include_root
    state.skipped.append(
        Finding(
            code="RST012",
            severity=Severity.NOTE,
            message=f"include {shown(pattern)} is outside the configuration root {root}: not read",
            fix="pass include_root= (--include-root) to read files outside it",
            file=directive.file,
            line=directive.line,
        )
    )


def _nginx_expand(
    directives: list[_Directive], base: Path, state: _Includes, nesting: int
) -> list[_Directive]:
    """Replace ``include`` directives by the directives of the files they match.

    ``nesting`` is how deep ``directives`` sit in the whole configuration, includes
    followed: blocks may nest MAX_DEPTH deep in total, not per file.
    """
    expanded: list[_Directive] = []
    for directive in directives:
        if directive.name == "include" and directive.block is None and directive.args:
            if len(state.active) > _MAX_INCLUDE_DEPTH:
                raise LintInputError(
                    f"includes nested more than {_MAX_INCLUDE_DEPTH} deep",
                    file=directive.file,
                    line=directive.line,
                )
            pattern = directive.args[0]
            full = pattern if Path(pattern).is_absolute() else str(base / pattern)
            if not state.inputs.within_root(Path(_glob_base(full))):
                # Not even listed: a pattern such as /*/*/* would walk the whole disk.
                _include_outside(directive, pattern, state)
                continue
            if full.count("/") > _MAX_INCLUDE_COMPONENTS:
                # glob recurses once per directory level of a pattern with wildcards.
                raise LintInputError(
                    f"include {shown(pattern)}: more than {_MAX_INCLUDE_COMPONENTS} directory "
                    "levels",
                    file=directive.file,
                    line=directive.line,
                )
            try:
                matches = sorted(glob.glob(full))
            except (OSError, ValueError) as exc:
                raise LintInputError(
                    f"include {shown(pattern)}: {exc}", file=directive.file, line=directive.line
                ) from None
            # A missing include (mime.types on a CI machine) is skipped: it cannot hold
            # the directives lint is after often enough to make the whole run fail.
            for match in matches:
                if not state.inputs.within_root(Path(match)):
                    _include_outside(directive, pattern, state)
                    continue
                if os.path.realpath(match) in state.active:
                    raise LintInputError(
                        f"include {shown(pattern)} includes {match} again (an include loop)",
                        file=directive.file,
                        line=directive.line,
                    )
                if state.inputs.included_files >= MAX_FILES:
                    raise LintInputError(
                        f"includes read more than {MAX_FILES} files (an include fan-out?)",
                        file=directive.file,
                        line=directive.line,
                    )
                expanded.extend(_nginx_load(Path(match), state, nesting))
            continue
        if directive.block is not None:
            if nesting >= MAX_DEPTH:
                raise LintInputError(
                    f"blocks nested more than {MAX_DEPTH} deep (includes followed)",
                    file=directive.file,
                    line=directive.line,
                )
            directive.block = _nginx_expand(directive.block, base, state, nesting + 1)
        expanded.append(directive)
    return expanded


def _walk(directives: list[_Directive]) -> Iterator[tuple[tuple[str, ...], _Directive]]:
    """Every directive with the names of the blocks around it, in file order (iterative)."""
    stack: list[tuple[tuple[str, ...], Iterator[_Directive]]] = [((), iter(directives))]
    while stack:
        context, remaining = stack[-1]
        directive = next(remaining, None)
        if directive is None:
            stack.pop()
            continue
        yield context, directive
        if directive.block is not None:
            stack.append(((*context, directive.name), iter(directive.block)))


def _nginx_time_arg(directive: _Directive, index: int = 0) -> float:
    if len(directive.args) <= index:
        raise LintInputError(
            f"{directive.name} needs a value", file=directive.file, line=directive.line
        )
    try:
        return parse_duration_nginx(directive.args[index])
    except ValueError as exc:
        raise LintInputError(
            f"{directive.name}: {exc}", file=directive.file, line=directive.line
        ) from None


def _int_arg(directive: _Directive, value: str) -> int:
    if not re.fullmatch(r"-?[0-9]+", value):
        raise LintInputError(
            f"{directive.name}: expected an integer, got {shown(value)}",
            file=directive.file,
            line=directive.line,
        )
    if value.startswith("-"):
        raise LintInputError(
            f"{directive.name}: expected a non-negative integer, got {shown(value)}",
            file=directive.file,
            line=directive.line,
        )
    if len(value) > 19 or int(value) > _MAX_INT:
        raise LintInputError(
            f"{directive.name}: {shown(value)} is out of range",
            file=directive.file,
            line=directive.line,
        )
    return int(value)


def read_nginx(
    path: str | Path,
    *,
    name: str = "nginx",
    somaxconn: int | None = None,
    inputs: Inputs | None = None,
) -> ConfigResult:
    """Read an nginx configuration (following ``include``) into a proxy hop.

    The accepting side's idle timeout is the smallest ``keepalive_timeout`` in ``http``,
    ``server`` or ``location`` context (default 75 s). nginx reuses upstream connections only
    when an ``upstream`` block has ``keepalive N`` and it speaks HTTP/1.1 to upstreams
    (``proxy_http_version 1.1``; or ``fastcgi_keep_conn on``, or gRPC); then for that
    block's ``keepalive_timeout`` (60 s by default).

    Includes are followed only inside the configuration's root (``inputs``; by default the
    directory of ``path``): one outside it is not read and reported (RST012, a note).
    """
    path = Path(path)
    state = _Includes(inputs=_rooted(inputs, path), files=[])
    directives = _nginx_load(path, state, 0)
    files = state.files
    timeouts: list[tuple[float, _Directive]] = []
    requests: list[int] = []
    upstream_pools: list[tuple[float, _Directive]] = []
    # nginx talks HTTP/1.0 to upstreams unless told otherwise, and HTTP/1.0 without
    # keep-alive closes after each response: `keepalive N` alone reuses nothing.
    speaks_keepalive = False
    findings: list[Finding] = list(state.skipped)
    first_http: _Directive | None = None
    listens: list[tuple[int, _Directive, bool]] = []
    for context, directive in _walk(directives):
        in_upstream = "upstream" in context
        if directive.name == "http" and first_http is None:
            first_http = directive
        if directive.name == "keepalive_timeout" and not in_upstream:
            timeouts.append((_nginx_time_arg(directive), directive))
        elif directive.name == "keepalive_requests" and not in_upstream:
            requests.append(_int_arg(directive, directive.args[0] if directive.args else ""))
        elif directive.name == "upstream" and directive.block is not None:
            pool = [d for d in directive.block if d.name == "keepalive"]
            if pool:
                timeout, where = NGINX_UPSTREAM_KEEPALIVE_TIMEOUT, pool[0]
                for inner in directive.block:
                    if inner.name == "keepalive_timeout":
                        timeout, where = _nginx_time_arg(inner), inner
                upstream_pools.append((timeout, where))
        elif (
            (directive.name == "proxy_http_version" and directive.args[:1] == ["1.1"])
            or (directive.name == "fastcgi_keep_conn" and directive.args[:1] == ["on"])
            or directive.name == "grpc_pass"
        ):
            speaks_keepalive = True
        elif directive.name == "listen":
            backlog = NGINX_BACKLOG
            explicit = False
            for arg in directive.args[1:]:
                if arg.startswith("backlog="):
                    backlog = _int_arg(directive, arg.removeprefix("backlog="))
                    explicit = True
            listens.append((backlog, directive, explicit))
    # `keepalive_timeout 0` turns keep-alive off where it is set; elsewhere the smallest
    # positive value is what a reuser in front must stay below.
    positive = [item for item in timeouts if item[0] > 0]
    if timeouts:
        idle, where = min(positive or timeouts, key=lambda item: item[0])
        line: int | None = where.line
        source = where.file
        detail = f"keepalive_timeout {idle:g}s"
    else:
        idle = NGINX_KEEPALIVE_TIMEOUT
        line = first_http.line if first_http is not None else None
        source = first_http.file if first_http is not None else str(path)
        detail = "keepalive_timeout 75s (default)"
    upstream: tuple[float, _Directive] | None = None
    if upstream_pools:
        upstream = max(upstream_pools, key=lambda item: item[0])
        if speaks_keepalive:
            detail += f"; upstream keepalive_timeout {upstream[0]:g}s"
        else:
            detail += "; upstream keepalive unused (no proxy_http_version 1.1)"
            upstream = None
    for backlog, directive, explicit in listens:
        findings.extend(
            _backlog_finding(
                hop_name=name,
                backlog=backlog,
                somaxconn=somaxconn,
                file=directive.file,
                line=directive.line,
                default=not explicit,
            )
        )
    hop = Hop(
        name=name,
        kind=HopKind.PROXY,
        idle_timeout=idle,
        upstream_idle_ttl=upstream[0] if upstream is not None else None,
        reuses_upstream=upstream is not None,
        max_requests=min(requests) if requests else NGINX_KEEPALIVE_REQUESTS,
        backlog=max((b for b, _, _ in listens), default=None),
        source=source,
        line=line,
        upstream_source=upstream[1].file if upstream is not None else None,
        upstream_line=upstream[1].line if upstream is not None else None,
        detail=detail,
    )
    return ConfigResult(hop=hop, findings=findings, files=files)


# --------------------------------------------------------------------------- Python configs


def _python_settings(
    path: Path, wanted: Sequence[str], inputs: Inputs
) -> tuple[dict[str, tuple[Any, int]], list[tuple[str, int]], str]:
    """Return literal module-level settings, the names set to non-literals, and the text."""
    text = inputs.read_text(path)
    tree = parse_python(text, filename=str(path))
    values: dict[str, tuple[Any, int]] = {}
    dynamic: list[tuple[str, int]] = []
    for node in tree.body:
        targets: list[ast.expr]
        if isinstance(node, ast.Assign):
            targets, value = node.targets, node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        else:
            continue
        for target in targets:
            if isinstance(target, ast.Name) and target.id in wanted:
                try:
                    values[target.id] = (ast.literal_eval(value), node.lineno)
                    dynamic = [d for d in dynamic if d[0] != target.id]
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    values.pop(target.id, None)
                    dynamic.append((target.id, node.lineno))
    return values, dynamic, text


def _number(
    value: Any, setting: str, file: str, line: int | None, *, maximum: float = MAX_SECONDS
) -> float:
    """A finite number in 0..maximum from a config value, else LintInputError (no overflow)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and math.isnan(value))
        or value < 0
    ):
        raise LintInputError(
            f"{setting} must be a non-negative number, got {shown(value)}", file=file, line=line
        )
    if value > maximum:  # int > float compares exactly, with no conversion to overflow
        raise LintInputError(
            f"{setting} is out of range: {shown(value)} is more than "
            f"{maximum if isinstance(maximum, int) else f'{maximum:g}'}",
            file=file,
            line=line,
        )
    return float(value)


def _dynamic_findings(
    dynamic: list[tuple[str, int]], defaults: dict[str, Any], hop_name: str, file: str
) -> list[Finding]:
    return [
        Finding(
            code="RST011",
            severity=Severity.NOTE,
            message=f"{setting} is computed at run time; assumed the default {defaults[setting]!r}",
            fix=f"set {setting} to a literal value so it can be checked",
            hops=(hop_name,),
            file=file,
            line=line,
        )
        for setting, line in dynamic
    ]


def read_gunicorn(
    path: str | Path,
    *,
    name: str = "gunicorn",
    somaxconn: int | None = None,
    inputs: Inputs | None = None,
) -> ConfigResult:
    """Read a gunicorn configuration file (Python, parsed with :mod:`ast`) into a server hop.

    Only the threaded (``gthread``, or ``threads > 1``) and async workers keep connections
    alive; the default ``sync`` worker closes after every response, so its hop has
    ``idle_timeout=0``.
    """
    path = Path(path)
    file = str(path)
    defaults: dict[str, Any] = {
        "keepalive": GUNICORN_KEEPALIVE,
        "backlog": GUNICORN_BACKLOG,
        "worker_class": "sync",
        "threads": 1,
    }
    values, dynamic, _ = _python_settings(path, tuple(defaults), _rooted(inputs, path))
    keepalive = defaults["keepalive"]
    keepalive_line: int | None = None
    if "keepalive" in values:
        raw, keepalive_line = values["keepalive"]
        keepalive = _number(raw, "keepalive", file, keepalive_line)
    worker_class = values.get("worker_class", (defaults["worker_class"], None))[0]
    threads = values.get("threads", (1, None))[0]
    if not isinstance(worker_class, str):
        raise LintInputError(
            f"worker_class must be a string, got {shown(worker_class)}",
            file=file,
            line=values["worker_class"][1],
        )
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise LintInputError(
            f"threads must be an integer, got {shown(threads)}",
            file=file,
            line=values["threads"][1],
        )
    worker = worker_class.rsplit(".", 1)[-1].lower()
    if worker in ("sync", "syncworker") and threads > 1:
        worker = "gthread"
    keeps_alive = worker not in ("sync", "syncworker") and keepalive > 0
    backlog = defaults["backlog"]
    backlog_line: int | None = None
    if "backlog" in values:
        raw, backlog_line = values["backlog"]
        backlog = int(_number(raw, "backlog", file, backlog_line, maximum=_MAX_BACKLOG))
    findings = _dynamic_findings(dynamic, defaults, name, file)
    findings.extend(
        _backlog_finding(
            hop_name=name,
            backlog=backlog,
            somaxconn=somaxconn,
            file=file,
            line=backlog_line,
            default=backlog_line is None,
        )
    )
    sync = worker in ("sync", "syncworker")
    if sync and keepalive_line is not None and keepalive > 0:
        # gunicorn's settings: "sync worker does not support persistent connections and
        # will ignore this option" (keepalive); it answers `Connection: close`.
        findings.append(
            Finding(
                code="RST013",
                severity=Severity.NOTE,
                message=f"keepalive = {keepalive:g} has no effect: the sync worker closes "
                "every connection after its response (Connection: close)",
                fix="use worker_class = 'gthread' (or threads > 1) or an async worker for "
                "keep-alive, or remove the setting",
                hops=(name,),
                file=file,
                line=keepalive_line,
            )
        )
    if keeps_alive:
        detail = f"{worker} worker, keepalive {keepalive:g} s"
    elif sync:
        detail = f"{worker} worker: closes after every response"
    else:
        detail = f"{worker} worker, keepalive 0: closes after every response"
    hop = Hop(
        name=name,
        kind=HopKind.SERVER,
        idle_timeout=keepalive if keeps_alive else 0.0,
        backlog=backlog,
        source=file,
        line=keepalive_line,
        detail=detail,
        idle_timeout_setting=f"keepalive in {file}",
    )
    return ConfigResult(hop=hop, findings=findings, files=[file])


def _command_from_file(path: Path, program: str, inputs: Inputs) -> tuple[list[str], int]:
    """Find the first line that runs ``program`` in a Procfile/Dockerfile/shell script."""
    text = inputs.read_text(path)
    for number, line in enumerate(text.splitlines(), start=1):
        if not re.search(rf"\b{re.escape(program)}\b", line) or line.lstrip().startswith("#"):
            continue
        if len(line) > MAX_COMMAND_LINE:
            raise LintInputError(
                f"the line running {program} is {len(line)} characters long, more than a "
                f"command line can be ({MAX_COMMAND_LINE})",
                file=str(path),
                line=number,
            )
        bracket = line.find("[")
        if bracket != -1 and line.rstrip().endswith("]"):
            try:
                parsed = json.loads(line[bracket:])
            except json.JSONDecodeError as exc:
                raise LintInputError(
                    f"invalid JSON command: {exc.msg}", file=str(path), line=number
                ) from None
            except RecursionError:  # json's decoder recurses per nested array
                raise LintInputError(
                    "invalid JSON command: arrays nested too deeply (a command is a flat "
                    "array of strings)",
                    file=str(path),
                    line=number,
                ) from None
            if isinstance(parsed, list) and all(isinstance(a, str) for a in parsed):
                return [str(a) for a in parsed], number
        try:
            return shlex.split(line, comments=True), number
        except ValueError as exc:
            raise LintInputError(
                f"cannot split command: {exc}", file=str(path), line=number
            ) from None
    raise LintInputError(f"no line runs {program}", file=str(path))


def _options(argv: Sequence[str], flags: dict[str, str]) -> dict[str, str]:
    """Pick ``--flag VALUE`` / ``--flag=VALUE`` options out of a command line."""
    found: dict[str, str] = {}
    index = 0
    while index < len(argv):
        arg = argv[index]
        key, sep, value = arg.partition("=")
        if key in flags:
            if not sep:
                if index + 1 >= len(argv):
                    raise ValueError(f"{key} needs a value")
                value = argv[index + 1]
                index += 1
            found[flags[key]] = value
        index += 1
    return found


def _names_a_file(command: str | Path) -> bool:
    """Whether ``command`` is a path to read rather than a command line.

    A Path always is; a string is when it has no space and something exists there (a
    FIFO or a directory too: reading it then fails with a message, instead of the path
    being taken for a command line with no options).
    """
    if isinstance(command, Path):
        return True
    if not isinstance(command, str) or " " in command.strip() or "\0" in command:
        return False
    try:
        return os.path.lexists(command)
    except (OSError, ValueError):  # a name too long for the file system
        return False


def _command_source(
    command: str | Path, program: str, inputs: Inputs | None
) -> tuple[list[str], str, int | None]:
    """Return ``(argv, source, line)`` from a command line or a file holding one."""
    if not isinstance(command, str | os.PathLike):
        raise TypeError(f"{program} must be a command line or a path, got {type(command).__name__}")
    if _names_a_file(command):
        path = Path(command)
        argv, line = _command_from_file(path, program, _rooted(inputs, path))
        return argv, str(path), line
    text = str(command)
    if len(text) > MAX_COMMAND_LINE:
        raise LintInputError(
            f"the {program} command line is {len(text)} characters long, more than a "
            f"command line can be ({MAX_COMMAND_LINE})"
        )
    try:
        return shlex.split(text), f"{program} command line", None
    except ValueError as exc:
        raise LintInputError(f"cannot split the {program} command line: {exc}") from None


# Programs that serve HTTP from a command line; the first of them in a command is the one
# that runs (`gunicorn -k uvicorn.workers.UvicornWorker` is gunicorn, with its settings).
_SERVER_PROGRAMS = ("gunicorn", "uvicorn", "hypercorn", "daphne", "granian", "waitress-serve")


def _program_run(argv: Sequence[str]) -> str | None:
    """The server program a command line runs (``python -m uvicorn`` included), if any."""
    for index, arg in enumerate(argv):
        word = os.path.basename(arg)
        if word.endswith(".exe"):
            word = word[:-4]
        if word in _SERVER_PROGRAMS:
            return word
        if arg == "-m" and index + 1 < len(argv) and argv[index + 1] in _SERVER_PROGRAMS:
            return argv[index + 1]
    return None


def _server_from_command(
    command: str | Path,
    *,
    program: str,
    name: str,
    flags: dict[str, str],
    keepalive_default: float,
    backlog_default: int,
    somaxconn: int | None,
    inputs: Inputs | None,
) -> ConfigResult:
    argv, source, line = _command_source(command, program, inputs)
    keepalive_flag = next(flag for flag, key in flags.items() if key == "keepalive")
    runs = _program_run(argv)
    if runs is not None and runs != program:
        # Read with another server's flags and defaults, the hop would be wrong without a
        # word said; the option names the server whose settings apply.
        hint = (
            "; pass gunicorn's config file with --gunicorn (gunicorn=), whose keepalive "
            "applies to its workers, uvicorn's included"
            if runs == "gunicorn"
            else f"; pass it with --{runs}"
            if runs in ("uvicorn", "hypercorn")
            else ""
        )
        raise LintInputError(
            f"{program}= (--{program}) was given a command that runs {runs}, not {program}{hint}",
            file=source if line is not None else None,
            line=line,
        )
    try:
        options = _options(argv, flags)
        keepalive = finite_seconds(
            float(options.get("keepalive", keepalive_default)), "the keep-alive timeout"
        )
        raw_backlog = options.get("backlog", str(backlog_default))
        if not re.fullmatch(r"[0-9]{1,19}", raw_backlog) or int(raw_backlog) > _MAX_BACKLOG:
            raise ValueError(
                f"the backlog must be a non-negative integer, got {shown(raw_backlog)}"
            )
        backlog = int(raw_backlog)
    except ValueError as exc:
        raise LintInputError(f"bad {program} option: {exc}", file=source, line=line) from None
    is_file = line is not None
    findings = _backlog_finding(
        hop_name=name,
        backlog=backlog,
        somaxconn=somaxconn,
        file=source,
        line=line,
        default="backlog" not in options,
    )
    hop = Hop(
        name=name,
        kind=HopKind.SERVER,
        idle_timeout=keepalive,
        backlog=backlog,
        source=source if is_file else None,
        line=line,
        detail=f"keep-alive {keepalive:g} s" + ("" if "keepalive" in options else " (default)"),
        idle_timeout_setting=f"{keepalive_flag} on the {program} command line",
    )
    return ConfigResult(hop=hop, findings=findings, files=[source] if is_file else [])


def read_uvicorn(
    command: str | Path,
    *,
    name: str = "uvicorn",
    somaxconn: int | None = None,
    inputs: Inputs | None = None,
) -> ConfigResult:
    """Read uvicorn's options from a command line, or from a file that runs uvicorn.

    ``command`` is either the command (``"uvicorn app:app --timeout-keep-alive 10"``) or a
    Procfile, Dockerfile or script whose first line mentioning ``uvicorn`` is the command
    (shell words or a JSON ``CMD [...]`` array).
    """
    return _server_from_command(
        command,
        program="uvicorn",
        name=name,
        flags={"--timeout-keep-alive": "keepalive", "--backlog": "backlog"},
        keepalive_default=UVICORN_KEEPALIVE,
        backlog_default=UVICORN_BACKLOG,
        somaxconn=somaxconn,
        inputs=inputs,
    )


def read_hypercorn(
    source: str | Path,
    *,
    name: str = "hypercorn",
    somaxconn: int | None = None,
    inputs: Inputs | None = None,
) -> ConfigResult:
    """Read hypercorn's settings from a TOML or Python config file, or a command line.

    A ``.toml`` file is read with :mod:`tomllib`, a ``.py`` file with :mod:`ast` (never
    imported); anything else is treated like :func:`read_uvicorn` treats its argument, with
    hypercorn's ``--keep-alive`` and ``--backlog`` flags.
    """
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"hypercorn must be a path or a command line, got {type(source).__name__}")
    path = Path(source)
    text_source = str(source)
    if path.suffix in (".toml", ".py") and " " not in text_source:
        file = str(path)
        rooted = _rooted(inputs, path)
        defaults: dict[str, Any] = {
            "keep_alive_timeout": HYPERCORN_KEEPALIVE,
            "backlog": HYPERCORN_BACKLOG,
        }
        lines: dict[str, int | None] = {}
        findings: list[Finding] = []
        if path.suffix == ".toml":
            table, text = _load_toml(path, rooted)
            values = {key: table[key] for key in defaults if key in table}
            for key in values:
                lines[key] = _line_of_key(text, key)
        else:
            found, dynamic, _ = _python_settings(path, tuple(defaults), rooted)
            values = {key: value for key, (value, _) in found.items()}
            lines = {key: line for key, (_, line) in found.items()}
            findings.extend(_dynamic_findings(dynamic, defaults, name, file))
        keepalive = _number(
            values.get("keep_alive_timeout", defaults["keep_alive_timeout"]),
            "keep_alive_timeout",
            file,
            lines.get("keep_alive_timeout") or 1,
        )
        backlog = int(
            _number(
                values.get("backlog", defaults["backlog"]),
                "backlog",
                file,
                lines.get("backlog") or 1,
                maximum=_MAX_BACKLOG,
            )
        )
        findings.extend(
            _backlog_finding(
                hop_name=name,
                backlog=backlog,
                somaxconn=somaxconn,
                file=file,
                line=lines.get("backlog"),
                default="backlog" not in values,
            )
        )
        hop = Hop(
            name=name,
            kind=HopKind.SERVER,
            idle_timeout=keepalive,
            backlog=backlog,
            source=file,
            line=lines.get("keep_alive_timeout"),
            detail=f"keep_alive_timeout {keepalive:g} s"
            + ("" if "keep_alive_timeout" in values else " (default)"),
        )
        return ConfigResult(hop=hop, findings=findings, files=[file])
    return _server_from_command(
        source,
        program="hypercorn",
        name=name,
        flags={"--keep-alive": "keepalive", "--backlog": "backlog"},
        keepalive_default=HYPERCORN_KEEPALIVE,
        backlog_default=HYPERCORN_BACKLOG,
        somaxconn=somaxconn,
        inputs=inputs,
    )


def _line_of_key(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*{re.escape(key)}\s*=")
    for number, line in enumerate(text.splitlines(), start=1):
        if pattern.match(line):
            return number
    return None


# TOML nesting is measured outside strings and comments: brackets and braces (table
# headers, [a] and [[a]], open and close on their line, so they count for two levels at
# most), and dots that are not a decimal point, which join the parts of a dotted key.
# Each pattern consumes characters one at a time and never needs to backtrack, and the
# scan always moves past what a pattern consumed: one pass, linear in the file's size
# (a single regular expression for whole strings rescans an unterminated string from
# every quote in it, which is quadratic).
_TOML_SIGNIFICANT = re.compile(r"[\[\]{}\n\"'#.]")
_TOML_BASIC = re.compile(r'(?:[^"\\\n]|\\.)*')  # inside "...", up to the quote
_TOML_MULTILINE_BASIC = re.compile(r'(?:[^"\\]|\\.|"(?!""))*', re.DOTALL)  # inside """..."""
_TOML_LITERAL = re.compile(r"[^'\n]*")  # inside '...'


def _toml_depth_check(text: str, file: str) -> None:
    """Raise LintInputError at the line where the TOML nests beyond MAX_DEPTH.

    tomllib parses nested values recursively (a file of 100,000 ``[`` exhausts the
    interpreter's recursion limit) and walks a dotted key's parts for each part (a key
    of 50,000 parts takes minutes), so both are measured first, in one linear pass.
    Malformed strings are skipped as far as they go; tomllib reports them.
    """
    depth = 0
    dots = 0
    line = 1
    position = 0
    size = len(text)
    while (found := _TOML_SIGNIFICANT.search(text, position)) is not None:
        char = found.group()
        position = found.end()
        if char == "\n":
            line += 1
            dots = 0
        elif char == "#":
            newline = text.find("\n", position)
            position = size if newline < 0 else newline
        elif char == '"' and text.startswith('""', position):
            inside = _TOML_MULTILINE_BASIC.match(text, position + 2)
            assert inside is not None  # the pattern matches the empty string
            line += inside.group().count("\n")
            position = min(size, inside.end() + 3)
        elif char == "'" and text.startswith("''", position):
            close = text.find("'''", position + 2)
            end = size if close < 0 else close + 3
            line += text.count("\n", position, end)
            position = end
        elif char in "\"'":
            inside = (_TOML_BASIC if char == '"' else _TOML_LITERAL).match(text, position)
            assert inside is not None
            position = inside.end() + (text.startswith(char, inside.end()))
        elif char == ".":
            before = text[position - 2] if position >= 2 else ""
            after = text[position] if position < size else ""
            if not (before.isdigit() and after.isdigit()):
                dots += 1
                if dots >= MAX_DEPTH:
                    raise LintInputError(
                        f"dotted keys of more than {MAX_DEPTH} parts", file=file, line=line
                    )
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise LintInputError(
                    f"arrays or inline tables nested more than {MAX_DEPTH} deep",
                    file=file,
                    line=line,
                )
        else:  # ] or }
            depth = max(0, depth - 1)


def _load_toml(path: Path, inputs: Inputs) -> tuple[dict[str, Any], str]:
    """Parse a TOML file with :mod:`tomllib` (Python 3.11+); return the table and the text."""
    text = inputs.read_text(path)
    if sys.version_info >= (3, 11):
        import tomllib

        _toml_depth_check(text, str(path))
        try:
            return tomllib.loads(text), text
        except tomllib.TOMLDecodeError as exc:
            match = re.search(r"\(at line (\d+)", str(exc))
            raise LintInputError(
                f"invalid TOML: {str(exc).split(' (at line')[0]}",
                file=str(path),
                line=int(match.group(1)) if match else None,
            ) from None
    raise LintInputError(  # pragma: no cover - exercised on Python 3.10 only
        "reading TOML needs Python 3.11 or later (tomllib); pass the values as options instead",
        file=str(path),
    )


# --------------------------------------------------------------------------- HAProxy

_HAPROXY_UNITS = {"us": 1e-6, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_HAPROXY_TIME = re.compile(r"([0-9]+)(us|ms|s|m|h|d)?")
# HAProxy keeps timeouts in a signed 32-bit count of milliseconds and refuses a longer one:
# "timer overflow in argument ... (maximum value is 2147483647 ms or ~24.8 days)".
_HAPROXY_MAX_MS = 2**31 - 1
_HAPROXY_SECTIONS = (
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "program",
    "http-errors",
    "ring",
    "mailers",
    "cache",
    "crt-store",
    "traces",
    "log-forward",
)


def parse_duration_haproxy(text: str) -> float:
    """Parse an HAProxy time (``10s``, ``1m``, ``500``: milliseconds without a unit) to seconds.

    Raises:
        ValueError: ``text`` is not an HAProxy time.
    """
    match = _HAPROXY_TIME.fullmatch(text)
    if match is None:
        raise ValueError(f"invalid time {shown(text)}")
    digits, unit = match.group(1), match.group(2) or "ms"
    # Compared as integers of microseconds: no float is made of a 400-digit number.
    micros = int(digits) * round(_HAPROXY_UNITS[unit] * 1e6) if len(digits) <= 30 else None
    if micros is None or micros > _HAPROXY_MAX_MS * 1000:
        raise ValueError(
            f"timer overflow in {shown(text)} (the maximum is {_HAPROXY_MAX_MS} ms, "
            "about 24.8 days)"
        )
    return micros / 1e6


@dataclass(slots=True)
class _HAProxySection:
    kind: str
    line: int
    timeouts: dict[str, tuple[float, int]] = field(default_factory=dict)
    options: set[str] = field(default_factory=set)
    reuse: str | None = None


def read_haproxy(
    path: str | Path, *, name: str = "haproxy", inputs: Inputs | None = None
) -> ConfigResult:
    """Read an HAProxy configuration into a proxy hop.

    The client side's idle timeout is ``timeout http-keep-alive`` (falling back to
    ``timeout http-request``, then ``timeout client``), the smallest over the frontends,
    with ``defaults`` sections inherited. HAProxy reuses server connections unless
    ``http-reuse never`` or ``option http-server-close``/``httpclose``; how long it keeps an
    idle one is governed by ``pool-purge-delay`` and is reported as unknown.
    """
    path = Path(path)
    file = str(path)
    text = _rooted(inputs, path).read_text(path)
    sections: list[_HAProxySection] = []
    defaults = _HAProxySection("defaults", 0)
    current: _HAProxySection | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        words = line.split()
        keyword = words[0]
        if keyword in _HAPROXY_SECTIONS:
            if keyword == "defaults":
                # A new defaults section replaces the previous one for what follows.
                inherited = _HAProxySection("defaults", number)
                current = defaults = inherited
                continue
            current = _HAProxySection(keyword, number)
            current.timeouts = dict(defaults.timeouts)
            current.options = set(defaults.options)
            current.reuse = defaults.reuse
            sections.append(current)
            continue
        if current is None:
            raise LintInputError(f"{shown(keyword)} outside of any section", file=file, line=number)
        if keyword == "timeout":
            if len(words) != 3:
                raise LintInputError("timeout needs a name and a value", file=file, line=number)
            try:
                current.timeouts[words[1]] = (parse_duration_haproxy(words[2]), number)
            except ValueError as exc:
                raise LintInputError(
                    f"timeout {shown(words[1])}: {exc}", file=file, line=number
                ) from None
        elif keyword == "option" and len(words) >= 2:
            current.options.add(words[1])
        elif keyword == "no" and len(words) >= 3 and words[1] == "option":
            current.options.discard(words[2])
        elif keyword == "http-reuse" and len(words) >= 2:
            current.reuse = words[1]
    frontends = [s for s in sections if s.kind in ("frontend", "listen")]
    backends = [s for s in sections if s.kind in ("backend", "listen")]
    idle: tuple[float, int] | None = None
    for section in frontends:
        for key in ("http-keep-alive", "http-request", "client"):
            if key in section.timeouts:
                candidate = section.timeouts[key]
                if idle is None or candidate[0] < idle[0]:
                    idle = candidate
                break
    closes = {"http-server-close", "httpclose"}
    reuses = bool(backends) and any(
        s.reuse != "never" and not (s.options & closes) for s in backends
    )
    findings: list[Finding] = []
    if frontends and idle is None:
        findings.append(
            Finding(
                code="RST004",
                severity=Severity.NOTE,
                message=f"{name} sets no timeout http-keep-alive, http-request or client: "
                "idle client connections are never closed by it",
                fix="set timeout http-keep-alive (and timeout client)",
                hops=(name,),
                file=file,
                line=frontends[0].line,
            )
        )
    hop = Hop(
        name=name,
        kind=HopKind.PROXY,
        idle_timeout=idle[0] if idle is not None else None,
        upstream_idle_ttl=None,
        reuses_upstream=reuses,
        source=file,
        line=idle[1] if idle is not None else None,
        detail=(f"client idle {idle[0]:g} s" if idle is not None else "client idle unknown")
        + ("; reuses server connections" if reuses else ""),
        idle_timeout_setting=f"timeout http-keep-alive (and timeout client) in {file}",
        # haproxy.cfg has no idle TTL for server connections that lint can compare (idle
        # ones are purged over pool-purge-delay); what can be set there is http-reuse.
        upstream_idle_ttl_setting=f"http-reuse never in {file} (it has no idle TTL for "
        f"server connections lint can check), or state {name}'s idle TTL of at most "
        "{target} as upstream_idle_ttl in a topology file (--topology)",
    )
    return ConfigResult(hop=hop, findings=findings, files=[file])
