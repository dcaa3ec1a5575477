"""The ``rstsafe`` command line: a thin formatter over the Python API.

Each subcommand lives in its own module, which exposes ``register(subparsers)``; the
module is imported only when the command line is built, so ``import rstsafe`` stays
cheap. A subcommand's handler returns the process exit code.

One style for every command (docs/cli.md):

- ``--format text|json`` selects the output (lint adds ``sarif``; the demo keeps
  ``--json`` as an alias of ``--format json``);
- exit codes: 0 ok, 1 findings or failure, 2 usage (a bad option or value), 130
  interrupted;
- a usage error is reported by the parser of the command that was given, with that
  command's usage line: ``rstsafe lint --bogus`` shows ``usage: rstsafe lint ...``;
- bare ``rstsafe`` prints the help and exits 0;
- colour only on a terminal and never with ``NO_COLOR`` set; progress only on standard
  error, only when it is a terminal.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import Any

__all__ = ("CommandLineError", "add_format_option", "build_parser", "main")

# Modules that contribute a subcommand, in the order ``--help`` lists them.
_SUBCOMMAND_MODULES: tuple[str, ...] = (
    "rstsafe._cli.demo",
    "rstsafe.testing._cli",
    "rstsafe.tools._lint._cli",
    "rstsafe._cli.probe",
    "rstsafe._cli.doctor",
)

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

_EPILOG = (
    "exit codes: 0 ok, 1 findings or failure, 2 usage error, 130 interrupted. "
    "Every command takes --format text|json. Run 'rstsafe COMMAND --help' for a command."
)


class CommandLineError(Exception):
    """A bad option value found after parsing; reported as one line, exit code 2."""


class _SubcommandParser(argparse.ArgumentParser):
    """A subcommand's parser: it reports unknown arguments itself, with its own usage.

    argparse hands a subcommand's unrecognised arguments back to the top-level parser,
    which then prints the *top-level* usage (``rstsafe [-h] [--version] COMMAND ...``)
    for ``rstsafe lint --bogus``. Checking here puts the error next to the usage line
    of the command that was actually given.
    """

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        parsed, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return parsed, extras


def add_format_option(parser: argparse.ArgumentParser, *choices: str) -> None:
    """Add the ``--format`` option every command has (``text`` and ``json``, plus ``choices``)."""
    formats = ("text", "json", *choices)
    parser.add_argument(
        "--format",
        dest="output_format",
        choices=formats,
        default="text",
        help=f"output format: {', '.join(formats)} (default: text)",
    )


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser with every available subcommand registered."""
    from rstsafe import __version__

    parser = argparse.ArgumentParser(
        prog="rstsafe",
        description="Make HTTP and TCP clients survive 'Connection reset by peer'.",
        epilog=_EPILOG,
    )
    parser.add_argument("--version", action="version", version=f"rstsafe {__version__}")
    subparsers: Any = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=_SubcommandParser
    )
    for module_name in _SUBCOMMAND_MODULES:
        module = importlib.import_module(module_name)
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return its exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_OK
    try:
        code: int = args.handler(args)
    except CommandLineError as exc:
        parser.exit(EXIT_USAGE, f"rstsafe {args.command}: error: {exc}\n")
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return code
