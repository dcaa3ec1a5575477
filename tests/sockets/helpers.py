"""Loopback helpers for the socket and pool tests: RESP PING/PONG and a PONG server."""

from __future__ import annotations

import socket
import threading

from rstsafe.sockets._helpers import graceful_close

PING = b"*1\r\n$4\r\nPING\r\n"
PONG = b"+PONG\r\n"
# Generous: the machine is shared and noisy; these bound waits that normally take microseconds.
PATIENCE = 10.0


def read_line(sock: socket.socket) -> bytes:
    """Read one CRLF-terminated line (a RESP simple reply) byte by byte."""
    line = bytearray()
    while not line.endswith(b"\r\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise ConnectionAbortedError("the server closed the connection (EOF)")
        line += chunk
    return bytes(line)


def resp_ping(sock: socket.socket) -> None:
    """A Redis heartbeat over a raw socket: PING must be answered with +PONG."""
    sock.sendall(PING)
    reply = read_line(sock)
    if reply != PONG:
        raise ConnectionError(f"expected +PONG, got {reply!r}")


class PongServer:
    """A tiny RESP server on a given listener: answers every PING with +PONG, in threads."""

    def __init__(self, listener: socket.socket) -> None:
        self.listener = listener
        self.address: tuple[str, int] = listener.getsockname()[:2]
        self.accepted = 0
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        listener.settimeout(0.05)
        self._acceptor = threading.Thread(target=self._accept_loop, name="pong-accept")
        self._acceptor.start()

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with self._lock:
                self.accepted += 1
                thread = threading.Thread(target=self._serve, args=(conn,), name="pong-conn")
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.05)
        buffer = b""
        try:
            while not self._stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    continue
                if not chunk:
                    break
                buffer += chunk
                while PING in buffer:
                    buffer = buffer.replace(PING, b"", 1)
                    conn.sendall(PONG)
        except OSError:
            pass
        finally:
            graceful_close(conn, timeout=0.5)

    def close(self) -> None:
        self._stop.set()
        self._acceptor.join()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join()
        self.listener.close()


def loopback_listener(backlog: int = 16) -> socket.socket:
    """A listening TCP socket on 127.0.0.1 with a free port."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(backlog)
    return listener


def resp_command(sock: socket.socket, *args: bytes) -> bytes:
    """Send one Redis command (RESP array of bulk strings); return the reply (bulk: its data)."""
    request = b"*%d\r\n" % len(args) + b"".join(b"$%d\r\n%s\r\n" % (len(a), a) for a in args)
    sock.sendall(request)
    head = read_line(sock)
    if head.startswith(b"$"):
        return read_line(sock)[:-2]
    if head.startswith(b"-"):
        raise RuntimeError(f"redis error: {head!r}")
    return head[:-2]


def read_to_end(sock: socket.socket) -> tuple[bytes, BaseException | None]:
    """Read until EOF or an error; return what was read and the error (None for a clean EOF)."""
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except OSError as exc:
        return data, exc
    return data, None
