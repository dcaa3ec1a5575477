"""Loaded into every contract run: end the process once pytest is done, whatever threads remain.

An upstream test that fails can leave a non-daemon thread blocked forever (urllib3's
``test_http2_probe_blocked_per_thread`` leaves ThreadPoolExecutor workers waiting on the
HTTP/2 probe cache), and the interpreter would then wait for it at exit, long after the
results were written. The junit report and the summary are complete by ``pytest_unconfigure``.
"""

from __future__ import annotations

import os
import sys

import pytest

_STATUS = {"exit": 0}


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remember pytest's exit status."""
    _STATUS["exit"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """Exit now with pytest's status: the reports are written, leftover threads are not ours."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_STATUS["exit"])
