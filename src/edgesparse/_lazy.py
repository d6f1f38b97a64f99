"""Lazy package exports (PEP 562): a package names its public objects without importing their (torch-heavy)
modules until one is used, so ``edgesparse --help`` and the torch-free modules load quickly."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(package: str, homes: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package``: each name in ``homes`` is imported from its module on first
    use."""

    def getattr_(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(homes[name]), name)

    def dir_() -> list[str]:
        return sorted(set(homes) | set(vars(sys.modules[package])))

    return getattr_, dir_
