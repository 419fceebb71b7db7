"""A generated campaign of bad input (issue 7): every case must exit 2 (CONFIG_ERROR) with exactly
one line on stderr that names the input, no traceback, nothing on stdout, and never repeat a
secret it was given.

The cases are drawn by hypothesis from every way input reaches servicehost: each setting through
each source (flag, environment, TOML) with values of the wrong type, range, text or kind of path;
config files that are FIFOs, devices, directories, too big, not UTF-8, not TOML, nested too deep;
targets that are missing, unreadable kinds of file, badly named, or fail to import at a random
line; command lines with abbreviated, unknown, valueless or misplaced options, and bad values for
the manager commands' own options. The bulk runs in-process through ``cli.run_cli`` (the same
entry as the console script, fast); a sample runs as real ``python -m servicehost`` processes.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import json
import os
import string
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from servicehost import cli
from servicehost.arguments import option_strings
from servicehost.cli import COMMANDS, one_line, run_cli
from servicehost.config import HostConfig, SettingSpec, all_specs, specs
from servicehost.errors import ExitCode

from .conftest_paths import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
CONFIGURED = str(FIXTURES / "with_settings.py")
TWO = str(FIXTURES / "two_services.py")
NO_SERVICE = str(FIXTURES / "no_service.py")
SAFE = ["--manager", "foreground"]  # a manager command that got past its checks still installs nothing
IN_PROCESS_CASES = 1500
PROCESS_CASES = 130

HOST_SPECS = specs(HostConfig)
SPECS = all_specs(cli.load_target(CONFIGURED).Settings)  # the host's and a service's, every type
MANAGER_COMMANDS = sorted(set(COMMANDS) - {"run", "debug", "settings", "managers"})
TRUE_FALSE = {"1", "true", "yes", "on", "0", "false", "no", "off"}
CONTROL = [chr(c) for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]]


@dataclass
class Case:
    """One bad input. ``{case}``, ``{mods}``, ``{mod}`` and ``{world}`` in argv, env, files and
    ``names`` are replaced when it runs (a fresh folder; the one folder of generated modules, so
    that sys.path grows by one entry; a module name no other case used; the fixed world)."""

    kind: str
    argv: list[str]
    names: str  # what the one error line must contain (the input it is about)
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    secret: str = ""  # a value that must never be printed


# -- the world the cases point into (made once) ------------------------------------------------------
@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    w = tmp_path_factory.mktemp("world")
    (w / "a_file").write_text("x")
    (w / "a_dir").mkdir()
    os.mkfifo(w / "a_fifo")
    (w / "folder.py").mkdir()
    os.mkfifo(w / "fifo.py")
    (w / "not_python.txt").write_text("x = 1\n")
    (w / "big.toml").write_text("# padding\n" * 120_000)  # 1.2 MB of valid TOML: too big for a settings file
    (w / "cases").mkdir()
    (w / "mods").mkdir()
    return w


# -- strategies --------------------------------------------------------------------------------------
plain = st.text(string.ascii_letters + string.digits + "_-.", min_size=1, max_size=12)
any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=12)  # no lone surrogates
env_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"), max_size=12)


#: Text with a byte that is not UTF-8, as Python holds it (a lone surrogate, via surrogateescape):
#: what a terminal or a file in another encoding passes. A name or a text a manager keeps must be
#: UTF-8 (a unit file, the registry); before, it was taken and failed later, or was kept.
undecodable = st.builds(lambda head, byte, tail: head + chr(0xDC00 + byte) + tail,
                        plain, st.integers(0x80, 0xFF), st.text(string.ascii_letters, max_size=4))


@st.composite
def with_control(draw: st.DrawFn, env: bool = False) -> str:
    """Text holding a control character (a NUL cannot be put in the environment)."""
    c = draw(st.sampled_from(CONTROL[1:] if env else CONTROL))
    return draw(plain) + c + draw(st.text(string.ascii_letters, max_size=4))


def bad_number_text(spec: SettingSpec) -> st.SearchStrategy[str]:
    """Text that is not a valid value of a numeric setting."""
    out = [
        st.text(st.characters(categories=["Nd"], exclude_characters=string.digits), min_size=1, max_size=4),
        st.sampled_from(["", " 4", "4 ", "0x10", "1_000", "+-1", "1,5", "4.0.0", "½", "Ⅳ", "٣", "３", "1e", "e1"]),
        st.text(string.ascii_letters, min_size=1, max_size=8).filter(lambda t: t.lower() not in ("e",)),
    ]
    if spec.type is int:
        out.append(st.floats(-1e6, 1e6, allow_nan=False).map(lambda f: f"{f:.3f}"))
    else:
        out.append(st.sampled_from(["nan", "NaN", "inf", "-inf", "Infinity", "1e999"]))
    out.append(out_of_range(spec).map(str))
    return st.one_of(out)


def bad_text_value(spec: SettingSpec, env: bool) -> st.SearchStrategy[str]:
    """Text (a flag's or a variable's value) that the setting must refuse."""
    if spec.type in (int, float):
        return bad_number_text(spec)
    text = env_text if env else any_text
    if spec.type is bool:
        return st.one_of(text, plain).filter(lambda t: (t.lower() if t.isascii() else t) not in TRUE_FALSE)
    if spec.choices:  # any ASCII case of a choice is that choice (--log-level debug)
        folded = {c.lower() for c in spec.choices}
        return st.one_of(text, plain, st.sampled_from([c + "s" for c in spec.choices] + [" fast"])).filter(
            lambda t: not (t.isascii() and t.lower() in folded))
    longest = st.integers(256, 400).map(lambda n: "n" * n)
    too_long = st.integers(2100, 2300).map(lambda n: "/" + "d/" * n)
    if spec.path or spec.type is Path:  # a path may hold bytes that are not UTF-8 (POSIX file names)
        return st.one_of(with_control(env), longest, too_long)
    return st.one_of(with_control(env), undecodable)


def toml_literal(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False).replace("\x7f", "\\u007f")  # JSON's escapes are TOML's
    if isinstance(value, list):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def bad_toml_value(spec: SettingSpec) -> st.SearchStrategy[str]:
    """A TOML value of the wrong TOML type for the setting, or of its type but refused."""
    wrong_type: list[st.SearchStrategy[object]] = [st.lists(st.integers(0, 9), max_size=2), st.just({"a": 1})]
    if spec.type in (int, float):
        wrong_type += [st.integers(1, 99).map(str), st.booleans(), plain]
        if spec.type is int:
            wrong_type.append(st.floats(1.5, 9.5))
    elif spec.type is bool:
        wrong_type += [st.sampled_from(sorted(TRUE_FALSE)), st.integers(0, 1), st.floats(0, 1)]
    else:
        wrong_type += [st.integers(), st.booleans(), st.floats(allow_nan=False, allow_infinity=False)]
    literal = st.one_of(wrong_type).map(toml_literal) | st.just("1979-05-27")
    if spec.type in (int, float):  # a TOML number of the right type, outside [min, max], or not finite
        literal = literal | out_of_range(spec).map(repr)
    if spec.type in (str, Path):
        # A TOML file is UTF-8: it cannot hold an undecodable byte as text (such a file is a bad_config_file).
        literal = literal | bad_text_value(spec, env=False).filter(
            lambda t: not any("\ud800" <= c <= "\udfff" for c in t)).map(toml_literal)
    return literal


def out_of_range(spec: SettingSpec) -> st.SearchStrategy[int | float]:
    """Numbers of the setting's type that it must refuse."""
    out: list[st.SearchStrategy[int | float]] = []
    if spec.type is float:
        out.append(st.sampled_from([float("nan"), float("inf"), float("-inf")]))
    if spec.min is not None:
        out.append(st.integers(max_value=int(spec.min) - 1) if spec.type is int else
                   st.floats(max_value=spec.min, exclude_max=True, allow_nan=False, allow_infinity=False))
    if spec.max is not None:
        out.append(st.integers(min_value=int(spec.max) + 1) if spec.type is int else
                   st.floats(min_value=spec.max, exclude_min=True, allow_nan=False, allow_infinity=False))
    return st.one_of(out) if out else st.nothing()


@st.composite
def bad_setting(draw: st.DrawFn) -> Case:
    """A setting given a value it must refuse, through one source."""
    spec = draw(st.sampled_from(SPECS))
    source = draw(st.sampled_from(["flag", "flag=", "env", "toml"]))
    target = CONFIGURED
    if source == "env":
        value = draw(bad_text_value(spec, env=True))
        return Case("setting/env", ["settings", target], spec.env, env={spec.env: value})
    if source == "toml":
        text = f"{spec.name} = {draw(bad_toml_value(spec))}\n"
        return Case("setting/toml", ["settings", target, "--config", "{case}/c.toml"], f"{spec.name}: expected",
                    files={"{case}/c.toml": text.encode()})
    value = draw(bad_text_value(spec, env=False))
    argv = [f"{spec.flag}={value}"] if source == "flag=" else [spec.flag, value]
    return Case("setting/flag", ["settings", target, *argv], spec.flag)


@st.composite
def bad_path_kind(draw: st.DrawFn) -> Case:
    """A path setting pointing at the wrong kind of thing (a file for a folder, ...)."""
    name, wrong = draw(st.sampled_from([
        ("state_dir", "{world}/a_file"), ("state_dir", "{world}/a_file/below"), ("state_dir", "{world}/a_fifo"),
        ("state_dir", "/dev/null"), ("out_dir", "{world}/a_file"), ("out_dir", "/etc/passwd/x/y"),
        ("log_file", "{world}/a_dir"), ("log_file", "/dev/null"), ("log_file", "{world}/a_fifo"),
        ("log_file", "{world}/a_file/x.log"), ("log_file", "/"),
    ]))
    spec = next(s for s in SPECS if s.name == name)
    source = draw(st.sampled_from(["flag", "env", "toml"]))
    if source == "env":
        return Case("path/env", ["settings", CONFIGURED], spec.env, env={spec.env: wrong})
    if source == "toml":
        return Case("path/toml", ["settings", CONFIGURED, "--config", "{case}/c.toml"], f"{name}: expected",
                    files={"{case}/c.toml": f"{name} = {json.dumps(wrong)}\n".encode()})
    return Case("path/flag", ["settings", CONFIGURED, spec.flag, wrong], spec.flag)


@st.composite
def bad_config_file(draw: st.DrawFn) -> Case:
    """A config file that cannot be a settings file."""
    what = draw(st.sampled_from(["fifo", "device", "dir", "missing", "big", "bytes", "syntax", "deep", "unknown",
                                 "nul", "long"]))
    files: dict[str, bytes] = {}
    path = "{case}/c.toml"
    if what == "fifo":
        path = "{world}/a_fifo"
    elif what == "device":
        path = draw(st.sampled_from(["/dev/zero", "/dev/null", "/dev/urandom"]))
    elif what == "dir":
        path = "{world}/a_dir"
    elif what == "missing":
        path = "{case}/" + draw(plain) + ".toml"
    elif what == "big":
        path = "{world}/big.toml"
    elif what == "bytes":
        files["{case}/c.toml"] = draw(st.binary(max_size=40)) + b"\xff" + draw(st.binary(max_size=8))
    elif what == "syntax":
        files["{case}/c.toml"] = (draw(st.text(max_size=30)) + "\n= =\n").encode("utf-8", "surrogatepass")
    elif what == "deep":
        depth = draw(st.integers(900, 4000))
        opener, closer = draw(st.sampled_from([("[", "]"), ("{a = ", "}")]))
        files["{case}/c.toml"] = ("x = " + opener * depth + "1" + closer * depth + "\n").encode()
    elif what == "unknown":
        key = draw(st.text(string.ascii_lowercase + "_", min_size=1, max_size=12).filter(
            lambda k: k not in {s.name for s in SPECS}))
        files["{case}/c.toml"] = f"{key} = 1\n".encode()
        return Case("config/unknown-key", ["settings", CONFIGURED, "--config", "{case}/c.toml"], f"{key}: expected",
                    files=files)
    elif what == "nul":
        path = "{case}/a\x00b.toml"
    else:
        path = "{case}/" + "n" * draw(st.integers(256, 300)) + ".toml"
    if draw(st.booleans()) and what != "nul":
        return Case(f"config/{what}", ["settings", CONFIGURED], "config file", env={"SERVICEHOST_CONFIG": path},
                    files=files)
    return Case(f"config/{what}", ["settings", CONFIGURED, "--config", path], "config file", files=files)


GOOD_LINE = st.sampled_from(["import os", "x = 1", "from servicehost import Service", "# a comment", "y = [1, 2]"])
BAD_LINES = {  # a line that fails to compile, and the error the line number belongs to
    "def (": "SyntaxError", "x = = 1": "SyntaxError", "return 5": "SyntaxError", "class :": "SyntaxError",
    "  indented = 1": "IndentationError", "f(**)": "SyntaxError", "1 +": "SyntaxError", "import": "SyntaxError",
}
RAISES = {  # a line that raises at import, and the exception's name
    "import no_such_dependency_{mod}": "ModuleNotFoundError", "from os import no_such_name_{mod}": "ImportError",
    "1 / 0": "ZeroDivisionError", "{}['k']": "KeyError", "int('x')": "ValueError", "None.attr": "AttributeError",
    "open('/no/such/file/{mod}')": "FileNotFoundError", "raise RuntimeError('boom\\nsecond line')": "RuntimeError",
    "assert False, 'no'": "AssertionError", "len(5)": "TypeError", "undefined_name_{mod}": "NameError",
}


@st.composite
def bad_target(draw: st.DrawFn) -> Case:
    """A TARGET that cannot give a service."""
    what = draw(st.sampled_from(["syntax", "raises", "settings", "kind", "name"]))
    before = draw(st.lists(GOOD_LINE, max_size=6))
    line = len(before) + 1
    if what in ("syntax", "raises"):
        bad, error = draw(st.sampled_from(sorted((BAD_LINES if what == "syntax" else RAISES).items())))
        source = "\n".join([*before, bad, *draw(st.lists(GOOD_LINE, max_size=3))]) + "\n"
        command = draw(st.sampled_from(["settings", "run", "install", "status"]))
        return Case(f"target/{what}", [command, "{mods}/{mod}.py", *(SAFE if command in MANAGER_COMMANDS else [])],
                    f"{{mods}}/{{mod}}.py:{line}: {error}: ", files={"{mods}/{mod}.py": source.encode()})
    if what == "settings":
        body = draw(st.sampled_from([
            ("class Settings:\n    workers: int = 4\n", "declared as a @dataclass"),
            ("@dataclass(frozen=True)\nclass Settings:\n    workers: int\n", "needs a default"),
            ("@dataclass(frozen=True)\nclass Settings:\n    workers: complex = 1j\n", "must be bool, int"),
            ("@dataclass(frozen=True)\nclass Settings:\n    shutdown_timeout: float = 1.0\n", "clashes"),
            ("@dataclass(frozen=True)\nclass Settings:\n    config: str = ''\n", "already a servicehost option"),
            ("@dataclass(frozen=True)\nclass Settings:\n    help: str = ''\n", "already a servicehost option"),
            ("@dataclass(frozen=True)\nclass Settings:\n    x: 'NoSuchType' = 1\n", "cannot be resolved"),
        ]))
        source = ("from dataclasses import dataclass\nfrom servicehost import Service\n" + body[0] +
                  "class Svc(Service):\n    Settings = Settings\n")
        return Case("target/settings", ["settings", "{mods}/{mod}.py"], body[1],
                    files={"{mods}/{mod}.py": source.encode()})
    if what == "kind":
        path, names = draw(st.sampled_from([
            ("{world}/folder.py", "found a directory"), ("{world}/fifo.py", "found a FIFO"),
            ("{world}/not_python.txt", "named like a module"), ("{world}/a_dir", "found a directory"),
            ("{case}/missing.py", "no such file"), ("{case}/" + "n" * 300 + ".py", "File name too long"),
            (NO_SERVICE, "defines no Service subclass"), (TWO, "defines several services"),
            (TWO + ":Gamma", "is not a Service subclass"), ("{case}/x\x00.py", "NUL byte"),
        ]))
        return Case("target/kind", [draw(st.sampled_from(["settings", "run", "debug"])), path], names)
    junk = draw(st.one_of(any_text, st.sampled_from(["-", ":X", ".", "..", "a..b", "1abc", "a b", "a-b:X"])).filter(
        lambda t: t and not t.startswith("-") or t == "-"))
    dotted = junk.partition(":")[0]
    if dotted and all(part.isidentifier() for part in dotted.split(".")):
        junk = "-"  # a real module name could import (and run) anything: keep to names no module has
    if "/" in junk or junk.endswith(".py") or os.sep in junk:
        junk = "{case}/" + junk.replace("/", "_").replace("\x00", "") + ".missing.py"
    argv = ["settings", "--", junk] if junk.startswith("-") and draw(st.booleans()) else ["settings", junk]
    return Case("target/name", argv, "target")


def _options(command: str) -> list[str]:
    parser, group = cli._parser(True, command)
    if group is not None:
        cli._add_settings(group, SPECS[len(HOST_SPECS):])
    return sorted(o for o in option_strings(parser) if o.startswith("--") and o not in ("--help", "--version"))


OPTIONS = {command: _options(command) for command in COMMANDS}
VALUED = {command: [o for o in opts if o not in cli._flags_without_value(cli._parser(True, command)[0].chosen)]
          for command, opts in OPTIONS.items()}  # the options that take a value (not --purge, --follow, ...)


#: The positional arguments a verb needs after its TARGET, so that a bad option is the only fault.
REQUIRED_AFTER_TARGET: dict[str, list[str]] = {
    "control": ["200"], "jobs": ["stats"], "loglevel": ["servicehost", "INFO"]}


def _argv(command: str, *rest: str) -> list[str]:
    head = [command] if command == "list" else [command, CONFIGURED]  # list takes no TARGET
    head += REQUIRED_AFTER_TARGET.get(command, [])
    return [*head, *rest, *(SAFE if command in MANAGER_COMMANDS else [])]


@st.composite
def bad_options(draw: st.DrawFn) -> Case:
    """Command lines whose options are wrong: abbreviated, unknown, valueless, misplaced, or bad
    values for the manager commands' own options."""
    what = draw(st.sampled_from(["abbreviated", "unknown", "valueless", "extra", "password", "name", "number",
                                 "text", "env", "command"]))
    command = draw(st.sampled_from(sorted(COMMANDS)))
    if what == "abbreviated":
        option = draw(st.sampled_from(OPTIONS[command]))
        prefix = option[:draw(st.integers(3, len(option) - 1))]
        if prefix in OPTIONS[command]:
            prefix = option[:-1] if option[:-1] not in OPTIONS[command] else "--zz"
        return Case("options/abbreviated", _argv(command, prefix, "1"), f"unknown option {prefix}")
    if what == "unknown":
        option = "--" + draw(st.text(string.ascii_lowercase + "-", min_size=1, max_size=12))
        if option in OPTIONS[command] or option == "--":
            option = "--zz-unknown"
        return Case("options/unknown", _argv(command, option, "1"), f"unknown option {option.partition('=')[0]}")
    if what == "valueless":
        option = draw(st.sampled_from(VALUED[command]))
        argv = _argv(command)
        if command in MANAGER_COMMANDS:
            argv = argv[:-2]  # the option must come last; the manager from the environment instead
        # argparse names the option with its aliases ("argument -n/--lines: ..."): the long one ends the list
        return Case("options/valueless", [*argv, option], f"{option}: expected one argument",
                    env={"SERVICEHOST_MANAGER": "foreground"})
    if what == "extra":
        word = draw(plain.filter(lambda w: not w.startswith("-")))
        return Case("options/extra", ["settings", CONFIGURED, word], "an unexpected argument")
    if what == "password":
        secret = "pw-" + draw(st.text(string.ascii_letters + string.digits, min_size=6, max_size=12))
        argv = draw(st.sampled_from([["--password", secret], [f"--password={secret}"],
                                     ["--username", "bob", secret], ["--pass", secret]]))
        command = draw(st.sampled_from(["install", "update"]))
        return Case("options/password", _argv(command, *argv), "", secret=secret)
    if what == "name":
        command = draw(st.sampled_from([c for c in MANAGER_COMMANDS if "--name" in OPTIONS[c]]))
        name = draw(st.one_of(st.sampled_from(["", " ", "  ", "\t"]), with_control(),
                              plain.map(lambda t: " " + t), plain.map(lambda t: t + "/x"), plain.map(lambda t: "a\\" + t),
                              st.integers(257, 300).map(lambda n: "n" * n), undecodable))
        # A value that starts with "-" reads as an option unless joined to its own ("--name=-x").
        given = (f"--name={name}",) if name.startswith("-") else ("--name", name)
        return Case("options/name", _argv(command, *given), "--name: expected a service name")
    if what == "number":
        command, option, kind, low, high = draw(st.sampled_from([
            ("start", "--wait", float, 0, 86400), ("stop", "--wait", float, 0, 86400),
            ("restart", "--wait", float, 0, 86400), ("install", "--restart-delay", float, 0, 86400),
            ("update", "--watchdog", float, 0, 86400), ("logs", "--bytes", int, 1, 1 << 30),
            ("control", "CODE", int, 128, 255)]))
        spec = SettingSpec("x", kind, 0, "", low, high, (), object)
        value = draw(bad_number_text(spec).filter(lambda v: not v.startswith("-") or option != "CODE"))
        if option == "CODE":
            return Case("options/number", ["control", CONFIGURED, f"{value}", *SAFE], "argument CODE: expected")
        return Case("options/number", _argv(command, f"{option}={value}"), f"argument {option}: expected")
    if what == "text":
        command, option = draw(st.sampled_from([("install", "--display-name"), ("update", "--description"),
                                                ("install", "--username"), ("update", "--workdir"),
                                                ("start", "--arg"), ("install", "--depends")]))
        return Case("options/text", _argv(command, f"{option}={draw(with_control())}"), f"argument {option}: expected")
    if what == "env":
        secret = "pw-" + draw(st.text(string.ascii_letters + string.digits, min_size=6, max_size=12))
        pair = draw(st.sampled_from(["=" + secret, " KEY=" + secret, "KEY =" + secret, secret]))
        return Case("options/env", _argv("install", "--env", pair), "argument --env: expected KEY=VALUE",
                    secret=secret if pair != secret else "")
    word = draw(plain.filter(lambda w: w not in COMMANDS and not w.startswith("-")))
    return Case("options/command", [word, CONFIGURED], "invalid choice")


bad_inputs = st.one_of(bad_setting(), bad_path_kind(), bad_config_file(), bad_target(), bad_options())


# -- running a case ----------------------------------------------------------------------------------
_counter = itertools.count()


def _materialise(case: Case, world: Path) -> tuple[list[str], dict[str, str], str]:
    n = next(_counter)
    folder = world / "cases" / str(n)
    folder.mkdir()
    mod = f"campaign_target_{n}"

    def fill(text: str) -> str:
        return (text.replace("{case}", str(folder)).replace("{mods}", str(world / "mods")).replace("{mod}", mod)
                .replace("{world}", str(world)))

    for name, data in case.files.items():
        Path(fill(name)).write_bytes(fill(data.decode("utf-8", "surrogateescape")).encode("utf-8", "surrogateescape"))
    return [fill(a) for a in case.argv], {k: fill(v) for k, v in case.env.items()}, fill(case.names)


@contextlib.contextmanager
def environment(extra: dict[str, str]) -> Iterator[None]:
    """os.environ without any SERVICEHOST_* variable of the test run, plus ``extra``."""
    saved = dict(os.environ)
    for key in [k for k in os.environ if k.startswith("SERVICEHOST_")]:
        del os.environ[key]
    os.environ.update(extra)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def violations(case: Case, names: str, code: int, out: str, err: str) -> list[str]:
    """What this outcome breaks of the rule (empty: the case is handled as promised)."""
    problems = []
    if code != ExitCode.CONFIG_ERROR:
        problems.append(f"exit {code}, not 2")
    if "Traceback" in err:
        problems.append("a traceback")
    if err.count("\n") != 1 or not err.startswith("servicehost: error: "):
        problems.append(f"{err.count(chr(10))} lines on stderr, not one 'servicehost: error:' line")
    if out:
        problems.append("output on stdout")
    if names and one_line(names) not in err:
        problems.append(f"the line does not name {names!r}")
    if case.secret and case.secret in out + err:
        problems.append("the secret was printed")
    return problems


STATS: collections.Counter[str] = collections.Counter()


def test_a_campaign_of_bad_input_in_process(world, capsys):
    seen: list[str] = []
    kinds: collections.Counter[str] = collections.Counter()
    failures: list[str] = []

    @settings(max_examples=IN_PROCESS_CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate, Phase.shrink])
    @given(case=bad_inputs)
    def one(case: Case) -> None:
        argv, env, names = _materialise(case, world)
        with environment(env):
            code = run_cli(argv)
        captured = capsys.readouterr()
        seen.append(repr(case))
        kinds[case.kind] += 1
        problems = violations(case, names, code, captured.out, captured.err)
        if problems:
            failures.append(f"{case.kind} {argv!r}: {problems}: {captured.err!r}")
        assert not problems, (argv, env, problems, captured.err)

    path, modules = list(sys.path), set(sys.modules)
    try:
        one()
    finally:  # the targets' folder and the modules that did import are the campaign's, not the session's
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            if name.startswith("campaign_target_"):
                del sys.modules[name]
    STATS.update(in_process=len(seen), in_process_distinct=len(set(seen)), violations=len(failures))
    with capsys.disabled():
        print(f"\nbad-input campaign, in process: {len(seen)} cases ({len(set(seen))} distinct), "
              f"{len(failures)} violations; by kind: {dict(sorted(kinds.items()))}")
    assert len(set(seen)) >= 1000 and not failures


@pytest.mark.slow
def test_a_sample_of_the_campaign_as_real_processes(world, capsys):
    """The same rule for ``python -m servicehost`` itself (its own argv, stderr and exit code),
    with ``run`` and ``debug`` as well as ``settings`` (what a manager launches)."""
    ran: list[str] = []
    failures: list[str] = []

    @settings(max_examples=PROCESS_CASES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck), phases=[Phase.generate])
    @given(case=bad_inputs, command=st.sampled_from(["settings", "run", "debug"]))
    def one(case: Case, command: str) -> None:
        if case.argv and case.argv[0] == "settings" and case.kind.startswith(("setting", "path", "config")):
            case.argv = [command, *case.argv[1:]]
        argv, env, names = _materialise(case, world)
        if any("\x00" in a for a in argv):  # the OS cannot pass a NUL in argv; the in-process run covers it
            return
        child_env = {k: v for k, v in os.environ.items() if not k.startswith("SERVICEHOST_")}
        # the default state dir (lowest precedence: every case's own value wins) is the world's
        child_env.update(env, PYTHONPATH=str(ROOT / "src"), STATE_DIRECTORY=str(world / "cases" / "state"))
        proc = subprocess.run([sys.executable, "-m", "servicehost", *argv], env=child_env, capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL, errors="backslashreplace")
        ran.append(case.kind)
        problems = violations(case, names, proc.returncode, proc.stdout, proc.stderr)
        if problems:
            failures.append(f"{case.kind} {argv!r}: {problems}: {proc.stderr!r}")
        assert not problems, (argv, env, problems, proc.stderr)

    one()
    with capsys.disabled():
        print(f"\nbad-input campaign, real processes: {len(ran)} cases, {len(failures)} violations")
    assert len(ran) >= 100 and not failures
