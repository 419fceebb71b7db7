"""The command line: the only code that prints or exits.

    servicehost COMMAND [TARGET] [--config FILE] [--SETTING VALUE ...]
    python my_service.py COMMAND [--SETTING VALUE ...]        # servicehost.main(MyService)

TARGET is ``path/to/file.py[:Class]`` or ``package.module:Class``. :func:`commands` gives the one
table of commands: run/debug/settings here, install/start/stop/… from ``manage.py`` (which knows
nothing of this module: both build on ``arguments.py``).
Every setting flag takes exactly one value (``--syslog true``), as its environment variable does.
Options are never abbreviated (``--work 3`` is an error, not ``--workers 3``): every parser is an
:class:`ArgumentParser` from here. Errors print one line to stderr and exit with a documented
:class:`~servicehost.errors.ExitCode` (bad input: 2); ``debug`` also shows the traceback of a
target that fails to import.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from . import _startgc
from . import config as config_mod
from . import logs
from .arguments import _SHOWN, NAME_OR_TARGET, NAME_TARGET_OR_URL, NOTHING, TARGET, Command, Invocation, Namespace
from .arguments import is_target, is_url, name_problem, one_line
from .arguments import service_name
from .errors import ConfigError, ExitCode, ServiceHostError, UsageError
from .targets import class_target, load_target

if TYPE_CHECKING:
    import argparse

    from .argparser import ArgumentParser
    from .host import Host

log = logging.getLogger("servicehost.cli")
PROG = "servicehost"
_NEGATIVE_NUMBER = re.compile(r"-\d+$|-\d*\.\d+$")  # a value, not an option (as argparse decides)


# -- parsing ---------------------------------------------------------------------------------------
def _command_name(argv: Sequence[str]) -> str | None:
    """The command: the first word (only -h/--help/--version may come before it)."""
    return next((t for t in argv if t not in ("-h", "--help", "--version")), None)


def _word_positions(tokens: Sequence[str], flags: set[str]) -> list[int]:
    """Where the words (not options, not their values) are among a command's arguments, found as
    argparse will find them, before the target's own setting flags are known: every option takes
    one value except the ``flags``; ``--`` ends the options; ``-`` and negative numbers are words."""
    out: list[int] = []
    i = 0
    while i < len(tokens):
        token = tokens[i]
        if token == "--":
            return out + list(range(i + 1, len(tokens)))
        if token.startswith("-") and token != "-" and not _NEGATIVE_NUMBER.match(token):
            if "=" not in token and token not in flags:
                i += 1  # its value
        else:
            out.append(i)
        i += 1
    return out


def _find_target(tokens: Sequence[str], flags: set[str]) -> str | None:
    """The TARGET among a command's arguments: its first word (:func:`_word_positions`)."""
    words = _word_positions(tokens, flags)
    return tokens[words[0]] if words else None


def _service_before_code(argv: list[str], flags: set[str]) -> list[str]:
    """``control CODE NAME`` as ``control NAME CODE``: the code, a number, and the service may
    come in either order (``sc control NAME CODE``; the README's summary line reads CODE first)."""
    at = argv.index("control") + 1
    words = [at + i for i in _word_positions(argv[at:], flags)]
    first, second = (argv[w] for w in words) if len(words) == 2 else ("", "")
    if first.isascii() and first.isdigit() and not (second.isascii() and second.isdigit()):
        argv[words[0]], argv[words[1]] = argv[words[1]], argv[words[0]]
    return argv


def _parser(with_target: bool, chosen: str | None = None,
            alone: bool = False) -> tuple[ArgumentParser, argparse._ArgumentGroup | None]:
    """The parser, and the group the chosen command's setting flags go in (the host's are there;
    :func:`_add_settings` adds a service's). Only the ``chosen`` command gets its full set of
    options (the rest are listed by name), so that starting a service does not build every
    command's options. ``alone``: the command line starts with ``chosen``, so no help lists the
    other commands and argparse asks only its parser: the others get none (each parser costs
    about 0.2 ms, half of it argparse's gettext lookups)."""
    from .argparser import ArgumentParser, VersionAction

    parser = ArgumentParser(
        prog=PROG if with_target else Path(sys.argv[0]).name,
        description="Run a multithreaded background service in the foreground or under a service manager.",
        epilog="exit codes: " + ", ".join(f"{c.value} {c.name}" for c in ExitCode),
    )
    parser.add_argument("--version", action=VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    group = None
    table = commands(chosen)
    for cmd in table.values():
        if alone and cmd.name != chosen and chosen in table:
            continue
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name != chosen:
            continue
        parser.chosen = p  # type: ignore[attr-defined]
        if with_target and cmd.operand == NAME_TARGET_OR_URL:
            p.add_argument("target", metavar="NAME|TARGET|URL", help="an installed service's name, its "
                           "path/to/file.py[:Class] or package.module:Class (a word with .py, : or / is a TARGET), "
                           "or a store's URL (sqlite:////path/jobs.sqlite3, postgresql://...)")
        elif with_target and cmd.operand == NAME_OR_TARGET:
            p.add_argument("target", metavar="NAME|TARGET", help="an installed service's name, or its "
                           "path/to/file.py[:Class] or package.module:Class (a word with .py, : or / is a TARGET)")
        elif with_target and cmd.operand != NOTHING:
            p.add_argument("target", metavar="TARGET", help="path/to/file.py[:Class] or package.module:Class")
        p.add_argument("--config", metavar="FILE", help="TOML settings file (also $SERVICEHOST_CONFIG)")
        host_specs = config_mod.specs(config_mod.HostConfig)
        if cmd.settings is None:  # every setting; the service's own join them (parse)
            group = p.add_argument_group("settings (each also a TOML key and a SERVICEHOST_* variable)")
            _add_settings(group, host_specs)
        else:  # a verb on an installed service: the service has its settings already
            _add_settings(p.add_argument_group("settings (also a TOML key and a SERVICEHOST_* variable)"),
                          [spec for spec in host_specs if spec.name in cmd.settings])
        if cmd.add_arguments:
            cmd.add_arguments(p)
    return parser, group


def _add_settings(group: argparse._ArgumentGroup, specs: Sequence[config_mod.SettingSpec]) -> None:
    import argparse  # loaded: ``group`` is argparse's

    for spec in specs:
        try:
            group.add_argument(spec.flag, dest=f"setting_{spec.name}", metavar=spec.type.__name__.upper(),
                               help=f"{spec.doc} [{spec.expected}; default {config_mod.shown_default(spec)}]")
        except argparse.ArgumentError:
            raise UsageError(f"{spec.owner.__name__}.{spec.name}: its flag {spec.flag} is already a servicehost "
                             "option; rename the setting") from None


def _flags_without_value(parser: argparse.ArgumentParser) -> set[str]:
    actions = getattr(parser, "_option_string_actions", {})
    return {option for option, action in actions.items() if action.nargs == 0}


def _plain_run(argv: Sequence[str], with_target: bool) -> bool:
    """Whether ``argv`` is ``run [TARGET] --OPTION VALUE ...`` with nothing argparse could read
    another way: every option spelled out once (no ``=``, ``--``, help or version), every value
    free of a leading ``-``. What every service manager launches (the install wrote it)."""
    if not argv or argv[0] != "run":
        return False
    at = 2 if with_target else 1
    if with_target and (len(argv) < 2 or argv[1].startswith("-")):
        return False
    options, values = argv[at::2], argv[at + 1::2]
    return (len(options) == len(values) and len(set(options)) == len(options)
            and all(o.startswith("--") and len(o) > 2 and "=" not in o and o not in ("--help", "--version")
                    for o in options)
            and not any(v.startswith("-") for v in values))


def _read_plain_run(argv: Sequence[str], with_target: bool, settings_cls: type | None) -> Namespace | None:
    """The arguments of a :func:`_plain_run` line, as argparse would give them (the same names and
    defaults), read without building a parser; None when argparse must decide (an unknown option, a
    service setting whose flag is a servicehost option, a bad ``--name``: its one-line error)."""
    specs = config_mod.all_specs(settings_cls)
    dests = {spec.flag: f"setting_{spec.name}" for spec in specs}
    if len(dests) != len(specs) or {"--config", "--name", "--help", "--version"} & dests.keys():
        return None
    dests.update({"--config": "config", "--name": "name"})
    at = 2 if with_target else 1
    given = dict(zip(argv[at::2], argv[at + 1::2], strict=True))
    if not given.keys() <= dests.keys() or name_problem(given.get("--name", "x")):
        return None
    args = Namespace(version=None, command="run", **({"target": argv[1]} if with_target else {}),
                           **dict.fromkeys(dests.values()))
    for option, value in given.items():
        setattr(args, dests[option], value)
    return args


def parse(argv: Sequence[str], service_cls: type | None = None) -> Invocation:
    """Parse a command line into an Invocation (loads the target and the settings).

    ``run TARGET --OPTION VALUE ...`` as a service manager launches it (:func:`_plain_run`) is read
    without argparse, which a service's start then never loads; any other line, and any such line
    argparse must judge (its one-line errors), goes through the parser."""
    with_target = service_cls is None
    loaded: type | None = None  # the target, once loaded
    if _plain_run(argv, with_target):
        target = argv[1] if service_cls is None else class_target(service_cls)
        loaded = load_target(target) if service_cls is None else service_cls
        plain = _read_plain_run(argv, with_target, getattr(loaded, "Settings", None))
        if plain is not None:
            return _invocation(plain, loaded, target, "")
    args, service_cls, target, name, operand = _parse_args(argv, service_cls, loaded)
    assert service_cls is not None or name or operand in (NOTHING, NAME_TARGET_OR_URL)  # argparse requires the word
    return _invocation(args, service_cls, target, name)


def _parse_args(argv: Sequence[str], service_cls: type | None,
                loaded: type | None) -> tuple[Namespace, type | None, str, str, str]:
    """argparse's reading of ``argv``: the arguments, the service class, the TARGET (or the
    installed service's NAME) and the command's operand. ``loaded``: the target, already loaded."""
    with_target = service_cls is None
    command_name = _command_name(argv)
    parser, group = _parser(with_target, command_name, alone=bool(argv) and argv[0] == command_name)
    chosen = getattr(parser, "chosen", None)
    if with_target and chosen is not None and command_name == "control":
        argv = _service_before_code(list(argv), _flags_without_value(chosen))
    operand = commands(command_name)[command_name].operand if chosen is not None and command_name else NOTHING
    target = name = ""
    if with_target and chosen is not None and operand != NOTHING:
        rest = list(argv)
        rest.remove(command_name)  # type: ignore[arg-type]
        target = _find_target(rest, _flags_without_value(chosen)) or ""
        if target and operand == NAME_TARGET_OR_URL and is_url(target):
            pass  # a URL: the command opens it itself (Invocation.target)
        elif target and operand != TARGET and not is_target(target):
            name = target  # an installed service's name: the manager command finds what it runs
        elif target:
            service_cls = loaded or load_target(target)
    elif service_cls is not None:
        target = class_target(service_cls)
    settings_cls = getattr(service_cls, "Settings", None)
    if group is not None and settings_cls is not None:
        _add_settings(group, config_mod.all_specs(settings_cls)[len(config_mod.specs(config_mod.HostConfig)):])
    args = parser.parse_args(argv)
    if with_target and getattr(args, "target", "") != target:  # argparse read the words otherwise than _find_target
        raise UsageError(f"cannot tell the target from the options ({one_line(args.target[:_SHOWN])!r}?): "
                         f"give it right after the command: {PROG} {args.command} TARGET [--OPTION VALUE ...]")
    return args, service_cls, target, name, operand


def _invocation(args: Namespace, service_cls: type | None, target: str,
                name: str) -> Invocation:
    """The Invocation of parsed arguments: the settings loaded from every source."""
    settings_cls = getattr(service_cls, "Settings", None)
    cli_values = {k.removeprefix("setting_"): v for k, v in vars(args).items()
                  if k.startswith("setting_") and v is not None}
    if args.config == "":
        raise ConfigError("command line", "--config", "a TOML file", "an empty name (leave --config out for none)")
    config_file = args.config or os.environ.get("SERVICEHOST_CONFIG") or None  # an empty variable: none
    try:
        config_path = Path(config_file).absolute() if config_file else None
    except OSError as exc:  # the working directory is gone
        raise ConfigError("command line", "--config", "an absolute path", exc.strerror or exc) from None
    if getattr(args, "name", None):  # --name: the installed name names the default state dir
        service_name = args.name
    elif service_cls is not None:
        service_name = getattr(service_cls, "name", "") or service_cls.__name__
    else:
        service_name = name or PROG  # an installed service's name; list names none
    loaded = config_mod.load(
        service_name=service_name,
        service_settings=settings_cls,
        config_file=config_path, cli=cli_values,
    )
    return Invocation(args, service_cls, "" if name else target, loaded, config_path, cli_values, name)


# -- the core commands ------------------------------------------------------------------------------
def _run(inv: Invocation, *, debug: bool) -> ExitCode:
    from . import platforms
    from .host import Host

    hc = inv.loaded.host
    assert inv.service_cls is not None  # run and debug take a TARGET
    name = inv.args.name or getattr(inv.service_cls, "name", "") or inv.service_cls.__name__
    if debug:  # never a manager's child: no notifications, whatever --manager or the environment say
        platform, reason = platforms.load("foreground"), "debug runs in the foreground"
    else:
        platform, reason = platforms.detect(choice=hc.manager)
    log_file = None
    if not debug and hc.log_file.lower() != "none":
        log_file = Path(hc.log_file) if hc.log_file else config_mod.default_log_file(name, hc.state_dir, os.environ)
    # A platform whose manager reads stderr its own way (journald's priority prefixes) formats the
    # console from the first line on.
    console_formatter = getattr(platform, "console_formatter", None)
    try:
        logs.configure(level="DEBUG" if debug else hc.log_level, console=True, log_file=log_file, syslog=hc.syslog,
                       console_formatter=console_formatter(os.environ) if console_formatter else None)
    except OSError as exc:  # a log file that cannot be opened is a setting to fix, not a crash
        key = "syslog" if log_file is None else "log_file" if hc.log_file else "state_dir"
        found = f"{exc.strerror or exc}" + (f": {exc.filename}" if getattr(exc, "filename", None) else "")
        raise ConfigError("settings", key, "a log destination this user can write", found) from None
    logs.platform_chosen(log, platform.name, reason)
    logs.config_loaded(log, ", ".join(inv.loaded.sources))
    service = inv.service_cls(inv.loaded.service) if inv.loaded.service is not None else inv.service_cls()
    service.name = name  # the installed name (--name), else the class's: logs and the control channel use it
    logs.state_dir_used(log, name, hc.state_dir, inv.loaded.origins.get("state_dir", "default"))
    host = Host([service], hc)
    host.after_ready(_startgc.restore)  # the start's collections deferred: back to the usual once ready
    with _http_listener(host, hc):  # up before the start, down after the stop: probes see both
        code = platform.run(host, debug=debug)
    if host.report.forced:
        # Threads still running cannot be killed; do not let them hold the exit.
        logs.flush()
        os._exit(code)
    return code


def _http_listener(host: Host, hc: config_mod.HostConfig) -> AbstractContextManager[object]:
    """The HTTP listener (``ops/http.py``) when the ``http`` setting is given; imported only then."""
    if not hc.http:
        return nullcontext()
    from .ops.http import serving

    return serving(host, hc.http, hc.http_allowed_hosts)


def _cmd_run(inv: Invocation) -> ExitCode:
    return _run(inv, debug=False)


def _cmd_debug(inv: Invocation) -> ExitCode:
    return _run(inv, debug=True)


def _cmd_settings(inv: Invocation) -> ExitCode:
    """``name = value`` per setting (an empty one shows empty), and after ``#`` where it came from."""
    print(f"sources: {', '.join(inv.loaded.sources)}")
    rows = []
    for obj in (inv.loaded.host, inv.loaded.service):
        if obj is None:
            continue
        cls: type = type(obj)
        for spec in config_mod.specs(cls):
            value = config_mod.redact_urls(str(getattr(obj, spec.name)))  # a URL's password: ***
            shown = "" if value in ("", ".") and spec.type in (str, Path) else value
            rows.append((f"{spec.name} = {one_line(shown)}", inv.loaded.origins.get(spec.name, "default")))
    width = max((len(text) for text, _ in rows), default=0)
    for text, origin in rows:
        print(f"{text.ljust(width)}  # {one_line(origin)}")
    return ExitCode.OK



# -- entry points -----------------------------------------------------------------------------------
def run_cli(argv: Sequence[str] | None = None, service_cls: type | None = None) -> int:
    """Parse and run one command; return the exit code (never raises for input errors).

    An error is one line on stderr; ``debug`` first shows its detail (the traceback of a target
    that failed to import), which ``run`` keeps off the console a manager logs.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    _startgc.defer()  # until the service is ready (``_run``) or the command ends
    try:
        inv = parse(argv, service_cls)
        return int(commands(inv.args.command)[inv.args.command].handler(inv))
    except ServiceHostError as exc:
        # Whatever an error quotes (an operand, a setting, a store's URL), a URL's password is
        # never printed: each URL in it is shown redacted.
        if exc.detail and _command_name(argv) == "debug":
            print(config_mod.redact_urls(exc.detail), end="", file=sys.stderr)
        print(f"{PROG}: error: {one_line(config_mod.redact_urls(str(exc)))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.STOP_INCOMPLETE)
    finally:
        _startgc.restore()


def _name_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", type=service_name,
                   help="the installed service's name: this run uses its state dir and log file (default: the "
                   "class's name)")


#: The commands a service process runs: starting one never imports the manager commands.
CORE_COMMANDS: dict[str, Command] = {c.name: c for c in (
    Command("run", "run the service until it is stopped (what every service manager launches)", _cmd_run,
            _name_arg),
    Command("debug", "run in the foreground with DEBUG logs on the console and no manager notifications", _cmd_debug,
            _name_arg),
    Command("settings", "print every setting with its effective value and where it came from", _cmd_settings,
            _name_arg),
)}


def commands(chosen: str | None = None) -> dict[str, Command]:
    """Every command, by name: run/debug/settings here, the manager commands from ``manage.py``
    and ``jobs`` from ``intake/commands.py`` (imported only when one of them, or the list of all, is
    wanted). ``COMMANDS`` is this."""
    if chosen in CORE_COMMANDS:
        return CORE_COMMANDS
    from . import manage
    from .intake import commands as intake_commands

    return {**CORE_COMMANDS, **{c.name: c for c in (*manage.COMMANDS, *intake_commands.COMMANDS)}}


def __getattr__(name: str) -> object:
    if name == "COMMANDS":  # the whole table, for help and tests
        return commands()
    if name == "ArgumentParser":  # the parser class, imported on first use (argparser.py)
        from .argparser import ArgumentParser

        return ArgumentParser
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def main(service_cls: type | None = None, argv: Sequence[str] | None = None) -> NoReturn:
    """The console entry point, and ``servicehost.main(MyService)`` from a user's script."""
    code = run_cli(argv, service_cls)
    logs.flush()
    sys.exit(code)

