"""Frozen dataclasses that cost next to nothing to define: the records on the start path.

``@dataclass(frozen=True)`` writes the source of ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` and compiles it every time the module is
imported: about 1.5 ms for ``Counters`` (21 fields), paid by every service at every start. A class
decorated with :func:`record` is the same frozen dataclass — ``dataclasses.fields``, ``replace``,
``asdict``, ``is_dataclass``, ``__match_args__``, subclassing with ``@dataclass(frozen=True)``,
equality, hashing, ``repr``, ``FrozenInstanceError`` — but it writes its own ``__init__`` (in
its source, so it is compiled once into the ``.pyc``) and gets the other methods as closures over
its field names. ``tests/unit/test_frozen_records.py`` holds each such class against the dataclass that
``@dataclass(frozen=True)`` would make of it.

Type checkers read ``record`` as ``dataclasses.dataclass`` (see the ``TYPE_CHECKING`` import where
it is used), so they see the same frozen dataclass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from reprlib import recursive_repr
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def record(*, frozen: bool = True, kw_only: bool = False) -> Callable[[T], T]:
    """``@dataclass(frozen=True[, kw_only=True])`` for a class that writes its own ``__init__``
    (the generated one's signature, setting each field with ``object.__setattr__`` and calling
    ``__post_init__`` when there is one)."""
    if not frozen:
        raise TypeError("record() makes frozen dataclasses only")

    def wrap(cls: T) -> T:
        if "__init__" not in cls.__dict__:
            raise TypeError(f"{cls.__qualname__}: a record writes its own __init__")
        for name in ("__repr__", "__eq__", "__hash__", "__setattr__", "__delattr__"):
            if name in cls.__dict__ and not (name == "__hash__" and cls.__dict__[name] is None):
                raise TypeError(f"{cls.__qualname__}: a record gets its {name}; do not write one")
        dataclasses.dataclass(init=False, repr=False, eq=False, kw_only=kw_only)(cls)  # the same class
        names = tuple(f.name for f in dataclasses.fields(cls))
        _methods(cls, names)
        params = cls.__dataclass_params__  # type: ignore[attr-defined]
        params.init = params.repr = params.eq = params.frozen = True  # what the class now is
        return cls

    return wrap


def _methods(cls: Any, names: tuple[str, ...]) -> None:
    """The methods ``@dataclass(frozen=True)`` would generate for fields ``names``, as closures."""

    @recursive_repr()
    def __repr__(self: Any) -> str:
        return f"{self.__class__.__qualname__}(" + ", ".join(
            f"{name}={getattr(self, name)!r}" for name in names) + ")"

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is self.__class__:
            return tuple(getattr(self, n) for n in names) == tuple(getattr(other, n) for n in names)
        return NotImplemented

    def __hash__(self: Any) -> int:
        return hash(tuple(getattr(self, n) for n in names))

    def __setattr__(self: Any, name: str, value: object) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise dataclasses.FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    for fn in (__repr__, __eq__, __hash__, __setattr__, __delattr__):
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)
