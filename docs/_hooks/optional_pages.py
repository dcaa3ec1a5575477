"""mkdocs hook: leave out the reference page of a module that is not in this tree.

``rstsafe.aiohttp`` is written on another branch; until it is merged, its reference page
(``reference/aiohttp.md``) would fail the strict build ("could not collect"). This hook
drops the page and its nav entry while ``src/rstsafe/aiohttp/__init__.py`` is missing, and
does nothing once it exists.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

# Reference page -> the module file it documents (both relative to the project root).
OPTIONAL_PAGES = {"reference/aiohttp.md": "src/rstsafe/aiohttp/__init__.py"}


def _missing(config: Any) -> set[str]:
    root = Path(config["config_file_path"]).parent
    return {page for page, module in OPTIONAL_PAGES.items() if not (root / module).is_file()}


def _prune(nav: Any, missing: set[str]) -> Any:
    if isinstance(nav, list):
        kept = [_prune(item, missing) for item in nav]
        return [item for item in kept if item is not None]
    if isinstance(nav, dict):
        ((title, value),) = nav.items()
        pruned = _prune(value, missing)
        return None if pruned is None else {title: pruned}
    return None if nav in missing else nav


def on_config(config: Any) -> Any:
    missing = _missing(config)
    if missing and config["nav"] is not None:
        config["nav"] = _prune(config["nav"], missing)
    return config


def on_files(files: Any, config: Any) -> Any:
    for page in _missing(config):
        file = files.get_file_from_path(page)
        if file is not None:
            files.remove(file)
    return files
