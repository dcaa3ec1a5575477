"""Hostile input for lint: every file ends in a LintReport or a LintInputError, fast.

Each case of issue #16 (and its relatives) has a test here, through :func:`rstsafe.tools.lint`
and through ``rstsafe lint`` (exit 2, one line on stderr); property tests feed random
text and bytes to every reader. pytest-timeout guards each test: a hang fails it.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rstsafe.tools import LintInputError, LintReport, lint
from rstsafe.tools._lint import MAX_DEPTH, MAX_FILES, render
from rstsafe.tools._lint._configs import (
    MAX_COMMAND_LINE,
    parse_duration_haproxy,
    parse_duration_nginx,
    read_gunicorn,
    read_haproxy,
    read_hypercorn,
    read_nginx,
    read_uvicorn,
)
from rstsafe.tools._lint._inputs import Inputs
from rstsafe.tools._lint._source import scan_file, scan_source
from rstsafe.tools._lint._topology import load_topology

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]

needs_tomllib = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="TOML files need tomllib (Python 3.11+)"
)

BIG = "9" * 400
MB = 1024 * 1024

# --------------------------------------------------------------------------- the cases


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _sparse(path: Path, prefix: bytes, size: int) -> Path:
    """A file of ``size`` bytes that starts with ``prefix``; the rest is a hole."""
    with path.open("wb") as handle:
        handle.write(prefix)
        handle.truncate(size)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


# Each case builds its files under tmp_path and returns lint()'s keyword arguments.
Case = Callable[[Path], dict[str, Any]]


def _nginx_keepalive_digits(tmp: Path) -> dict[str, Any]:
    return {"nginx": _write(tmp / "nginx.conf", f"http {{ keepalive_timeout {BIG}; }}\n")}


def _haproxy_timeout_digits(tmp: Path) -> dict[str, Any]:
    return {"haproxy": _write(tmp / "haproxy.cfg", f"frontend f\n  timeout client {BIG}\n")}


def _nginx_deep_blocks(tmp: Path) -> dict[str, Any]:
    return {"nginx": _write(tmp / "nginx.conf", "a {" * 100_000 + "}" * 100_000)}


def _topology_deep(tmp: Path) -> dict[str, Any]:
    return {"topology": _write(tmp / "topology.toml", "a = " + "[" * 100_000 + "]" * 100_000)}


def _hypercorn_deep(tmp: Path) -> dict[str, Any]:
    return {"hypercorn": _write(tmp / "hypercorn.toml", "a = " + "{b=" * 100_000 + "}" * 100_000)}


def _gunicorn_minus_signs(tmp: Path) -> dict[str, Any]:
    return {"gunicorn": _write(tmp / "gunicorn.conf.py", "keepalive = " + "-" * 200_000 + "1\n")}


def _gunicorn_50_mb(tmp: Path) -> dict[str, Any]:
    return {"gunicorn": _sparse(tmp / "gunicorn.conf.py", b"keepalive = 5\n#", 50 * MB)}


def _uvicorn_nan() -> dict[str, Any]:
    return {"uvicorn": "uvicorn a:a --timeout-keep-alive nan"}


def _uvicorn_digits() -> dict[str, Any]:
    return {"uvicorn": f"uvicorn a:a --timeout-keep-alive {BIG}"}


def _nginx_include_fifo(tmp: Path) -> dict[str, Any]:
    _fifo(tmp / "pipe.conf")
    return {"nginx": _write(tmp / "nginx.conf", "include pipe.conf;\n")}


def _nginx_is_fifo(tmp: Path) -> dict[str, Any]:
    return {"nginx": _fifo(tmp / "nginx.conf")}


def _nginx_include_dev_zero(tmp: Path) -> dict[str, Any]:
    return {"nginx": _write(tmp / "nginx.conf", "include /dev/zero;\n"), "include_root": "/"}


def _procfile_50_mb(tmp: Path) -> dict[str, Any]:
    return {
        "uvicorn": _sparse(tmp / "Procfile", b"web: uvicorn a:a --timeout-keep-alive 5 ", 50 * MB)
    }


def _procfile_long_line(tmp: Path) -> dict[str, Any]:
    # Within a raised size limit, the line itself is refused before shlex sees it.
    line = "web: uvicorn a:a " + "x" * (MAX_COMMAND_LINE + 1) + "\n"
    return {"uvicorn": _write(tmp / "Procfile", line), "max_file_size": 2 * MAX_COMMAND_LINE}


def _dockerfile_deep_json(tmp: Path) -> dict[str, Any]:
    line = 'FROM python\nCMD ["uvicorn", ' + "[" * 50_000 + "]" * 50_000 + "]\n"
    return {"uvicorn": _write(tmp / "Dockerfile", line)}


def _topology_outside_root(tmp: Path) -> dict[str, Any]:
    _write(tmp / "secret.conf", "TOPSECRET-WORD {\n")
    config = "[[hops]]\nnginx = '../secret.conf'\n"
    return {"topology": _write(tmp / "deploy" / "topology.toml", config)}


def _hypercorn_nan(tmp: Path) -> dict[str, Any]:
    return {"hypercorn": _write(tmp / "hypercorn.toml", "keep_alive_timeout = nan\n")}


def _hypercorn_backlog_inf(tmp: Path) -> dict[str, Any]:
    return {"hypercorn": _write(tmp / "hypercorn.toml", "backlog = inf\n")}


def _topology_idle_digits(tmp: Path) -> dict[str, Any]:
    text = f"[[hops]]\nname = 'a'\nkind = 'server'\nidle_timeout = {BIG}\n"
    return {"topology": _write(tmp / "topology.toml", text)}


def _topology_max_requests_digits(tmp: Path) -> dict[str, Any]:
    text = f"[[hops]]\nname = 'a'\nkind = 'server'\nmax_requests = {BIG}\n"
    return {"topology": _write(tmp / "topology.toml", text)}


def _topology_escaped_quotes(tmp: Path) -> dict[str, Any]:
    # An unterminated string full of escaped quotes: quadratic for a naive string regex.
    text = 'somaxconn = 5\na = "' + '\\"' * 200_000 + "\n"
    return {"topology": _write(tmp / "topology.toml", text)}


def _topology_long_preset(tmp: Path) -> dict[str, Any]:
    text = "[[hops]]\npreset = '" + "x" * 100_000 + "'\n"
    return {"topology": _write(tmp / "topology.toml", text)}


def _topology_deep_dotted_name(tmp: Path) -> dict[str, Any]:
    text = "[client]\nname" + ".a" * 50_000 + " = 1\n"
    return {"topology": _write(tmp / "topology.toml", text)}


def _gunicorn_inf(tmp: Path) -> dict[str, Any]:
    return {"gunicorn": _write(tmp / "gunicorn.conf.py", "keepalive = 1e999\n")}


def _gunicorn_backlog_inf(tmp: Path) -> dict[str, Any]:
    return {"gunicorn": _write(tmp / "gunicorn.conf.py", "backlog = 1e999\n")}


def _gunicorn_nul(tmp: Path) -> dict[str, Any]:
    return {"gunicorn": _write(tmp / "gunicorn.conf.py", "keepalive = 5\0\n")}


def _gunicorn_dev_zero() -> dict[str, Any]:
    return {"gunicorn": "/dev/zero"}


def _nginx_directory(tmp: Path) -> dict[str, Any]:
    return {"nginx": tmp}


def _nginx_include_loop(tmp: Path) -> dict[str, Any]:
    _write(tmp / "b.conf", "include a.conf;\n")
    return {"nginx": _write(tmp / "a.conf", "include b.conf;\n")}


def _nginx_fan_out(tmp: Path) -> dict[str, Any]:
    # level0 includes level1 twice, ... : 2**13 reads of tiny files if nothing stopped it.
    for level in range(13):
        _write(tmp / f"level{level}.conf", f"include level{level + 1}.conf;\n" * 2)
    _write(tmp / "level13.conf", "")
    return {"nginx": tmp / "level0.conf"}


def _nginx_deep_across_includes(tmp: Path) -> dict[str, Any]:
    # Each file nests 90 blocks (under the per-file limit) and includes the next inside.
    for level in range(3):
        inner = f"include part{level + 1}.conf;" if level < 2 else "keepalive_timeout 5s;"
        _write(tmp / f"part{level}.conf", "b {" * 90 + inner + "}" * 90)
    return {"nginx": tmp / "part0.conf"}


def _nginx_include_deep_wildcards(tmp: Path) -> dict[str, Any]:
    return {"nginx": _write(tmp / "nginx.conf", "include " + "*/" * 1500 + "*;\n")}


def _nginx_backlog_digits(tmp: Path) -> dict[str, Any]:
    text = "http { server { listen 80 backlog=" + "9" * 4000 + "; } }\n"
    return {"nginx": _write(tmp / "nginx.conf", text)}


def _source_long_sum(tmp: Path) -> dict[str, Any]:
    return {"sources": [_write(tmp / "app.py", "x = " + "+".join(["1"] * 100_000) + "\n")]}


def _source_attribute_chain(tmp: Path) -> dict[str, Any]:
    return {"sources": [_write(tmp / "app.py", "x = 1\nx = a" + ".a" * 100_000 + "\n")]}


def _source_minus_signs(tmp: Path) -> dict[str, Any]:
    return {"sources": [_write(tmp / "app.py", "f(" + "-" * 100_000 + "1)\n")]}


def _source_fifo(tmp: Path) -> dict[str, Any]:
    (tmp / "src").mkdir()
    _fifo(tmp / "src" / "pipe.py")
    return {"sources": [tmp / "src"]}


def _procfile_fifo(tmp: Path) -> dict[str, Any]:
    return {"uvicorn": str(_fifo(tmp / "Procfile"))}


def _total_size(tmp: Path) -> dict[str, Any]:
    first = _write(tmp / "one.py", "x = 1\n" * 2000)
    second = _write(tmp / "two.py", "x = 1\n" * 2000)
    return {"sources": [first, second], "max_total_size": 15_000}


def _no_tmp(case: Callable[[], dict[str, Any]]) -> Case:
    return lambda tmp: case()


# (id, builder, what the message says, the line it names or None)
CASES: list[tuple[str, Case, str, int | None]] = [
    ("nginx-keepalive-400-digits", _nginx_keepalive_digits, "out of range", 1),
    ("haproxy-timeout-400-digits", _haproxy_timeout_digits, "timer overflow", 2),
    ("nginx-100k-nested-blocks", _nginx_deep_blocks, f"nested more than {MAX_DEPTH} deep", 1),
    ("nginx-deep-across-includes", _nginx_deep_across_includes, "(includes followed)", 1),
    ("topology-100k-nested-arrays", _topology_deep, f"nested more than {MAX_DEPTH}", 1),
    ("hypercorn-100k-nested-tables", _hypercorn_deep, f"nested more than {MAX_DEPTH}", 1),
    ("gunicorn-200k-minus-signs", _gunicorn_minus_signs, "nested too deeply", 1),
    ("gunicorn-50-mb", _gunicorn_50_mb, "larger than the 1 MiB limit per file", None),
    ("uvicorn-keepalive-nan", _no_tmp(_uvicorn_nan), "must be a number >= 0, got nan", None),
    ("uvicorn-keepalive-400-digits", _no_tmp(_uvicorn_digits), "out of range", None),
    ("nginx-include-fifo", _nginx_include_fifo, "not a regular file: it is a FIFO", None),
    ("nginx-config-is-fifo", _nginx_is_fifo, "not a regular file: it is a FIFO", None),
    ("nginx-include-dev-zero", _nginx_include_dev_zero, "it is a character device", None),
    ("procfile-50-mb", _procfile_50_mb, "larger than the 1 MiB limit", None),
    ("procfile-long-line", _procfile_long_line, "more than a command line can be", 1),
    ("procfile-is-fifo", _procfile_fifo, "it is a FIFO", None),
    ("dockerfile-50k-nested-json", _dockerfile_deep_json, "arrays nested too deeply", 2),
    ("topology-config-outside-root", _topology_outside_root, "outside the configuration root", 1),
    ("hypercorn-keepalive-nan", _hypercorn_nan, "got nan", 1),
    ("hypercorn-backlog-inf", _hypercorn_backlog_inf, "out of range", 1),
    ("topology-idle-400-digits", _topology_idle_digits, "integer of about 401 digits", 1),
    ("topology-max-requests-digits", _topology_max_requests_digits, "max_requests", 1),
    ("topology-escaped-quotes", _topology_escaped_quotes, "invalid TOML", 2),
    ("topology-100k-preset-name", _topology_long_preset, "unknown preset 'xxx", 1),
    ("topology-50k-dotted-name", _topology_deep_dotted_name, "dotted keys of more than", 2),
    ("gunicorn-keepalive-1e999", _gunicorn_inf, "keepalive is out of range: inf", 1),
    ("gunicorn-backlog-1e999", _gunicorn_backlog_inf, "backlog is out of range: inf", 1),
    ("gunicorn-nul-byte", _gunicorn_nul, "invalid Python", None),
    ("gunicorn-is-dev-zero", _no_tmp(_gunicorn_dev_zero), "it is a character device", None),
    ("nginx-config-is-directory", _nginx_directory, "it is a directory", None),
    ("nginx-include-loop", _nginx_include_loop, "an include loop", 1),
    ("nginx-include-fan-out", _nginx_fan_out, f"read more than {MAX_FILES} files", 2),
    ("nginx-include-1500-wildcard-levels", _nginx_include_deep_wildcards, "directory levels", 1),
    ("nginx-backlog-4000-digits", _nginx_backlog_digits, "out of range", 1),
    ("source-100k-term-sum", _source_long_sum, "nested too deeply", 1),
    ("source-100k-attribute-chain", _source_attribute_chain, "nested too deeply", 2),
    ("source-100k-minus-signs", _source_minus_signs, "nested too deeply", 1),
    ("source-tree-with-fifo", _source_fifo, "it is a FIFO", None),
    ("total-size-limit", _total_size, "limit for all files together", None),
]
TOML_CASES = {"topology", "hypercorn"}


def _case_params() -> Iterator[Any]:
    for case_id, build, message, line in CASES:
        marks = [pytest.mark.timeout(20)]
        if case_id.split("-")[0] in TOML_CASES:
            marks.append(needs_tomllib)
        yield pytest.param(build, message, line, id=case_id, marks=marks)


def _argv(kwargs: dict[str, Any]) -> list[str]:
    """The `rstsafe lint` command line for lint() keyword arguments."""
    argv = ["lint", "--somaxconn", "none"]
    for key, value in kwargs.items():
        if key == "sources":
            argv.extend(str(v) for v in value)
        else:
            argv.extend([f"--{key.replace('_', '-')}", str(value)])
    return argv


@pytest.mark.parametrize(("build", "message", "line"), list(_case_params()))
def test_hostile_file_is_an_input_error(
    tmp_path: Path, build: Case, message: str, line: int | None
) -> None:
    """Each hostile case of issue #16 raises LintInputError naming the file and line."""
    kwargs = build(tmp_path)
    with pytest.raises(LintInputError) as info:
        lint(**kwargs)
    assert message in str(info.value)
    assert info.value.line == line
    assert len(str(info.value)) < 400  # nothing long is echoed
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize(("build", "message", "line"), list(_case_params()))
def test_hostile_file_exits_2_with_one_line(
    tmp_path: Path, run_cli: RunCli, build: Case, message: str, line: int | None
) -> None:
    """`rstsafe lint` on each hostile case: exit 2, one line on stderr, nothing on stdout."""
    code, out, err = run_cli(_argv(build(tmp_path)))
    assert code == 2
    assert out == ""
    assert err.startswith("rstsafe lint: error: ")
    assert err.count("\n") == 1
    assert message in err
    assert "Traceback" not in err


# --------------------------------------------------------------------------- the root


def _outside_include(tmp_path: Path) -> Path:
    _write(tmp_path / "secret", "TOPSECRET-WORD {\n")
    return _write(tmp_path / "conf" / "nginx.conf", "include ../secret;\nhttp { }\n")


def test_include_outside_the_root_is_not_read(tmp_path: Path) -> None:
    """An include climbing out of the config's directory is a note; the file is never read."""
    conf = _outside_include(tmp_path)
    report = lint(nginx=conf)
    (note,) = [f for f in report.findings if f.code == "RST012"]
    assert note.file == str(conf)
    assert note.line == 1
    assert "'../secret' is outside the configuration root" in note.message
    assert report.files == (str(conf),)
    for output_format in ("text", "json", "sarif"):
        assert "TOPSECRET" not in render(report, output_format)


def test_include_root_allows_reading_outside(tmp_path: Path) -> None:
    """include_root= widens the root: the include is read (and here, is malformed)."""
    conf = _outside_include(tmp_path)
    with pytest.raises(LintInputError, match="never closed"):
        lint(nginx=conf, include_root=tmp_path)


def test_include_through_a_symlink_out_of_the_root(tmp_path: Path) -> None:
    """A symlink inside the root that points outside it counts as outside."""
    _write(tmp_path / "secret", "TOPSECRET-WORD {\n")
    conf = _write(tmp_path / "conf" / "nginx.conf", "include link.conf;\n")
    (tmp_path / "conf" / "link.conf").symlink_to(tmp_path / "secret")
    report = lint(nginx=conf)
    assert [f.code for f in report.findings] == ["RST012"]


@pytest.mark.timeout(20)
def test_wildcards_outside_the_root_are_not_listed(tmp_path: Path) -> None:
    """include /*/*/*/*/* outside the root is skipped without walking the file system."""
    conf = _write(tmp_path / "nginx.conf", "include /*/*/*/*/*/*;\n")
    report = lint(nginx=conf)
    assert [f.code for f in report.findings] == ["RST012"]


def test_includes_inside_the_root_are_followed(tmp_path: Path) -> None:
    """conf.d/*.conf inside the root is read as before."""
    _write(tmp_path / "conf.d" / "a.conf", "keepalive_timeout 7s;\n")
    conf = _write(tmp_path / "nginx.conf", "http { include conf.d/*.conf; }\n")
    report = lint(nginx=conf)
    (hop,) = report.hops
    assert hop.idle_timeout == 7
    assert report.files == (str(conf), str(tmp_path / "conf.d" / "a.conf"))


def test_the_same_file_included_twice_is_no_loop(tmp_path: Path) -> None:
    """Including a file in two places (proxy_params) is fine; only a cycle is an error."""
    _write(tmp_path / "params", "keepalive_requests 50;\n")
    conf = _write(tmp_path / "nginx.conf", "http { include params; server { include params; } }\n")
    (hop,) = lint(nginx=conf).hops
    assert hop.max_requests == 50


def test_cli_include_root(tmp_path: Path, run_cli: RunCli) -> None:
    """--include-root on the command line widens the root too."""
    conf = _outside_include(tmp_path)
    code, out, _ = run_cli(["lint", "--somaxconn", "none", "--nginx", str(conf)])
    assert code == 0
    assert "RST012" in out
    assert "TOPSECRET" not in out
    code, _, err = run_cli(["lint", "--nginx", str(conf), "--include-root", str(tmp_path)])
    assert code == 2
    assert "never closed" in err


# --------------------------------------------------------------------------- limits


def test_limits_are_settable(tmp_path: Path, run_cli: RunCli) -> None:
    """max_file_size and --max-file-size lower (or raise) the per-file limit."""
    app = _write(tmp_path / "app.py", "x = 1\n" * 1000)
    with pytest.raises(LintInputError, match="larger than the 1 KiB limit per file"):
        lint(sources=[app], max_file_size=1024)
    assert lint(sources=[app], max_file_size=6000).ok
    code, _, err = run_cli(["lint", "--max-file-size", "1K", str(app)])
    assert code == 2
    assert "1 KiB limit per file" in err
    assert run_cli(["lint", "--max-file-size", "1M", "--max-total-size", "2M", str(app)])[0] == 0


@pytest.mark.parametrize(
    ("kwargs", "error", "name"),
    [
        ({"max_file_size": 0}, ValueError, "max_file_size"),
        ({"max_file_size": -5}, ValueError, "max_file_size"),
        ({"max_file_size": 1.5}, TypeError, "max_file_size"),
        ({"max_total_size": True}, TypeError, "max_total_size"),
        ({"max_total_size": "10M"}, TypeError, "max_total_size"),
        ({"include_root": 3}, TypeError, "include_root"),
    ],
)
def test_bad_limits_name_the_parameter(
    kwargs: dict[str, Any], error: type[Exception], name: str
) -> None:
    """A bad limit is a TypeError or ValueError naming the keyword, before any file is read."""
    with pytest.raises(error, match=name):
        lint(**kwargs)


@pytest.mark.parametrize("size", ["0", "ten", "-1", "1T"])
def test_cli_rejects_bad_sizes(run_cli: RunCli, size: str) -> None:
    """--max-file-size takes bytes with an optional K/M/G suffix; anything else exits 2."""
    code, _, err = run_cli(["lint", "--max-file-size", size, "x.py"])
    assert code == 2
    assert "expected a size" in err


def test_command_line_string_too_long() -> None:
    """A uvicorn command line longer than MAX_ARG_STRLEN is refused before shlex."""
    with pytest.raises(LintInputError, match="more than a command line can be"):
        read_uvicorn("uvicorn a:a " + "x " * MAX_COMMAND_LINE)


def test_durations_out_of_range_are_value_errors() -> None:
    """Huge, NaN-like or overflowing durations raise ValueError, never OverflowError."""
    for parse in (parse_duration_nginx, parse_duration_haproxy):
        for text in (BIG, BIG + "s", "9" * 5000, "1" + "0" * 18 + "d"):
            with pytest.raises(ValueError, match=r"out of range|overflow"):
                parse(text)
    assert parse_duration_haproxy("2147483647") == pytest.approx(2147483.647)
    with pytest.raises(ValueError, match="timer overflow"):
        parse_duration_haproxy("2147484s")
    assert parse_duration_nginx("31y") == 31 * 31536000.0


# --------------------------------------------------------------------------- properties

NGINX_WORDS = [
    "http", "server", "location", "upstream", "keepalive_timeout", "keepalive_requests",
    "keepalive", "listen", "backlog=", "include", "proxy_http_version", "1.1", "75s", "1m",
    BIG, "-1", "nan", "{", "}", ";", " ", "\n", "#", '"', "'", "\\", "*", "../", "/dev/",
]  # fmt: skip
HAPROXY_WORDS = [
    "frontend", "backend", "defaults", "listen", "timeout", "client", "http-keep-alive",
    "option", "http-reuse", "never", "no", "10s", "500", BIG, "\n", " ", "#",
]  # fmt: skip
TOML_WORDS = [
    "[client]", "[[hops]]", "name", "kind", "preset", "idle_timeout", "max_requests",
    "nginx", "uvicorn", "library", "somaxconn", "keep_alive_timeout", "backlog", "=",
    "'server'", "'aws-alb'", "'../x'", "nan", "inf", "-inf", "1e999", BIG, "5", "[", "]",
    "{", "}", ",", ".", '"', "'''", '"""', "\\", "\n", " ", "#",
]  # fmt: skip
PYTHON_WORDS = [
    "keepalive", "backlog", "worker_class", "threads", "=", "1e999", BIG, "-", "+", "(",
    ")", "[", "]", "'gthread'", "import requests", "requests.get(", "timeout=", "\n", " ",
    ":", "lambda", "not", "\0", "\\",
]  # fmt: skip
COMMAND_WORDS = [
    "uvicorn", "hypercorn", "a:a", "--timeout-keep-alive", "--keep-alive", "--backlog", "=",
    "nan", "inf", BIG, "-5", "5", '"', "'", " ", "\n", "[", "]", "CMD", "#", ",",
]  # fmt: skip


def _texts(words: list[str]) -> st.SearchStrategy[str]:
    structured = st.lists(st.sampled_from(words), max_size=40).map("".join)
    return st.one_of(structured, st.text(max_size=200))


READERS: dict[str, tuple[str, Callable[[Path, Inputs], object], list[str]]] = {
    "nginx": ("nginx.conf", lambda p, i: read_nginx(p, inputs=i), NGINX_WORDS),
    "haproxy": ("haproxy.cfg", lambda p, i: read_haproxy(p, inputs=i), HAPROXY_WORDS),
    "gunicorn": ("gunicorn.conf.py", lambda p, i: read_gunicorn(p, inputs=i), PYTHON_WORDS),
    "hypercorn-py": ("hypercorn.py", lambda p, i: read_hypercorn(p, inputs=i), PYTHON_WORDS),
    "hypercorn-toml": ("hypercorn.toml", lambda p, i: read_hypercorn(p, inputs=i), TOML_WORDS),
    "topology": ("topology.toml", lambda p, i: load_topology(p, inputs=i), TOML_WORDS),
    "procfile": ("Procfile", lambda p, i: read_uvicorn(p, inputs=i), COMMAND_WORDS),
    "source": ("app.py", lambda p, i: scan_file(p, inputs=i), PYTHON_WORDS),
}
LINT_KEYWORDS = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "gunicorn": "gunicorn",
    "hypercorn-py": "hypercorn",
    "hypercorn-toml": "hypercorn",
    "topology": "topology",
    "procfile": "uvicorn",
    "source": "sources",
}
PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory per module for the property tests' files (overwritten per example)."""
    return tmp_path_factory.mktemp("hostile")


def _outcome(call: Callable[[], object]) -> object:
    """What ``call()`` returns, or the LintInputError it raises (anything else propagates)."""
    try:
        return call()
    except LintInputError as exc:
        return exc


def _check_reader(workdir: Path, kind: str, content: str | bytes) -> None:
    name, read, _ = READERS[kind]
    path = workdir / kind / name
    _write(path, content)
    direct = _outcome(lambda: read(path, Inputs()))
    if isinstance(direct, LintInputError):
        assert direct.file is not None
        assert "\n" not in str(direct)
    keyword = LINT_KEYWORDS[kind]
    kwargs: dict[str, Any] = {keyword: [path] if keyword == "sources" else path}
    outcome = _outcome(lambda: lint(**kwargs))
    assert isinstance(outcome, LintReport | LintInputError)
    assert "\n" not in str(outcome) or isinstance(outcome, LintReport)


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.timeout(120)
def test_random_text_gives_a_report_or_an_input_error(workdir: Path, kind: str) -> None:
    """Random and grammar-shaped text: every reader and lint() raise only LintInputError."""
    if kind in ("topology", "hypercorn-toml") and sys.version_info < (3, 11):
        pytest.skip("TOML files need tomllib (Python 3.11+)")

    @PROPERTY
    @given(_texts(READERS[kind][2]))
    def check(text: str) -> None:
        _check_reader(workdir, kind, text)

    check()


@pytest.mark.parametrize("kind", sorted(READERS))
@pytest.mark.timeout(120)
def test_random_bytes_give_a_report_or_an_input_error(workdir: Path, kind: str) -> None:
    """Random bytes (invalid UTF-8, NUL, control bytes): only LintInputError comes out."""
    if kind in ("topology", "hypercorn-toml") and sys.version_info < (3, 11):
        pytest.skip("TOML files need tomllib (Python 3.11+)")

    @settings(PROPERTY, max_examples=60)
    @given(st.binary(max_size=300))
    def check(data: bytes) -> None:
        _check_reader(workdir, kind, data)

    check()


@PROPERTY
@given(_texts(COMMAND_WORDS))
def test_random_command_lines(command: str) -> None:
    """Any uvicorn/hypercorn command line gives one hop or a LintInputError."""
    for program in ("uvicorn", "hypercorn"):
        kwargs: dict[str, Any] = {program: f"{program} {command}"}
        outcome = _outcome(functools.partial(lint, **kwargs))
        if isinstance(outcome, LintReport):
            assert len(outcome.hops) == 1
        else:
            assert isinstance(outcome, LintInputError)
            assert "\n" not in str(outcome)


@PROPERTY
@given(st.one_of(_texts(PYTHON_WORDS), st.text(max_size=300)))
def test_random_python_source(text: str) -> None:
    """scan_source on any text returns findings or raises LintInputError naming the file."""
    outcome = _outcome(lambda: scan_source(text, filename="random.py"))
    if isinstance(outcome, LintInputError):
        assert outcome.file == "random.py"
    else:
        assert isinstance(outcome, list)
        assert all(f.file == "random.py" for f in outcome)


@PROPERTY
@given(st.one_of(st.text(max_size=40), st.from_regex(r"[0-9]{1,500}(ms|s|m|h|d|us)?")))
def test_random_durations(text: str) -> None:
    """Both duration parsers return a finite number in range or raise ValueError."""
    for parse in (parse_duration_nginx, parse_duration_haproxy):
        try:
            value = parse(text)
        except ValueError:
            continue
        assert 0 <= value <= 1e9


def test_a_large_source_tree_is_not_an_include_fan_out(tmp_path: Path) -> None:
    """MAX_FILES bounds includes only: a tree of MAX_FILES + 1 Python files is scanned."""
    for index in range(MAX_FILES + 1):
        _write(tmp_path / f"m{index}.py", "import requests\nrequests.get('http://x')\n")
    report = lint(sources=[tmp_path])
    assert len(report.files) == MAX_FILES + 1
    assert [f.code for f in report.findings] == ["RST103"] * (MAX_FILES + 1)


@needs_tomllib
def test_toml_brackets_in_strings_and_comments_do_not_nest(tmp_path: Path) -> None:
    """Only real nesting counts: brackets and dots in strings, comments and numbers do not."""
    deep = "[" * (MAX_DEPTH + 5)
    dots = "." * (MAX_DEPTH + 5)
    text = (
        f"a = \"{deep}{dots}\"\nb = '{deep}'\nc = \"\"\"\n{deep}\n\"\"\"\nd = '''{deep}'''\n"
        f"# {deep}{dots}\ne = [{', '.join(['1.5'] * (MAX_DEPTH + 5))}]\n"
        "keep_alive_timeout = 7.5\n"
    )
    report = lint(hypercorn=_write(tmp_path / "hypercorn.toml", text))
    assert report.hops[0].idle_timeout == 7.5
