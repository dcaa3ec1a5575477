"""Scan Python source for reset hazards with :mod:`ast`; nothing is imported or run.

Names are resolved through the module's own imports (``import requests as r``,
``from urllib3.util.retry import Retry``), so ``r.get(url)`` is recognised as
``requests.get``. The checks are deliberately literal: a value computed at run time is
not guessed at, so every finding points at code that is wrong as written.

The walk over the syntax tree is iterative, so a file is scanned if Python's own parser
accepts it; one it refuses as too deeply nested (200 nested brackets, or an expression
such as a 100,000-term sum nested deeper than the interpreter's recursion limit) is a
:class:`LintInputError` at its line, like a syntax error.
"""

from __future__ import annotations

import ast
import os
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

from rstsafe.tools._lint._inputs import Inputs
from rstsafe.tools._lint._model import RULES, Finding, LintInputError, Severity

__all__ = ("iter_python_files", "parse_python", "scan_file", "scan_source")

# Methods whose retry may execute a request twice (RFC 9110 section 9.2.2: not idempotent).
NON_IDEMPOTENT = frozenset({"POST", "PATCH", "CONNECT"})
# A lost SYN is retransmitted after the initial RTO, 1 s (RFC 6298 section 2.1); a connect
# timeout below it turns one lost packet into a failed request (C9).
INITIAL_RTO = 1.0

_REQUESTS_FUNCTIONS = frozenset(
    {"get", "post", "put", "patch", "delete", "head", "options", "request"}
)
_RETRY_NAMES = frozenset(
    {
        "urllib3.Retry",
        "urllib3.util.Retry",
        "urllib3.util.retry.Retry",
        "requests.adapters.Retry",
        "requests.packages.urllib3.util.retry.Retry",
        "requests.packages.urllib3.Retry",
    }
)
_SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "env", "node_modules", "__pycache__", "site-packages",
     ".tox", ".nox", "build", "dist", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
)  # fmt: skip


def iter_python_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    """Yield the ``.py`` files named, and those under the directories named (sorted).

    Raises:
        LintInputError: a path does not exist, or is neither a directory nor a regular file.
    """
    for raw in paths:
        path = Path(raw)
        try:
            exists = os.path.lexists(path)
        except (OSError, ValueError):  # NUL in the name, a name too long
            exists = False
        if not exists:
            raise LintInputError("no such file or directory", file=str(path))
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
                for name in sorted(files):
                    if name.endswith(".py"):
                        yield Path(root) / name
        else:
            yield path  # a FIFO or device is refused when it is read, with what it is


def scan_file(path: str | Path, *, inputs: Inputs | None = None) -> list[Finding]:
    """Scan one Python file. Raises :class:`LintInputError` for unreadable or invalid code.

    ``inputs`` is the run's reading context (limits, regular files only); a fresh one
    with the default limits when None.
    """
    path = Path(path)
    text = (inputs if inputs is not None else Inputs()).read_text(path)
    return scan_source(text, filename=str(path))


_OPERATOR_CHARACTERS = frozenset("([{-+~*/%@&|^<>.!=")


def _most_nested_line(text: str) -> int | None:
    """The line most likely to have defeated Python's parser: the most operator characters.

    Only used to place the error when the parser gave up (MemoryError or RecursionError,
    which carry no line); a line that deep has hundreds of operators or brackets.
    """
    best, best_count = None, 0
    for number, line in enumerate(text.splitlines(), start=1):
        count = sum(1 for char in line if char in _OPERATOR_CHARACTERS)
        if count > best_count:
            best, best_count = number, count
    return best


def parse_python(text: str, *, filename: str) -> ast.Module:
    """``ast.parse`` whose every failure is a :class:`LintInputError` with file and line."""
    try:
        return ast.parse(text, filename=filename)
    except SyntaxError as exc:
        raise LintInputError(f"invalid Python: {exc.msg}", file=filename, line=exc.lineno) from None
    except ValueError as exc:  # source with NUL bytes (3.11; 3.12 raises SyntaxError)
        raise LintInputError(f"invalid Python: {exc}", file=filename) from None
    except (MemoryError, RecursionError):
        # CPython's parser gives up on deep nesting with MemoryError ("parser stack
        # overflow", e.g. 200,000 unary minus signs) or RecursionError (during ast
        # construction, e.g. a 100,000-term sum); neither says where.
        raise LintInputError(
            "invalid Python: nested too deeply for Python's parser",
            file=filename,
            line=_most_nested_line(text),
        ) from None


def scan_source(text: str, *, filename: str = "<source>") -> list[Finding]:
    """Scan Python source text and return its findings, in line order."""
    tree = parse_python(text, filename=filename)
    scanner = _Scanner(filename, has_idempotency_key="idempotency-key" in text.lower())
    scanner.scan(tree)
    return sorted(scanner.findings, key=lambda f: (f.line or 0, f.code))


def _literal(node: ast.expr) -> object:
    """``ast.literal_eval``, raising ValueError also for literals nested too deeply for it."""
    try:
        return ast.literal_eval(node)
    except (TypeError, SyntaxError, MemoryError, RecursionError) as exc:
        raise ValueError(str(exc)) from None


def _linger_is_zero(value: ast.expr, scanner: _Scanner) -> bool:
    """Whether ``value`` is a literal ``struct linger`` with l_onoff != 0 and l_linger == 0."""
    if isinstance(value, ast.Name) and value.id in scanner.assigned:
        value = scanner.assigned[value.id]
    if isinstance(value, ast.Call) and scanner.dotted(value.func) in ("struct.pack",):
        try:
            numbers = [_literal(arg) for arg in value.args[1:]]
        except ValueError:
            return False
        return len(numbers) >= 2 and bool(numbers[0]) and numbers[1] == 0
    if isinstance(value, ast.Constant) and isinstance(value.value, bytes):
        raw = value.value
        if len(raw) == struct.calcsize("ii"):
            onoff, linger = struct.unpack("ii", raw)
            return bool(onoff) and linger == 0
    return False


def _mentions(node: ast.AST, name: str) -> bool:
    for child in ast.walk(node):
        if isinstance(child, ast.Name) and child.id == name:
            return True
        if isinstance(child, ast.Attribute) and child.attr == name:
            return True
    return False


def _number(node: ast.expr) -> float | None:
    try:
        value = _literal(node)
    except ValueError:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


class _Scanner:
    """Collects findings; ``visit_X`` handles node type X, called by :meth:`scan`."""

    def __init__(self, filename: str, *, has_idempotency_key: bool) -> None:
        self.filename = filename
        self.has_idempotency_key = has_idempotency_key
        self.findings: list[Finding] = []
        self.aliases: dict[str, str] = {}
        self.assigned: dict[str, ast.expr] = {}
        self.sessions: set[str] = set()

    def scan(self, tree: ast.AST) -> None:
        """Call ``visit_X`` on every node, depth first in source order, without recursion."""
        stack: list[ast.AST] = [tree]
        while stack:
            node = stack.pop()
            handler = getattr(self, f"visit_{type(node).__name__}", None)
            if handler is not None:
                handler(node)
            stack.extend(reversed(list(ast.iter_child_nodes(node))))

    # ---------------------------------------------------------------- name resolution

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if alias.asname:
                self.aliases[alias.asname] = alias.name
            else:
                top = alias.name.split(".")[0]
                self.aliases[top] = top

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module and not node.level:
            for alias in node.names:
                self.aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"

    def dotted(self, node: ast.expr) -> str:
        """Return the dotted name ``node`` refers to, through the imports; "" if unknown."""
        attributes: list[str] = []
        while isinstance(node, ast.Attribute):  # a.b.c...: a loop, however long the chain
            attributes.append(node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return ""
        return ".".join([self.aliases.get(node.id, node.id), *reversed(attributes)])

    def _is_session_factory(self, node: ast.expr) -> bool:
        return isinstance(node, ast.Call) and self.dotted(node.func) in (
            "requests.Session",
            "requests.session",
            "requests.sessions.Session",
        )

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            name = self.dotted(target) if isinstance(target, ast.Name | ast.Attribute) else ""
            if not name:
                continue
            if isinstance(target, ast.Name):
                self.assigned[target.id] = node.value
            if self._is_session_factory(node.value):
                self.sessions.add(name)

    def visit_With(self, node: ast.With) -> None:
        for item in node.items:
            if item.optional_vars is not None and self._is_session_factory(item.context_expr):
                name = self.dotted(item.optional_vars)
                if name:
                    self.sessions.add(name)

    # ---------------------------------------------------------------- checks

    def _add(
        self, node: ast.AST, code: str, message: str, fix: str, severity: Severity | None = None
    ) -> None:
        self.findings.append(
            Finding(
                code=code,
                severity=severity or RULES[code].severity,
                message=message,
                fix=fix,
                file=self.filename,
                line=getattr(node, "lineno", None),
            )
        )

    def visit_Tuple(self, node: ast.Tuple) -> None:
        # (SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0)) in a socket_options list.
        if (
            len(node.elts) == 3
            and _mentions(node.elts[1], "SO_LINGER")
            and _linger_is_zero(node.elts[2], self)
        ):
            self._linger_finding(node)

    def _linger_finding(self, node: ast.AST) -> None:
        self._add(
            node,
            "RST101",
            "SO_LINGER set with l_onoff=1, l_linger=0: close() sends RST and discards unsent data",
            "remove the SO_LINGER option and close gracefully (shutdown(SHUT_WR), drain, close)",
        )

    def visit_Call(self, node: ast.Call) -> None:
        name = self.dotted(node.func)
        keywords: dict[str, ast.expr] = {
            kw.arg: kw.value for kw in node.keywords if kw.arg is not None
        }
        has_star_kwargs = any(kw.arg is None for kw in node.keywords)
        method = node.func.attr if isinstance(node.func, ast.Attribute) else ""

        if (
            method == "setsockopt"
            and len(node.args) >= 3
            and _mentions(node.args[1], "SO_LINGER")
            and _linger_is_zero(node.args[2], self)
        ):
            self._linger_finding(node)

        if name in _RETRY_NAMES or (name.endswith(".Retry") and name.startswith("urllib3")):
            self._check_retry(node, keywords)

        receiver = self.dotted(node.func.value) if isinstance(node.func, ast.Attribute) else ""
        is_requests_call = (name.startswith("requests.") and name.count(".") == 1) and (
            method in _REQUESTS_FUNCTIONS
        )
        is_session_call = receiver in self.sessions and method in _REQUESTS_FUNCTIONS
        if (is_requests_call or is_session_call) and not has_star_kwargs:
            if "timeout" not in keywords:
                self._add(
                    node,
                    "RST103",
                    f"{name if is_requests_call else receiver + '.' + method}() has no timeout: "
                    "a silently dropped connection hangs forever",
                    "pass timeout=(connect, read), e.g. timeout=(3.05, 30)",
                )
            else:
                self._check_connect_timeout(node, keywords["timeout"])

        if name.startswith("httpx.") and "timeout" in keywords:
            self._check_connect_timeout(node, keywords["timeout"])
        if name == "httpx.Timeout":
            connect = keywords.get("connect", node.args[0] if node.args else None)
            if connect is not None:
                self._check_connect_timeout(node, connect)

        if "socket_options" in keywords:
            value = keywords["socket_options"]
            if isinstance(value, ast.List | ast.Tuple) and not _mentions(value, "TCP_NODELAY"):
                self._add(
                    node,
                    "RST104",
                    "socket_options replaces urllib3's default_socket_options and drops "
                    "TCP_NODELAY",
                    "use HTTPConnection.default_socket_options + [...your options]",
                )

        if name == "httpx.Limits" and not node.args and not has_star_kwargs:
            expiry = keywords.get("keepalive_expiry")
            if isinstance(expiry, ast.Constant) and expiry.value is None:
                self._add(
                    node,
                    "RST001",
                    "httpx.Limits(keepalive_expiry=None) keeps idle connections with no idle TTL",
                    "set keepalive_expiry below the server's keep-alive timeout",
                )
            if set(keywords) == {"keepalive_expiry"}:
                self._add(
                    node,
                    "RST105",
                    "httpx.Limits(keepalive_expiry=...) alone removes httpx's default limits "
                    "(max_connections=100, max_keepalive_connections=20)",
                    "pass max_connections=100, max_keepalive_connections=20 as well",
                )

    def _check_retry(self, node: ast.Call, keywords: dict[str, ast.expr]) -> None:
        for key in ("allowed_methods", "method_whitelist"):
            if key not in keywords:
                continue
            value = keywords[key]
            if isinstance(value, ast.Constant) and value.value in (None, False):
                methods = "every method"
            else:
                found = sorted(
                    {
                        child.value.upper()
                        for child in ast.walk(value)
                        if isinstance(child, ast.Constant)
                        and isinstance(child.value, str)
                        and child.value.upper() in NON_IDEMPOTENT
                    }
                )
                if not found:
                    continue
                methods = ", ".join(found)
            if self.has_idempotency_key:
                self._add(
                    node,
                    "RST102",
                    f"Retry({key}=...) retries {methods}; this module mentions an "
                    "Idempotency-Key, make sure every retried request carries one",
                    "retry non-idempotent requests only when they carry an Idempotency-Key",
                    Severity.WARNING,
                )
            else:
                self._add(
                    node,
                    "RST102",
                    f"Retry({key}=...) retries {methods} without an idempotency key: "
                    "a request the server executed may be executed twice",
                    "drop POST/PATCH from allowed_methods, or send an Idempotency-Key header",
                )

    def _check_connect_timeout(self, node: ast.Call, value: ast.expr) -> None:
        connect: float | None
        if isinstance(value, ast.Tuple) and value.elts:
            connect = _number(value.elts[0])
        else:
            connect = _number(value)
        if connect is not None and 0 < connect < INITIAL_RTO:
            self._add(
                node,
                "RST106",
                f"connect timeout {connect:g} s is below TCP's 1 s SYN retransmission "
                "timeout: one lost SYN fails the request",
                "use a connect timeout of at least 1 s (3.05 s covers two SYN retransmissions)",
            )
