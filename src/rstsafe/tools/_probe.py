"""``rstsafe probe``: measure a live server's keep-alive behaviour from the client's side.

Two fresh connections, one after the other:

1. *How many requests may a connection carry?* Requests are sent one after the other until
   the server answers ``Connection: close``, closes, or ``max_requests`` is reached.
2. *How long does the server keep an idle connection?* One request (its ``Keep-Alive``
   header is read), then the connection is left idle and watched until the server closes
   it or ``max_wait`` passes. ``recv()`` returning ``b""`` is a FIN (graceful close);
   ``ConnectionResetError`` is an RST.

The time is measured from the moment the last byte of the response was read, so it
undercounts the server's timer by half a round trip (nothing on loopback). The TTL rstsafe
would use in front of that server comes from the core's keep-alive rule
(:class:`rstsafe.KeepAlive`).
"""

from __future__ import annotations

import enum
import math
import select
import socket
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from rstsafe._core.keepalive import KeepAlive, OriginKeepAlive, parse_keep_alive

__all__ = ("IdleCloseKind", "ProbeError", "ProbeResult", "probe")

# Reading a response head: bigger than any sane server's (nginx large_client_header_buffers
# is 32 KiB); a body is read and thrown away in chunks.
_MAX_HEAD = 64 * 1024
_CHUNK = 64 * 1024
# How often the idle watch wakes up to report progress.
_PROGRESS_STEP = 0.25
# 1xx responses skipped before a final one (100 Continue, 103 Early Hints): a few at most.
_MAX_INFORMATIONAL = 16


class ProbeError(Exception):
    """The probe could not talk HTTP to the server (refused, unreachable, not HTTP, ...)."""


class IdleCloseKind(enum.Enum):
    """How the server ended the idle connection."""

    FIN = "fin"
    """Gracefully: ``recv()`` returned ``b""``. A client's next request gets
    ``RemoteDisconnected``, or ``ConnectionResetError`` if it raced the close."""
    RST = "rst"
    """Abortively: ``ConnectionResetError``. Linger 0, or a middlebox that forgot the flow."""
    OPEN = "open"
    """Still open when ``max_wait`` ran out: the idle timeout is longer, or there is none."""
    NOT_KEPT_ALIVE = "connection-close"
    """The server answered ``Connection: close``: it does not keep connections alive."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeResult:
    """What [`probe`][rstsafe.tools.probe] measured.

    Attributes:
        url: The URL probed.
        status: Status code of the first response.
        server: The ``Server`` header, if any.
        keep_alive_header: The raw ``Keep-Alive`` header of the first response, if any.
        advertised_timeout: Its ``timeout=``, if valid.
        advertised_max: Its ``max=``, if valid.
        idle_timeout: Seconds between the end of the response and the server's close;
            None when it did not close within ``max_wait`` (or does not keep alive).
        close_kind: How it closed (FIN, RST), or why there is no ``idle_timeout``.
        waited: Seconds the idle connection was watched.
        requests_per_connection: Responses one connection carried before the server
            closed it or said ``Connection: close``; ``max_requests`` when capped.
        requests_capped: True when ``max_requests`` was reached without a close (the
            real limit is higher, or there is none).
        recommended_ttl: The idle TTL rstsafe would use for this server (before jitter).
        ttl_basis: What ``recommended_ttl`` is based on: ``"measured"``, ``"header"`` or
            ``"default"``.
    """

    url: str
    status: int
    server: str | None
    keep_alive_header: str | None
    advertised_timeout: float | None
    advertised_max: int | None
    idle_timeout: float | None
    close_kind: IdleCloseKind
    waited: float
    requests_per_connection: int
    requests_capped: bool
    recommended_ttl: float
    ttl_basis: str


@dataclass(frozen=True, slots=True)
class _Target:
    scheme: str
    host: str
    port: int
    path: str
    host_header: str


@dataclass(slots=True)
class _Response:
    status: int
    headers: dict[str, str]
    closes: bool  # the server said Connection: close, or the body ends at the close


def _parse_url(url: str) -> _Target:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"invalid URL {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"invalid URL {url!r}: expected http:// or https://")
    if not parts.hostname:
        raise ValueError(f"invalid URL {url!r}: no host")
    default_port = 443 if parts.scheme == "https" else 80
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    host = parts.hostname
    host_header = f"[{host}]" if ":" in host else host
    if port is not None and port != default_port:
        host_header += f":{port}"
    return _Target(parts.scheme, host, port or default_port, path, host_header)


def _connect(
    target: _Target, timeout: float, verify: bool, context: ssl.SSLContext | None
) -> socket.socket:
    where = f"{target.host}:{target.port}"
    try:
        sock = socket.create_connection((target.host, target.port), timeout=timeout)
    except socket.gaierror as exc:
        raise ProbeError(f"cannot resolve {target.host}: {exc.strerror or exc}") from None
    except ConnectionRefusedError:
        raise ProbeError(f"cannot connect to {where}: connection refused") from None
    except TimeoutError:
        raise ProbeError(f"cannot connect to {where}: timed out after {timeout:g} s") from None
    except OSError as exc:
        raise ProbeError(f"cannot connect to {where}: {exc.strerror or exc}") from None
    if target.scheme == "https":
        if context is None:
            context = ssl.create_default_context()
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        try:
            return context.wrap_socket(sock, server_hostname=target.host)
        except (ssl.SSLError, OSError) as exc:
            sock.close()
            raise ProbeError(f"TLS handshake with {where} failed: {exc}") from None
    return sock


def _request(target: _Target, method: str) -> bytes:
    return (
        f"{method} {target.path} HTTP/1.1\r\n"
        f"Host: {target.host_header}\r\n"
        "User-Agent: rstsafe-probe\r\n"
        "Accept: */*\r\n"
        "\r\n"
    ).encode("ascii")


class _Reader:
    """Reads HTTP/1.x responses from a socket, keeping bytes that belong to the next one."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(_CHUNK)
        if not data:
            return False
        self.buffer += data
        return True

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise ProbeError("response line too long")
            if not self._more():
                raise EOFError
        line, _, self.buffer = self.buffer.partition(b"\r\n")
        return line

    def _exact(self, count: int) -> None:
        while len(self.buffer) < count:
            if not self._more():
                raise ProbeError("the server closed the connection in the middle of a body")
        self.buffer = self.buffer[count:]

    def read(self, method: str) -> _Response:
        """Read one final response (skipping 1xx); EOFError if closed before any byte."""
        for _ in range(_MAX_INFORMATIONAL):
            response = self._read_one(method)
            if response is not None:
                return response
        raise ProbeError(f"more than {_MAX_INFORMATIONAL} informational (1xx) responses")

    def _read_one(self, method: str) -> _Response | None:
        while b"\r\n\r\n" not in self.buffer:
            if len(self.buffer) > _MAX_HEAD:
                raise ProbeError("response head larger than 64 KiB")
            if not self._more():
                if self.buffer:
                    raise ProbeError("the server closed the connection in the middle of a head")
                raise EOFError
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status_parts = lines[0].split(" ", 2)
        if len(status_parts) < 2 or not status_parts[0].startswith("HTTP/1."):
            raise ProbeError(f"not an HTTP/1.x response: {lines[0][:60]!r}")
        try:
            status = int(status_parts[1])
        except ValueError:
            raise ProbeError(f"bad status line: {lines[0][:60]!r}") from None
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                key = name.strip().lower()
                value = value.strip()
                headers[key] = f"{headers[key]}, {value}" if key in headers else value
        if 100 <= status < 200:
            return None
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        closes = "close" in tokens or (status_parts[0] == "HTTP/1.0" and "keep-alive" not in tokens)
        if method == "HEAD" or status in (204, 304):
            return _Response(status, headers, closes)
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._chunked()
        elif "content-length" in headers:
            try:
                length = int(headers["content-length"].split(",")[0])
            except ValueError:
                raise ProbeError("bad Content-Length") from None
            self._exact(length)
        else:
            while self._more():
                pass
            self.buffer = b""
            closes = True
        return _Response(status, headers, closes)

    def _chunked(self) -> None:
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise ProbeError("bad chunk size in a chunked body") from None
            if size == 0:
                while self._line():
                    pass
                return
            self._exact(size + 2)


def _exchange(sock: socket.socket, reader: _Reader, target: _Target, method: str) -> _Response:
    sock.sendall(_request(target, method))
    return reader.read(method)


def _count_requests(
    target: _Target,
    *,
    method: str,
    max_requests: int,
    timeout: float,
    verify: bool,
    context: ssl.SSLContext | None,
) -> tuple[int, bool]:
    """Send requests on one connection until the server ends it; (served, capped)."""
    sock = _connect(target, timeout, verify, context)
    try:
        reader = _Reader(sock)
        served = 0
        while served < max_requests:
            try:
                response = _exchange(sock, reader, target, method)
            except (EOFError, ConnectionError):
                return served, False
            served += 1
            if response.closes:
                return served, False
        return served, True
    except TimeoutError:
        raise ProbeError(f"no response within {timeout:g} s") from None
    except OSError as exc:  # TLS errors and the rare errno without a better meaning
        raise ProbeError(f"the connection failed: {exc}") from None
    finally:
        sock.close()


def _watch_idle(
    sock: socket.socket,
    reader: _Reader,
    *,
    max_wait: float,
    progress: Callable[[float, float], None] | None,
) -> tuple[IdleCloseKind, float]:
    """Wait for the server to close the idle connection; (how, seconds after the response)."""
    start = time.monotonic()
    sock.settimeout(None)
    while True:
        elapsed = time.monotonic() - start
        if progress is not None:
            progress(min(elapsed, max_wait), max_wait)
        if elapsed >= max_wait:
            return IdleCloseKind.OPEN, max_wait
        pending = isinstance(sock, ssl.SSLSocket) and sock.pending() > 0
        if not pending:
            readable, _, _ = select.select([sock], [], [], min(_PROGRESS_STEP, max_wait - elapsed))
            if not readable:
                continue
        now = time.monotonic()
        try:
            data = sock.recv(_CHUNK)
        except ConnectionResetError:
            return IdleCloseKind.RST, now - start
        except ssl.SSLError:
            # A TLS peer that vanished without close_notify: the TCP close was seen.
            return IdleCloseKind.FIN, now - start
        except OSError as exc:  # ETIMEDOUT after keepalive probes, and the like
            raise ProbeError(f"the idle connection failed: {exc}") from None
        if not data:
            return IdleCloseKind.FIN, now - start
        # Bytes while idle (an unsolicited 408 from some servers): keep watching for the
        # close, which is what a client's next request would run into.
        reader.buffer += data


def probe(
    url: str,
    *,
    max_wait: float = 120.0,
    max_requests: int = 100,
    timeout: float = 10.0,
    method: str = "GET",
    verify: bool = True,
    ssl_context: ssl.SSLContext | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> ProbeResult:
    """Measure a server's keep-alive: header, real idle timeout, FIN or RST, requests/connection.

    Example:
        ```python
        result = rstsafe.tools.probe("http://127.0.0.1:8000/", max_wait=30)
        print(result.idle_timeout, result.close_kind, result.recommended_ttl)
        ```

    Args:
        url: An ``http://`` or ``https://`` URL; the request is ``GET`` by default.
        max_wait: Give up watching the idle connection after this many seconds.
        max_requests: Stop counting requests per connection at this many.
        timeout: Seconds allowed for connecting and for each response.
        method: The request method (use a safe one: the request is sent many times).
        verify: Verify the TLS certificate (https only).
        ssl_context: The TLS context for https (default: the system's trust store).
        progress: Called as ``progress(elapsed, max_wait)`` about four times a second
            while the idle connection is watched.

    Returns:
        A [`ProbeResult`][rstsafe.tools.ProbeResult].

    Raises:
        ValueError: The URL or an argument is invalid.
        ProbeError: The server cannot be reached or does not answer HTTP/1.x.
    """
    target = _parse_url(url)
    if not (math.isfinite(max_wait) and max_wait > 0):
        raise ValueError(f"max_wait must be a positive number of seconds, got {max_wait!r}")
    if not (math.isfinite(timeout) and timeout > 0):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    if isinstance(max_requests, bool) or not isinstance(max_requests, int) or max_requests < 1:
        raise ValueError(f"max_requests must be an integer >= 1, got {max_requests!r}")
    method = method.upper()
    if not method.isalpha():
        raise ValueError(f"method must be an HTTP method such as GET, got {method!r}")

    served, capped = _count_requests(
        target,
        method=method,
        max_requests=max_requests,
        timeout=timeout,
        verify=verify,
        context=ssl_context,
    )

    sock = _connect(target, timeout, verify, ssl_context)
    try:
        reader = _Reader(sock)
        try:
            response = _exchange(sock, reader, target, method)
        except EOFError:
            raise ProbeError("the server closed the connection without answering") from None
        except TimeoutError:
            raise ProbeError(f"no response within {timeout:g} s") from None
        except OSError as exc:  # resets, TLS errors
            raise ProbeError(f"the connection failed: {exc}") from None
        header = response.headers.get("keep-alive")
        parsed = parse_keep_alive(header)
        if response.closes:
            kind, waited, idle = IdleCloseKind.NOT_KEPT_ALIVE, 0.0, None
        else:
            kind, waited = _watch_idle(sock, reader, max_wait=max_wait, progress=progress)
            idle = waited if kind in (IdleCloseKind.FIN, IdleCloseKind.RST) else None
    finally:
        sock.close()

    ttl, basis = _recommended(idle, parsed.timeout)
    return ProbeResult(
        url=url,
        status=response.status,
        server=response.headers.get("server"),
        keep_alive_header=header,
        advertised_timeout=parsed.timeout,
        advertised_max=parsed.max,
        idle_timeout=idle,
        close_kind=kind,
        waited=waited,
        requests_per_connection=served,
        requests_capped=capped,
        recommended_ttl=ttl,
        ttl_basis=basis,
    )


def _recommended(idle: float | None, advertised: float | None) -> tuple[float, str]:
    """The idle TTL the core's rule gives, from the shorter of the measured and announced.

    A measured close is a fact and an announced timeout a claim that may be a lie in
    either direction, so the shorter of the two is passed to the core as the server's
    keep-alive. With neither, the core's default TTL applies.
    """
    known = [
        (value, basis)
        for value, basis in ((idle, "measured"), (advertised, "header"))
        if value is not None and value > 0
    ]
    if not known:
        return OriginKeepAlive(KeepAlive()).idle_ttl().before_jitter, "default"
    server_keepalive, basis = min(known)
    config = KeepAlive(server_keepalive=server_keepalive)
    return OriginKeepAlive(config).idle_ttl().before_jitter, basis
