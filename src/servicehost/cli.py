"""The command line: the only code that prints or exits.

    servicehost COMMAND [TARGET] [--config FILE] [--SETTING VALUE ...]
    python my_service.py COMMAND [--SETTING VALUE ...]        # servicehost.main(MyService)

TARGET is ``path/to/file.py[:Class]`` or ``package.module:Class``. Commands are registered in
:data:`COMMANDS` (``@command``); the manager issues add install/start/stop/… the same way.
Every setting flag takes exactly one value (``--syslog true``), as its environment variable does.
Errors print one line to stderr and exit with a documented :class:`~servicehost.errors.ExitCode`.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import NoReturn

from . import config as config_mod
from . import logs
from .errors import ExitCode, ServiceHostError, UsageError

log = logging.getLogger("servicehost.cli")
PROG = "servicehost"


@dataclass
class Invocation:
    """What a command handler gets: parsed arguments, the service class, loaded settings."""

    args: argparse.Namespace
    service_cls: type
    target: str
    loaded: config_mod.Loaded
    config_file: Path | None
    cli_settings: dict[str, str]
    """The settings given as flags, raw (a manager's launch command repeats them)."""


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Callable[[Invocation], ExitCode]
    add_arguments: Callable[[argparse.ArgumentParser], None] | None = None


#: Every command, by name. Manager issues register theirs with ``@command``.
COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, add_arguments: Callable[[argparse.ArgumentParser], None] | None = None
            ) -> Callable[[Callable[[Invocation], ExitCode]], Callable[[Invocation], ExitCode]]:
    """Register ``handler`` as the command ``name``."""

    def register(handler: Callable[[Invocation], ExitCode]) -> Callable[[Invocation], ExitCode]:
        if name in COMMANDS:
            raise RuntimeError(f"command {name!r} registered twice")
        COMMANDS[name] = Command(name, help, handler, add_arguments)
        return handler

    return register


# -- targets ----------------------------------------------------------------------------------------
def service_classes(module: ModuleType) -> list[type]:
    """The Service subclasses a module defines (not ones it imports)."""
    from .service import Service

    return [
        obj for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, Service) and obj is not Service and obj.__module__ == module.__name__
    ]


def load_target(target: str) -> type:
    """Import ``file.py[:Class]`` or ``module:Class`` and return the service class."""
    from .service import Service

    drive = target[:2] if target[1:2] == ":" and target[2:3] in ("\\", "/") else ""  # C:\app\svc.py:Class
    where, _, cls_name = target[len(drive):].partition(":")
    where = drive + where
    if where.endswith(".py") or os.sep in where or "/" in where:
        path = Path(where)
        if not path.is_file():
            raise UsageError(f"target {target!r}: no such file {str(path)!r}")
        # Import it under its own name from its folder, so spawned worker processes can too.
        folder = str(path.resolve().parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        module_name = path.stem
        existing = sys.modules.get(module_name)
        if existing is not None and Path(getattr(existing, "__file__", "") or "").resolve() != path.resolve():
            raise UsageError(f"target {target!r}: its name {module_name!r} clashes with module {existing.__name__}; rename the file")
    else:
        module_name = where
        if not all(part.isidentifier() for part in module_name.split(".")):
            raise UsageError(f"target {target!r}: expected path/to/file.py[:Class] or package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageError(f"target {target!r}: no module named {exc.name!r} (is it installed, or on PYTHONPATH?)") from None
        raise
    if cls_name:
        cls = getattr(module, cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, Service)):
            found = ", ".join(c.__name__ for c in service_classes(module)) or "none"
            raise UsageError(f"target {target!r}: {cls_name!r} is not a Service subclass in {module_name} (services there: {found})")
        return cls
    found_classes = service_classes(module)
    if not found_classes:
        raise UsageError(f"target {target!r}: {module_name} defines no Service subclass")
    if len(found_classes) > 1:
        names = ", ".join(c.__name__ for c in found_classes)
        raise UsageError(f"target {target!r} defines several services ({names}); choose one: {where}:CLASS")
    return found_classes[0]


# -- parsing ----------------------------------------------------------------------------------------
def _split_target(argv: Sequence[str]) -> str | None:
    """The first positional token (every option takes one value, so this needs no parser)."""
    skip = False
    for token in argv:
        if skip:
            skip = False
        elif token in ("-h", "--help"):
            continue
        elif token.startswith("--"):
            skip = "=" not in token
        elif not token.startswith("-"):
            return token
    return None


class _Version(argparse.Action):
    """``--version``, looked up only when asked (package metadata is slow to read)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        parser.exit(0, f"{parser.prog} {_version()}\n")


def _parser(service_cls: type | None, with_target: bool, chosen: str | None = None) -> argparse.ArgumentParser:
    """The parser; only the ``chosen`` command gets its full set of options (the rest are
    listed by name), so that starting a service does not build every command's options."""
    parser = argparse.ArgumentParser(
        prog=PROG if with_target else Path(sys.argv[0]).name,
        description="Run a multithreaded background service in the foreground or under a service manager.",
        epilog="exit codes: " + ", ".join(f"{c.value} {c.name}" for c in ExitCode),
    )
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    settings_cls = getattr(service_cls, "Settings", None) if service_cls else None
    for cmd in COMMANDS.values():
        p = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        if cmd.name != chosen:
            continue
        if with_target:
            p.add_argument("target", metavar="TARGET", help="path/to/file.py[:Class] or package.module:Class")
        p.add_argument("--config", metavar="FILE", help="TOML settings file (also $SERVICEHOST_CONFIG)")
        group = p.add_argument_group("settings (each also a TOML key and a SERVICEHOST_* variable)")
        for spec in config_mod.all_specs(settings_cls):
            group.add_argument(spec.flag, dest=f"setting_{spec.name}", metavar=spec.type.__name__.upper(),
                               help=f"{spec.doc} [{spec.expected}; default {spec.default!s}]")
        if cmd.add_arguments:
            cmd.add_arguments(p)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("servicehost")
    except PackageNotFoundError:
        return "unknown"


def parse(argv: Sequence[str], service_cls: type | None = None) -> Invocation:
    """Parse a command line into an Invocation (loads the target and the settings)."""
    with_target = service_cls is None
    target = ""
    command_name = _split_target(argv)
    if with_target:
        rest = list(argv)
        if command_name in COMMANDS:
            rest.remove(command_name)
            target = _split_target(rest) or ""
        if target:
            service_cls = load_target(target)
    else:
        target = f"{service_cls.__module__}:{service_cls.__qualname__}"  # type: ignore[union-attr]
    args = _parser(service_cls, with_target, command_name).parse_args(argv)
    assert service_cls is not None
    cli_values = {k.removeprefix("setting_"): v for k, v in vars(args).items()
                  if k.startswith("setting_") and v is not None}
    config_file = args.config or os.environ.get("SERVICEHOST_CONFIG") or None
    config_path = Path(config_file).absolute() if config_file else None
    loaded = config_mod.load(
        service_name=getattr(service_cls, "name", "") or service_cls.__name__,
        service_settings=getattr(service_cls, "Settings", None),
        config_file=config_path, cli=cli_values,
    )
    return Invocation(args, service_cls, target, loaded, config_path, cli_values)


# -- the core commands ------------------------------------------------------------------------------
def _run(inv: Invocation, *, debug: bool) -> ExitCode:
    from . import platforms
    from .host import Host

    hc = inv.loaded.host
    name = getattr(inv.service_cls, "name", "") or inv.service_cls.__name__
    log_file = None
    if not debug and hc.log_file.lower() != "none":
        log_file = Path(hc.log_file) if hc.log_file else hc.state_dir / "logs" / f"{name}.log"
    logs.configure(level="DEBUG" if debug else hc.log_level, console=True, log_file=log_file, syslog=hc.syslog)
    logs.config_loaded(log, ", ".join(inv.loaded.sources))
    platform, reason = platforms.detect(choice="foreground" if debug else hc.manager)
    logs.platform_chosen(log, platform.name, reason)
    service = inv.service_cls(inv.loaded.service) if inv.loaded.service is not None else inv.service_cls()
    host = Host([service], hc)
    code = platform.run(host, debug=debug)
    if host.report.forced:
        # Threads still running cannot be killed; do not let them hold the exit.
        logs.flush()
        os._exit(code)
    return code


@command("run", "run the service until it is stopped (what every service manager launches)")
def _cmd_run(inv: Invocation) -> ExitCode:
    return _run(inv, debug=False)


@command("debug", "run in the foreground with DEBUG logs on the console and no manager notifications")
def _cmd_debug(inv: Invocation) -> ExitCode:
    return _run(inv, debug=True)


@command("settings", "print every setting with its effective value and where values came from")
def _cmd_settings(inv: Invocation) -> ExitCode:
    print(f"sources: {', '.join(inv.loaded.sources)}")
    for obj in (inv.loaded.host, inv.loaded.service):
        if obj is None:
            continue
        for spec in config_mod.specs(type(obj)):
            print(f"{spec.name} = {getattr(obj, spec.name)!s}")
    return ExitCode.OK


def one_line(text: str) -> str:
    """Escape control characters, so an error is always one line whatever the input held."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


# -- entry points -----------------------------------------------------------------------------------
def run_cli(argv: Sequence[str] | None = None, service_cls: type | None = None) -> int:
    """Parse and run one command; return the exit code (never raises for input errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        inv = parse(argv, service_cls)
        return int(COMMANDS[inv.args.command].handler(inv))
    except ServiceHostError as exc:
        print(f"{PROG}: error: {one_line(str(exc))}", file=sys.stderr)
        return int(exc.exit_code)
    except KeyboardInterrupt:
        return int(ExitCode.STOP_INCOMPLETE)


def main(service_cls: type | None = None, argv: Sequence[str] | None = None) -> NoReturn:
    """The console entry point, and ``servicehost.main(MyService)`` from a user's script."""
    code = run_cli(argv, service_cls)
    logs.flush()
    sys.exit(code)

from . import manage  # noqa: E402,F401  registers install/start/stop/... (manager commands)
