"""Terminal conventions shared by every subcommand: colour and progress.

- Colour only when the stream is a terminal, never when ``NO_COLOR`` is set to anything
  but the empty string (https://no-color.org) and never on a ``TERM=dumb`` terminal.
- Progress only on standard error, only when standard error is a terminal, on one line
  that is erased when the work is done: pipes and files get the result and nothing else.
"""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from typing import TextIO

__all__ = ("Progress", "Style", "visible_width")

_CODES = {
    "bold": "1",
    "dim": "2",
    "red": "31",
    "green": "32",
    "yellow": "33",
    "cyan": "36",
}
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _is_terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty()) if isatty is not None else False
    except ValueError:  # a closed stream
        return False


def colour_enabled(stream: TextIO) -> bool:
    """True when text written to ``stream`` may be coloured."""
    if os.environ.get("NO_COLOR", ""):
        return False
    if os.environ.get("TERM") == "dumb":
        return False
    return _is_terminal(stream)


class Style:
    """Wraps text in ANSI colour codes when the stream allows it, else returns it as is."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.enabled = stream is not None and colour_enabled(stream)

    @classmethod
    def plain(cls) -> Style:
        """A style that never colours."""
        return cls(None)

    def __call__(self, text: str, *styles: str) -> str:
        if not self.enabled or not styles or not text:
            return text
        codes = ";".join(_CODES[s] for s in styles)
        return f"\x1b[{codes}m{text}\x1b[0m"


def visible_width(text: str) -> int:
    """The width of ``text`` on a terminal, colour codes excluded."""
    return len(_ANSI.sub("", text))


class Progress:
    """A one-line progress report on standard error, shown only when it is a terminal.

    ``update(text)`` redraws the line (with the time elapsed); ``done()`` erases it.
    Thread safe: worker threads may report. Writes nothing at all when standard error
    is not a terminal, so the report never ends up in a log or a pipe.
    """

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream)
        self.label = label
        self._started = time.monotonic()
        self._lock = threading.Lock()
        self._drawn = False

    def update(self, text: str) -> None:
        if not self.enabled:
            return
        elapsed = time.monotonic() - self._started
        with self._lock:
            self.stream.write(f"\r\x1b[K{self.label}: {text} ({elapsed:.1f} s)")
            self.stream.flush()
            self._drawn = True

    def done(self) -> None:
        with self._lock:
            if self._drawn:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._drawn = False
