"""The pywin32 names ``servicehost.compat`` keeps off Windows without a meaning there.

Each still exists, so a script's imports work (``from servicehost.compat.win32api import RegOpenKeyEx``),
and calling it raises :class:`NotImplementedError` naming the call and what to use instead — never
an ImportError or an AttributeError far from the cause. The tables in each module say which names
and why; docs/compat.md has them as one table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NoReturn

DOCS = "docs/compat.md"


def names(groups: Mapping[str, str]) -> dict[str, str]:
    """``{alternative: "Name1 Name2 ..."}`` → ``{name: alternative}``."""
    return {name: alternative for alternative, listed in groups.items() for name in listed.split()}


def stub(module: str, name: str, alternative: str) -> Callable[..., NoReturn]:
    """A function called ``name`` that raises NotImplementedError naming ``module.name`` and ``alternative``."""

    def unavailable(*args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            f"{module}.{name} cannot mean anything off Windows (servicehost.compat): {alternative} ({DOCS})")

    unavailable.__name__ = unavailable.__qualname__ = name
    unavailable.__module__ = f"servicehost.compat.{module}"
    unavailable.__doc__ = f"Not available off Windows: {alternative}."
    unavailable.alternative = alternative  # type: ignore[attr-defined]  # what tells a stub from a function
    return unavailable


def module_getattr(module: str, table: Mapping[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """The ``__getattr__`` of a compat module: a name of ``table`` is its stub (made once, then kept in
    ``namespace``); any other missing name is an AttributeError saying what the module provides."""

    def __getattr__(name: str) -> Any:
        if name in table:
            namespace[name] = made = stub(module, name, table[name])
            return made
        raise AttributeError(
            f"module 'servicehost.compat.{module}' has no attribute {name!r} (off Windows it provides what "
            f"service code uses of pywin32's {module}: {DOCS})")

    return __getattr__


__all__ = ["DOCS", "module_getattr", "names", "stub"]
