"""Fixtures for every test: real servers on loopback (see ``tests/realservers.py``).

Each fixture is a factory: call it with the server's keep-alive setting and get a
:class:`realservers.RealServer`; servers stop when the test ends, and a server that is
not installed skips the test, saying which.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from realservers import (
    ASGI_APP,
    NGINX_CONF,
    VENV_BIN,
    WSGI_APP,
    RealServer,
    ServerFactory,
    free_port,
    stop_process,
    wait_for_port,
)


@pytest.fixture
def _real_servers(tmp_path: Path) -> Iterator[Callable[[str, Sequence[str], int], RealServer]]:
    processes: list[subprocess.Popen[bytes]] = []
    counter = iter(range(1_000_000))

    def start(name: str, argv: Sequence[str], port: int) -> RealServer:
        index = next(counter)
        log = tmp_path / f"{name}-{index}.log"
        execution_log = tmp_path / f"{name}-{index}.executed"
        env = {**os.environ, "RSTSAFE_EXECUTION_LOG": str(execution_log)}
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path, env=env
            )
        processes.append(process)
        wait_for_port(port, process, log)
        return RealServer(name, f"http://127.0.0.1:{port}", port, execution_log)

    try:
        yield start
    finally:
        for process in processes:
            stop_process(process)


@pytest.fixture
def start_nginx(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> ServerFactory:
    """Factory: ``start_nginx(keepalive="1s", requests=1000)`` runs nginx (skips if missing)."""
    nginx = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if nginx is None:
        pytest.skip("nginx is not installed (scripts/bootstrap installs it as root)")

    def start(keepalive: str = "75s", requests: int = 1000) -> RealServer:
        port = free_port()
        prefix = tmp_path / f"nginx-{port}"
        prefix.mkdir()
        log = prefix / "executed.log"
        conf = prefix / "nginx.conf"
        conf.write_text(
            NGINX_CONF.format(
                tmp=prefix, port=port, keepalive=keepalive, requests=requests, log=log
            )
        )
        argv = [nginx, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
        server = _real_servers("nginx", argv, port)
        return RealServer("nginx", server.url, port, log, logs_after_response=True)

    return start


@pytest.fixture
def start_gunicorn(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> ServerFactory:
    """Factory: ``start_gunicorn(keepalive=None)``: gthread worker (default keep-alive 2 s)."""
    (tmp_path / "rstsafe_wsgi_app.py").write_text(WSGI_APP)

    def start(keepalive: float | None = None, threads: int = 4) -> RealServer:
        port = free_port()
        argv = [
            str(VENV_BIN / "gunicorn"),
            "--worker-class=gthread",
            f"--threads={threads}",
            "--workers=1",
            f"--bind=127.0.0.1:{port}",
            f"--chdir={tmp_path}",
        ]
        if keepalive is not None:
            argv.append(f"--keep-alive={keepalive:g}")
        argv.append("rstsafe_wsgi_app:app")
        return _real_servers("gunicorn", argv, port)

    return start


@pytest.fixture
def start_uvicorn(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> ServerFactory:
    """Factory: ``start_uvicorn(timeout_keep_alive=None)`` (uvicorn's default is 5 s)."""
    (tmp_path / "rstsafe_asgi_app.py").write_text(ASGI_APP)

    def start(timeout_keep_alive: float | None = None) -> RealServer:
        port = free_port()
        argv = [
            str(VENV_BIN / "uvicorn"),
            "rstsafe_asgi_app:app",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--app-dir={tmp_path}",
            "--no-access-log",
            "--lifespan=off",
        ]
        if timeout_keep_alive is not None:
            argv.append(f"--timeout-keep-alive={int(timeout_keep_alive)}")
        return _real_servers("uvicorn", argv, port)

    return start


@pytest.fixture
def start_hypercorn(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> ServerFactory:
    """Factory: ``start_hypercorn(keep_alive_timeout=None)`` (hypercorn's default is 5 s)."""
    (tmp_path / "rstsafe_asgi_app.py").write_text(ASGI_APP)

    def start(keep_alive_timeout: float | None = None) -> RealServer:
        port = free_port()
        argv = [
            str(VENV_BIN / "hypercorn"),
            f"--bind=127.0.0.1:{port}",
            "rstsafe_asgi_app:app",
        ]
        if keep_alive_timeout is not None:
            argv.insert(1, f"--keep-alive={keep_alive_timeout:g}")
        return _real_servers("hypercorn", argv, port)

    return start
