"""The API reference: one strict mkdocs build, then every public name has its own heading.

The site is built once per test session (``mkdocs build --strict`` into a temporary
directory, as ``./scripts/docs`` does); the tests then read the HTML.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

pytest.importorskip("mkdocs", reason="mkdocs is not installed (the docs and test extras have it)")
pytest.importorskip(
    "mkdocstrings_handlers.python",
    reason="mkdocstrings[python] is not installed (the docs and test extras have it)",
)
pytest.importorskip("material", reason="mkdocs-material is not installed (docs and test extras)")


ROOT = Path(__file__).resolve().parent.parent

# Public module -> its reference page (relative to the site).
PAGES = {
    "rstsafe": "reference/index.html",
    "rstsafe.requests": "reference/requests/index.html",
    "rstsafe.urllib3": "reference/urllib3/index.html",
    "rstsafe.httpx": "reference/httpx/index.html",
    "rstsafe.aiohttp": "reference/aiohttp/index.html",
    "rstsafe.sockets": "reference/sockets/index.html",
    "rstsafe.tools": "reference/tools/index.html",
    "rstsafe.testing": "reference/testing/index.html",
    "rstsafe.core": "reference/core/index.html",
}

# What the root is being shrunk to (issue #15); docs/reference/index.md lists exactly these.
ROOT_NAMES = (
    *("AsyncPool", "ConnectionFacts", "Delivery", "Failure", "FailureKind", "IdempotencyRules"),
    *("KeepAlive", "Pool", "PoolConfig", "RequestMaybeSentError", "RequestNotSentError"),
    *("RetryBudget", "RetryPolicy", "RstsafeError", "classify", "graceful_close"),
    *("keepalive_options", "replayability", "retry_if_safe"),
)

# The build is one subprocess of a few seconds; a loaded CI machine gets room.
pytestmark = pytest.mark.timeout(300)


class _Headings(HTMLParser):
    """Collects ``id -> text`` of every h1-h6 with an id."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: dict[str, str] = {}
        self._open: list[tuple[str, list[str]]] = []
        self._in_permalink = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if re.fullmatch(r"h[1-6]", tag):
            self._open.append((dict(attrs).get("id") or "", []))
        elif tag == "a" and "headerlink" in (dict(attrs).get("class") or "").split():
            self._in_permalink = True  # the heading's permalink sign is not its text

    def handle_data(self, data: str) -> None:
        if self._in_permalink:
            return
        for _, text in self._open:
            text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a":
            self._in_permalink = False
        if re.fullmatch(r"h[1-6]", tag) and self._open:
            ident, text = self._open.pop()
            if ident:
                self.headings[ident] = " ".join("".join(text).split())


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The documentation site, built with ``mkdocs build --strict``."""
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [
            sys.executable,
            *("-m", "mkdocs", "build", "--strict"),
            *("--config-file", str(ROOT / "mkdocs.yml"), "--site-dir", str(out)),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr}"
    return out


def _headings(site: Path, page: str) -> dict[str, str]:
    parser = _Headings()
    parser.feed((site / page).read_text(encoding="utf-8"))
    return parser.headings


def _documented_names(module_name: str) -> list[str]:
    """The classes and functions a module exports in ``__all__``."""
    module = importlib.import_module(module_name)
    names = []
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj) or inspect.isroutine(obj):
            names.append(name)
    return names


@pytest.mark.parametrize("module_name", [m for m in PAGES if m != "rstsafe"])
def test_every_public_name_has_a_heading(site: Path, module_name: str) -> None:
    """Each class and function in a public module's __all__ has a heading with its id and name."""
    headings = _headings(site, PAGES[module_name])
    names = _documented_names(module_name)
    assert names, f"{module_name}.__all__ has no classes or functions"
    missing = [n for n in names if f"{module_name}.{n}" not in headings]
    assert not missing, f"no heading on {PAGES[module_name]} for {module_name}: {missing}"
    # "class Client" or, for a signature-only entry, "class rstsafe.core.KeepAlive".
    shown = {
        n: [w.rsplit(".", 1)[-1] for w in headings[f"{module_name}.{n}"].split()] for n in names
    }
    unnamed = [n for n in names if n not in shown[n]]
    assert not unnamed, f"headings that do not show the object's name: {unnamed}"


def test_every_root_name_has_a_heading(site: Path) -> None:
    """Each class and function in rstsafe.__all__ has a heading rstsafe.NAME on the root page."""
    headings = _headings(site, PAGES["rstsafe"])
    missing = [n for n in _documented_names("rstsafe") if f"rstsafe.{n}" not in headings]
    assert not missing, f"no heading on the root page for: {missing}"


def test_root_page_documents_the_root_names(site: Path) -> None:
    """The 19 names of the small root each have a heading rstsafe.NAME on the root page."""
    root_names = ROOT_NAMES
    headings = _headings(site, PAGES["rstsafe"])
    missing = [n for n in root_names if f"rstsafe.{n}" not in headings]
    assert not missing, f"no heading on the root page for: {missing}"
    objects = {i for i in headings if i.count(".") == 1 and i.startswith("rstsafe.")}
    assert objects == {f"rstsafe.{n}" for n in root_names}


def test_reference_is_one_nav_section(site: Path) -> None:
    """Every reference page is in one "API reference" nav section, in the order of PAGES."""
    html = (site / "index.html").read_text(encoding="utf-8")
    section = html.split("API reference", 1)[1]
    links = re.findall(r'href="(reference/[^"]*)"', section)
    expected = [page.removesuffix("index.html") for page in PAGES.values()]
    assert [link for link in links if link in expected][: len(expected)] == expected


@pytest.mark.parametrize("page", list(PAGES.values()))
def test_no_sphinx_markup_or_private_bases(site: Path, page: str) -> None:
    """A reference page shows no Sphinx roles, no reST literal markers and no private bases."""
    text = re.sub(r"<[^>]+>", "", (site / page).read_text(encoding="utf-8"))
    roles = re.findall(r":(?:class|meth|func|attr|exc|mod|data|obj):`", text)
    assert not roles, f"Sphinx roles rendered as text on {page}: {roles[:5]}"
    assert "Bases:" not in text
    assert not re.search(r"\w::\s", text), f"a reST '::' literal marker on {page}"
