"""How lint reads files it is given: regular files only, within size limits and a root.

lint reads configuration written by someone else (a pull request, a container image), so
every file is hostile until read: it may be a FIFO that never ends, ``/dev/zero``, 50 MB
of one line, or an ``include`` that climbs out of the repository to ``/etc/passwd``. The
rules here hold for every reader (nginx, HAProxy, gunicorn, uvicorn, hypercorn, topology
files and Python sources), and break them only with a :class:`LintInputError` naming the
file:

- Only regular files are read. A FIFO, a device, a socket or a directory is refused
  before it is opened for reading (``stat``), and again after (``fstat``, opened with
  ``O_NONBLOCK`` so that opening a FIFO swapped in meanwhile cannot block).
- Each file is at most ``max_file_size`` bytes, all files together at most
  ``max_total_size`` bytes, and includes read at most :data:`MAX_FILES` files.
- Files a configuration names (nginx ``include``, a topology file's ``nginx = ...``) must
  resolve, symlinks followed, inside the configuration's root: by default the directory of
  the file given to lint, else ``include_root``. Nothing outside it is opened, so nothing
  from it can appear in a message.
- Text echoed into messages is shortened (:func:`shown`), so an error is one short line.
"""

from __future__ import annotations

import math
import os
import reprlib
import stat
from dataclasses import dataclass
from pathlib import Path

from rstsafe.tools._lint._model import LintInputError

__all__ = (
    "DEFAULT_MAX_FILE_SIZE",
    "DEFAULT_MAX_TOTAL_SIZE",
    "MAX_DEPTH",
    "MAX_FILES",
    "MAX_SECONDS",
    "Inputs",
    "finite_seconds",
    "shown",
)

# Precedents for the size limits: ruff and mypy read files of any size, but real server
# configurations are a few KiB (Debian's nginx.conf with every include is under 100 KiB),
# and hand-written Python modules rarely pass 500 KiB. The per-file limit bounds the time
# one file can cost: Python's own parser (ast.parse) and tomllib take 1-2 s per MiB on a
# busy machine, so 1 MiB keeps every file under about two seconds; 10 MiB would allow 20.
# The total leaves room for scanning a large source tree.
DEFAULT_MAX_FILE_SIZE = 1024 * 1024
DEFAULT_MAX_TOTAL_SIZE = 64 * 1024 * 1024
# Files read through nginx includes in one run (a file included twice counts twice).
# Debian's nginx with a site per file in sites-enabled reads a few dozen.
MAX_FILES = 1000
# Nesting lint follows: nginx blocks (across includes), TOML arrays and inline tables, and
# Python expressions. Real nginx configurations nest 3-6 deep (http, server, location,
# nested location, if); TOML and Python configs a few levels. Python's own parser refuses
# 200 nested brackets (MAXLEVEL in its tokenizer); 100 keeps every reader's recursion far
# below the interpreter's limit.
MAX_DEPTH = 100
# The longest duration lint accepts, in seconds (about 31.7 years). Longer ones are input
# errors rather than numbers to compare: HAProxy refuses timeouts above 2147483647 ms
# (24.8 days), and nginx's millisecond timers overflow well before float arithmetic does.
MAX_SECONDS = 1e9

_SHOWN = reprlib.Repr()
_SHOWN.maxstring = 60
_SHOWN.maxother = 60
_SHOWN.maxlevel = 3
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = _SHOWN.maxset = 4
_SHOWN.maxlong = 24


def shown(value: object) -> str:
    """``repr(value)``, shortened to a few dozen characters for an error message."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        # reprlib would format the whole number first; Python refuses that past 4300 digits.
        return f"<an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits>"
    return _SHOWN.repr(value)


def finite_seconds(value: float, what: str) -> float:
    """Return ``value`` if it is a duration lint can compare, else raise ValueError.

    NaN, infinities, negative values and values above :data:`MAX_SECONDS` are refused; the
    message starts with ``what``.
    """
    if math.isnan(value) or value < 0:
        raise ValueError(f"{what} must be a number >= 0, got {shown(value)}")
    if value > MAX_SECONDS:
        raise ValueError(f"{what} is out of range: {shown(value)} s is more than {MAX_SECONDS:g} s")
    return value


def _size(count: int) -> str:
    if count >= 1024 * 1024:
        return f"{count / (1024 * 1024):.3g} MiB"
    if count >= 1024:
        return f"{count / 1024:.3g} KiB"
    return f"{count} bytes"


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    for check, kind in _KINDS:
        if check(mode):
            return kind
    return "not a regular file"  # pragma: no cover - doors, whiteouts, event ports


@dataclass(slots=True)
class _Budget:
    max_file_size: int
    max_total_size: int
    read_bytes: int = 0
    included_files: int = 0


class Inputs:
    """The reading context of one lint run: limits, what was read so far, and the root.

    One object is made per :func:`rstsafe.tools.lint` call; every reader it calls shares its
    budget, so the total limit holds across files.

    Args:
        max_file_size: Bytes one file may have.
        max_total_size: Bytes all files read in the run may have together.
        include_root: The directory files named by a configuration must be in; None: the
            directory of the file given to lint (see :meth:`rooted_at`).

    Raises:
        TypeError, ValueError: a limit is not a positive integer, or ``include_root`` is
            not a path (the message names it).
    """

    __slots__ = ("_budget", "include_root")

    include_root: Path | None
    """The resolved root, or None until a file given to lint fixes it."""

    def __init__(
        self,
        *,
        max_file_size: int = DEFAULT_MAX_FILE_SIZE,
        max_total_size: int = DEFAULT_MAX_TOTAL_SIZE,
        include_root: str | os.PathLike[str] | None = None,
    ) -> None:
        for name, value in (("max_file_size", max_file_size), ("max_total_size", max_total_size)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{name} must be an integer (bytes), got {type(value).__name__}")
            if value < 1:
                raise ValueError(f"{name} must be >= 1 byte, got {value}")
        if include_root is not None and not isinstance(include_root, str | os.PathLike):
            raise TypeError(f"include_root must be a path, got {type(include_root).__name__}")
        self._budget = _Budget(max_file_size, max_total_size)
        self.include_root = None if include_root is None else Path(os.path.realpath(include_root))

    def rooted_at(self, path: Path) -> Inputs:
        """The same budget, with the root fixed: ``include_root``, else ``path``'s directory.

        Called for each file given to lint: files it names are then checked against the root
        it sets, also when they name further files.
        """
        if self.include_root is not None:
            return self
        rooted = Inputs.__new__(Inputs)
        rooted._budget = self._budget
        rooted.include_root = Path(os.path.realpath(path)).parent
        return rooted

    @property
    def included_files(self) -> int:
        """Files read so far through includes, in the whole run."""
        return self._budget.included_files

    def within_root(self, path: Path) -> bool:
        """Whether ``path`` (symlinks resolved) is inside the root (True with no root yet)."""
        if self.include_root is None:
            return True
        return Path(os.path.realpath(path)).is_relative_to(self.include_root)

    def check_regular(self, path: Path) -> None:
        """Raise LintInputError unless ``path`` exists and is a regular file (not opened)."""
        try:
            mode = os.stat(path).st_mode
        except FileNotFoundError:
            raise LintInputError("no such file", file=str(path)) from None
        except (OSError, ValueError) as exc:
            reason = getattr(exc, "strerror", None) or str(exc)
            raise LintInputError(f"cannot read: {reason}", file=str(path)) from None
        kind = _not_regular(mode)
        if kind is not None:
            raise LintInputError(f"not a regular file: it is {kind}", file=str(path))

    def read_text(self, path: Path, *, included: bool = False) -> str:
        """Read a UTF-8 file within the limits; raise :class:`LintInputError` otherwise.

        ``included``: the file is read because a configuration includes it, so it counts
        towards :data:`MAX_FILES`.
        """
        file = str(path)
        budget = self._budget
        if included:
            if budget.included_files >= MAX_FILES:
                raise LintInputError(
                    f"includes read more than {MAX_FILES} files (an include fan-out?)",
                    file=file,
                )
            budget.included_files += 1
        self.check_regular(path)
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
        except OSError as exc:
            raise LintInputError(f"cannot read: {exc.strerror or exc}", file=file) from None
        try:
            info = os.fstat(fd)
            kind = _not_regular(info.st_mode)
            if kind is not None:  # swapped for something else since the stat
                raise LintInputError(f"not a regular file: it is {kind}", file=file)
            limit = min(budget.max_file_size, budget.max_total_size - budget.read_bytes)
            self._check_size(info.st_size, limit, file)
            chunks: list[bytes] = []
            total = 0
            while total <= limit:  # the file may grow while it is read
                chunk = os.read(fd, min(1024 * 1024, limit + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
            self._check_size(total, limit, file)
        except OSError as exc:
            raise LintInputError(f"cannot read: {exc.strerror or exc}", file=file) from None
        finally:
            os.close(fd)
        budget.read_bytes += total
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise LintInputError(f"not UTF-8 text ({exc.reason})", file=file) from None

    def _check_size(self, size: int, limit: int, file: str) -> None:
        if size <= limit:
            return
        budget = self._budget
        if limit == budget.max_file_size:
            raise LintInputError(
                f"larger than the {_size(budget.max_file_size)} limit per file "
                f"({_size(size)}; raise it with max_file_size / --max-file-size)",
                file=file,
            )
        raise LintInputError(
            f"reading it would pass the {_size(budget.max_total_size)} limit for all files "
            f"together ({_size(budget.read_bytes)} read before it; raise it with "
            "max_total_size / --max-total-size)",
            file=file,
        )
