"""Import cost (issue 15): what ``import rstsafe...`` loads on top of its host library.

Each check runs two fresh interpreters, one importing the rstsafe module and one its host
(as ``benchmarks/section_imports.py`` pairs them), and looks only at the modules rstsafe
adds: anything the host loads itself is the host's cost, not rstsafe's.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys

import pytest

#: Modules nothing of rstsafe needs until used: async libraries and their back ends,
#: HTTP/2, httpcore (httpx itself loads it at the first transport), the tools, the test
#: server, the CLI, the pools, package metadata, tenacity (only its helpers use it).
OPTIONAL = (
    "tenacity",
    "rstsafe._core.retry_tenacity",
    "trio",
    "anyio",
    "sniffio",
    "h2",
    "hpack",
    "hyperframe",
    "attr",
    "outcome",
    "socksio",
    "httpcore",
    "asyncio",
    "importlib.metadata",
    "pickle",
    "rstsafe.tools",
    "rstsafe.testing",
    "rstsafe._cli",
    "rstsafe.sockets",
)

#: (rstsafe's import, its host's import, modules of OPTIONAL plus these it must not add).
PAIRS = (
    ("import rstsafe", "import urllib3, tenacity", ("rstsafe.sockets", "rstsafe._core")),
    ("import rstsafe.httpx", "import httpx", ("urllib3", "requests", "aiohttp")),
    ("import rstsafe.requests", "import requests", ("httpx", "aiohttp")),
    ("import rstsafe.urllib3", "import urllib3", ("httpx", "requests", "aiohttp")),
)


def _loaded(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after running ``statement``."""
    code = f"{statement}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return set(json.loads(out))


def _matches(module: str, names: tuple[str, ...]) -> bool:
    return any(module == n or module.startswith(n + ".") for n in names)


@pytest.mark.parametrize(("statement", "host", "also"), PAIRS, ids=[p[0] for p in PAIRS])
def test_rstsafe_adds_no_optional_module_to_its_hosts_import(
    statement: str, host: str, also: tuple[str, ...]
) -> None:
    """A fresh import of the rstsafe module adds none of the optional modules to its host's."""
    added = _loaded(statement) - _loaded(host)
    assert any(m.startswith("rstsafe") for m in added)  # the check sees rstsafe's modules
    heavy = sorted(m for m in added if _matches(m, OPTIONAL + also))
    assert heavy == []


def test_httpx_loads_httpcore_at_the_first_transport_as_httpx_does() -> None:
    """Building a rstsafe.httpx transport loads httpcore and its back ends, as httpx's does."""
    code = (
        "import sys, rstsafe.httpx\n"
        "before = 'httpcore' in sys.modules\n"
        "transport = rstsafe.httpx.AsyncTransport()\n"
        "print(before, 'httpcore' in sys.modules, 'rstsafe.httpx._network' in sys.modules,"
        " type(transport._pool).__name__)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.split() == ["False", "True", "True", "AsyncConnectionPool"]


def test_compat_httpx_polled_streams_load_on_first_use() -> None:
    """POLLED_STREAMS is httpcore's anyio and sync stream classes, read when first asked."""
    compat = importlib.import_module("rstsafe._compat.httpx")
    from httpcore._backends.anyio import AnyIOStream
    from httpcore._backends.sync import SyncStream

    assert frozenset({AnyIOStream, SyncStream}) == compat.POLLED_STREAMS
    with pytest.raises(AttributeError, match="NO_SUCH_NAME"):
        _ = compat.NO_SUCH_NAME


def test_sockets_lazy_names_are_exactly_its_all() -> None:
    """rstsafe.sockets binds every name of __all__ (and only those) from where it is defined."""
    sockets = importlib.import_module("rstsafe.sockets")
    lazy: dict[str, str] = sockets._LAZY
    assert set(lazy) == set(sockets.__all__)
    for name, module in lazy.items():
        assert getattr(sockets, name) is getattr(importlib.import_module(module), name)
    with pytest.raises(AttributeError, match="NoSuchHelper"):
        _ = sockets.NoSuchHelper
    assert set(sockets.__all__) <= set(dir(sockets))
