"""lint's readers of nginx, gunicorn, uvicorn, hypercorn, HAProxy and topology files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rstsafe.tools import HopKind, LintInputError, lint
from rstsafe.tools._lint._configs import (
    _nginx_parse,
    parse_duration_haproxy,
    parse_duration_nginx,
    read_gunicorn,
    read_haproxy,
    read_hypercorn,
    read_nginx,
    read_uvicorn,
)
from rstsafe.tools._lint._topology import load_topology

needs_tomllib = pytest.mark.skipif(
    sys.version_info < (3, 11), reason="topology files need tomllib (Python 3.11+)"
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("75", 75), ("75s", 75), ("1m", 60), ("1m30s", 90), ("500ms", 0.5), ("1h", 3600), ("0", 0)],
)
def test_nginx_durations(text: str, seconds: float) -> None:
    """nginx times: bare seconds, units ms/s/m/h and combinations."""
    assert parse_duration_nginx(text) == seconds


@given(st.text(max_size=20))
def test_nginx_duration_parser_raises_only_value_error(text: str) -> None:
    """Any text either parses to a non-negative number or raises ValueError."""
    try:
        value = parse_duration_nginx(text)
    except ValueError:
        return
    assert value >= 0


@given(st.text(alphabet=st.sampled_from(list("ab{};#'\"\\ \n1s")), max_size=60))
def test_nginx_tokenizer_raises_only_input_errors(text: str) -> None:
    """Any nginx-like text parses or raises LintInputError with a line, nothing else."""
    error: LintInputError | None = None
    try:
        _nginx_parse(text, "nginx.conf")
    except LintInputError as exc:
        error = exc
    if error is not None:
        assert error.line is None or 1 <= error.line <= text.count("\n") + 1


def test_haproxy_durations_default_to_milliseconds() -> None:
    """HAProxy times without a unit are milliseconds."""
    assert parse_duration_haproxy("500") == 0.5
    assert parse_duration_haproxy("10s") == 10
    assert parse_duration_haproxy("2m") == 120
    with pytest.raises(ValueError, match="invalid time"):
        parse_duration_haproxy("10 s")


NGINX = """\
user nginx;  # comment
events { worker_connections 1024; }
http {
    include mime.types;
    include conf.d/*.conf;
    keepalive_timeout 65s 60s;
    keepalive_requests 500;
    upstream app {
        server 127.0.0.1:8000;
        keepalive 32;
        keepalive_timeout 90s;
    }
    server {
        listen 80 backlog=8192;
        location / {
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
"""


def test_nginx_reads_timeouts_upstream_and_backlog(tmp_path: Path) -> None:
    """keepalive_timeout (smallest, includes followed), upstream keepalive and backlog are read."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "api.conf").write_text(
        "server {\n  listen 8080;\n  keepalive_timeout 1m;\n}\n"
    )
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX)
    result = read_nginx(conf, somaxconn=4096)
    hop = result.hop
    assert hop.kind is HopKind.PROXY
    assert hop.idle_timeout == 60
    assert hop.source == str(tmp_path / "conf.d" / "api.conf")
    assert hop.line == 3
    assert hop.upstream_idle_ttl == 90
    assert hop.reuses
    assert (hop.upstream_source, hop.upstream_line) == (str(conf), 11)
    assert hop.max_requests == 500
    assert str(tmp_path / "conf.d" / "api.conf") in result.files
    (backlog,) = result.findings
    assert backlog.code == "RST010"
    assert backlog.line == 14
    assert "8192" in backlog.message


def test_nginx_upstream_keepalive_needs_http11(tmp_path: Path) -> None:
    """`keepalive N` without proxy_http_version 1.1 reuses nothing: nginx speaks HTTP/1.0."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(NGINX.replace("proxy_http_version 1.1;", ""))
    hop = read_nginx(conf).hop
    assert not hop.reuses
    assert "upstream keepalive unused" in hop.detail


def test_nginx_keepalive_off_in_one_location(tmp_path: Path) -> None:
    """`keepalive_timeout 0` in one location does not hide the 30 s used everywhere else."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        "http {\n  keepalive_timeout 30s;\n  server {\n"
        "    location /stream { keepalive_timeout 0; }\n  }\n}\n"
    )
    assert read_nginx(conf).hop.idle_timeout == 30
    conf.write_text("http {\n  keepalive_timeout 0;\n}\n")
    assert read_nginx(conf).hop.idle_timeout == 0


def test_nginx_defaults(tmp_path: Path) -> None:
    """Without directives: 75 s, no upstream keep-alive, default backlog 511 below somaxconn."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("events {}\nhttp {\n  server { listen 80; }\n}\n")
    result = read_nginx(conf, somaxconn=128)
    assert result.hop.idle_timeout == 75
    assert not result.hop.reuses
    (finding,) = result.findings
    assert finding.code == "RST010"
    assert "511 (the default)" in finding.message


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("http {\n  keepalive_timeout 75s\n}\n", 3, "missing ';'"),
        ("http {\n  server {\n", 2, "never closed"),
        ("http {\n}\n}\n", 3, "unexpected '}'"),
        ("http {\n  keepalive_timeout soon;\n}\n", 2, "invalid time"),
        ('http {\n  root "/var/www;\n}\n', 2, "unterminated"),
        ("http {\n  keepalive_requests many;\n}\n", 2, "expected an integer"),
    ],
)
def test_nginx_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """Malformed nginx files raise LintInputError with the file and line."""
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    with pytest.raises(LintInputError, match=message) as info:
        read_nginx(conf)
    assert info.value.file == str(conf)
    assert info.value.line == line
    assert str(info.value).startswith(f"{conf}:{line}: ")


def test_gunicorn_config_is_never_executed(tmp_path: Path) -> None:
    """A gunicorn config is read with ast: literals are used, code is never run."""
    marker = tmp_path / "executed"
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(
        "import pathlib\n"
        f"pathlib.Path({str(marker)!r}).write_text('ran')\n"
        "worker_class = 'gthread'\n"
        "threads = 4\n"
        "keepalive = 30\n"
        "backlog = 4096\n"
    )
    result = read_gunicorn(conf, somaxconn=1024)
    assert not marker.exists()
    assert result.hop.idle_timeout == 30
    assert result.hop.line == 5
    assert [f.code for f in result.findings] == ["RST010"]


def test_gunicorn_sync_worker_has_no_keepalive(tmp_path: Path) -> None:
    """The default sync worker closes after every response; threads > 1 makes it gthread."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("workers = 4\n")
    assert read_gunicorn(conf).hop.idle_timeout == 0
    conf.write_text("threads = 8\n")
    assert read_gunicorn(conf).hop.idle_timeout == 2


def test_gunicorn_dynamic_value_is_a_note(tmp_path: Path) -> None:
    """A value computed at run time is reported (RST011) and the default assumed."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("import os\nworker_class = 'gthread'\nkeepalive = int(os.environ['KA'])\n")
    result = read_gunicorn(conf)
    assert result.hop.idle_timeout == 2
    (note,) = result.findings
    assert note.code == "RST011"
    assert note.line == 3


def test_gunicorn_syntax_error_names_the_line(tmp_path: Path) -> None:
    """Invalid Python raises LintInputError with the line."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("keepalive = 5\nworkers = (\n")
    with pytest.raises(LintInputError, match="invalid Python") as info:
        read_gunicorn(conf)
    assert info.value.line == 2


def test_gunicorn_wrong_type(tmp_path: Path) -> None:
    """A keepalive that is not a number is an input error naming the setting."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text("keepalive = 'long'\n")
    with pytest.raises(LintInputError, match="keepalive must be a non-negative number"):
        read_gunicorn(conf)


def test_uvicorn_command_line_and_files(tmp_path: Path) -> None:
    """uvicorn options come from a command line, a Procfile line, or a Dockerfile CMD array."""
    assert read_uvicorn("uvicorn app:app").hop.idle_timeout == 5
    assert read_uvicorn("uvicorn app:app --timeout-keep-alive=65").hop.idle_timeout == 65
    procfile = tmp_path / "Procfile"
    procfile.write_text("release: ./migrate\nweb: uvicorn app:app --timeout-keep-alive 30\n")
    result = read_uvicorn(procfile)
    assert result.hop.idle_timeout == 30
    assert result.hop.line == 2
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "FROM python\n"
        'CMD ["uvicorn", "app:app", "--timeout-keep-alive", "12", "--backlog", "9000"]\n'
    )
    result = read_uvicorn(dockerfile, somaxconn=4096)
    assert result.hop.idle_timeout == 12
    assert [f.code for f in result.findings] == ["RST010"]
    with pytest.raises(LintInputError, match="bad uvicorn option"):
        read_uvicorn("uvicorn app:app --timeout-keep-alive soon")


def test_hypercorn_toml_python_and_command(tmp_path: Path) -> None:
    """hypercorn's keep_alive_timeout is read from TOML, Python (ast) or its command line."""
    toml = tmp_path / "hypercorn.toml"
    toml.write_text("bind = ['127.0.0.1:8000']\nkeep_alive_timeout = 20\n")
    if sys.version_info >= (3, 11):
        result = read_hypercorn(toml)
        assert result.hop.idle_timeout == 20
        assert result.hop.line == 2
    python = tmp_path / "hypercorn_conf.py"
    python.write_text("keep_alive_timeout = 7\n")
    assert read_hypercorn(python).hop.idle_timeout == 7
    assert read_hypercorn("hypercorn app:app --keep-alive 9").hop.idle_timeout == 9
    assert read_hypercorn("hypercorn app:app").hop.idle_timeout == 5


HAPROXY = """\
global
    maxconn 1000
defaults
    mode http
    timeout client 30s
    timeout http-keep-alive 10s
frontend web
    bind :80
    default_backend app
backend app
    http-reuse safe
    server a 127.0.0.1:8000
"""


def test_haproxy_client_idle_and_reuse(tmp_path: Path) -> None:
    """HAProxy: http-keep-alive from defaults, server-side reuse detected but its TTL unknown."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY)
    hop = read_haproxy(cfg).hop
    assert hop.idle_timeout == 10
    assert hop.line == 6
    assert hop.reuses
    assert hop.upstream_idle_ttl is None
    cfg.write_text(HAPROXY.replace("http-reuse safe", "http-reuse never"))
    assert not read_haproxy(cfg).hop.reuses


def test_haproxy_errors(tmp_path: Path) -> None:
    """A bad timeout value or a directive outside a section names the line."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text("defaults\n    timeout client thirty\n")
    with pytest.raises(LintInputError, match="invalid time") as info:
        read_haproxy(cfg)
    assert info.value.line == 2
    cfg.write_text("timeout client 30s\n")
    with pytest.raises(LintInputError, match="outside of any section"):
        read_haproxy(cfg)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    """A file that does not exist: LintInputError naming it."""
    with pytest.raises(LintInputError, match="no such file"):
        read_nginx(tmp_path / "absent.conf")


TOPOLOGY = """\
somaxconn = 1024

[client]
library = "requests"

[[hops]]
preset = "aws-nat-gateway"

[[hops]]
name = "edge"
preset = "aws-alb"
idle_timeout = 120

[[hops]]
nginx = "nginx.conf"

[[hops]]
name = "api"
kind = "server"
idle_timeout = 5
"""


@needs_tomllib
def test_topology_file(tmp_path: Path) -> None:
    """A topology file builds the chain: presets, overrides, config files, plain hops."""
    (tmp_path / "nginx.conf").write_text(
        "http {\n  keepalive_timeout 150s;\n  upstream a { keepalive 8; }\n"
        "  proxy_http_version 1.1;\n"
        "  server { listen 80 backlog=2048; }\n}\n"
    )
    topology = tmp_path / "topology.toml"
    topology.write_text(TOPOLOGY)
    loaded = load_topology(topology)
    assert loaded.somaxconn == 1024
    assert loaded.client is not None
    assert loaded.client.upstream_idle_ttl == float("inf")
    assert [h.name for h in loaded.hops] == ["aws-nat-gateway", "edge", "nginx", "api"]
    assert loaded.hops[1].idle_timeout == 120
    assert loaded.hops[1].line == 9
    assert [f.code for f in loaded.findings] == ["RST010"]
    report = lint(topology=topology)
    by_code = {(f.code, f.hops) for f in report.findings}
    assert ("RST001", ("requests", "edge")) in by_code
    assert ("RST002", ("nginx", "api")) in by_code  # upstream keepalive_timeout 60 s > 5 s
    (upstream,) = [f for f in report.findings if f.hops == ("nginx", "api")]
    assert (upstream.file, upstream.line) == (str(tmp_path / "nginx.conf"), 3)
    assert report.exit_code == 1


@needs_tomllib
@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[[hops]]\npreset = 'aws-elb'\n", 1, "unknown preset 'aws-elb'"),
        ("[[hops]]\nname = 'a'\n", 1, "needs a preset"),
        ("[[hops]]\nkind = 'router'\n", 1, "unknown kind 'router'"),
        ("[[hops]]\npreset = 'aws-alb'\nidle_timeout = -1\n", 1, "idle_timeout must be"),
        ("[[hops]]\npreset = 'aws-alb'\n[[hops]]\ncolour = 'red'\n", 3, "unknown hop key"),
        ("[client]\nlibrary = 'curl'\n", 1, "unknown client library"),
        ("hops = 3\nwhat = 1\n", 2, "unknown key 'what'"),
        ("[[hops]\n", 1, "invalid TOML"),
    ],
)
def test_topology_errors_name_file_and_line(
    tmp_path: Path, text: str, line: int, message: str
) -> None:
    """Malformed topology files raise LintInputError with the file and line."""
    topology = tmp_path / "topology.toml"
    topology.write_text(text)
    with pytest.raises(LintInputError, match=message) as info:
        load_topology(topology)
    assert info.value.file == str(topology)
    assert info.value.line == line
