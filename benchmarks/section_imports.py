"""Import time: what importing rstsafe costs on top of the library it wraps.

What is measured: the wall time of a fresh interpreter running ``-c "import X"``, minus
that of one running ``-c "pass"`` (the interpreter's own start-up, site and the venv's
``.pth`` files included in both), for each pair:

- ``import rstsafe`` against ``import urllib3, tenacity`` (what the core builds on);
- ``import rstsafe.httpx`` against ``import httpx``;
- ``import rstsafe.requests`` against ``import requests``;
- ``import rstsafe.aiohttp`` against ``import aiohttp``, when ``rstsafe.aiohttp`` exists.

The commands run interleaved (each round runs every command once, in an order rotated
from round to round, so that a busy moment of the machine hits them alike), after one
warm-up round that is not counted (it writes the bytecode caches); each figure is the
minimum over the rounds: the noise of a shared machine only ever adds time. Bytecode
caches are written for every module alike, into a temporary ``PYTHONPYCACHEPREFIX``
(``PYTHONDONTWRITEBYTECODE`` is dropped for these interpreters): a source tree without
``__pycache__`` would otherwise compile rstsafe on every import while the host libraries
load theirs from site-packages. One ``-X importtime`` run of each statement lists the
heaviest modules rstsafe's import adds to its host's (by self time): where to look when
shrinking it.

Why it matters: an adapter is imported by every process that uses it, CLI tools and
serverless functions included; issue 15's target is an import within 25 ms of the
host library's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ("PAIRS", "TARGET_MS", "ImportRow", "ImportsConfig", "as_json", "render", "run")

#: (rstsafe module, its import statement, host name, the host's import statement).
PAIRS: tuple[tuple[str, str, str, str], ...] = (
    ("rstsafe", "import rstsafe", "urllib3 + tenacity", "import urllib3, tenacity"),
    ("rstsafe.httpx", "import rstsafe.httpx", "httpx", "import httpx"),
    ("rstsafe.requests", "import rstsafe.requests", "requests", "import requests"),
    ("rstsafe.aiohttp", "import rstsafe.aiohttp", "aiohttp", "import aiohttp"),
)
#: Issue 15's target: rstsafe's import within this many milliseconds of the host's.
TARGET_MS = 25.0
#: Modules listed from the ``-X importtime`` run.
HEAVIEST = 8
EMPTY = "pass"


@dataclass(frozen=True, slots=True, kw_only=True)
class ImportsConfig:
    """How many counted rounds (the minimum over them is reported)."""

    rounds: int = 7

    def __post_init__(self) -> None:
        if isinstance(self.rounds, bool) or not isinstance(self.rounds, int) or self.rounds < 1:
            raise ValueError(f"rounds must be an int >= 1, got {self.rounds!r}")


@dataclass(slots=True, kw_only=True)
class ImportRow:
    """One pair: rstsafe's module and its host, in milliseconds over an empty interpreter."""

    module: str
    host: str
    module_ms: float
    host_ms: float
    empty_ms: float
    rounds: int
    #: The heaviest modules (self time, ``-X importtime``) it adds to the host's import.
    heaviest: list[tuple[str, float]] = field(default_factory=list)

    @property
    def difference_ms(self) -> float:
        return self.module_ms - self.host_ms

    @property
    def met(self) -> bool:
        return self.difference_ms <= TARGET_MS

    def verdict(self) -> str:
        if self.met:
            return "met"
        return f"not met: {self.difference_ms - TARGET_MS:.0f} ms over"


def environment(cache_dir: str) -> dict[str, str]:
    """This process's environment, with bytecode caches written into ``cache_dir``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = cache_dir
    return env


def _time(statement: str, env: Mapping[str, str]) -> float:
    """Seconds for a fresh interpreter to run ``statement`` (and exit)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-c", statement],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    return time.perf_counter() - started


def _importable(module: str, env: Mapping[str, str]) -> bool:
    """Whether ``module`` imports, asked of a fresh interpreter (this one stays clean)."""
    done = subprocess.run(
        [sys.executable, "-c", f"import {module}"],
        capture_output=True,
        check=False,
        env=env,
    )
    return done.returncode == 0


def import_times(statement: str, env: Mapping[str, str]) -> dict[str, float]:
    """Every module ``statement`` imports, with its self time in ms (``-X importtime``)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    modules: dict[str, float] = {}
    for line in done.stderr.splitlines():
        # "import time:       123 |        456 |   package.module"
        if not line.startswith("import time:") or "|" not in line:
            continue
        fields = line.removeprefix("import time:").split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue
        modules[fields[2].strip()] = int(fields[0]) / 1000.0
    return modules


def heaviest_added(
    statement: str, host_statement: str, env: Mapping[str, str]
) -> list[tuple[str, float]]:
    """The modules ``statement`` imports and ``host_statement`` does not, heaviest first."""
    host = import_times(host_statement, env)
    added = [(m, ms) for m, ms in import_times(statement, env).items() if m not in host]
    added.sort(key=lambda m: m[1], reverse=True)
    return added[:HEAVIEST]


def run(config: ImportsConfig) -> list[ImportRow]:
    """Time every pair whose rstsafe module imports; see the module docstring."""
    with tempfile.TemporaryDirectory(prefix="rstsafe-imports-") as cache_dir:
        env = environment(cache_dir)
        pairs = [
            p for p in PAIRS if p[0] != "rstsafe.aiohttp" or _importable("rstsafe.aiohttp", env)
        ]
        statements = [EMPTY] + [s for _, module, _, host in pairs for s in (module, host)]
        best = dict.fromkeys(statements, float("inf"))
        for round_ in range(config.rounds + 1):
            shift = round_ % len(statements)
            for statement in statements[shift:] + statements[:shift]:
                elapsed = _time(statement, env)
                if round_:  # round 0 writes the bytecode caches
                    best[statement] = min(best[statement], elapsed)
        heaviest = {module: heaviest_added(module, host, env) for _, module, _, host in pairs}
    empty = best[EMPTY]
    return [
        ImportRow(
            module=name,
            host=host_name,
            module_ms=(best[module] - empty) * 1e3,
            host_ms=(best[host] - empty) * 1e3,
            empty_ms=empty * 1e3,
            rounds=config.rounds,
            heaviest=heaviest[module],
        )
        for name, module, host_name, host in pairs
    ]


def summary(rows: list[ImportRow]) -> str:
    """One line for the report's summary."""
    parts = ", ".join(f"{r.module} {r.difference_ms:+.0f} ms over {r.host}" for r in rows)
    met = sum(r.met for r in rows)
    return (
        f"Import time (target: within {TARGET_MS:g} ms of the host library's): met for "
        f"{met} of {len(rows)} modules ({parts})."
    )


def render(rows: list[ImportRow], config: ImportsConfig) -> str:
    """The section's markdown."""
    empty = rows[0].empty_ms if rows else float("nan")
    lines = [
        "## Import time",
        "",
        'A fresh interpreter runs `-c "import X"`; the figure is its wall time minus that '
        f'of `-c "pass"` ({empty:.0f} ms here), the minimum of {config.rounds} interleaved '
        "rounds after a warm-up round that writes every module's bytecode cache (into a "
        "temporary `PYTHONPYCACHEPREFIX`, for rstsafe and the hosts alike). Target (issue "
        "15): rstsafe's module within "
        f"{TARGET_MS:g} ms of the host's.",
        "",
        "| rstsafe module | ms | host | ms | difference | target |",
        "|---|---:|---|---:|---:|---|",
    ]
    for row in rows:
        lines.append(
            f"| `{row.module}` | {row.module_ms:.1f} | {row.host} | {row.host_ms:.1f} "
            f"| {row.difference_ms:+.1f} ms | {row.verdict()} |"
        )
    lines += [
        "",
        "The heaviest modules each import adds to its host's (self time in ms, one "
        "`-X importtime` run each):",
        "",
    ]
    for row in rows:
        added = ", ".join(f"`{name}` {ms:.1f}" for name, ms in row.heaviest) or "none"
        lines.append(f"- `{row.module}` over {row.host}: {added}")
    lines.append("")
    return "\n".join(lines)


def as_json(rows: list[ImportRow]) -> list[dict[str, object]]:
    """The rows' figures (for ``--json``)."""
    return [
        {
            "module": r.module,
            "host": r.host,
            "module_ms": r.module_ms,
            "host_ms": r.host_ms,
            "empty_ms": r.empty_ms,
            "difference_ms": r.difference_ms,
            "met": r.met,
        }
        for r in rows
    ]
