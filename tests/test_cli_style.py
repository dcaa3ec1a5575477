"""One CLI style: help, usage errors, ``--format``, exit codes, colour and progress on a TTY.

The TTY cases run the real command in a subprocess on a pseudo-terminal
(``pty.openpty()``): standard output and standard error are each either the terminal or
a pipe, so the tests see what a person at a terminal sees and what a pipe gets.
"""

from __future__ import annotations

import io
import os
import pty
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping

import pytest

from rstsafe._cli import build_parser, main
from rstsafe._cli._term import Progress, Style, colour_enabled, visible_width
from rstsafe.testing import AdvertiseKeepAlive, MisbehavingServer

COMMANDS = ("demo", "serve", "lint", "probe", "doctor")


# -- help and usage errors ------------------------------------------------------------------


def test_bare_rstsafe_prints_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    """``rstsafe`` alone prints the help (every command, the exit codes) and exits 0."""
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: rstsafe ")
    for command in COMMANDS:
        assert command in out
    assert "exit codes: 0 ok, 1 findings or failure, 2 usage error" in " ".join(out.split())


@pytest.mark.parametrize(
    "argv",
    [
        ["lint", "--bogus"],
        ["probe", "http://127.0.0.1:9/", "--bogus"],
        ["demo", "--bogus"],
        ["serve", "healthy", "--bogus"],
        ["doctor", "--bogus"],
    ],
)
def test_unknown_option_shows_the_subcommands_own_usage(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An unknown option exits 2 with the usage of the command given, not the top level's."""
    with pytest.raises(SystemExit) as raised:
        main(argv)
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: rstsafe {argv[0]} ")
    assert f"rstsafe {argv[0]}: error: unrecognized arguments: --bogus" in err


@pytest.mark.parametrize("command", ["serve", "probe"])
def test_missing_argument_and_unknown_option_show_the_commands_usage(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rstsafe serve --bogus`` (no behaviour, no URL for probe): the command's own usage."""
    with pytest.raises(SystemExit) as raised:
        main([command, "--bogus"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"usage: rstsafe {command} ")
    assert f"rstsafe {command}: error: the following arguments are required" in err


def test_unknown_command_shows_the_top_level_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is the top-level parser's error, with its usage, exit code 2."""
    with pytest.raises(SystemExit) as raised:
        main(["bogus"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rstsafe [-h]")
    assert "invalid choice: 'bogus'" in err


# -- --format -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [["demo"], ["probe", "http://127.0.0.1:9/"], ["doctor"], ["lint", "app.py"]],
)
def test_every_reporting_command_takes_format_text_or_json(argv: list[str]) -> None:
    """demo, probe, doctor and lint parse ``--format text|json``; text is the default."""
    parser = build_parser()
    assert parser.parse_args(argv).output_format == "text"
    for output_format in ("text", "json"):
        assert parser.parse_args([*argv, "--format", output_format]).output_format == output_format


def test_demo_keeps_json_as_an_alias_of_format_json() -> None:
    """``rstsafe demo --json`` means ``--format json``."""
    parser = build_parser()
    assert parser.parse_args(["demo", "--json"]).output_format == "json"
    assert parser.parse_args(["demo", "--format", "json"]).output_format == "json"
    assert parser.parse_args(["demo", "--wide"]).wide is True


def test_a_bad_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown format exits 2, naming the choices, with the command's usage."""
    with pytest.raises(SystemExit) as raised:
        main(["doctor", "--format", "xml"])
    assert raised.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: rstsafe doctor ")
    assert "'text', 'json'" in err


# -- exit codes -----------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_exit_codes_ok_failure_usage(capsys: pytest.CaptureFixture[str]) -> None:
    """0 when the command did its job, 1 when it failed (nothing listening), 2 for usage."""
    assert main(["doctor", "--interval", "0", "--format", "json"]) == 0
    capsys.readouterr()
    assert main(["probe", f"http://127.0.0.1:{_closed_port()}/", "--timeout", "2"]) == 1
    assert "rstsafe probe: error:" in capsys.readouterr().err
    with pytest.raises(SystemExit) as raised:
        main(["probe", "ftp://127.0.0.1/"])
    assert raised.value.code == 2
    assert "rstsafe probe: error:" in capsys.readouterr().err


# -- colour and progress, unit level --------------------------------------------------------


def test_colour_only_on_a_terminal_and_never_with_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pty colours; a pipe, NO_COLOR (any non-empty value) and TERM=dumb do not."""
    master, slave = pty.openpty()
    try:
        with open(slave, "w", closefd=False) as terminal, io.StringIO() as pipe:
            monkeypatch.delenv("NO_COLOR", raising=False)
            monkeypatch.setenv("TERM", "xterm")
            assert colour_enabled(terminal)
            assert Style(terminal)("failed", "red") == "\x1b[31mfailed\x1b[0m"
            assert not colour_enabled(pipe)
            assert Style(pipe)("failed", "red") == "failed"
            monkeypatch.setenv("NO_COLOR", "1")
            assert not colour_enabled(terminal)
            monkeypatch.setenv("NO_COLOR", "")  # empty: as if unset (no-color.org)
            assert colour_enabled(terminal)
            monkeypatch.setenv("TERM", "dumb")
            assert not colour_enabled(terminal)
    finally:
        os.close(master)
        os.close(slave)
    assert visible_width("\x1b[31;1mfailed\x1b[0m") == len("failed")


def test_progress_writes_nothing_to_a_pipe() -> None:
    """Progress on a stream that is not a terminal is silent, update and done alike."""
    sink = io.StringIO()
    progress = Progress("rstsafe demo", sink)
    progress.update("3/70 runs")
    progress.done()
    assert sink.getvalue() == ""


# -- colour and progress, end to end on a pty ------------------------------------------------


def _run(
    argv: list[str],
    *,
    stdout_tty: bool,
    stderr_tty: bool,
    env: Mapping[str, str] | None = None,
    timeout: float = 50.0,
) -> tuple[str, str, str, int]:
    """Run ``rstsafe argv``; return (stdout if piped, stderr if piped, terminal text, code)."""
    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment["TERM"] = "xterm"
    environment.update(env or {})
    process = subprocess.Popen(
        [sys.executable, "-m", "rstsafe", *argv],
        stdin=subprocess.DEVNULL,
        stdout=slave if stdout_tty else subprocess.PIPE,
        stderr=slave if stderr_tty else subprocess.PIPE,
        env=environment,
    )
    os.close(slave)
    piped: dict[str, bytes] = {}

    def drain() -> None:
        out, err = process.communicate(timeout=timeout)
        piped["out"], piped["err"] = out or b"", err or b""

    reader = threading.Thread(target=drain)
    reader.start()
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.2)
            if not ready:
                if process.poll() is not None and not chunks_pending(master):
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every end of the terminal closed
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        reader.join(timeout)
    assert process.returncode is not None, "the command did not finish"
    return (
        piped["out"].decode(),
        piped["err"].decode(),
        b"".join(chunks).decode(errors="replace"),
        process.returncode,
    )


def chunks_pending(fd: int) -> bool:
    """True when the terminal still has bytes to read."""
    ready, _, _ = select.select([fd], [], [], 0)
    return bool(ready)


def test_probe_on_a_terminal_draws_progress_and_colours_its_warning() -> None:
    """On a pty: a progress bar on stderr while waiting, and the warning in colour."""
    with MisbehavingServer(AdvertiseKeepAlive(advertised=5.0, actual=0.3)) as server:
        _, _, terminal, code = _run(
            ["probe", server.url, "--max-wait", "5"], stdout_tty=True, stderr_tty=True
        )
    assert code == 0
    assert "waiting for the server to close the idle connection" in terminal  # progress
    assert "\x1b[33;1mwarning:\x1b[0m the header announces 5 s" in terminal  # colour


def test_probe_without_a_terminal_or_with_no_color_has_no_escape_codes() -> None:
    """Piped: no progress and no colour; NO_COLOR on a pty: progress, but no colour."""
    with MisbehavingServer(AdvertiseKeepAlive(advertised=5.0, actual=0.3)) as server:
        out, err, _, code = _run(
            ["probe", server.url, "--max-wait", "5"], stdout_tty=False, stderr_tty=False
        )
        assert code == 0
        assert "warning: the header announces 5 s" in out
        assert "\x1b" not in out
        assert err == ""
        _, _, terminal, code = _run(
            ["probe", server.url, "--max-wait", "5"],
            stdout_tty=True,
            stderr_tty=True,
            env={"NO_COLOR": "1"},
        )
    assert code == 0
    assert "waiting for the server to close the idle connection" in terminal
    assert "warning: the header announces 5 s" in terminal
    assert "\x1b[33" not in terminal
    assert "\x1b[0m" not in terminal


def test_doctor_shows_progress_only_when_stderr_is_a_terminal() -> None:
    """A sampling interval of a second or more: a progress line on a pty stderr, none piped."""
    out, _, terminal, code = _run(
        ["doctor", "--interval", "1", "--format", "json"], stdout_tty=False, stderr_tty=True
    )
    assert code == 0
    assert out.lstrip().startswith("{")
    assert "rstsafe doctor: sampling the counters over 1 s" in terminal
    assert terminal.endswith("\r\x1b[K")  # the line is erased when done
    out, err, _, code = _run(
        ["doctor", "--interval", "1", "--format", "json"], stdout_tty=False, stderr_tty=False
    )
    assert code == 0
    assert err == ""
    assert "sampling" not in out
