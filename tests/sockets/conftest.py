"""Fixtures for the socket and pool tests: loopback listeners, a PONG server, redis-server."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .helpers import PATIENCE, PongServer, loopback_listener, resp_ping


@pytest.fixture
def pong_server() -> Iterator[PongServer]:
    """A PONG server on 127.0.0.1, stopped (threads joined) after the test."""
    server = PongServer(loopback_listener())
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def tcp_pair() -> Iterator[Callable[[], tuple[socket.socket, socket.socket]]]:
    """A factory of connected (client, server-side) socket pairs on 127.0.0.1, all closed after."""
    listener = loopback_listener()
    made: list[socket.socket] = []

    def make() -> tuple[socket.socket, socket.socket]:
        client = socket.create_connection(listener.getsockname(), timeout=PATIENCE)
        made.append(client)
        server_side, _ = listener.accept()
        made.append(server_side)
        server_side.settimeout(PATIENCE)
        return client, server_side

    try:
        yield make
    finally:
        for sock in made:
            sock.close()
        listener.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A real redis-server on 127.0.0.1 that closes clients idle for more than 1 s."""
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    for _ in range(5):  # the free port may be taken between probing and binding
        port = _free_port()
        process = subprocess.Popen(
            [
                executable,
                "--port", str(port),
                "--bind", "127.0.0.1",
                "--timeout", "1",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(tmp_path),
                "--logfile", str(tmp_path / "redis.log"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        if _wait_for_redis(port, process):
            break
        process.kill()
        process.wait()
    else:
        pytest.fail("redis-server did not start: see its log in " + str(tmp_path))
    try:
        yield ("127.0.0.1", port)
    finally:
        process.terminate()
        process.wait(timeout=PATIENCE)


def _wait_for_redis(port: int, process: subprocess.Popen[bytes]) -> bool:
    for _ in range(200):
        if process.poll() is not None:
            return False
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", port), timeout=PATIENCE) as sock,
        ):
            resp_ping(sock)
            return True
        threading.Event().wait(0.05)
    return False
