"""Swap rstsafe's classes in for a host library's public names, before any test module is imported.

Each variant plugin calls :func:`swap` at import time (``-p contract.plugins.NAME`` imports it
before conftest files and test modules), so ``from requests import Session`` in a test module
already gets rstsafe's class. The swapped names are checked again at session start and shown in
pytest's header, so a run whose swap silently failed cannot pass for a swapped run.
"""

from __future__ import annotations

import importlib
from typing import Any

_SWAPPED: list[tuple[str, str, Any]] = []


def _resolve(path: str) -> Any:
    module, _, attr = path.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def swap(names: dict[str, str]) -> None:
    """Replace each ``module:attr`` (or ``module:dict[key]``) by the object at ``module:attr``."""
    for target, replacement_path in names.items():
        replacement = _resolve(replacement_path)
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        if "[" in attr:  # a dict entry, e.g. urllib3.poolmanager:pool_classes_by_scheme[http]
            dict_name, _, key = attr.partition("[")
            mapping = getattr(module, dict_name)
            key = key.rstrip("]")
            if key not in mapping:
                raise RuntimeError(f"contract swap: {module_name}.{dict_name} has no key {key!r}")
            mapping[key] = replacement
        else:
            if not hasattr(module, attr):
                raise RuntimeError(f"contract swap: {module_name} has no attribute {attr!r}")
            setattr(module, attr, replacement)
        _SWAPPED.append((target, replacement_path, replacement))


def check() -> list[str]:
    """The swapped names, each verified to still be rstsafe's object; raises if one is not."""
    lines = []
    for target, replacement_path, replacement in _SWAPPED:
        module_name, _, attr = target.partition(":")
        module = importlib.import_module(module_name)
        if "[" in attr:
            dict_name, _, key = attr.partition("[")
            current = getattr(module, dict_name)[key.rstrip("]")]
        else:
            current = getattr(module, attr)
        if current is not replacement:
            raise RuntimeError(f"contract swap: {target} is {current!r}, not {replacement_path}")
        lines.append(f"{target} -> {replacement_path}")
    return lines


def pytest_report_header() -> list[str]:
    """Show the swapped names in pytest's header (and fail the run if a swap was undone)."""
    return ["rstsafe contract swap: " + ", ".join(check())]
