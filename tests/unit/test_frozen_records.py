"""The records written with ``_records.record`` behave as the frozen dataclasses ``@dataclass``
would make of them: each is held against one generated from its own fields."""

from __future__ import annotations

import copy
import dataclasses
import inspect
import pickle
from pathlib import Path

import pytest

from servicehost._records import record
from servicehost.components import Counters, Histogram, Measures
from servicehost.config import HangPolicy, HostConfig, LogLevel

RECORDS = [Counters, Histogram, Measures, HostConfig]


def reference(cls: type) -> type:
    """What ``@dataclass(frozen=True, kw_only=...)`` makes of ``cls``'s fields."""
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    kw_only = all(f.kw_only for f in dataclasses.fields(cls))
    spec = []
    for f in dataclasses.fields(cls):
        copied = dataclasses.field(default=f.default, default_factory=f.default_factory, metadata=f.metadata)
        spec.append((f.name, f.type, copied))
    ns = {"__post_init__": cls.__post_init__} if hasattr(cls, "__post_init__") else {}
    ref = dataclasses.make_dataclass(cls.__name__, spec, frozen=True, kw_only=kw_only, namespace=ns)
    ref.__qualname__ = cls.__qualname__
    assert params.frozen and params.init and params.repr and params.eq
    return ref


def samples(cls: type) -> list[dict[str, object]]:
    """Keyword sets to build ``cls`` with: the required fields only, and every field given."""
    required: dict[str, object] = {}
    full: dict[str, object] = {}
    for i, f in enumerate(dataclasses.fields(cls)):
        value: object = {str: f"v{i}", int: i, "int": i, "str": f"v{i}"}.get(f.type, None)
        if f.name == "counts":
            value = tuple(range(23))
        elif f.name in ("task_duration", "queue_wait"):
            value = Histogram((1,) * 23, 2.5)
        elif f.name == "stages":
            value = {"a": Measures(rejected=1)}
        elif f.name == "hang_policy":
            value = HangPolicy.REPORT
        elif f.name == "log_level":
            value = LogLevel.DEBUG
        elif f.name == "state_dir":
            value = Path("/x")
        elif f.name == "syslog":
            value = True
        elif value is None:
            value = float(i) + 0.5
        full[f.name] = value
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required[f.name] = value
    return [required, full]


def build(cls: type, values: dict[str, object]) -> object:
    fields = dataclasses.fields(cls)
    if all(f.kw_only for f in fields):
        return cls(**values)
    names = [f.name for f in fields]
    positional = [values[n] for n in names if n in values]
    return cls(*positional)


@pytest.mark.parametrize("cls", RECORDS, ids=lambda c: c.__name__)
def test_a_record_is_the_frozen_dataclass_its_fields_make(cls: type) -> None:
    ref = reference(cls)
    ours_sig, ref_sig = inspect.signature(cls), inspect.signature(ref)
    assert list(ours_sig.parameters) == list(ref_sig.parameters)
    for name, p in ours_sig.parameters.items():
        r = ref_sig.parameters[name]
        assert p.kind == r.kind, name
        factory = dataclasses.fields(cls)[list(ours_sig.parameters).index(name)].default_factory
        if factory is dataclasses.MISSING:
            assert p.default == r.default, name  # a default written out agrees with its field's
        else:
            assert p.default is None  # "a new one each time": None stands for it
            assert getattr(cls(**({} if name != "stages" else {})), name) == factory()
    assert cls.__match_args__ == ref.__match_args__
    assert dataclasses.is_dataclass(cls)
    for values in samples(cls):
        ours, theirs = build(cls, values), build(ref, values)
        assert repr(ours) == repr(theirs)
        assert dataclasses.asdict(ours) == dataclasses.asdict(theirs)
        assert ours == build(cls, values) and not (ours != build(cls, values))
        assert ours != theirs  # another class, as between two dataclasses
        try:
            expected_hash: int | None = hash(theirs)
        except TypeError:
            expected_hash = None
        if expected_hash is None:
            with pytest.raises(TypeError):
                hash(ours)
        else:
            assert hash(ours) == expected_hash
        for name in values:
            with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot assign to field '{name}'"):
                setattr(ours, name, 1)
            with pytest.raises(dataclasses.FrozenInstanceError, match=f"cannot delete field '{name}'"):
                delattr(ours, name)
        with pytest.raises(dataclasses.FrozenInstanceError):
            ours.other = 1  # type: ignore[attr-defined]
        if values:
            first = next(iter(values))
            changed = dataclasses.replace(ours, **{first: values[first]})
            assert changed == ours and changed is not ours
        assert copy.deepcopy(ours) == ours
        assert pickle.loads(pickle.dumps(ours)) == ours
        with pytest.raises(TypeError):
            cls(**values, no_such_field=1)
    with pytest.raises(TypeError):
        cls(*range(len(dataclasses.fields(cls)) + 1))

def test_records_subclass_as_frozen_dataclasses_do() -> None:
    @dataclasses.dataclass(frozen=True)
    class More(Counters):
        extra: int = 7

    more = More("pool", 1, 2, 3, 4, 5)
    assert more.extra == 7 and more.name == "pool"
    assert repr(more).startswith("test_records_subclass_as_frozen_dataclasses_do.<locals>.More(name='pool',")
    with pytest.raises(dataclasses.FrozenInstanceError):
        more.extra = 1  # type: ignore[misc]
    with pytest.raises(TypeError, match="non-frozen"):
        @dataclasses.dataclass
        class Thawed(Counters):
            extra: int = 0

    class Plain(Counters):
        pass

    plain = Plain("pool", 1, 2, 3, 4, 5)
    assert repr(plain).startswith("test_records_subclass_as_frozen_dataclasses_do.<locals>.Plain(name='pool'")
    plain.note = "a subclass's own attribute"  # type: ignore[attr-defined]
    with pytest.raises(dataclasses.FrozenInstanceError):
        plain.name = "other"  # type: ignore[misc]

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Settings(HostConfig):
        extra: int = 1

    assert Settings(hang_policy="report", extra=2).hang_policy is HangPolicy.REPORT


def test_a_record_writes_its_own_init_and_nothing_else() -> None:
    with pytest.raises(TypeError, match="writes its own __init__"):
        @record(frozen=True)
        class NoInit:
            a: int = 0

    with pytest.raises(TypeError, match="gets its __repr__"):
        @record(frozen=True)
        class OwnRepr:
            a: int = 0

            def __init__(self, a: int = 0) -> None:
                self.__dict__["a"] = a

            def __repr__(self) -> str:
                return "mine"


def tuple_records() -> list[type]:
    import importlib

    from servicehost import arguments, config, logs
    from servicehost.components import Beat, Unfinished

    entry = importlib.import_module("servicehost.platforms.entry")

    return [config.SettingSpec, config.Loaded, logs.LogEvent, arguments.Invocation, arguments.Command,
            entry.ManagerExitStatus, entry.Refused, entry.PlatformEntry, Beat, Unfinished]


@pytest.mark.parametrize("cls", tuple_records(), ids=lambda c: c.__name__)
def test_a_tuple_record_is_the_named_tuple_typing_makes(cls: type) -> None:
    import typing

    hints = typing.get_type_hints(cls)
    assert list(hints) == list(cls._fields)  # type: ignore[attr-defined]
    same = typing.NamedTuple(cls.__name__, list(hints.items()))  # type: ignore[misc]
    assert issubclass(cls, tuple) and cls.__mro__[1:] == same.__mro__[1:]
    assert cls._fields == same._fields  # type: ignore[attr-defined]
    assert cls._field_defaults == {  # type: ignore[attr-defined]
        n: p.default for n, p in inspect.signature(cls).parameters.items() if p.default is not p.empty}
    assert inspect.signature(cls).parameters.keys() == inspect.signature(same).parameters.keys()
    assert cls.__doc__ and cls.__module__.startswith("servicehost.") and cls.__qualname__ == cls.__name__
    values = tuple(range(len(cls._fields)))  # type: ignore[attr-defined]
    one = cls(*values)
    assert one == values and repr(one) == repr(same(*values))
    assert one._asdict() == same(*values)._asdict() and one._replace() == one  # type: ignore[attr-defined]
    assert pickle.loads(pickle.dumps(one)) == one


def test_named_tuple_refuses_what_typing_refuses() -> None:
    from servicehost._records import NamedTuple

    class Point(NamedTuple):
        """A point."""

        x: int
        y: int = 0

        @property
        def norm(self) -> int:
            return abs(self.x) + abs(self.y)

    assert Point(3, -4).norm == 7 and Point(1) == (1, 0) and Point.__annotations__ == {"x": "int", "y": "int"}
    assert Point._field_defaults == {"y": 0} and Point.__doc__ == "A point."
    with pytest.raises(TypeError, match="Non-default namedtuple field y cannot follow default field x"):
        class Bad(NamedTuple):
            x: int = 0
            y: int
    with pytest.raises(AttributeError, match="Cannot overwrite NamedTuple attribute _replace"):
        class Worse(NamedTuple):
            x: int

            def _replace(self) -> None: ...
    with pytest.raises(TypeError):
        NamedTuple("Functional", [("x", int)])
