"""Real servers nobody here wrote (nginx, gunicorn, uvicorn, hypercorn): shared test helpers.

The fixtures in ``tests/conftest.py`` are factories: call one with the server's
keep-alive setting and get a :class:`RealServer` whose ``url`` answers every method
and path with ``200 ok``. Every request the server executed is appended to a log (the
WSGI/ASGI app writes it; nginx uses its access log), so a test can assert that a POST
was executed exactly once on a real server too. Servers are stopped when the test
ends; a server that is not installed skips the test, saying which.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent
START_TIMEOUT = 30.0
BARRIER_PATH = "/.rstsafe-barrier"


@dataclass(frozen=True)
class RealServer:
    """A running real server: its base URL, and the log of requests it executed."""

    name: str
    url: str
    port: int
    execution_log: Path
    logs_after_response: bool = False
    """nginx writes its access log line after it sent the response, so a client can hold
    the response before the line exists; :meth:`executed` then sends a barrier first."""

    def executed(self) -> list[tuple[str, str]]:
        """``(method, path)`` of every request executed so far, in order."""
        if self.logs_after_response:
            self._barrier()
        if not self.execution_log.exists():
            return []
        rows = []
        for line in self.execution_log.read_text().splitlines():
            method, _, path = line.partition(" ")
            if method and path != BARRIER_PATH:
                rows.append((method, path))
        return rows

    def _barrier(self) -> None:
        """One request on a new connection, answered in full: its single worker logs
        each request before it returns to its event loop, and it accepts this connection
        in a later turn of that loop, so every earlier request's line is written by then."""
        with socket.create_connection(("127.0.0.1", self.port), START_TIMEOUT) as sock:
            sock.sendall(f"GET {BARRIER_PATH} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n".encode())
            while sock.recv(65536):
                pass

    def executions(self, method: str | None = None, path: str | None = None) -> int:
        """How many executed requests match ``method`` and ``path`` (None matches all)."""
        return sum(
            1
            for m, p in self.executed()
            if (method is None or m == method) and (path is None or p == path)
        )


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    pytest.fail(f"server did not listen on {port} within {START_TIMEOUT} s: {log.read_text()}")


def stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


# The apps log "METHOD PATH" per executed request, after reading the body in full.
WSGI_APP = """\
import os

LOG = os.environ["RSTSAFE_EXECUTION_LOG"]


def app(environ, start_response):
    length = int(environ.get("CONTENT_LENGTH") or 0)
    if length:
        environ["wsgi.input"].read(length)
    with open(LOG, "a") as log:
        log.write(f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '/')}\\n")
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "3")])
    return [b"ok\\n"]
"""

ASGI_APP = """\
import os

LOG = os.environ["RSTSAFE_EXECUTION_LOG"]


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    with open(LOG, "a") as log:
        log.write(f"{scope['method']} {scope['path']}\\n")
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"3")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok\\n"})
"""

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log;
events {{ worker_connections 1024; }}
http {{
    log_format executed '$request_method $uri';
    access_log {log} executed;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_timeout {keepalive};
    keepalive_requests {requests};
    server {{
        listen 127.0.0.1:{port};
        location / {{ return 200 "ok\\n"; }}
    }}
}}
"""

ServerFactory = Callable[..., RealServer]
"""A fixture that starts a real server: call it with the server's keep-alive setting."""
