"""`rstsafe lint` on the command line: text, JSON and SARIF output, and its exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import requests

from rstsafe import _cli
from rstsafe.tools._lint import RULES, lint, render

RunCli = Callable[[Sequence[str]], tuple[int, str, str]]

HAZARDS = """\
import socket, struct
import requests
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
requests.get("http://example")
"""


def test_our_commands_are_registered() -> None:
    """lint, probe and doctor are listed in rstsafe._cli._SUBCOMMAND_MODULES."""
    for module in ("rstsafe.tools._lint._cli", "rstsafe._cli.probe", "rstsafe._cli.doctor"):
        assert module in _cli._SUBCOMMAND_MODULES


def test_parser_has_our_subcommands(monkeypatch: pytest.MonkeyPatch) -> None:
    """The command line built from our modules offers lint, probe and doctor."""
    monkeypatch.setattr(
        _cli,
        "_SUBCOMMAND_MODULES",
        ("rstsafe.tools._lint._cli", "rstsafe._cli.probe", "rstsafe._cli.doctor"),
    )
    parser = _cli.build_parser()
    (subparsers,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert set(subparsers.choices) == {"lint", "probe", "doctor"}


def test_errors_exit_1_with_text(tmp_path: Path, run_cli: RunCli) -> None:
    """Errors found: exit code 1; the text names code, file:line and the fix."""
    app = tmp_path / "app.py"
    app.write_text(HAZARDS)
    code, out, _ = run_cli(["lint", str(app)])
    assert code == 1
    assert out.startswith("rstsafe lint: 1 error, 1 warning, 0 notes")
    assert f"error   RST101 {app}:4" in out
    assert "fix: remove the SO_LINGER option" in out


def test_clean_exits_0_and_fail_on_warning(tmp_path: Path, run_cli: RunCli) -> None:
    """No errors: exit 0; --fail-on warning makes a warning fail the build."""
    app = tmp_path / "app.py"
    app.write_text('import requests\nrequests.get("http://example")\n')
    code, out, _ = run_cli(["lint", str(app)])
    assert code == 0
    assert "RST103" in out
    assert run_cli(["lint", "--fail-on", "warning", str(app)])[0] == 1
    app.write_text("x = 1\n")
    assert run_cli(["lint", "--fail-on", "warning", str(app)])[0] == 0


def test_json_output(run_cli: RunCli) -> None:
    """--format json: summary, chain and findings with code, severity, hops, fix."""
    argv = ["lint", "--format", "json", "--upstream", "aws-alb", "--uvicorn", "uvicorn app:app"]
    code, out, _ = run_cli(argv)
    assert code == 1
    document = json.loads(out)
    assert document["summary"]["error"] == 1
    assert document["summary"]["ok"] is False
    assert [hop["name"] for hop in document["chain"]] == ["aws-alb", "uvicorn"]
    (finding,) = [f for f in document["findings"] if f["code"] == "RST002"]
    assert finding["hops"] == ["aws-alb", "uvicorn"]
    assert finding["severity"] == "error"
    assert finding["fix"]


def _check_sarif(log: dict[str, Any]) -> None:
    """The SARIF 2.1.0 structure GitHub code scanning requires."""
    assert log["version"] == "2.1.0"
    assert log["$schema"].endswith("sarif-2.1.0.json")
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert isinstance(driver["name"], str)
    rule_ids = [rule["id"] for rule in driver["rules"]]
    assert rule_ids == sorted(RULES)
    for rule in driver["rules"]:
        assert rule["shortDescription"]["text"]
        assert rule["defaultConfiguration"]["level"] in ("error", "warning", "note")
    for result in run["results"]:
        assert result["ruleId"] in rule_ids
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        assert result["level"] in ("error", "warning", "note")
        assert result["message"]["text"]
        for location in result.get("locations", []):
            physical = location["physicalLocation"]
            assert physical["artifactLocation"]["uri"]
            assert physical["region"]["startLine"] >= 1


def test_sarif_output(tmp_path: Path, run_cli: RunCli) -> None:
    """--format sarif writes a valid SARIF 2.1.0 log; -o writes it to a file."""
    app = tmp_path / "app.py"
    app.write_text(HAZARDS)
    out_file = tmp_path / "lint.sarif"
    code, out, _ = run_cli(["lint", "--format", "sarif", "-o", str(out_file), str(app)])
    assert code == 1
    assert out == ""
    log = json.loads(out_file.read_text())
    _check_sarif(log)
    results = log["runs"][0]["results"]
    assert {r["ruleId"] for r in results} == {"RST101", "RST103"}
    (linger,) = [r for r in results if r["ruleId"] == "RST101"]
    assert linger["locations"][0]["physicalLocation"]["region"]["startLine"] == 4


def test_sarif_of_a_chain_without_files() -> None:
    """Findings without a file (live clients) are valid SARIF results without locations."""
    with requests.Session() as session:
        log = json.loads(render(lint(session, upstream="nginx"), "sarif"))
    _check_sarif(log)
    (result,) = log["runs"][0]["results"]
    assert "locations" not in result


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lint"], "nothing to lint"),
        (["lint", "--nginx", "/nonexistent/nginx.conf"], "/nonexistent/nginx.conf: no such file"),
        (["lint", "--upstream", "aws-elb", "x.py"], "expected seconds or a preset"),
        (["lint", "--client", "nocolon"], "module:attribute"),
        (["lint", "--client", "rstsafe_no_such_module:x"], "importing rstsafe_no_such_module"),
        (["lint", "--client", "json:no_such_attribute"], "json has no no_such_attribute"),
        (["lint", "--client", "json:dumps"], "lint cannot inspect"),
        (["lint", "--somaxconn", "lots", "x.py"], "expected a number"),
    ],
)
def test_bad_input_exits_2_with_one_line(run_cli: RunCli, argv: list[str], message: str) -> None:
    """Bad input: exit 2 and one line on stderr naming the problem, no traceback."""
    code, out, err = run_cli(argv)
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_malformed_file_names_file_and_line(tmp_path: Path, run_cli: RunCli) -> None:
    """A malformed config: `rstsafe lint: error: FILE:LINE: reason`, exit 2."""
    conf = tmp_path / "nginx.conf"
    conf.write_text("http {\n  keepalive_timeout 75s\n}\n")
    code, _, err = run_cli(["lint", "--nginx", str(conf)])
    assert code == 2
    assert f"{conf}:3: missing ';'" in err
    assert err.count("\n") == 1


def test_client_from_import_path(
    tmp_path: Path, run_cli: RunCli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--client module:attribute imports the user's client from the current directory."""
    (tmp_path / "rstsafe_lint_client_mod.py").write_text(
        "import httpx\nclient = httpx.Client(limits=httpx.Limits(max_connections=10, "
        "max_keepalive_connections=5, keepalive_expiry=90))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    code, out, _ = run_cli(
        ["lint", "--client", "rstsafe_lint_client_mod:client", "--upstream", "aws-alb"]
    )
    module = sys.modules.pop("rstsafe_lint_client_mod")
    module.client.close()
    assert code == 1
    assert (
        "httpx.Client keeps idle connections 90 s, but aws-alb closes idle ones after 60 s" in out
    )


def test_help_lists_the_options(run_cli: RunCli) -> None:
    """`rstsafe lint --help` documents inputs, formats and exit codes."""
    code, out, _ = run_cli(["lint", "--help"])
    assert code == 0
    for option in ("--topology", "--nginx", "--gunicorn", "--haproxy", "--client", "sarif"):
        assert option in out
    assert "exit codes" in out
