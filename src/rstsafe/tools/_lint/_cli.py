"""``rstsafe lint``: the command line over :func:`rstsafe.tools.lint`.

Exit codes: 0 nothing at or above ``--fail-on``; 1 findings at or above it (errors by
default), so the command can gate CI; 2 bad input (a missing, oversized, non-regular or
malformed file, named with its line, as one line on stderr; nothing from it was executed).
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from pathlib import Path
from typing import Any

from rstsafe._cli import CommandLineError

__all__ = ("register",)

_SOMAXCONN = Path("/proc/sys/net/core/somaxconn")


def _somaxconn(text: str) -> int | None:
    if text == "none":
        return None
    if text == "local":
        try:
            return int(_SOMAXCONN.read_text().strip())
        except (OSError, ValueError):
            return None
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number, 'local' or 'none', got {text!r}"
        ) from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"somaxconn must be >= 1, got {value}")
    return value


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(text: str) -> int:
    """Bytes, optionally with a K, M or G suffix (powers of 1024): ``10M``."""
    match = re.fullmatch(r"([0-9]{1,15})([KMG]?)i?B?", text.strip(), flags=re.IGNORECASE)
    if match is None or int(match.group(1)) < 1:
        raise argparse.ArgumentTypeError(f"expected a size such as 10M or 65536, got {text!r}")
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def _upstream(text: str) -> str | float:
    try:
        value = float(text)
    except ValueError:
        from rstsafe.tools._lint._topology import HOP_PRESETS

        if text not in HOP_PRESETS:
            known = ", ".join(sorted(HOP_PRESETS))
            raise argparse.ArgumentTypeError(
                f"expected seconds or a preset ({known}), got {text!r}"
            ) from None
        return text
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected seconds >= 0, got {text!r}")
    return value


def load_client(spec: str) -> object:
    """Import ``module:attribute`` (the current directory is importable) and return it."""
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CommandLineError(f"--client expects module:attribute, got {spec!r}")
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as exc:  # the user's module: any failure is reported as one line
        raise CommandLineError(
            f"--client {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}"
        ) from None
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise CommandLineError(f"--client {spec}: {module_name} has no {attribute}") from None
    return obj


def register(subparsers: Any) -> None:
    """Add the ``lint`` subcommand to the ``rstsafe`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "lint",
        help="check pools, proxies and code for connection-reset hazards",
        description="Check that at every hop the side reusing a connection gives it up "
        "first, with margin; scan Python source for reset hazards. Nothing is executed "
        "from the files read.",
        epilog="exit codes: 0 clean, 1 findings at or above --fail-on, 2 bad input. "
        "Finding codes are explained in docs/tools.md.",
    )
    parser.add_argument(
        "paths", nargs="*", metavar="PATH", help="Python files or directories to scan"
    )
    parser.add_argument("--topology", metavar="FILE", help="topology file (TOML) of the hops")
    parser.add_argument("--nginx", metavar="FILE", help="nginx.conf (include is followed)")
    parser.add_argument("--gunicorn", metavar="FILE", help="gunicorn config (Python, not run)")
    parser.add_argument(
        "--uvicorn", metavar="CMD|FILE", help="uvicorn command line, or a file that runs it"
    )
    parser.add_argument(
        "--hypercorn", metavar="FILE|CMD", help="hypercorn config (TOML/Python) or command line"
    )
    parser.add_argument("--haproxy", metavar="FILE", help="haproxy.cfg")
    parser.add_argument(
        "--client",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="a client object to inspect, imported from MODULE (repeatable)",
    )
    parser.add_argument(
        "--upstream",
        action="append",
        default=[],
        type=_upstream,
        metavar="PRESET|SECONDS",
        help="a hop in front of the client: a preset (aws-alb, aws-nat-gateway, gcp-lb, "
        "azure-lb, cloudflare, uvicorn, ...) or a server's idle timeout (repeatable, in order)",
    )
    parser.add_argument(
        "--somaxconn",
        type=_somaxconn,
        default="local",
        metavar="N|local|none",
        help="net.core.somaxconn to check listen backlogs against (default: this machine's)",
    )
    parser.add_argument(
        "--max-file-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="largest file lint reads (default 1M; K, M, G suffixes)",
    )
    parser.add_argument(
        "--max-total-size",
        type=_size,
        default=None,
        metavar="SIZE",
        help="most bytes lint reads in all (default 64M)",
    )
    parser.add_argument(
        "--include-root",
        metavar="DIR",
        help="directory that includes and files named in configs must be in "
        "(default: the directory of each file given; / allows every file)",
    )
    parser.add_argument(
        "--format", dest="output_format", choices=("text", "json", "sarif"), default="text"
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write the report to FILE")
    parser.add_argument(
        "--fail-on",
        choices=("error", "warning", "never"),
        default="error",
        help="lowest severity that makes the exit code 1 (default: error)",
    )
    parser.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from rstsafe.tools._lint import (
        DEFAULT_MAX_FILE_SIZE,
        DEFAULT_MAX_TOTAL_SIZE,
        LintInputError,
        Severity,
        lint,
        render,
    )

    if not (
        args.paths
        or args.topology
        or args.nginx
        or args.gunicorn
        or args.uvicorn
        or args.hypercorn
        or args.haproxy
        or args.client
    ):
        raise CommandLineError(
            "nothing to lint: give PATHs, --topology, a config file (--nginx, --gunicorn, "
            "--uvicorn, --hypercorn, --haproxy) or --client"
        )
    clients = [load_client(spec) for spec in args.client]
    try:
        report = lint(
            *clients,
            upstream=args.upstream or None,
            topology=args.topology,
            nginx=args.nginx,
            gunicorn=args.gunicorn,
            uvicorn=args.uvicorn,
            hypercorn=args.hypercorn,
            haproxy=args.haproxy,
            sources=args.paths,
            somaxconn=args.somaxconn,
            max_file_size=args.max_file_size or DEFAULT_MAX_FILE_SIZE,
            max_total_size=args.max_total_size or DEFAULT_MAX_TOTAL_SIZE,
            include_root=args.include_root,
        )
    except LintInputError as exc:
        raise CommandLineError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise CommandLineError(str(exc)) from None
    text = render(report, args.output_format)
    if args.output:
        try:
            Path(args.output).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise CommandLineError(f"cannot write {args.output}: {exc.strerror or exc}") from None
    else:
        sys.stdout.write(text)
    failing = {
        "error": {Severity.ERROR},
        "warning": {Severity.ERROR, Severity.WARNING},
        "never": set(),
    }[args.fail_on]
    return 1 if any(f.severity in failing for f in report.findings) else 0
