"""Helpers of the requests/urllib3 adapter tests (tests/requests): paced runs, servers.

The paced runs (``Step``, ``alternating``, ``run_paced``, ``Outcome``) are the demo's own,
re-exported here. A module at the top of ``tests`` (on ``sys.path``, like ``realservers``) because
``tests/requests`` must not be a package: ``tests`` is on ``sys.path`` and a package
named ``requests`` there would shadow the real library.
"""

from __future__ import annotations

import contextlib
import http.server
import selectors
import socket
import ssl
import threading

from rstsafe._cli.demo import Outcome, Send, Step, alternating, run_paced

__all__ = ("AppHandler", "Outcome", "Send", "Step", "TLSFront", "alternating", "run_paced")


class TLSFront:
    """A TLS terminator on 127.0.0.1 in front of a plain backend, one thread per connection.

    Bytes are pumped both ways; when the backend resets a connection the client side is
    reset too (``SO_LINGER`` 0), when it closes the client side gets a close, so the
    misbehaving server's FIN/RST decisions reach the TLS client unchanged.
    """

    def __init__(self, backend: tuple[str, int], context: ssl.SSLContext) -> None:
        self.backend = backend
        self.context = context
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accepter = threading.Thread(target=self._accept, daemon=True)
        self.accepter.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(raw,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, raw: socket.socket) -> None:
        backend = socket.create_connection(self.backend, timeout=10)
        try:
            raw.settimeout(10)
            try:
                client = self.context.wrap_socket(raw, server_side=True)
            except (OSError, ssl.SSLError):
                raw.close()
                return
            with client, contextlib.suppress(OSError, ssl.SSLError):
                self._pump(client, backend)
        finally:
            backend.close()

    def _pump(self, client: ssl.SSLSocket, backend: socket.socket) -> None:
        client.setblocking(False)
        backend.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ)
            selector.register(backend, selectors.EVENT_READ)
            while not self.stopping.is_set():
                for key, _ in selector.select(0.1):
                    source = key.fileobj
                    if source is backend:
                        try:
                            data = backend.recv(65536)
                        except ConnectionResetError:
                            client.setsockopt(
                                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0"
                            )
                            return
                        if not data:
                            return
                        client.setblocking(True)
                        client.sendall(data)
                        client.setblocking(False)
                    else:
                        try:
                            data = client.recv(65536)
                        except ssl.SSLWantReadError:
                            continue
                        if not data:
                            return
                        backend.setblocking(True)
                        backend.sendall(data)
                        backend.setblocking(False)

    def close(self) -> None:
        self.stopping.set()
        self.accepter.join(5)
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


class AppHandler(http.server.BaseHTTPRequestHandler):
    """Redirects, cookies, basic auth and chunked streaming, over HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"
    timeout = 5  # an idle keep-alive connection ends after this, so shutdown never hangs

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _reply(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_GET(self) -> None:
        path = self.path
        if path.startswith("/redirect"):
            self._reply(302, b"", {"Location": "/landed"})
        elif path == "/set-cookie":
            self._reply(200, b"set", {"Set-Cookie": "flavour=oat; Path=/"})
        elif path == "/echo-cookie":
            self._reply(200, (self.headers.get("Cookie") or "").encode())
        elif path == "/auth":
            self._reply(200, (self.headers.get("Authorization") or "").encode())
        elif path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for index in range(5):
                chunk = b"chunk %d\n" % index
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self._reply(200, f"GET {path}".encode())

    def do_POST(self) -> None:
        body = self._read_body()
        if self.path.startswith("/redirect-303"):
            self._reply(303, b"", {"Location": "/landed"})
        else:
            self._reply(200, b"POST %s %d" % (self.path.encode(), len(body)))
