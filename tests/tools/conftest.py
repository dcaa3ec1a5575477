"""Helpers for the lint/probe/doctor tests: the CLI in-process, and nginx over TLS.

The plain real servers (nginx, gunicorn, uvicorn, hypercorn) come from the shared
factories in ``tests/conftest.py``.
"""

from __future__ import annotations

import shutil
import ssl
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from realservers import NGINX_CONF, RealServer, free_port
from rstsafe import _cli

# Only our own subcommands: the tests must not depend on modules other helpers are writing.
OUR_COMMANDS = ("rstsafe.tools._lint._cli", "rstsafe._cli.probe", "rstsafe._cli.doctor")

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> RunCli:
    """Run ``rstsafe ARGS`` in-process through rstsafe._cli.main: (exit code, stdout, stderr)."""
    monkeypatch.setattr(_cli, "_SUBCOMMAND_MODULES", OUR_COMMANDS)

    def run(argv: Sequence[str]) -> tuple[int, str, str]:
        capsys.readouterr()
        try:
            code = _cli.main(list(argv))
        except SystemExit as exc:  # argparse errors and CommandLineError exit this way
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.fixture
def nginx_tls_server(
    tmp_path: Path, _real_servers: Callable[[str, Sequence[str], int], RealServer]
) -> tuple[str, ssl.SSLContext]:
    """nginx over TLS (keepalive_timeout 2s), certificate from a trustme CA: (URL, context)."""
    import trustme

    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        pytest.skip("nginx is not installed")
    ca = trustme.CA()
    pem = tmp_path / "server.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(pem))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    port = free_port()
    prefix = tmp_path / "nginx-tls"
    prefix.mkdir()
    tls_conf = NGINX_CONF.replace(
        "listen 127.0.0.1:{port};",
        "listen 127.0.0.1:{port} ssl;\n        ssl_certificate {pem};\n"
        "        ssl_certificate_key {pem};",
    )
    conf = prefix / "nginx.conf"
    conf.write_text(
        tls_conf.format(
            tmp=prefix, port=port, keepalive="2s", requests=100, log=prefix / "log", pem=pem
        )
    )
    argv = [nginx, "-c", str(conf), "-p", str(prefix), "-e", str(prefix / "error.log")]
    server = _real_servers("nginx", argv, port)
    return f"https://127.0.0.1:{server.port}", context
