"""``rstsafe probe URL``: the command line over the probe of ``rstsafe.tools``.

Exit codes: 0 measured; 1 the server could not be probed (refused, unreachable, not HTTP);
2 bad usage (an invalid URL or option). A progress bar is drawn on standard error while
the probe waits, only when standard error is a terminal; warnings are coloured only on a
terminal without ``NO_COLOR``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from rstsafe._cli import EXIT_FAILURE, EXIT_OK, CommandLineError, add_format_option
from rstsafe._cli._term import Style

__all__ = ("format_result", "register")

_BAR_WIDTH = 24


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``probe`` subcommand to the ``rstsafe`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "probe",
        help="measure a server's keep-alive timeout, close kind and requests per connection",
        description="Send a request on a fresh connection, read the Keep-Alive header, hold "
        "the idle connection and time the server's close (FIN or RST); count the requests "
        "one connection may carry; print the idle TTL rstsafe would use.",
        epilog="exit codes: 0 measured, 1 the server could not be probed, 2 bad usage",
    )
    parser.add_argument("url", metavar="URL", help="http:// or https:// URL to GET")
    parser.add_argument(
        "--max-wait",
        type=_positive,
        default=120.0,
        metavar="SECONDS",
        help="give up waiting for the idle close after this long (default 120)",
    )
    parser.add_argument(
        "--max-requests",
        type=_count,
        default=100,
        metavar="N",
        help="stop counting requests per connection at N (default 100)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive,
        default=10.0,
        metavar="SECONDS",
        help="connect and response timeout (default 10)",
    )
    parser.add_argument(
        "--method",
        choices=("GET", "HEAD", "OPTIONS"),
        default="GET",
        help="request method; it is sent many times, so only safe ones (default GET)",
    )
    parser.add_argument(
        "--insecure", action="store_true", help="do not verify the TLS certificate (https)"
    )
    add_format_option(parser)
    parser.set_defaults(handler=_run)


class _ProgressBar:
    """A one-line progress bar on a terminal; erased when done."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.drawn = False

    def __call__(self, elapsed: float, total: float) -> None:
        filled = int(_BAR_WIDTH * min(elapsed / total, 1.0))
        bar = "#" * filled + "." * (_BAR_WIDTH - filled)
        self.stream.write(
            f"\r[{bar}] {elapsed:5.1f}/{total:g} s waiting for the server to close the "
            "idle connection"
        )
        self.stream.flush()
        self.drawn = True

    def clear(self) -> None:
        if self.drawn:
            self.stream.write("\r\x1b[K")
            self.stream.flush()


def format_result(result: Any, *, style: Style | None = None) -> str:
    """The text report of a probe result; ``style`` colours the warnings (default: none)."""
    from rstsafe.tools._probe import IdleCloseKind

    def warning(text: str) -> str:
        return (
            style("warning:", "yellow", "bold") + text if style is not None else "warning:" + text
        )

    lines = [f"probe {result.url}"]
    server = f" (server: {result.server})" if result.server else ""
    lines.append(f"  status               {result.status}{server}")
    lines.append(f"  Keep-Alive header    {result.keep_alive_header or 'none'}")
    if result.close_kind is IdleCloseKind.NOT_KEPT_ALIVE:
        idle = "no keep-alive: the server answered Connection: close"
    elif result.close_kind is IdleCloseKind.OPEN:
        idle = f"longer than {result.waited:g} s (still open; raise --max-wait)"
    else:
        idle = f"{result.idle_timeout:.2f} s, closed with {result.close_kind.value.upper()}"
    lines.append(f"  idle timeout         {idle}")
    per_connection = str(result.requests_per_connection)
    if result.requests_capped:
        per_connection = f"at least {per_connection} (stopped at --max-requests)"
    lines.append(f"  requests/connection  {per_connection}")
    basis = {
        "measured": "from the measured close",
        "header": "from the Keep-Alive header",
        "default": "rstsafe's default: nothing measured",
    }[result.ttl_basis]
    lines.append(f"  rstsafe idle TTL     {result.recommended_ttl:.2f} s ({basis})")
    if (
        result.advertised_timeout is not None
        and result.idle_timeout is not None
        and result.idle_timeout < result.advertised_timeout * 0.9
    ):
        lines.append(
            "  "
            + warning(
                f" the header announces {result.advertised_timeout:g} s but the server "
                f"closed after {result.idle_timeout:.2f} s; clients trusting it reuse dead "
                "connections (C1)"
            )
        )
    if result.close_kind is IdleCloseKind.RST:
        lines.append(
            "  "
            + warning(
                " the idle connection was reset, not closed: linger 0 on the server or a "
                "middlebox that forgot the flow (C3, C5)"
            )
        )
    return "\n".join(lines) + "\n"


def _as_json(result: Any) -> str:
    document = {
        "url": result.url,
        "status": result.status,
        "server": result.server,
        "keep_alive_header": result.keep_alive_header,
        "advertised_timeout": result.advertised_timeout,
        "advertised_max": result.advertised_max,
        "idle_timeout": result.idle_timeout,
        "close_kind": result.close_kind.value,
        "waited": result.waited,
        "requests_per_connection": result.requests_per_connection,
        "requests_capped": result.requests_capped,
        "recommended_ttl": result.recommended_ttl,
        "ttl_basis": result.ttl_basis,
    }
    return json.dumps(document, indent=2) + "\n"


def _run(args: argparse.Namespace) -> int:
    from rstsafe.tools._probe import ProbeError, probe

    bar = _ProgressBar(sys.stderr) if sys.stderr.isatty() else None
    try:
        result = probe(
            args.url,
            max_wait=args.max_wait,
            max_requests=args.max_requests,
            timeout=args.timeout,
            method=args.method,
            verify=not args.insecure,
            progress=bar,
        )
    except ValueError as exc:
        raise CommandLineError(str(exc)) from None
    except ProbeError as exc:
        print(f"rstsafe probe: error: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        if bar is not None:
            bar.clear()
    if args.output_format == "json":
        sys.stdout.write(_as_json(result))
    else:
        sys.stdout.write(format_result(result, style=Style(sys.stdout)))
    return EXIT_OK
