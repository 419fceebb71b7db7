"""Lazy names for a package: each name is imported from its module on first use, so importing the
package stays cheap (``import servicehost`` loads no worker model and no platform code).

    __getattr__, __dir__ = lazy_names(__name__, {"ThreadPool": "servicehost.workers.thread_pool", ...})

A module path starting with "." is relative to the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, names: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The module-level ``__getattr__`` and ``__dir__`` of ``package`` for ``names`` (name → module)."""

    def __getattr__(attr: str) -> Any:
        module = names.get(attr)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {attr!r}")
        value = getattr(importlib.import_module(module, package), attr)
        sys.modules[package].__dict__[attr] = value  # the next lookup is a plain attribute
        return value

    def __dir__() -> list[str]:
        return sorted({*sys.modules[package].__dict__, *names})

    return __getattr__, __dir__
