"""Typed settings: ``mypy --strict`` passes on ``src/`` and the examples, and catches a settings
typo in a service; at run time ``Service[X]`` is enough to declare the settings, and a closed set
of values (a ``StrEnum``) is loaded as its member from every source, spelled as before.

The mypy runs use a fresh cache in a temporary folder each time, so a stale cache can never hide
an error (a cold run of the whole tree takes a few seconds).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import pytest

from servicehost import HostConfig, Service, setting
from servicehost.config import HangPolicy, LogLevel, load, settings_table, specs
from servicehost.errors import ConfigError, UsageError

ROOT = Path(__file__).resolve().parents[2]
MYPY_GUARD = 600  # a hang guard: a cold run of the whole tree takes a few seconds


def mypy(*args: str, cache: Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    try:
        import mypy as _  # noqa: F401
    except ImportError:
        pytest.fail("mypy is missing: it is in the test extra (pip install -e '.[test]', as scripts/test.sh does)")
    env = {**os.environ, "MYPYPATH": str(ROOT / "src")}
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", "--cache-dir", str(cache), *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=MYPY_GUARD, check=False)


# -- the static check ------------------------------------------------------------------------------
def test_src_and_the_examples_pass_mypy_strict(tmp_path):
    result = mypy("src", "examples", cache=tmp_path / "cache")
    assert result.returncode == 0, result.stdout + result.stderr


GOOD = '''
    from dataclasses import dataclass
    from enum import StrEnum

    from servicehost import Deadline, HostConfig, Service, StopToken, setting
    from servicehost.config import HangPolicy


    class Mode(StrEnum):
        FAST = "fast"
        SAFE = "safe"


    @dataclass(frozen=True, kw_only=True)
    class PollSettings:
        interval: float = setting(5.0, "seconds between two polls", min=0.1)
        mode: Mode = setting(Mode.SAFE, "how to poll")


    class Poller(Service[PollSettings]):
        def run(self, stop: StopToken) -> None:
            while not stop.wait(self.settings.interval):
                fast: bool = self.settings.mode is Mode.FAST
                del fast


    class Declared(Service[PollSettings]):
        Settings = PollSettings  # the older spelling, beside the parameter

        def start(self) -> None:
            seconds: float = self.settings.interval
            del seconds


    class Bare(Service):  # a bare Service stays valid: Service[Any]
        Settings = PollSettings

        def stop(self, deadline: Deadline) -> None:
            self.settings.anything


    def restarts(config: HostConfig) -> bool:
        return config.hang_policy is HangPolicy.RESTART
'''

TYPO = '''
    from dataclasses import dataclass

    from servicehost import Service, StopToken, setting


    @dataclass(frozen=True, kw_only=True)
    class PollSettings:
        interval: float = setting(5.0, "seconds between two polls", min=0.1)


    class Poller(Service[PollSettings]):
        def run(self, stop: StopToken) -> None:
            while not stop.wait(self.settings.intervl):
                pass
'''


def test_mypy_strict_catches_a_settings_typo_and_accepts_the_correct_service(tmp_path):
    (tmp_path / "good_service.py").write_text(textwrap.dedent(GOOD))
    (tmp_path / "typo_service.py").write_text(textwrap.dedent(TYPO))
    result = mypy("good_service.py", "typo_service.py", cache=tmp_path / "cache", cwd=tmp_path)
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert result.returncode == 1, result.stdout + result.stderr
    assert len(errors) == 1, result.stdout
    line = textwrap.dedent(TYPO).splitlines().index("        while not stop.wait(self.settings.intervl):") + 1
    assert errors[0].startswith(f"typo_service.py:{line}: error:"), errors[0]
    assert '"PollSettings" has no attribute "intervl"' in errors[0]


# -- Service[X] at run time ------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class Poll:
    interval: float = setting(5.0, "seconds between two polls", min=0.1)


def test_the_type_parameter_declares_the_settings_class():
    class Poller(Service[Poll]):
        pass

    assert Poller.Settings is Poll
    assert Poller().settings == Poll()
    assert load(service_name="p", service_settings=Poller.Settings, env={}, cli={"interval": "2"}).service == \
        Poll(interval=2.0)


def test_settings_beside_the_parameter_and_alone_keep_working():
    @dataclass(frozen=True, kw_only=True)
    class FastPoll(Poll):
        pass

    class Both(Service[Poll]):
        Settings = Poll

    class Narrower(Service[Poll]):
        Settings = FastPoll  # a subclass is still a Poll

    class Old(Service):
        Settings = Poll

    class Plain(Service):
        pass

    class Child(Both):  # inherits Settings
        pass

    assert (Both.Settings, Narrower.Settings, Old.Settings, Plain.Settings, Child.Settings) == \
        (Poll, FastPoll, Poll, None, Poll)
    assert Plain().settings is None
    assert isinstance(Narrower().settings, FastPoll)


def test_a_settings_class_that_contradicts_the_parameter_is_a_type_error():
    @dataclass(frozen=True, kw_only=True)
    class Other:
        x: int = setting(1, "x")

    with pytest.raises(TypeError, match=r"Settings = .*Other but the class is Service\[Poll\]"):
        class Wrong(Service[Poll]):
            Settings = Other


def test_service_none_declares_none_and_a_generic_base_passes_its_parameter_on():
    from typing import Generic, TypeVar

    S = TypeVar("S")
    T = TypeVar("T")

    class NoSettings(Service[None]):
        pass

    class Base(Service[S]):
        pass

    class Concrete(Base[Poll]):
        pass

    class Two(Service[S], Generic[T, S]):  # the settings are its second parameter
        pass

    class Pair(Two[int, Poll]):
        pass

    @dataclass(frozen=True, kw_only=True)
    class FastPoll(Poll):
        pass

    class Narrow(Service[Poll]):
        Settings = FastPoll

    class NarrowChild(Narrow):  # says nothing new: keeps its parent's narrower Settings
        pass

    assert NoSettings.Settings is None and NoSettings().settings is None
    assert Base.Settings is None and Two.Settings is None
    assert Concrete.Settings is Poll and Pair.Settings is Poll
    assert NarrowChild.Settings is FastPoll


# -- closed sets: StrEnum settings -------------------------------------------------------------------
class Mode(StrEnum):
    FAST = "fast"
    SAFE = "safe"


@dataclass(frozen=True, kw_only=True)
class ModeSettings:
    mode: Mode = setting(Mode.SAFE, "how to poll")


def test_a_closed_set_is_loaded_as_its_member_from_every_source(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('mode = "fast"\nhang_policy = "report"\n')
    for kwargs in ({"config_file": toml, "env": {}},
                   {"env": {"SERVICEHOST_MODE": "fast", "SERVICEHOST_HANG_POLICY": "report"}},
                   {"env": {}, "cli": {"mode": "fast", "hang_policy": "report"}}):
        loaded = load(service_name="s", service_settings=ModeSettings, **kwargs)
        assert loaded.service.mode is Mode.FAST
        assert loaded.host.hang_policy is HangPolicy.REPORT
    defaults = load(service_name="s", service_settings=ModeSettings, env={})
    assert defaults.service.mode is Mode.SAFE
    assert defaults.host.hang_policy is HangPolicy.RESTART and defaults.host.log_level is LogLevel.INFO


def test_a_closed_set_is_spelled_and_checked_as_before():
    spec = {s.name: s for s in specs(ModeSettings)}["mode"]
    assert (spec.type, spec.enum, spec.choices, spec.expected) == (str, Mode, ("fast", "safe"), "one of fast, safe")
    with pytest.raises(ConfigError, match="command line: --mode: expected one of fast, safe, found 'FASTER'"):
        load(service_name="s", service_settings=ModeSettings, env={}, cli={"mode": "FASTER"})
    # any ASCII case of a value is that value (--log-level debug), loaded as the member
    assert load(service_name="s", service_settings=ModeSettings, env={}, cli={"mode": "FAST"}).service.mode is Mode.FAST
    assert "| `hang_policy` | `SERVICEHOST_HANG_POLICY` | `--hang-policy` | `restart` |" in settings_table()
    assert "| `mode` | `SERVICEHOST_MODE` | `--mode` | `safe` | how to poll |" in settings_table(ModeSettings)
    assert f"{HangPolicy.RESTART}" == str(HangPolicy.RESTART) == "restart" and f"{LogLevel.INFO}" == "INFO"


def test_host_config_written_in_code_holds_the_member():
    config = HostConfig(hang_policy="report", log_level="DEBUG")  # type: ignore[arg-type]
    assert config.hang_policy is HangPolicy.REPORT and config.log_level is LogLevel.DEBUG
    with pytest.raises(ValueError):
        HostConfig(hang_policy="explode")  # type: ignore[arg-type]


def test_a_malformed_closed_set_is_a_usage_error():
    @dataclass(frozen=True, kw_only=True)
    class PlainDefault:
        mode: Mode = setting("safe", "a str, not the member")

    @dataclass(frozen=True, kw_only=True)
    class OwnChoices:
        mode: Mode = setting(Mode.SAFE, "choices are the enum's", choices=("safe",))

    for cls, message in ((PlainDefault, "its default 'safe' is not a Mode member"),
                         (OwnChoices, "choices are its members")):
        with pytest.raises(UsageError, match=message):
            load(service_name="s", service_settings=cls, env={})


def test_the_start_mode_is_a_closed_set_spelled_as_before():
    from servicehost.platforms.base import START_MODES, InstallOptions, StartMode

    assert START_MODES == ("auto", "delayed", "manual", "disabled")  # the --start choices
    assert InstallOptions(name="s").start_mode is StartMode.AUTO
    options = InstallOptions(name="s", start_mode="manual")  # type: ignore[arg-type]  # as the CLI gives it
    assert options.start_mode is StartMode.MANUAL and f"{options.start_mode}" == "manual"
    with pytest.raises(ValueError, match="start_mode must be one of auto, delayed, manual, disabled, got 'boot'"):
        InstallOptions(name="s", start_mode="boot")  # type: ignore[arg-type]
