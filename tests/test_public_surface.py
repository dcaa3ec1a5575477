"""The public surface: a small root, complete __all__ in every public module, lazy imports."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

PUBLIC_MODULES = (
    "rstsafe",
    "rstsafe.core",
    "rstsafe.sockets",
    "rstsafe.tools",
    "rstsafe.testing",
    "rstsafe.requests",
    "rstsafe.urllib3",
    "rstsafe.httpx",
    "rstsafe.aiohttp",
)


def test_the_root_has_at_most_25_names() -> None:
    """The root holds the config objects, the errors and the pools: at most 25 names."""
    import rstsafe

    assert len(rstsafe.__all__) <= 25


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_every_name_in_all_resolves(name: str) -> None:
    """Every name a public module lists in __all__ is importable from it, and unique."""
    module = importlib.import_module(name)
    listed = module.__all__
    assert len(set(listed)) == len(listed)
    missing = [n for n in listed if not hasattr(module, n)]
    assert not missing


@pytest.mark.parametrize("name", PUBLIC_MODULES[1:])  # the root binds names lazily
def test_all_lists_every_public_class_and_function_defined_here(name: str) -> None:
    """No public class or function of the module's own package is left out of __all__."""
    module = importlib.import_module(name)
    own = {
        n
        for n, value in vars(module).items()
        if not n.startswith("_")
        and (isinstance(value, type) or callable(value))
        and getattr(value, "__module__", "").startswith("rstsafe")
    }
    assert own <= set(module.__all__), sorted(own - set(module.__all__))


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_exported_errors_name_their_public_module(name: str) -> None:
    """Tracebacks and pickles name an exported error by its public module, never a private one."""
    import pickle

    module = importlib.import_module(name)
    errors = [
        getattr(module, n)
        for n in module.__all__
        if isinstance(getattr(module, n), type) and issubclass(getattr(module, n), BaseException)
    ]
    private = [
        f"{e.__module__}.{e.__qualname__}"
        for e in errors
        if e.__module__.startswith("rstsafe") and "._" in e.__module__
    ]
    assert not private, f"{name} exports errors named by a private module: {private}"
    for error in errors:
        if error.__module__.startswith("rstsafe"):
            assert pickle.loads(pickle.dumps(error)) is error


def test_import_rstsafe_loads_no_tool_no_pool_and_no_asyncio() -> None:
    """A fresh ``import rstsafe`` loads rstsafe's root module and nothing heavy."""
    code = (
        "import sys; import rstsafe; "
        "print(sorted(m for m in sys.modules if m.startswith(('rstsafe', 'asyncio', 'tenacity'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "['rstsafe']"


def test_names_load_on_first_use_and_unknown_names_fail_clearly() -> None:
    """rstsafe.KeepAlive imports its module when asked; a typo is an AttributeError naming it."""
    import rstsafe

    assert rstsafe.KeepAlive.__name__ == "KeepAlive"
    assert isinstance(rstsafe.__version__, str)
    with pytest.raises(AttributeError, match="KeepAliveRegistry"):
        _ = rstsafe.KeepAliveRegistry  # moved to rstsafe.core
    assert set(rstsafe.__all__) <= set(dir(rstsafe))
