"""lint's modelling (one chain per client, other servers' commands, gunicorn's sync worker,
RST004's fixes) and its machine output (JSON types per field, SARIF links and fingerprints).

Files are real files in ``tmp_path``; the command line runs as a subprocess (exit codes,
stdout, stderr as a user sees them).
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from rstsafe.tools._lint import RULES, Hop, HopKind, LintInputError, LintReport, lint, render
from rstsafe.tools._lint._output import DOCS_URL, FINGERPRINT_KEY, help_uri

ROOT = Path(__file__).resolve().parents[2]

GUNICORN_SYNC = "workers = 4\nkeepalive = 5\n"
HAPROXY = """\
defaults
  timeout connect 5s
frontend web
  bind 127.0.0.1:8080
  default_backend app
backend app
  server a1 127.0.0.1:8000
"""
TOPOLOGY = """\
[client]
library = "requests"

[[hops]]
name = "mystery"
kind = "proxy"

[[hops]]
preset = "aws-alb"

[[hops]]
name = "edge"
kind = "proxy"
idle_timeout = 50
upstream_idle_ttl = {ttl}

[[hops]]
name = "app"
kind = "server"
idle_timeout = 5
"""
SOURCE = """\
import requests
requests.get("http://example")
requests.post("http://example")
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rstsafe lint ARGS`` in ``cwd``, with ``cwd`` importable."""
    path = os.pathsep.join(filter(None, [str(cwd), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "rstsafe", "lint", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": path, "NO_COLOR": "1"},
        check=False,
    )


# --- several clients --------------------------------------------------------------------


def test_two_clients_are_two_chains_joining_at_the_shared_hop() -> None:
    """Two clients: two chains sharing aws-alb on; each client's finding names that client."""
    with requests.Session() as session, httpx.Client() as client:
        report = lint(session, client, upstream=["aws-alb", "gunicorn-gthread"])
    first, second = report.chains
    assert [h.name for h in first] == ["requests.Session", "aws-alb", "gunicorn"]
    assert [h.name for h in second] == ["httpx.Client", "aws-alb", "gunicorn"]
    assert first[1] is second[1]  # the shared hops are the same hops
    assert [h.name for h in report.hops] == [
        "requests.Session",
        "httpx.Client",
        "aws-alb",
        "gunicorn",
    ]
    by_code = {(f.code, f.client): f for f in report.findings}
    assert by_code["RST001", "requests.Session"].hops == ("requests.Session", "aws-alb")
    # The shared link aws-alb -> gunicorn (60 s against 2 s) is reported once, for everyone.
    (shared,) = [f for f in report.findings if f.hops == ("aws-alb", "gunicorn")]
    assert shared.code == "RST002"
    assert shared.client is None
    text = render(report, "text")
    assert "\nchains:\n" in text
    assert "\n  1: requests.Session (reuse no TTL) -> aws-alb (idle 60 s, reuse 60 s) -> " in text
    assert "\n  2: httpx.Client (reuse 5 s) -> aws-alb (shared: chain 1 from here)\n" in text
    assert "requests.Session -> httpx.Client" not in text
    assert "        client: requests.Session\n" in text
    document = json.loads(render(report, "json"))
    assert document["chains"] == [
        {"client": "requests.Session", "hops": ["requests.Session", "aws-alb", "gunicorn"]},
        {"client": "httpx.Client", "hops": ["httpx.Client", "aws-alb", "gunicorn"]},
    ]
    (rst001,) = [f for f in document["findings"] if f["code"] == "RST001"]
    assert rst001["client"] == "requests.Session"


def test_two_clients_of_one_type_are_told_apart() -> None:
    """Two requests.Sessions: requests.Session and requests.Session#2, one RST001 each."""
    with requests.Session() as a, requests.Session() as b:
        report = lint(a, b, upstream="aws-alb")
    assert [chain[0].name for chain in report.chains] == ["requests.Session", "requests.Session#2"]
    rst001 = sorted((f.client, f.hops) for f in report.findings if f.code == "RST001")
    assert rst001 == [
        ("requests.Session", ("requests.Session", "aws-alb")),
        ("requests.Session#2", ("requests.Session#2", "aws-alb")),
    ]


def test_one_client_keeps_one_chain_line() -> None:
    """One client: the text still draws one `chain:` line and JSON one entry in chains."""
    with requests.Session() as session:
        report = lint(session, upstream="aws-alb")
    assert report.chains == ()
    assert [[h.name for h in c] for c in report.all_chains] == [["requests.Session", "aws-alb"]]
    text = render(report, "text")
    assert "\nchain: requests.Session (reuse no TTL) -> aws-alb (idle 60 s, reuse 60 s)\n" in text
    assert "chains:" not in text
    (finding,) = report.findings
    assert finding.client == "requests.Session"


def test_two_clients_on_the_command_line(tmp_path: Path) -> None:
    """`--client` twice through the real CLI: two chains drawn, exit 1 for the RST001."""
    (tmp_path / "lint_two_clients.py").write_text(
        "import httpx, requests\nsession = requests.Session()\nclient = httpx.Client()\n"
    )
    result = _cli(
        *("--client", "lint_two_clients:session", "--client", "lint_two_clients:client"),
        *("--upstream", "aws-alb"),
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stderr
    assert "\n  1: requests.Session (reuse no TTL) -> aws-alb (idle 60 s, reuse 60 s)\n" in (
        result.stdout
    )
    assert "\n  2: httpx.Client (reuse 5 s) -> aws-alb (shared: chain 1 from here)\n" in (
        result.stdout
    )
    assert "error   RST001 [requests.Session -> aws-alb]" in result.stdout
    document = json.loads(
        _cli(
            *("--client", "lint_two_clients:session", "--client", "lint_two_clients:client"),
            *("--upstream", "aws-alb", "--format", "json"),
            cwd=tmp_path,
        ).stdout
    )
    assert [c["client"] for c in document["chains"]] == ["requests.Session", "httpx.Client"]


# --- a command for another server -------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "command", "runs"),
    [
        ("uvicorn", "gunicorn app:app", "gunicorn"),
        ("uvicorn", "python -m gunicorn -k uvicorn.workers.UvicornWorker app:app", "gunicorn"),
        ("uvicorn", "/venv/bin/hypercorn app:app", "hypercorn"),
        ("hypercorn", "uvicorn app:app --timeout-keep-alive 30", "uvicorn"),
    ],
)
def test_command_for_another_server_is_an_input_error(option: str, command: str, runs: str) -> None:
    """A command that runs another server is a LintInputError naming both, not a default hop."""
    run = (
        partial(lint, uvicorn=command) if option == "uvicorn" else partial(lint, hypercorn=command)
    )
    with pytest.raises(LintInputError) as info:
        run()
    message = str(info.value)
    assert f"{option}= (--{option}) was given a command that runs {runs}, not {option}" in message
    assert "\n" not in message


def test_procfile_running_gunicorn_with_uvicorn_worker(tmp_path: Path) -> None:
    """A Procfile line `gunicorn -k uvicorn.workers.UvicornWorker` read as uvicorn: error at it."""
    procfile = tmp_path / "Procfile"
    procfile.write_text("release: ./migrate\nweb: gunicorn -k uvicorn.workers.UvicornWorker app\n")
    with pytest.raises(LintInputError, match="runs gunicorn, not uvicorn") as info:
        lint(uvicorn=procfile)
    assert info.value.file == str(procfile)
    assert info.value.line == 2
    assert "--gunicorn" in str(info.value)


def test_the_right_server_still_reads() -> None:
    """uvicorn's own commands (also `python -m uvicorn`) are read as before."""
    assert (
        lint(uvicorn="python -m uvicorn app:app --timeout-keep-alive 9").hops[0].idle_timeout == 9
    )
    assert lint(uvicorn="/srv/bin/uvicorn app:app").hops[0].idle_timeout == 5


def test_wrong_server_on_the_command_line_exits_2(tmp_path: Path) -> None:
    """`rstsafe lint --uvicorn "gunicorn app:app"`: exit 2, one line on stderr, no traceback."""
    result = _cli("--uvicorn", "gunicorn app:app", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("rstsafe lint: error: uvicorn= (--uvicorn) was given a command")
    assert "runs gunicorn, not uvicorn" in line


# --- gunicorn's sync worker -------------------------------------------------------------


def test_sync_worker_closes_after_every_response_and_ignores_keepalive(tmp_path: Path) -> None:
    """Sync gunicorn with keepalive = 5: no race in front of it, and RST013 at that line."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_SYNC)
    report = lint(upstream="aws-alb", gunicorn=conf)
    hop = report.hops[-1]
    assert hop.idle_timeout == 0
    assert hop.detail == "sync worker: closes after every response"
    (note,) = report.findings
    assert note.code == "RST013"
    assert (note.file, note.line) == (str(conf), 2)
    assert "keepalive = 5 has no effect" in note.message
    assert "Connection: close" in note.message
    text = render(report, "text")
    assert "gunicorn (closes after every response)" in text
    assert "idle 0 s" not in text
    (gunicorn,) = [
        h for h in json.loads(render(report, "json"))["chain"] if h["name"] == "gunicorn"
    ]
    assert gunicorn["idle_timeout"] == 0
    assert gunicorn["idle_timeout_state"] == "closes-after-response"


@pytest.mark.parametrize(
    "config", ["workers = 4\n", "worker_class = 'gthread'\nkeepalive = 5\n", "threads = 4\n"]
)
def test_no_rst013_when_keepalive_is_not_ignored(tmp_path: Path, config: str) -> None:
    """No keepalive written, or a worker that honours it: no RST013."""
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(config)
    assert [f.code for f in lint(gunicorn=conf).findings if f.code == "RST013"] == []


# --- RST004's fix ------------------------------------------------------------------------


def test_rst004_fixes_name_the_setting_of_the_input(tmp_path: Path) -> None:
    """HAProxy: its own directives; a topology hop: the topology key; a Hop: its argument."""
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY)
    with requests.Session() as session:
        report = lint(session, haproxy=cfg, uvicorn="uvicorn app:app")
    fixes = {f.message.split(";")[0]: f.fix for f in report.findings if f.code == "RST004"}
    assert fixes["idle timeout of haproxy is unknown"] == (
        f"set timeout http-keep-alive (and timeout client) in {cfg}"
    )
    ttl_fix = fixes["idle TTL of haproxy is unknown"]
    assert ttl_fix.startswith(f"set http-reuse never in {cfg} ")
    assert "at most 3.75 s" in ttl_fix
    topology = tmp_path / "topology.toml"
    topology.write_text(TOPOLOGY.format(ttl=30))
    unknown = sorted(f.fix for f in lint(topology=topology).findings if f.code == "RST004")
    assert unknown == [
        f"set idle_timeout for mystery in {topology}",
        f"set upstream_idle_ttl for mystery in {topology} (at most 58 s)",
    ]
    hop = Hop(name="legacy", kind=HopKind.SERVER)
    (by_api,) = lint(upstream=["aws-alb", hop]).findings
    assert by_api.fix == "set idle_timeout= on the Hop for legacy"
    for finding in (*report.findings, by_api):
        if finding.code == "RST004" and "topology" in finding.fix:
            assert finding.fix.startswith("set http-reuse never")  # the alternative only


# --- JSON types ----------------------------------------------------------------------------

_NUMBER = (int, float)
_HOP_FIELDS: dict[str, tuple[type, ...]] = {
    "name": (str,),
    "kind": (str,),
    "idle_timeout": (*_NUMBER, type(None)),
    "idle_timeout_state": (str,),
    "upstream_idle_ttl": (*_NUMBER, type(None)),
    "upstream_idle_ttl_state": (str,),
    "reuses_upstream": (bool,),
    "max_requests": (int, type(None)),
    "backlog": (int, type(None)),
    "source": (str, type(None)),
    "line": (int, type(None)),
    "detail": (str,),
}
_FINDING_FIELDS: dict[str, tuple[type, ...]] = {
    "code": (str,),
    "severity": (str,),
    "title": (str,),
    "message": (str,),
    "fix": (str,),
    "hops": (list,),
    "file": (str, type(None)),
    "line": (int, type(None)),
    "client": (str, type(None)),
    "causes": (list,),
}


def _check_json_types(document: dict[str, Any]) -> None:
    assert set(document) == {"summary", "chain", "chains", "findings", "files"}
    for key in ("error", "warning", "note"):
        assert type(document["summary"][key]) is int
    assert type(document["summary"]["ok"]) is bool
    for hop in document["chain"]:
        assert set(hop) == set(_HOP_FIELDS)
        for key, types in _HOP_FIELDS.items():
            assert isinstance(hop[key], types), (key, hop[key])
            if hop[key] is not None and int in types and bool not in types:
                assert not isinstance(hop[key], bool), key
        idle, idle_state = hop["idle_timeout"], hop["idle_timeout_state"]
        assert idle_state in ("seconds", "closes-after-response", "unknown", "not-accepting")
        assert (idle is None) == (idle_state in ("unknown", "not-accepting"))
        if idle_state == "closes-after-response":
            assert idle == 0
        ttl, ttl_state = hop["upstream_idle_ttl"], hop["upstream_idle_ttl_state"]
        assert ttl_state in ("seconds", "unbounded", "unknown", "not-reused")
        assert (ttl is None) == (ttl_state != "seconds")
        if ttl is not None:
            assert math.isfinite(ttl)
            assert ttl > 0
        assert hop["reuses_upstream"] == (ttl_state != "not-reused")
    names = {hop["name"] for hop in document["chain"]}
    for chain in document["chains"]:
        assert set(chain) == {"client", "hops"}
        assert isinstance(chain["client"], str | type(None))
        assert all(isinstance(name, str) and name in names for name in chain["hops"])
    for finding in document["findings"]:
        assert set(finding) == set(_FINDING_FIELDS)
        for key, types in _FINDING_FIELDS.items():
            assert isinstance(finding[key], types), (key, finding[key])
        assert all(isinstance(name, str) for name in finding["hops"])
        assert finding["code"] in RULES
    assert all(isinstance(file, str) for file in document["files"])


def _reports(tmp_path: Path) -> list[LintReport]:
    conf = tmp_path / "gunicorn.conf.py"
    conf.write_text(GUNICORN_SYNC)
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(HAPROXY)
    topology = tmp_path / "topology.toml"
    topology.write_text(TOPOLOGY.format(ttl=30))
    nginx = tmp_path / "nginx.conf"
    nginx.write_text(
        "http {\n  keepalive_timeout 30s;\n  upstream app { server 127.0.0.1:8000; "
        "keepalive 8; keepalive_timeout 60s; }\n  server { listen 80 backlog=4096;\n"
        "    location / { proxy_http_version 1.1; proxy_pass http://app; } }\n}\n"
    )
    app = tmp_path / "app.py"
    app.write_text(SOURCE)
    with requests.Session() as session, httpx.Client() as client:
        return [
            lint(session, upstream=["aws-nat-gateway", "aws-alb"], gunicorn=conf),
            lint(session, client, haproxy=cfg, uvicorn="uvicorn app:app", somaxconn=128),
            lint(topology=topology, sources=[app]),
            lint(client, nginx=nginx, hypercorn="hypercorn app:app", somaxconn=1024),
            lint(upstream=[Hop(name="x", kind=HopKind.PROXY), 5.0], sources=[app]),
        ]


def test_json_fields_are_numbers_or_null_never_strings(tmp_path: Path) -> None:
    """Over several reports, every JSON field has its type; unbounded and unknown are null."""
    documents = [json.loads(render(report, "json")) for report in _reports(tmp_path)]
    for document in documents:
        _check_json_types(document)
    states = {
        (hop["upstream_idle_ttl_state"], hop["idle_timeout_state"])
        for document in documents
        for hop in document["chain"]
    }
    seen_ttl = {ttl for ttl, _ in states}
    seen_idle = {idle for _, idle in states}
    assert seen_ttl == {"seconds", "unbounded", "unknown", "not-reused"}
    assert seen_idle == {"seconds", "closes-after-response", "unknown", "not-accepting"}
    (requests_hop,) = [h for h in documents[0]["chain"] if h["name"] == "requests.Session"]
    assert requests_hop["upstream_idle_ttl"] is None
    assert requests_hop["upstream_idle_ttl_state"] == "unbounded"


# --- SARIF -----------------------------------------------------------------------------------


def _check_sarif(log: dict[str, Any]) -> list[dict[str, Any]]:
    """SARIF 2.1.0's required keys and types, with rstsafe's links and fingerprints."""
    assert log["version"] == "2.1.0"
    assert isinstance(log["$schema"], str)
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str)
    assert driver["informationUri"] == DOCS_URL
    assert re.fullmatch(r"https://[^\s#]+/", driver["informationUri"])
    rules = driver["rules"]
    assert [rule["id"] for rule in rules] == sorted(RULES)
    for rule in rules:
        assert rule["helpUri"] == f"{DOCS_URL}tools/#{rule['id'].lower()}"
        assert isinstance(rule["shortDescription"]["text"], str)
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    results: list[dict[str, Any]] = run["results"]
    for result in results:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note", "none")
        assert isinstance(result["message"]["text"], str)
        fingerprints = result["partialFingerprints"]
        assert set(fingerprints) == {FINGERPRINT_KEY}
        assert re.fullmatch(r"[0-9a-f]{32}", fingerprints[FINGERPRINT_KEY])
        for location in result.get("locations", []):
            physical = location["physicalLocation"]
            assert isinstance(physical["artifactLocation"]["uri"], str)
            if "region" in physical:
                assert type(physical["region"]["startLine"]) is int
                assert physical["region"]["startLine"] >= 1
    return results


def _fingerprints(results: list[dict[str, Any]]) -> list[str]:
    return [r["partialFingerprints"][FINGERPRINT_KEY] for r in results]


def test_sarif_fingerprints_stable_across_runs_and_distinct(tmp_path: Path) -> None:
    """Two runs give the same fingerprints; findings differ; numbers in messages do not count."""
    topology = tmp_path / "topology.toml"
    topology.write_text(TOPOLOGY.format(ttl=60))
    (tmp_path / "app.py").write_text(SOURCE)
    argv = ("--topology", "topology.toml", "--format", "sarif", "app.py")
    first = _cli(*argv, cwd=tmp_path)
    second = _cli(*argv, cwd=tmp_path)
    assert first.returncode == second.returncode == 1, first.stderr
    results = _check_sarif(json.loads(first.stdout))
    again = _check_sarif(json.loads(second.stdout))
    assert _fingerprints(results) == _fingerprints(again)
    assert len(set(_fingerprints(results))) == len(results) >= 4
    (edge,) = [r for r in results if r["properties"]["hops"] == ["edge", "app"]]
    topology.write_text(TOPOLOGY.format(ttl=70))  # same finding, other numbers in its message
    changed = _check_sarif(json.loads(_cli(*argv, cwd=tmp_path).stdout))
    (edge_now,) = [r for r in changed if r["properties"]["hops"] == ["edge", "app"]]
    assert edge_now["message"]["text"] != edge["message"]["text"]
    assert edge_now["partialFingerprints"] == edge["partialFingerprints"]


def test_sarif_of_every_report_is_valid(tmp_path: Path) -> None:
    """Each report of the JSON test is a valid SARIF log with distinct fingerprints."""
    for report in _reports(tmp_path):
        results = _check_sarif(json.loads(render(report, "sarif")))
        assert len(set(_fingerprints(results))) == len(results)


def test_help_uris_point_at_anchors_that_exist() -> None:
    """Every rule's helpUri anchor is an id in docs/tools.md; DOCS_URL is pyproject's."""
    tools = (ROOT / "docs" / "tools.md").read_text()
    for code in RULES:
        anchor = help_uri(code).rpartition("#")[2]
        assert f'<a id="{anchor}"></a>{code}' in tools
    pyproject = (ROOT / "pyproject.toml").read_text()
    match = re.search(r'^\[project\.urls\]\n(?:#.*\n)*Documentation = "([^"]+)"', pyproject, re.M)
    assert match is not None
    assert match.group(1) == DOCS_URL


def test_docs_show_the_json_meaning_of_null() -> None:
    """docs/tools.md documents what null means in the JSON number fields."""
    tools = textwrap.dedent((ROOT / "docs" / "tools.md").read_text())
    assert '`"unbounded"`: no idle TTL at all' in tools
    assert "never a string" in tools
