"""lint's Python source scan: each hazard found where it is, and only there."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rstsafe.tools import LintInputError, Severity
from rstsafe.tools._lint._source import iter_python_files, scan_source


def found(source: str) -> list[tuple[str, int | None]]:
    return [(f.code, f.line) for f in scan_source(source)]


def test_so_linger_zero() -> None:
    """setsockopt(SO_LINGER, struct.pack('ii', 1, 0)), directly, via a name, or as bytes."""
    source = """\
import socket, struct
from socket import SO_LINGER, SOL_SOCKET
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
LINGER = struct.pack("ii", 1, 0)
s.setsockopt(SOL_SOCKET, SO_LINGER, LINGER)
s.setsockopt(SOL_SOCKET, SO_LINGER, b"\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00")
options = [(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 0))]
s.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 1, 5))
s.setsockopt(SOL_SOCKET, SO_LINGER, struct.pack("ii", 0, 0))
"""
    assert found(source) == [("RST101", 4), ("RST101", 6), ("RST101", 7), ("RST101", 8)]


def test_retry_including_post() -> None:
    """urllib3 Retry with POST in allowed_methods/method_whitelist, or None (any method)."""
    source = """\
from urllib3.util.retry import Retry
import urllib3
a = Retry(total=3, allowed_methods=["GET", "POST"])
b = urllib3.Retry(method_whitelist=frozenset({"PUT", "patch"}))
c = Retry(allowed_methods=None)
d = Retry(allowed_methods=Retry.DEFAULT_ALLOWED_METHODS | {"POST"})
e = Retry(total=3, allowed_methods=["GET", "PUT"])
f = Retry(total=3)
"""
    findings = scan_source(source)
    assert [(f.code, f.line) for f in findings] == [
        ("RST102", 3),
        ("RST102", 4),
        ("RST102", 5),
        ("RST102", 6),
    ]
    assert all(f.severity is Severity.ERROR for f in findings)
    assert "every method" in findings[2].message


def test_retry_with_idempotency_key_is_a_warning() -> None:
    """A module that sends an Idempotency-Key gets a warning instead of an error."""
    source = """\
from requests.adapters import Retry
retry = Retry(allowed_methods=["POST"])
HEADERS = {"Idempotency-Key": "..."}
"""
    (finding,) = scan_source(source)
    assert finding.code == "RST102"
    assert finding.severity is Severity.WARNING


def test_requests_without_timeout() -> None:
    """requests.get()/Session calls without timeout=; calls with it or with **kwargs are fine."""
    source = """\
import requests as r
from requests import Session
r.get("http://x")
r.post("http://x", timeout=5)
s = r.Session()
s.put("http://x")
with Session() as session:
    session.request("GET", "http://x")
    session.get("http://x", **options)
class Client:
    def __init__(self):
        self.http = r.session()
    def call(self):
        return self.http.delete("http://x")
other.get("http://x")
"""
    assert found(source) == [("RST103", 3), ("RST103", 6), ("RST103", 8), ("RST103", 14)]


def test_connect_timeout_below_initial_rto() -> None:
    """A connect timeout under 1 s (requests scalar/tuple, httpx Timeout) is RST106."""
    source = """\
import requests, httpx
requests.get("http://x", timeout=0.5)
requests.get("http://x", timeout=(0.2, 30))
requests.get("http://x", timeout=(3.05, 0.5))
httpx.Timeout(10.0, connect=0.3)
httpx.get("http://x", timeout=2)
"""
    assert found(source) == [("RST106", 2), ("RST106", 3), ("RST106", 5)]


def test_socket_options_dropping_nodelay() -> None:
    """socket_options=[...] without TCP_NODELAY is RST104; extending the defaults is fine."""
    source = """\
import socket
from urllib3 import PoolManager
from urllib3.connection import HTTPConnection
a = PoolManager(socket_options=[(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)])
b = PoolManager(socket_options=HTTPConnection.default_socket_options + [(1, 9, 1)])
c = PoolManager(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1), (1, 9, 1)])
"""
    assert found(source) == [("RST104", 4)]


def test_httpx_limits_only_expiry() -> None:
    """httpx.Limits(keepalive_expiry=...) alone is RST105; expiry None is RST001."""
    source = """\
import httpx
a = httpx.Limits(keepalive_expiry=30)
b = httpx.Limits(max_connections=100, max_keepalive_connections=20, keepalive_expiry=4)
c = httpx.Limits(max_connections=10, keepalive_expiry=None)
"""
    assert found(source) == [("RST105", 2), ("RST001", 4)]


def test_clean_code_has_no_findings() -> None:
    """Code without hazards yields nothing (no false positives on look-alikes)."""
    source = """\
import requests
def get(url):
    return requests.get(url, timeout=(3.05, 27))
retry = dict(allowed_methods=["POST"])
"""
    assert scan_source(source) == []


def test_syntax_error_names_the_line() -> None:
    """Invalid Python raises LintInputError with the file and line."""
    with pytest.raises(LintInputError, match="invalid Python") as info:
        scan_source("x = 1\ndef broken(:\n", filename="app.py")
    assert info.value.file == "app.py"
    assert info.value.line == 2


@given(st.text(max_size=200))
def test_scanner_never_crashes(text: str) -> None:
    """Any text either scans or raises LintInputError, nothing else."""
    with contextlib.suppress(LintInputError):
        scan_source(text)


def test_directories_are_walked_and_venvs_skipped(tmp_path: Path) -> None:
    """Directories are scanned recursively; .venv and __pycache__ are skipped."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "a.py").write_text("x = 1\n")
    (tmp_path / ".venv").mkdir()
    (tmp_path / ".venv" / "b.py").write_text("x = 1\n")
    (tmp_path / "notes.txt").write_text("")
    assert list(iter_python_files([tmp_path])) == [tmp_path / "pkg" / "a.py"]
    with pytest.raises(LintInputError, match="no such file"):
        list(iter_python_files([tmp_path / "absent"]))
