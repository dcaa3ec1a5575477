"""rstsafe.tools.probe against real servers: each configured idle timeout found within 10 %."""

from __future__ import annotations

import io
import json
import socket
import ssl
import threading
from collections.abc import Callable, Sequence

import pytest

import rstsafe
import rstsafe.tools
from realservers import ServerFactory as RealServerFactory
from rstsafe._cli.probe import _ProgressBar
from rstsafe.testing import (
    AbortiveClose,
    AdvertiseKeepAlive,
    CloseAfterRequests,
    Healthy,
    IdleDrop,
)
from rstsafe.testing._fixtures import ServerFactory
from rstsafe.tools import IdleCloseKind, ProbeError, ProbeResult, probe

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]

# Generous upper bound of a measurement: the probe can only see the close late (a busy
# machine), never early; 10 % is the accuracy requirement.
TOLERANCE = 0.10


def assert_close_to(result: ProbeResult, configured: float) -> None:
    assert result.idle_timeout is not None, result
    assert configured * (1 - TOLERANCE) <= result.idle_timeout <= configured * (1 + TOLERANCE)


def test_misbehaving_healthy_fin(misbehaving_server: ServerFactory) -> None:
    """A server closing idle connections after 1.5 s is measured within 10 %, with a FIN."""
    server = misbehaving_server(Healthy(keepalive=1.5))
    result = probe(server.url + "/", max_wait=10, max_requests=5)
    assert_close_to(result, 1.5)
    assert result.close_kind is IdleCloseKind.FIN
    assert result.status == 200
    assert result.requests_per_connection == 5
    assert result.requests_capped
    # The core's rule: 1.5 s minus min(2 s, 25 %) = 1.125 s.
    assert result.ttl_basis == "measured"
    assert result.recommended_ttl == pytest.approx(
        rstsafe.KeepAlive().ttl_below(result.idle_timeout or 0)
    )


def test_misbehaving_lying_header(misbehaving_server: ServerFactory) -> None:
    """A Keep-Alive header announcing 5 s is read, but the real 1.5 s close is what counts."""
    server = misbehaving_server(AdvertiseKeepAlive(advertised=5.0, actual=1.5))
    result = probe(server.url + "/", max_wait=10, max_requests=3)
    assert result.keep_alive_header is not None
    assert result.advertised_timeout == 5.0
    assert_close_to(result, 1.5)
    assert result.close_kind is IdleCloseKind.FIN
    assert result.recommended_ttl < 1.5
    assert result.ttl_basis == "measured"


def test_misbehaving_abortive_close_is_rst(misbehaving_server: ServerFactory) -> None:
    """A server that closes with linger 0 after each response is seen as an RST."""
    server = misbehaving_server(AbortiveClose())
    result = probe(server.url + "/", max_wait=10, max_requests=5)
    assert result.close_kind is IdleCloseKind.RST
    assert result.requests_per_connection == 1
    assert not result.requests_capped


def test_misbehaving_requests_per_connection(misbehaving_server: ServerFactory) -> None:
    """A server that closes after 3 requests is counted as carrying 3 per connection."""
    server = misbehaving_server(CloseAfterRequests(count=3))
    result = probe(server.url + "/", max_wait=5, max_requests=50)
    assert result.requests_per_connection == 3
    assert not result.requests_capped


def test_misbehaving_idle_drop_stays_open(misbehaving_server: ServerFactory) -> None:
    """A server that forgets idle connections silently never closes them: OPEN after max_wait."""
    server = misbehaving_server(IdleDrop(idle=0.2))
    progress: list[tuple[float, float]] = []
    result = probe(
        server.url + "/",
        max_wait=0.8,
        max_requests=2,
        progress=lambda elapsed, total: progress.append((elapsed, total)),
    )
    assert result.close_kind is IdleCloseKind.OPEN
    assert result.idle_timeout is None
    assert result.waited == 0.8
    assert result.ttl_basis == "default"
    assert len(progress) >= 2
    assert progress[-1] == (0.8, 0.8)


@pytest.mark.realserver
def test_nginx_keepalive_timeout(start_nginx: RealServerFactory) -> None:
    """nginx with keepalive_timeout 2s is measured within 10 %; keepalive_requests 7 counted."""
    server = start_nginx(keepalive="2s", requests=7)
    result = probe(server.url + "/", max_wait=10, max_requests=50)
    assert_close_to(result, 2.0)
    assert result.close_kind is IdleCloseKind.FIN
    assert result.server is not None
    assert result.server.startswith("nginx")
    assert result.requests_per_connection == 7
    assert not result.requests_capped


@pytest.mark.realserver
def test_nginx_over_tls(nginx_tls_server: tuple[str, ssl.SSLContext]) -> None:
    """https works too: nginx's 2 s keep-alive measured within 10 % through TLS."""
    url, context = nginx_tls_server
    result = probe(url + "/", max_wait=10, max_requests=3, ssl_context=context)
    assert result.status == 200
    assert_close_to(result, 2.0)
    assert result.close_kind is IdleCloseKind.FIN


@pytest.mark.realserver
def test_gunicorn_default_keepalive(start_gunicorn: RealServerFactory) -> None:
    """gunicorn's gthread worker with its default keepalive (2 s) is measured within 10 %."""
    server = start_gunicorn()
    result = probe(server.url + "/", max_wait=10, max_requests=20)
    assert_close_to(result, 2.0)
    assert result.close_kind is IdleCloseKind.FIN


@pytest.mark.realserver
def test_uvicorn_default_keepalive(start_uvicorn: RealServerFactory) -> None:
    """uvicorn with its default --timeout-keep-alive (5 s) is measured within 10 %."""
    server = start_uvicorn()
    result = probe(server.url + "/", max_wait=15, max_requests=20)
    assert_close_to(result, 5.0)
    assert result.close_kind is IdleCloseKind.FIN


@pytest.mark.realserver
def test_hypercorn_keepalive(start_hypercorn: RealServerFactory) -> None:
    """hypercorn with --keep-alive 3 is measured within 10 %."""
    server = start_hypercorn(keep_alive_timeout=3)
    result = probe(server.url + "/", max_wait=10, max_requests=20)
    assert_close_to(result, 3.0)
    assert result.close_kind is IdleCloseKind.FIN


def test_progress_bar_draws_and_clears() -> None:
    """The CLI's progress bar redraws one line on the terminal and erases it at the end."""
    stream = io.StringIO()
    bar = _ProgressBar(stream)
    bar(0.0, 10.0)
    bar(5.0, 10.0)
    bar.clear()
    text = stream.getvalue()
    assert "\r[" + "#" * 12 + "." * 12 + "]   5.0/10 s" in text
    assert text.endswith("\r\x1b[K")
    assert "\n" not in text


def test_refused_is_a_probe_error() -> None:
    """A port nothing listens on raises ProbeError naming the address."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ProbeError, match="connection refused"):
        probe(f"http://127.0.0.1:{port}/")


@pytest.mark.parametrize(
    "url", ["ftp://127.0.0.1/", "http:///nohost", "not a url", "http://127.0.0.1:99999/"]
)
def test_bad_url_is_value_error(url: str) -> None:
    """A URL that is not http(s) with a host and valid port raises ValueError."""
    with pytest.raises(ValueError, match="invalid URL"):
        probe(url)


def test_bad_arguments_are_value_errors() -> None:
    """max_wait, max_requests and timeout are validated, naming the argument."""
    with pytest.raises(ValueError, match="max_wait"):
        probe("http://127.0.0.1/", max_wait=0)
    with pytest.raises(ValueError, match="max_requests"):
        probe("http://127.0.0.1/", max_requests=0)
    with pytest.raises(ValueError, match="timeout"):
        probe("http://127.0.0.1/", timeout=float("nan"))


def test_not_http_is_a_probe_error() -> None:
    """A server that answers something other than HTTP/1.x gives a clear ProbeError."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def answer() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

        thread = threading.Thread(target=answer)
        thread.start()
        try:
            with pytest.raises(ProbeError, match=r"not an HTTP/1\.x response"):
                probe(f"http://127.0.0.1:{port}/", timeout=5)
        finally:
            thread.join(timeout=10)


def test_informational_chunked_and_connection_close() -> None:
    """1xx responses are skipped, chunked bodies read, and `Connection: close` reported."""
    payload = (
        b"HTTP/1.1 100 Continue\r\n\r\n"
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"2\r\nok\r\n0\r\n\r\n"
    )
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        port = listener.getsockname()[1]

        def answer_twice() -> None:
            for _ in range(2):
                conn, _ = listener.accept()
                with conn:
                    conn.recv(4096)
                    conn.sendall(payload)

        thread = threading.Thread(target=answer_twice)
        thread.start()
        try:
            result = probe(f"http://127.0.0.1:{port}/", max_wait=5, timeout=5)
        finally:
            thread.join(timeout=10)
    assert result.status == 200
    assert result.close_kind is IdleCloseKind.NOT_KEPT_ALIVE
    assert result.idle_timeout is None
    assert result.requests_per_connection == 1
    assert not result.requests_capped


def test_cli_probe_text_and_json(misbehaving_server: ServerFactory, run_cli: RunCli) -> None:
    """`rstsafe probe URL` prints the measurement; --format json is machine-readable."""
    server = misbehaving_server(AdvertiseKeepAlive(advertised=3.0, actual=1.5))
    code, out, err = run_cli(["probe", server.url + "/", "--max-wait", "5", "--max-requests", "3"])
    assert code == 0, err
    assert "idle timeout" in out
    assert "closed with FIN" in out
    assert "timeout=3" in out
    assert "warning: the header announces 3 s" in out
    argv = ["probe", server.url + "/", "--max-wait", "5", "--format", "json", "--method", "HEAD"]
    code, out, err = run_cli(argv)
    assert code == 0, err
    document = json.loads(out)
    assert document["close_kind"] == "fin"
    assert 1.35 <= document["idle_timeout"] <= 1.65


def test_cli_probe_unreachable_is_one_line(run_cli: RunCli) -> None:
    """An unreachable server: one line on stderr, exit code 1, no traceback."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    code, out, err = run_cli(["probe", f"http://127.0.0.1:{port}/"])
    assert code == 1
    assert out == ""
    assert err.strip().count("\n") == 0
    assert "connection refused" in err
    assert "Traceback" not in err


def test_cli_probe_bad_url_is_usage_error(run_cli: RunCli) -> None:
    """A bad URL is a usage error: one line, exit code 2."""
    code, _, err = run_cli(["probe", "gopher://example/"])
    assert code == 2
    assert "invalid URL" in err
    assert "Traceback" not in err
