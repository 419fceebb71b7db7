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

:data:`NamedTuple` is ``typing.NamedTuple`` (class form only) without the part that costs: typing
turns each field's annotation into a ``ForwardRef``, compiling it (about 100 µs a record with
``from __future__ import annotations``); here the annotations stay as written, as they do on every
other class. The same ``collections.namedtuple`` otherwise; type checkers read it as typing's.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from reprlib import recursive_repr
from typing import Any, TypeVar

T = TypeVar("T", bound=type)


def record(*, frozen: bool = True, kw_only: bool = False) -> Callable[[T], T]:
    """``@dataclass(frozen=True[, kw_only=True])`` for a class that writes its own ``__init__``
    (the generated one's signature, setting each field with ``object.__setattr__`` and calling
    ``__post_init__`` when there is one)."""
    import dataclasses  # only where a record is declared: NamedTuple alone needs none of it

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
    from dataclasses import FrozenInstanceError

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
            raise FrozenInstanceError(f"cannot assign to field {name!r}")
        super(cls, self).__setattr__(name, value)

    def __delattr__(self: Any, name: str) -> None:
        if type(self) is cls or name in names:
            raise FrozenInstanceError(f"cannot delete field {name!r}")
        super(cls, self).__delattr__(name)

    for fn in (__repr__, __eq__, __hash__, __setattr__, __delattr__):
        fn.__qualname__ = f"{cls.__qualname__}.{fn.__name__}"
        setattr(cls, fn.__name__, fn)


_PROHIBITED = frozenset({"__new__", "__init__", "__slots__", "__getnewargs__", "_fields", "_field_defaults",
                         "_make", "_replace", "_asdict", "_source"})
_SPECIAL = frozenset({"__module__", "__name__", "__annotations__"})


class _NamedTupleMeta(type):
    """What ``typing.NamedTupleMeta`` does, the annotations left as they are."""

    def __new__(mcls, typename: str, bases: tuple[type, ...], ns: dict[str, Any]) -> Any:
        if bases != (_NamedTuple,):
            raise TypeError("a NamedTuple class derives from NamedTuple alone")
        types: dict[str, Any] = ns.get("__annotations__", {})
        defaults = []
        for name in types:
            if name in ns:
                defaults.append(ns[name])
            elif defaults:
                raise TypeError(f"Non-default namedtuple field {name} cannot follow default field"
                                f"{'s' if len(defaults) > 1 else ''} {', '.join(n for n in types if n in ns)}")
        make: Any = collections.namedtuple  # (a type checker wants literal arguments)
        cls = make(typename, list(types), defaults=defaults, module=ns["__module__"])
        cls.__annotations__ = cls.__new__.__annotations__ = dict(types)
        for key, value in ns.items():
            if key in _PROHIBITED:
                raise AttributeError("Cannot overwrite NamedTuple attribute " + key)
            if key not in _SPECIAL and key not in cls._fields:
                setattr(cls, key, value)
        return cls


_NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})


def NamedTuple(*args: object, **kwargs: object) -> Any:
    """``class Name(NamedTuple): field: type [= default] ...`` (the class form only)."""
    raise TypeError("servicehost._records.NamedTuple has the class form only")


NamedTuple.__mro_entries__ = lambda bases: (_NamedTuple,)  # type: ignore[attr-defined]
