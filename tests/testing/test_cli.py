"""``rstsafe serve``: runs in the foreground, reports events, rejects bad input with exit 2."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import requests

from rstsafe.testing import NamespaceFactory

# Unbuffered, so every line reaches the pipe as soon as it is printed.
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "rstsafe", "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        env=ENV,
        check=False,
    )


class _Serve:
    """A running ``rstsafe serve`` whose stdout lines can be awaited."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "rstsafe", "serve", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            bufsize=0,
            env=ENV,
        )
        self.lines: list[str] = []
        self._partial = b""

    def wait_for(self, pattern: str, timeout: float = 20.0) -> re.Match[str]:
        """Read stdout lines until one matches ``pattern``; fail after ``timeout``."""
        assert self.process.stdout is not None
        fd = self.process.stdout.fileno()
        deadline = time.monotonic() + timeout
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        self.lines.remove(line)
                        return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    raise AssertionError(f"no line matching {pattern!r} in {self.lines}")
                chunk = os.read(fd, 65536)
                if not chunk:
                    raise AssertionError(f"serve exited without a line matching {pattern!r}")
                *complete, self._partial = (self._partial + chunk).split(b"\n")
                self.lines += [line.decode() for line in complete]

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.communicate(timeout=30)


@pytest.fixture
def serve() -> Iterator[type[_Serve]]:
    started: list[_Serve] = []

    class Tracked(_Serve):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for server in started:
        server.close()


def test_serve_prints_url_events_and_stops_on_ctrl_c(serve: type[_Serve]) -> None:
    """serve prints its URL, one line per execution and connection end, and exits 0 on ^C."""
    server = serve("process-then-reset", "--no-reset")
    url = server.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    with pytest.raises(requests.ConnectionError):
        requests.post(url + "/orders", data=b"hello", headers={"Idempotency-Key": "k9"}, timeout=10)
    server.wait_for(r"^executed POST /orders \(connection 1, body 5 bytes, Idempotency-Key k9\)$")
    server.wait_for(r"^connection 1 from 127\.0\.0\.1:\d+ ended: FIN \(.*\), 1 request\(s\)$")
    server.process.send_signal(signal.SIGINT)
    server.wait_for(r"^rstsafe serve: stopped$")
    assert server.process.wait(timeout=20) == 0


def test_serve_maps_options_to_fields_and_stops_on_sigterm(serve: type[_Serve]) -> None:
    """--advertised/--actual reach the behaviour; SIGTERM stops the server cleanly."""
    server = serve("advertise-keep-alive", "--advertised", "7", "--actual", "0.3")
    line = server.wait_for(r"AdvertiseKeepAlive\(advertised=7\.0, actual=0\.3\).*(http://\S+)")
    with requests.Session() as session:
        response = session.get(line.group(1), timeout=10)
    assert response.headers["Keep-Alive"] == "timeout=7"
    server.wait_for(r"ended: (FIN|CLIENT-CLOSED)")
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0


def test_serve_ipv6_url_is_bracketed(serve: type[_Serve]) -> None:
    """--host ::1 prints an URL with the address in brackets (or fails to bind, exit 1)."""
    server = serve("healthy", "--host", "::1")
    try:
        server.wait_for(r"listening on http://\[::1\]:\d+$")
    except AssertionError:
        assert server.process.wait(timeout=20) == 1  # no IPv6 loopback on this machine
        return
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no-such-behaviour"], "invalid choice: 'no-such-behaviour'"),
        (["idle-drop", "--idle", "-1"], "error: idle must be > 0 seconds, got -1.0"),
        (["idle-drop", "--lag", "1"], "error: --lag does not apply to idle-drop (it takes --idle)"),
        (["close-after-requests", "--count", "0"], "error: count must be >= 1, got 0"),
        (["healthy", "--keepalive", "soon"], "argument --keepalive: expected seconds"),
        (["healthy", "--host", "10.1.2.3"], "error: host '10.1.2.3' is not a loopback address"),
        (["healthy", "--port", "70000"], "error: port must be an integer in 0..65535"),
        (["healthy", "--max-connections", "0"], "error: --max-connections must be >= 1, got 0"),
        (["healthy", "--max-body", "-1"], "error: --max-body must be >= 0, got -1"),
        (["healthy", "--max-body", "lots"], "argument --max-body: invalid int value"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args: list[str], message: str) -> None:
    """Unknown behaviours and bad option values: exit code 2, no traceback."""
    result = _run(*args)
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("rstsafe serve: error:")


def test_serve_limits_answer_503_and_413(serve: type[_Serve]) -> None:
    """--max-connections 1 and --max-body 10 reach the server: 503 beyond one, 413 above 10."""
    server = serve("healthy", "--keepalive", "none", "--max-connections", "1", "--max-body", "10")
    url = server.wait_for(r"listening on (http://127\.0\.0\.1:\d+)").group(1)
    with requests.Session() as first:
        assert first.get(url + "/one", timeout=10).status_code == 200  # holds the only slot
        response = requests.get(url + "/two", timeout=10)
        assert response.status_code == 503
        assert response.headers["Retry-After"] == "1"
        assert first.post(url + "/big", data=b"x" * 11, timeout=10).status_code == 413
    server.wait_for(r"ended: \S+ \(rejected: answered 503 \(over max_connections=1\)")
    server.wait_for(r"ended: \S+ \(answered 413: Content-Length 11 is over max_body=10\)")
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0


@pytest.mark.root
def test_serve_warns_on_stderr_when_not_on_loopback(network_namespace: NamespaceFactory) -> None:
    """--host 0.0.0.0 (run inside a namespace of our own): one warning line on stderr."""
    namespace = network_namespace()
    process = subprocess.Popen(
        [
            *("ip", "netns", "exec", namespace.name, sys.executable, "-m", "rstsafe", "serve"),
            *("healthy", "--host", "0.0.0.0", "--allow-non-loopback"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert re.search(r"listening on http://0\.0\.0\.0:(\d+)$", line.strip()), line
        process.terminate()
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate(timeout=30)
    assert process.returncode == 0
    (warning,) = err.splitlines()
    assert warning.startswith("rstsafe serve: warning: MisbehavingServer bound 0.0.0.0 port ")
    assert "not a loopback address" in warning


def test_serve_format_json_prints_one_object_per_line(serve: type[_Serve]) -> None:
    """--format json: a "listening" object with the URL, one per execution and end, "stopped"."""
    import json

    server = serve("process-then-reset", "--no-reset", "--format", "json")
    ready = json.loads(server.wait_for(r'^\{"event":"listening".*\}$').group(0))
    assert ready["behaviour"] == "process-then-reset"
    assert ready["options"] == {"reset": False}
    assert ready["host"] == "127.0.0.1"
    assert isinstance(ready["port"], int)
    assert ready["port"] > 0
    assert ready["url"] == f"http://127.0.0.1:{ready['port']}"
    with pytest.raises(requests.ConnectionError):
        requests.post(
            ready["url"] + "/orders?x=1",
            data=b"hello",
            headers={"Idempotency-Key": "k9"},
            timeout=10,
        )
    executed = json.loads(server.wait_for(r'^\{"event":"executed".*\}$').group(0))
    assert executed == {
        "event": "executed",
        "t": executed["t"],
        "connection": 1,
        "method": "POST",
        "path": "/orders",
        "target": "/orders?x=1",
        "idempotency_key": "k9",
        "body_bytes": 5,
    }
    assert isinstance(executed["t"], float)
    assert executed["t"] >= 0
    ended = json.loads(server.wait_for(r'^\{"event":"connection-ended".*\}$').group(0))
    assert ended["connection"] == 1
    assert ended["end"] == "fin"
    assert ended["requests"] == 1
    assert ended["peer"]["host"] == "127.0.0.1"
    assert isinstance(ended["peer"]["port"], int)
    assert isinstance(ended["reason"], str)
    assert ended["reason"]
    assert 0 <= ended["accepted_t"] <= ended["t"]
    server.process.send_signal(signal.SIGINT)
    stopped = json.loads(server.wait_for(r'^\{"event":"stopped".*\}$').group(0))
    assert set(stopped) == {"event", "t"}
    assert server.process.wait(timeout=20) == 0
    rest = server.process.stdout.read() if server.process.stdout else b""
    assert all(json.loads(line) for line in server.lines + rest.decode().splitlines())


def test_serve_format_text_is_the_default_log(serve: type[_Serve]) -> None:
    """--format text prints the same lines as no --format: the URL line and Ctrl-C hint."""
    server = serve("healthy", "--format", "text")
    server.wait_for(
        r"^rstsafe serve: healthy \(Healthy\(.*\)\) listening on http://127\.0\.0\.1:\d+$"
    )
    server.wait_for(r"^press Ctrl-C to stop$")
    server.process.terminate()
    assert server.process.wait(timeout=20) == 0
