"""scripts/contract's comparison: node ids from junit, outcomes, regressions, the allow-list."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from contract.run import (  # noqa: E402 - the runner lives beside src/, not in it
    ERROR,
    FAILED,
    MISSING,
    PASSED,
    SKIPPED,
    Run,
    load_allowed,
    netns_prefix,
    read_junit,
    regressions,
)
from contract.suites import SUITES, VARIANTS  # noqa: E402

JUNIT = """<?xml version="1.0" encoding="utf-8"?>
<testsuites><testsuite name="pytest">
<testcase classname="test.test_a.TestA" name="test_ok" file="test/test_a.py"/>
<testcase classname="test.test_a.TestA" name="test_bad" file="test/test_a.py"><failure/></testcase>
<testcase classname="test.test_b" name="test_skip[x-1]" file="test/test_b.py"><skipped/></testcase>
<testcase classname="test.test_b" name="test_teardown" file="test/test_b.py"/>
<testcase classname="test.test_b" name="test_teardown" file="test/test_b.py"><error/></testcase>
<testcase classname="test.contrib.test_c.TestA" name="test_ok" file="test/test_a.py"/>
</testsuite></testsuites>
"""


def _tree(tmp_path: Path) -> Path:
    for module in ("test/test_a.py", "test/test_b.py", "test/contrib/test_c.py"):
        (tmp_path / module).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / module).write_text("")
    junit = tmp_path / "run.xml"
    junit.write_text(JUNIT)
    return junit


def test_junit_cases_become_node_ids_with_their_worst_outcome(tmp_path: Path) -> None:
    """Node ids follow the classname's module (a re-collected class too); errors win."""
    outcomes = read_junit(_tree(tmp_path), tmp_path)
    assert outcomes == {
        "test/test_a.py::TestA::test_ok": PASSED,
        "test/test_a.py::TestA::test_bad": FAILED,
        "test/test_b.py::test_skip[x-1]": SKIPPED,
        "test/test_b.py::test_teardown": ERROR,
        "test/contrib/test_c.py::TestA::test_ok": PASSED,
    }


def test_a_regression_passes_plain_and_not_swapped(tmp_path: Path) -> None:
    """Failing both ways is no regression; failing, skipped or missing only swapped is."""
    variant = VARIANTS[0]
    plain = Run(variant, tmp_path / "p.xml", outcomes={"a": PASSED, "b": PASSED, "c": FAILED})
    plain.outcomes.update({"d": PASSED, "e": PASSED})
    swapped = Run(variant, tmp_path / "s.xml", outcomes={"a": PASSED, "b": FAILED, "c": FAILED})
    swapped.outcomes["d"] = SKIPPED
    assert regressions(plain, swapped) == {"b": FAILED, "d": SKIPPED, "e": MISSING}


def test_every_variant_names_a_suite_and_the_allow_list_has_reasons() -> None:
    """Variants point at known suites with a plugin module; allowed entries carry a reason."""
    for variant in VARIANTS:
        assert variant.suite in SUITES
        if variant.plugin is not None:
            assert (ROOT / "contract" / "plugins" / f"{variant.plugin}.py").is_file()
    assert all(reason for reason in load_allowed().values())


_CONNECT = """
import socket, sys
for host in sys.argv[1:]:
    sock = socket.socket()
    sock.settimeout(0.3)
    try:
        sock.connect((host, 9))
    except TimeoutError:
        print(host, "timeout")
    except OSError as exc:
        print(host, exc.errno)
    else:
        print(host, "connected")
    finally:
        sock.close()
"""


def test_the_namespace_drops_connects_to_the_tarpits() -> None:
    """In the contract's namespace a tarpit swallows the SYN (timeout), as upstream expects."""
    prefix = netns_prefix()
    if not prefix:
        pytest.skip("unshare -n with ip is not allowed here (needs root): runs are not isolated")
    hosts = ["240.0.0.0", "10.255.255.1"]  # urllib3's TARPIT_HOST, requests' TARPIT
    done = subprocess.run(
        [*prefix, sys.executable, "-c", _CONNECT, *hosts],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert done.stdout.splitlines() == [f"{host} timeout" for host in hosts]
