"""Test helpers for the core tests: a TLS listener whose certificate no client trusts.

rstsafe.testing's MisbehavingServer speaks plain HTTP only; the TLS classification tests
need a handshake that fails on the client's side (certificate verification), so this
module has a minimal loopback TLS listener with a trustme certificate.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

import trustme


class UntrustedTLSServer:
    """Accepts TLS handshakes on 127.0.0.1 with a certificate from an unknown CA."""

    def __init__(self) -> None:
        authority = trustme.CA()
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("127.0.0.1", "localhost").configure_cert(self._context)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="untrusted-tls", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5.0)
                # The client rejects our certificate, so the handshake fails here.
                with (
                    contextlib.suppress(OSError),
                    self._context.wrap_socket(conn, server_side=True) as tls,
                ):
                    tls.recv(1)

    def close(self) -> None:
        """Stop accepting, join the thread and close the listener."""
        self._stop.set()
        self._thread.join(timeout=10.0)
        self._listener.close()
