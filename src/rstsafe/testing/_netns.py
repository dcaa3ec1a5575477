"""Network namespaces of a test's own: private loopback, private sysctls, private counters.

Some reset causes need kernel settings nobody should change on a shared machine, such as
``net.ipv4.tcp_abort_on_overflow=1`` (C4: the accept queue overflows and the kernel answers
the handshake's last ACK with RST). A network namespace gives a test its own loopback
interface, its own ``net.*`` sysctls and its own ``/proc/net`` counters, and disappears when
the test ends.

How it works: ``ip netns add NAME`` creates the namespace and pins it at
``/run/netns/NAME``. :meth:`NetworkNamespace.run` starts a short-lived thread that enters it
with ``setns(2)`` (through :mod:`ctypes`: Python 3.11 has no ``os.setns``), runs a callable
and ends. ``setns`` with ``CLONE_NEWNET`` changes the namespace of the calling *thread*
only, so the rest of the process is untouched. A socket belongs to the namespace it was
created in for its whole life, so a socket made inside :meth:`~NetworkNamespace.run` (see
:meth:`~NetworkNamespace.socket`) can be used from any thread afterwards.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import itertools
import os
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

__all__ = ("NetworkNamespace",)

_T = TypeVar("_T")
# The method NetworkNamespace.socket hides the module inside the class body.
_Socket = socket.socket

# From <sched.h>: the namespace type argument of setns(2).
_CLONE_NEWNET = 0x40000000
# Where `ip netns add` pins the namespaces it creates (iproute2's NETNS_RUN_DIR).
_NETNS_RUN_DIR = Path("/run/netns")
# Generous: `ip` is fast, but the machine may be busy.
_IP_TIMEOUT = 30.0

_names = itertools.count(1)


@functools.lru_cache(maxsize=1)
def _libc_setns() -> Callable[[int, int], int]:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    setns = libc.setns
    setns.argtypes = (ctypes.c_int, ctypes.c_int)
    setns.restype = ctypes.c_int
    return setns


def _setns(fd: int) -> None:
    """Move the calling thread into the network namespace open at ``fd``."""
    if _libc_setns()(fd, _CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns(CLONE_NEWNET) failed: {os.strerror(errno)}")


def _run_ip(*args: str) -> None:
    result = subprocess.run(
        ["ip", *args], capture_output=True, text=True, timeout=_IP_TIMEOUT, check=False
    )
    if result.returncode != 0:
        detail = result.stderr.strip() or f"exit code {result.returncode}"
        raise OSError(f"`ip {' '.join(args)}` failed: {detail}")


def _sysctl_path(name: str) -> Path:
    if not name.startswith("net.") or "/" in name or ".." in name:
        raise ValueError(f"sysctls: only per-namespace net.* sysctls can be set, got {name!r}")
    return Path("/proc/sys", *name.split("."))


class NetworkNamespace:
    """A uniquely named network namespace that exists for the duration of a ``with`` block.

    Needs root and iproute2 (``ip``); `available` says whether it can work here and
    why not. Inside, ``lo`` is up, so ``127.0.0.1`` and ``::1`` work, and only the sockets
    made inside can reach each other.

    Example:
        ```python
        with NetworkNamespace(sysctls={"net.ipv4.tcp_abort_on_overflow": "1"}) as ns:
            with MisbehavingServer(AcceptQueueOverflow(), namespace=ns) as server:
                client = ns.socket(socket.AF_INET, socket.SOCK_STREAM)
                client.connect(server.address)
        ```

    Args:
        sysctls: ``net.*`` sysctls to set inside the namespace, for example
            ``{"net.ipv4.tcp_abort_on_overflow": "1"}``. They affect this namespace only.
        name_prefix: Start of the namespace's name; a process id and counter follow.
    """

    def __init__(
        self, *, sysctls: Mapping[str, str] | None = None, name_prefix: str = "rstsafe"
    ) -> None:
        self.sysctls: dict[str, str] = dict(sysctls or {})
        for key, value in self.sysctls.items():
            _sysctl_path(key)
            if not isinstance(value, str) or not value or "\n" in value:
                raise ValueError(f"sysctls: value for {key!r} must be a one-line string")
        if not name_prefix or not all(c.isalnum() or c in "-_" for c in name_prefix):
            raise ValueError(
                f"name_prefix must be letters, digits, '-' or '_', got {name_prefix!r}"
            )
        self.name = f"{name_prefix}-{os.getpid()}-{next(_names)}"
        self._fd: int | None = None
        self._lock = threading.Lock()

    @staticmethod
    def available() -> tuple[bool, str]:
        """Say whether namespaces can be created here, and if not, why not.

        Returns:
            ``(True, "")`` or ``(False, reason)``. The answer is computed once (by
            creating and deleting a throwaway namespace) and then cached.
        """
        return _available()

    @property
    def path(self) -> Path:
        """The namespace's pin file under ``/run/netns``."""
        return _NETNS_RUN_DIR / self.name

    def __enter__(self) -> NetworkNamespace:
        self.create()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.delete()

    def create(self) -> None:
        """Create the namespace, bring ``lo`` up and apply the sysctls."""
        with self._lock:
            if self._fd is not None:
                raise RuntimeError(f"network namespace {self.name} already exists")
            _run_ip("netns", "add", self.name)
            try:
                self._fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                _run_ip("-n", self.name, "link", "set", "lo", "up")
            except BaseException:
                self._delete_locked()
                raise
        try:
            for key, value in self.sysctls.items():
                self.set_sysctl(key, value)
        except BaseException:
            self.delete()
            raise

    def delete(self) -> None:
        """Delete the namespace (idempotent). Sockets still open inside keep working."""
        with self._lock:
            self._delete_locked()

    def _delete_locked(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None and not self.path.exists():
            return
        if fd is not None:
            os.close(fd)
        _run_ip("netns", "delete", self.name)

    def run(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Call ``fn(*args, **kwargs)`` in a thread inside the namespace and return its result.

        The thread lives only for this call. An exception raised by ``fn`` is re-raised
        here. Sockets created by ``fn`` stay in the namespace wherever they are used.
        """
        with self._lock:
            if self._fd is None:
                raise RuntimeError(f"network namespace {self.name} does not exist")
            fd = os.dup(self._fd)
        outcome: list[tuple[bool, Any]] = []

        def target() -> None:
            try:
                _setns(fd)
                outcome.append((True, fn(*args, **kwargs)))
            except BaseException as exc:  # handed to the caller below
                outcome.append((False, exc))

        thread = threading.Thread(target=target, name=f"rstsafe-netns-{self.name}", daemon=True)
        try:
            thread.start()
            thread.join()
        finally:
            os.close(fd)
        ok, value = outcome[0]
        if not ok:
            raise value
        return value  # type: ignore[no-any-return]

    def socket(
        self,
        family: socket.AddressFamily | int = socket.AF_INET,
        type: socket.SocketKind | int = socket.SOCK_STREAM,
        proto: int = 0,
    ) -> _Socket:
        """Create a socket inside the namespace; it can be used from any thread."""
        return self.run(socket.socket, family, type, proto)

    def create_connection(self, address: tuple[str, int], timeout: float | None = None) -> _Socket:
        """Like `socket.create_connection`, from inside the namespace."""
        return self.run(socket.create_connection, address, timeout)

    def read_proc(self, relative: str) -> str:
        """Read ``/proc/thread-self/<relative>`` from inside, e.g. ``"net/netstat"``.

        The files under ``/proc/thread-self/net`` show the namespace's own counters
        (ListenOverflows, TCPAbortOnClose ...) and sockets.
        """
        if relative.startswith("/") or ".." in relative.split("/"):
            raise ValueError(f"relative must be a path below /proc/thread-self, got {relative!r}")
        return self.run(Path("/proc/thread-self", relative).read_text)

    def get_sysctl(self, name: str) -> str:
        """Return the value of a ``net.*`` sysctl inside the namespace."""
        path = _sysctl_path(name)
        return self.run(path.read_text).strip()

    def set_sysctl(self, name: str, value: str) -> None:
        """Set a ``net.*`` sysctl inside the namespace only."""
        path = _sysctl_path(name)
        self.run(path.write_text, f"{value}\n")

    def __repr__(self) -> str:
        state = "open" if self._fd is not None else "closed"
        return f"NetworkNamespace(name={self.name!r}, {state})"


@functools.lru_cache(maxsize=1)
def _available() -> tuple[bool, str]:
    if not sys.platform.startswith("linux"):
        return False, f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return False, "network namespaces need root (ip netns add, setns)"
    if shutil.which("ip") is None:
        return False, "iproute2's `ip` command is not installed"
    try:
        with NetworkNamespace(name_prefix="rstsafe-probe") as ns:
            ns.run(socket.socket).close()
    except (OSError, subprocess.SubprocessError) as exc:
        return False, f"cannot create a network namespace here: {exc}"
    return True, ""
