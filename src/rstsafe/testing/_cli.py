"""``rstsafe serve BEHAVIOUR [options]``: run the misbehaving server in the foreground.

Prints the URL, then one line per executed request and per connection that ends, until
Ctrl-C (or SIGTERM). Options map to the behaviour's fields (``--idle``, ``--lag``,
``--count``, ``--reset`` ...); an option the behaviour does not have is a usage error.
``--max-connections`` and ``--max-body`` set the server's limits; binding an address that
is not loopback prints a warning on stderr.

``--format json`` prints the same log as JSON Lines: one object per line, each with an
``"event"`` key (``"listening"``, ``"executed"``, ``"connection-ended"``, ``"stopped"``);
errors and warnings stay one text line on stderr. Times in it (``"t"``) are seconds since
the server started listening.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import signal
import sys
import threading
import time
from types import FrameType
from typing import Any

from rstsafe._cli import CommandLineError, add_format_option
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
    add_format_option(parser)
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


def event_json(event: ServerEvent, *, started_at: float) -> dict[str, Any]:
    """One event of ``--format json``: an object with ``"event"`` and the event's fields.

    ``started_at`` is the ``time.monotonic()`` the server started listening at; times in
    the object (``"t"``, ``"accepted_t"``) are seconds since then.
    """
    if isinstance(event, Execution):
        return {
            "event": "executed",
            "t": round(event.at - started_at, 6),
            "connection": event.connection_id,
            "method": event.method,
            "path": event.path,
            "target": event.target,
            "idempotency_key": event.idempotency_key,
            "body_bytes": event.body_bytes,
        }
    assert isinstance(event, ConnectionRecord)
    ended = event.ended_at if event.ended_at is not None else event.accepted_at
    return {
        "event": "connection-ended",
        "t": round(ended - started_at, 6),
        "connection": event.id,
        "peer": {"host": event.peer[0], "port": event.peer[1]},
        "accepted_t": round(event.accepted_at - started_at, 6),
        "end": event.end.value,
        "reason": event.reason,
        "requests": event.requests,
    }


def _serve(args: argparse.Namespace) -> int:
    behaviour = _build_behaviour(args)
    as_json = args.output_format == "json"
    print_lock = threading.Lock()
    started_at = time.monotonic()

    def say(text: str) -> None:
        with print_lock:
            print(text, flush=True)

    def say_json(document: dict[str, Any]) -> None:
        say(json.dumps(document, separators=(",", ":")))

    def on_event(event: ServerEvent) -> None:
        if as_json:
            say_json(event_json(event, started_at=started_at))
        else:
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
        started_at = time.monotonic()
        if as_json:
            host, port = server.address[:2]
            say_json(
                {
                    "event": "listening",
                    "behaviour": args.behaviour,
                    "options": dataclasses.asdict(behaviour),
                    "url": server.url,
                    "host": host,
                    "port": port,
                }
            )
        else:
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
    if as_json:
        say_json({"event": "stopped", "t": round(time.monotonic() - started_at, 6)})
    else:
        say("rstsafe serve: stopped")
    return 0
