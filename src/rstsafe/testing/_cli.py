"""``rstsafe serve BEHAVIOUR [options]``: run the misbehaving server in the foreground.

Prints the URL, then one line per executed request and per connection that ends, until
Ctrl-C (or SIGTERM). Options map to the behaviour's fields (``--idle``, ``--lag``,
``--count``, ``--reset`` ...); an option the behaviour does not have is a usage error.
``--max-connections`` and ``--max-body`` set the server's limits; binding an address that
is not loopback prints a warning on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import signal
import sys
import threading
from types import FrameType
from typing import Any

from rstsafe._cli import CommandLineError
from rstsafe.testing._behaviours import BEHAVIOURS, Behaviour
from rstsafe.testing._server import (
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_CONNECTIONS,
    ConnectionRecord,
    Execution,
    MisbehavingServer,
    ServerEvent,
)

__all__ = ("register",)


def _float_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none', got {text!r}") from None


def _fields() -> dict[str, str]:
    """Every behaviour field name with its annotation, e.g. {"idle": "float"}."""
    found: dict[str, str] = {}
    for cls in BEHAVIOURS.values():
        for field in dataclasses.fields(cls):
            found.setdefault(field.name, str(field.type))
    return found


def register(subparsers: Any) -> None:
    """Add the ``serve`` subcommand to the ``rstsafe`` command line."""
    lines = []
    for name, cls in BEHAVIOURS.items():
        summary = (cls.__doc__ or "").strip().splitlines()[0].replace("``", "")
        lines.append(f"  {name:<24} {summary}")
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "serve",
        help="run the misbehaving HTTP/1.1 server in the foreground",
        description="Run rstsafe.testing.MisbehavingServer until Ctrl-C, printing its URL "
        "and one line per executed request and per connection end.",
        epilog="behaviours:\n" + "\n".join(lines),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("behaviour", choices=list(BEHAVIOURS), metavar="BEHAVIOUR")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: any free port)")
    parser.add_argument(
        "--allow-non-loopback",
        action="store_true",
        help="allow binding an address other than loopback (a warning is printed)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help=f"connections served at once; more get 503 (default {DEFAULT_MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--max-body",
        type=int,
        default=DEFAULT_MAX_BODY,
        metavar="BYTES",
        help=f"largest request body; larger gets 413 (default {DEFAULT_MAX_BODY})",
    )
    group = parser.add_argument_group("behaviour options (each applies to some behaviours)")
    for field, annotation in _fields().items():
        flag = "--" + field.replace("_", "-")
        users = ", ".join(
            n for n, c in BEHAVIOURS.items() if field in {f.name for f in dataclasses.fields(c)}
        )
        if annotation == "bool":
            group.add_argument(
                flag, action=argparse.BooleanOptionalAction, default=None, help=f"({users})"
            )
        elif annotation == "int":
            group.add_argument(flag, type=int, default=None, metavar="N", help=f"({users})")
        elif annotation == "float":
            group.add_argument(flag, type=float, default=None, metavar="SECONDS", help=f"({users})")
        else:
            group.add_argument(
                flag, type=_float_or_none, default=None, metavar="SECONDS", help=f"({users})"
            )
    parser.set_defaults(handler=_serve)


def _build_behaviour(args: argparse.Namespace) -> Behaviour:
    cls = BEHAVIOURS[args.behaviour]
    own = {f.name for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for field in _fields():
        value = getattr(args, field)
        if value is None:
            continue
        if field not in own:
            flag = "--" + field.replace("_", "-")
            takes = ", ".join("--" + n.replace("_", "-") for n in sorted(own)) or "no options"
            raise CommandLineError(f"{flag} does not apply to {args.behaviour} (it takes {takes})")
        values[field] = value
    try:
        return cls(**values)
    except ValueError as exc:
        raise CommandLineError(str(exc)) from None


def _describe(event: object) -> str:
    if isinstance(event, Execution):
        key = f", Idempotency-Key {event.idempotency_key}" if event.idempotency_key else ""
        return (
            f"executed {event.method} {event.target} "
            f"(connection {event.connection_id}, body {event.body_bytes} bytes{key})"
        )
    assert isinstance(event, ConnectionRecord)
    return (
        f"connection {event.id} from {event.peer[0]}:{event.peer[1]} ended: "
        f"{event.end.value.upper()} ({event.reason}), {event.requests} request(s)"
    )


def _serve(args: argparse.Namespace) -> int:
    behaviour = _build_behaviour(args)
    print_lock = threading.Lock()

    def say(text: str) -> None:
        with print_lock:
            print(text, flush=True)

    def on_event(event: ServerEvent) -> None:
        say(_describe(event))

    try:
        server = MisbehavingServer(
            behaviour,
            host=args.host,
            port=args.port,
            allow_non_loopback=args.allow_non_loopback,
            max_connections=args.max_connections,
            max_body=args.max_body,
            on_event=on_event,
        )
    except (TypeError, ValueError) as exc:
        message = str(exc).replace("allow_non_loopback=True", "--allow-non-loopback")
        for name in ("max_connections", "max_body"):
            message = message.replace(name, "--" + name.replace("_", "-"))
        raise CommandLineError(message) from None
    done = threading.Event()

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        done.set()

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    # The server's warnings (a non-loopback bind) as one line each on stderr, whatever
    # logging the process has; restored on the way out.
    logger = logging.getLogger("rstsafe.testing")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("rstsafe serve: warning: %(message)s"))
    handler.setLevel(logging.WARNING)
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        try:
            server.start()
        except OSError as exc:
            print(
                f"rstsafe serve: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr
            )
            return 1
        say(f"rstsafe serve: {args.behaviour} ({behaviour!r}) listening on {server.url}")
        say("press Ctrl-C to stop")
        with contextlib.suppress(KeyboardInterrupt):
            done.wait()
    finally:
        server.stop()
        signal.signal(signal.SIGTERM, previous)
        logger.removeHandler(handler)
        logger.propagate = propagate
        logger.setLevel(level)
    say("rstsafe serve: stopped")
    return 0
