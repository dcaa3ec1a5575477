"""``rstsafe doctor``: the command line over the doctor of ``rstsafe.tools``.

Exit codes: 0 (the report is information, not a verdict); 2 bad usage. While it samples,
a countdown is shown on standard error, only when standard error is a terminal; counters
that moved and flagged listeners are coloured only on a terminal without ``NO_COLOR``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from typing import Any

from rstsafe._cli import EXIT_OK, add_format_option
from rstsafe._cli._term import Progress, Style

__all__ = ("format_report", "register")

# What a sysctl's value means, shown next to it (C11: the TIME_WAIT settings).
_SYSCTL_NOTES = {
    "net.ipv4.tcp_tw_reuse": {
        "0": "off",
        "1": "reuse TIME_WAIT for outgoing connects",
        "2": "reuse TIME_WAIT on loopback only, the default",
    },
    "net.ipv4.tcp_tw_recycle": {
        "0": "off",
        "1": "ON: breaks clients behind NAT (C11)",
    },
    "net.ipv4.tcp_abort_on_overflow": {
        "0": "overflowing handshakes are dropped, clients retry",
        "1": "overflowing handshakes are reset (C4)",
    },
}


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not 0 <= value <= 3600:
        raise argparse.ArgumentTypeError(f"expected 0 to 3600 seconds, got {text!r}")
    return value


def register(subparsers: Any) -> None:
    """Add the ``doctor`` subcommand to the ``rstsafe`` command line."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor",
        help="explain this machine's TCP reset counters, accept queues and sysctls (Linux)",
        description="Sample /proc/net/netstat and /proc/net/snmp over an interval and explain "
        "every counter that moved in terms of the reset causes; list listening sockets whose "
        "accept queue is near its backlog; report the sysctls that matter.",
    )
    parser.add_argument(
        "--interval",
        type=_seconds,
        default=5.0,
        metavar="SECONDS",
        help="seconds between the two samples (default 5)",
    )
    parser.add_argument(
        "--all-listeners",
        action="store_true",
        help="list every listening socket, not only those with a problem",
    )
    add_format_option(parser)
    parser.set_defaults(handler=_run)


def format_report(report: Any, *, all_listeners: bool = False, style: Style | None = None) -> str:
    """The text report of a doctor report; ``style`` colours what needs attention."""
    from rstsafe.tools._doctor import listeners_of

    def paint(text: str, *styles: str) -> str:
        return style(text, *styles) if style is not None else text

    lines: list[str] = []
    if report.unavailable and not report.counters:
        lines.append("rstsafe doctor: cannot read the kernel's TCP counters here")
        lines.extend(f"  {item}" for item in report.unavailable)
        return "\n".join(lines) + "\n"
    lines.append(f"rstsafe doctor: TCP counters over {report.interval:.1f} s")
    moved = report.moved
    if moved:
        for counter in moved:
            causes = f" [{', '.join(counter.causes)}]" if counter.causes else ""
            lines.append(paint(f"  {counter.name:<28} +{counter.delta:<8}", "yellow") + causes)
            lines.append(f"      {counter.meaning}")
    else:
        lines.append("  no reset-related counter moved")
    lines.append("")
    shown = listeners_of(report, only_flagged=not all_listeners)
    title = "listening sockets" if all_listeners else "listening sockets with a problem"
    lines.append(f"{title}: {len(shown) or 'none'}")
    if shown:
        lines.append(f"  {'address':<40} {'queue':>6} {'backlog':>8}")
        for status in shown:
            listener = status.listener
            flags = []
            if status.near_full:
                flags.append("NEAR FULL")
            if status.above_somaxconn:
                flags.append("ABOVE SOMAXCONN")
            elif status.at_somaxconn:
                flags.append("capped at somaxconn")
            backlog = "?" if listener.backlog is None else str(listener.backlog)
            where = f"{listener.address}:{listener.port}"
            flagged = paint(" ".join(flags), "red", "bold")
            lines.append(f"  {where:<40} {listener.queue:>6} {backlog:>8}  {flagged}")
    lines.append("")
    lines.append("sysctls:")
    for name, value in report.sysctls.items():
        if value is None:
            note = "(absent)" if name != "net.ipv4.tcp_tw_recycle" else "(absent: removed in 4.12)"
            lines.append(f"  {name:<32} {note}")
            continue
        meaning = _SYSCTL_NOTES.get(name, {}).get(value)
        lines.append(f"  {name:<32} {value}" + (f"  ({meaning})" if meaning else ""))
    # The counters were explained above; list the other findings (queues, sysctls).
    counter_lines = tuple(f"{c.name} +" for c in moved)
    others = [item for item in report.advice if not any(c in item for c in counter_lines)]
    if others:
        lines.append("")
        lines.append("findings:")
        lines.extend(f"  - {item}" for item in others)
    if report.unavailable:
        lines.append("")
        lines.append("could not read:")
        lines.extend(f"  - {item}" for item in report.unavailable)
    return "\n".join(lines) + "\n"


def _as_json(report: Any) -> str:
    document = {
        "platform": report.platform,
        "interval": report.interval,
        "counters": [
            {
                "name": c.name,
                "before": c.before,
                "after": c.after,
                "delta": c.delta,
                "causes": list(c.causes),
                "meaning": c.meaning,
            }
            for c in report.counters
        ],
        "listeners": [
            {
                "address": s.listener.address,
                "port": s.listener.port,
                "queue": s.listener.queue,
                "backlog": s.listener.backlog,
                "near_full": s.near_full,
                "at_somaxconn": s.at_somaxconn,
                "above_somaxconn": s.above_somaxconn,
            }
            for s in report.listeners
        ],
        "sysctls": dict(report.sysctls),
        "advice": list(report.advice),
        "unavailable": list(report.unavailable),
    }
    return json.dumps(document, indent=2) + "\n"


def _run(args: argparse.Namespace) -> int:
    from rstsafe.tools._doctor import doctor

    progress = Progress("rstsafe doctor")
    stop = threading.Event()
    ticker: threading.Thread | None = None
    if progress.enabled and args.interval >= 1.0:

        def tick() -> None:
            while not stop.is_set():
                progress.update(f"sampling the counters over {args.interval:g} s")
                stop.wait(0.2)

        ticker = threading.Thread(target=tick, name="rstsafe-doctor-progress", daemon=True)
        ticker.start()
    try:
        report = doctor(interval=args.interval)
    finally:
        stop.set()
        if ticker is not None:
            ticker.join()
        progress.done()
    if args.output_format == "json":
        sys.stdout.write(_as_json(report))
    else:
        style = Style(sys.stdout)
        sys.stdout.write(format_report(report, all_listeners=args.all_listeners, style=style))
    return EXIT_OK
