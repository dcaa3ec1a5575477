"""The ``rstsafe`` command line: a thin formatter over the Python API.

Each subcommand lives in its own module, which exposes ``register(subparsers)``; the
module is imported only when the command line is built, so ``import rstsafe`` stays
cheap. A subcommand's handler returns the process exit code. Usage errors (an unknown
behaviour, a bad option) are reported by argparse as one line and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Modules that contribute a subcommand, in the order ``--help`` lists them.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "rstsafe._cli.demo",
    "rstsafe.testing._cli",
    "rstsafe.tools._lint._cli",
    "rstsafe._cli.probe",
    "rstsafe._cli.doctor",
)


class CommandLineError(Exception):
    """A bad option value found after parsing; reported as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every available subcommand registered."""
    from rstsafe import __version__

    parser = argparse.ArgumentParser(
        prog="rstsafe",
        description="Make HTTP and TCP clients survive 'Connection reset by peer'.",
    )
    parser.add_argument("--version", action="version", version=f"rstsafe {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module_name in _SUBCOMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.handler(args)
    except CommandLineError as exc:
        parser.exit(2, f"rstsafe {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return code
