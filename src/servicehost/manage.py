"""Manager commands: install, update, remove, start, stop, restart, status, pause, continue,
drain, resume, control, reload — one set for every service manager, each a thin call on the chosen platform's
:class:`~servicehost.platforms.base.Manager`. Listed in :data:`COMMANDS`, which ``cli.py`` joins to its own.

The manager is chosen by ``--manager`` (a setting) or detected for installing: Windows → the SCM;
Linux with systemd as PID 1 → systemd; otherwise supervisord (see ``servicehost managers``).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

from . import platforms
from .arguments import NAME_OR_TARGET, NOTHING, Command, Invocation, choice, number, path, service_name, text
from .errors import ExitCode, PlatformUnavailable, ServiceHostError, UsageError
from .platforms.base import (
    START_MODES,
    SECRET_MARK,
    STATUS_SCHEMA,
    InstallOptions,
    Manager,
    ServiceStatus,
    launch_command,
    refusals,
)


def _wait_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--wait", type=number(float, min=0, max=86400), metavar="SECONDS", default=None,
                   help="wait up to SECONDS for the service to reach the new state (default: the manager's)")


def _env_pair(text: str) -> tuple[str, str]:
    """``--env KEY=VALUE`` → (KEY, VALUE); an error names the key only (the value may be a secret)."""
    key, sep, value = text.partition("=")
    if not sep or not key or key != key.strip():
        shown = repr(key[:40]) if sep else "a word without '='"
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE with a non-empty KEY, found {shown}")
    return key, value


class _RefusedPassword(argparse.Action):
    """``--password VALUE`` (pywin32's spelling), refused with the reason and the way to do it;
    the value is never repeated."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        # one value, as every valued option (its absence: "expected one argument", as theirs)
        super().__init__(option_strings, dest, default=None, help=kwargs.get("help"),  # type: ignore[arg-type]
                         metavar=kwargs.get("metavar"))  # type: ignore[arg-type]

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        raise UsageError("--password: a password is never taken from the command line, where every user of this "
                         "machine can read it (ps, /proc, the shell's history); pipe it to --password-stdin, or "
                         "leave both out to be asked for it")


def _install_args(p: argparse.ArgumentParser, *, update: bool = False) -> None:
    """The install options. For ``update`` none has a default: only those given change (``record.py``)."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if update else value

    g = p.add_argument_group(
        "options to change (only those given change; the others keep their installed values)" if update else
        "install options (one set for every manager; refused where a manager has no equivalent)")
    g.add_argument("--name", type=service_name, help="service name (default: the class's name)")
    g.add_argument("--display-name", type=text, default=default(""), help="display name (Windows)")
    g.add_argument("--description", type=text, default=default(None), help="one-line description (default: the class's)")
    g.add_argument("--start", dest="start_mode", type=choice(START_MODES), choices=START_MODES,
                   default=default("auto"), help="start mode")
    g.add_argument("--startup", dest="start_mode", type=choice(START_MODES), choices=START_MODES,
                   default=argparse.SUPPRESS, help="the same as --start (pywin32's spelling)")
    g.add_argument("--depends", action="append", default=default([]), type=_dependency if update else service_name,
                   metavar="SERVICE", help="a service that must run first (repeatable)"
                   + ('; update replaces the list, --depends "" clears it' if update else ""))
    g.add_argument("--username", type=text, default=default(""), help="account to run as (default: the least-privileged account the manager offers)")
    g.add_argument("--password-stdin", action="store_true",
                   help="read the account's password from stdin (never give it on the command line)")
    g.add_argument("--password", action=_RefusedPassword, metavar="VALUE",
                   help="refused: a password is never taken from the command line (use --password-stdin, or "
                   "the prompt)")
    g.add_argument("--env", action="append", default=default([]), type=_env_pair, metavar="KEY=VALUE",
                   help="environment variable (repeatable); KEY=@/path/to/file: a secret, read by the "
                   "service from the file named by $KEY_FILE (never in the manager's config); @@ for a literal @"
                   + ("; update sets only the KEYs given, and KEY= (empty) removes KEY" if update else ""))
    g.add_argument("--workdir", type=path, default=default(""), help="working directory of the service")
    g.add_argument("--restart", action=argparse.BooleanOptionalAction, default=default(True),
                   help="restart after a failure exit (--no-restart: never)")
    g.add_argument("--restart-delay", type=number(float, min=0, max=86400), default=default(5.0), metavar="SECONDS",
                   help="delay before a restart")
    g.add_argument("--watchdog", type=number(float, min=0, max=86400), default=default(0.0), metavar="SECONDS",
                   help="restart when workers stop heartbeating for SECONDS (0: off)")


def _update_args(p: argparse.ArgumentParser) -> None:
    _install_args(p, update=True)


def _dependency(value: str) -> str:
    """``update --depends``: a service name, or "" (clears the dependencies)."""
    return value if value == "" else service_name(value)


def _install_manager(inv: Invocation) -> Manager:
    """The manager to install into: ``--manager``, else the one detected for installing."""
    from . import logs

    logs.configure(level="INFO", console=True)  # what the manager code logs is for the admin
    platform, _ = platforms.detect_for_install(choice=inv.loaded.host.manager)
    return platform.manager()


def _manager(inv: Invocation) -> Manager:
    """The manager of the installed service: ``--manager``, else the one it is installed under
    (:func:`where_installed`)."""
    if inv.loaded.host.manager != "auto":
        return _install_manager(inv)
    from . import logs

    logs.configure(level="INFO", console=True)  # what the manager code logs is for the admin
    return where_installed(_service_name(inv))


def where_installed(name: str) -> Manager:
    """The manager a service called ``name`` is installed under, looked up in every manager whose
    services may be on this machine (``platforms.managers_here``). Installed under none: the
    manager detected for installing (its answer says it is not installed). Under several:
    UsageError naming them (choose one with ``--manager``)."""
    holders: list[Manager] = []
    unasked: list[tuple[str, ServiceHostError]] = []
    for platform in platforms.managers_here():
        try:
            manager = platform.manager()
            if manager.is_installed(name):
                holders.append(manager)
        except ServiceHostError as exc:  # cannot be asked here: it holds nothing we could act on
            unasked.append((platform.name, exc))
    if len(holders) > 1:
        where = " and ".join(m.name for m in holders)
        choices = " or ".join(f"--manager {m.name}" for m in holders)
        raise UsageError(f"{name} is installed under {where}: say which one with {choices}")
    if holders:
        return holders[0]
    platform, _ = platforms.detect_for_install()
    for where, error in unasked:  # not found: say where it could not be looked for (the default says its own)
        if where != platform.name:
            print(f"servicehost: warning: {name} was not looked up under {where}: {error}", file=sys.stderr)
    return platform.manager()


def _service_name(inv: Invocation) -> str:
    """The installed service's name: the NAME given, else ``--name``, else the TARGET class's."""
    name: str | None = getattr(inv.args, "name", None)  # --name, checked while parsing: never empty
    if inv.name:
        if name is not None and name != inv.name:
            raise UsageError(f"two names given: {inv.name} and --name {name}; give one")
        return inv.name
    if name is not None:
        return name
    assert inv.service_cls is not None  # a command takes a NAME, else a TARGET (or --name)
    return str(getattr(inv.service_cls, "name", "") or inv.service_cls.__name__)


def install_options(inv: Invocation) -> InstallOptions:
    a = inv.args
    env = list(a.env)  # (KEY, VALUE) pairs, checked while parsing
    return InstallOptions(
        name=_service_name(inv),
        display_name=a.display_name,
        description=a.description if a.description is not None else getattr(inv.service_cls, "description", ""),
        start_mode=a.start_mode,
        dependencies=tuple(a.depends),
        account=a.username,
        environment=tuple(env),
        working_directory=a.workdir,
        stop_timeout=inv.loaded.host.shutdown_timeout,
        restart=a.restart,
        restart_delay=a.restart_delay,
        watchdog=a.watchdog,
        config_file=str(inv.config_file or ""),
        state_dir=str(inv.loaded.host.state_dir),
    )


def _launch(inv: Invocation) -> list[str]:
    argv = launch_command(inv.target, config_file=str(inv.config_file or ""),
                          state_dir=str(inv.loaded.host.state_dir))
    argv += ["--name", _service_name(inv)]  # the service knows its installed name: its log file, its log lines
    settings = dict(inv.cli_settings)
    watchdog = getattr(inv.args, "watchdog", 0.0)
    if watchdog:  # one hang policy: a worker silent for longer than the watchdog restarts the service
        settings.update(hang_timeout=f"{watchdog:g}", hang_policy="restart")
    for name, value in sorted(settings.items()):
        if name not in ("state_dir", "manager"):
            argv += ["--" + name.replace("_", "-"), value]
    return argv


def _checked(inv: Invocation, manager: Manager) -> InstallOptions:
    options = install_options(inv)
    refused = refusals(options, manager.name)
    if refused:
        raise UsageError(f"{manager.name} cannot honour: " + "; ".join(refused))
    return options


def _no_url_password(command: Sequence[str], environment: Sequence[tuple[str, str]]) -> None:
    """Refuse a URL holding a password (``--store postgresql://u:pw@h/db``) in what a manager
    keeps and shows: the service's command line (every local user reads it: ps, /proc, the unit,
    the registry) and its plain environment. The error shows the URL redacted, and the way to do it."""
    from .config import holds_url_secret, redact_urls

    for flag, value in zip(command, command[1:]):
        if flag.startswith("--") and holds_url_secret(value):
            raise UsageError(
                f"{flag} {redact_urls(value)}: a password in the URL would be in the service's command line, which "
                "every local user can read (ps, its manager's config); leave it out of the URL and give it as a file "
                "only the service's account reads: for PostgreSQL, --env PGPASSFILE=/path/to/pgpass (libpq reads "
                "it), or keep the URL in the --config file")
    for key, value in environment:
        literal = not value.startswith(SECRET_MARK) or value.startswith(SECRET_MARK * 2)  # @@: a plain @text
        if literal and holds_url_secret(value):
            raise UsageError(
                f"--env {key}={redact_urls(value)}: a password in the URL would be in the service's environment, "
                f"which its manager shows; give the value as a secret file instead: --env {key}=@/path/to/file "
                f"(the service reads it from the file named by ${key}_FILE)")


def _cmd_install(inv: Invocation) -> ExitCode:
    command = _launch(inv)
    _no_url_password(command, getattr(inv.args, "env", ()))  # bad input under any manager: before choosing one
    manager = _install_manager(inv)
    options = _checked(inv, manager)
    manager.install(options, command)
    print(f"installed {options.name} under {manager.name}")
    return ExitCode.OK


#: ``update``'s options (argparse dests) → the InstallOptions field each changes.
_UPDATED = {"display_name": "display_name", "description": "description", "start_mode": "start_mode",
            "depends": "dependencies", "username": "account", "workdir": "working_directory",
            "restart": "restart", "restart_delay": "restart_delay", "watchdog": "watchdog"}


def _cmd_update(inv: Invocation) -> ExitCode:
    """Change only what is given (as ``sc config`` does) and say what changed: the recorded
    install (``Manager.record``) with the given options laid over it (``record.updated``)."""
    from .platforms.record import InstallRecord, updated

    manager = _manager(inv)
    name = _service_name(inv)
    recorded = manager.record(name)  # UsageError when it is not installed there
    if recorded is None:  # installed by an older servicehost, which recorded nothing: start from the TARGET
        if inv.service_cls is None:
            raise UsageError(f"{name} was installed by an older servicehost, which kept no record of its options: "
                             f"give its TARGET once, with every option it needs: servicehost update TARGET "
                             f"--name {name} [OPTIONS]")
        base = InstallRecord(_target_defaults(inv, name), tuple(_launch(inv)))  # as install writes it
    else:
        base = recorded
    given = {field: getattr(inv.args, dest) for dest, field in _UPDATED.items() if hasattr(inv.args, dest)}
    if "dependencies" in given:
        given["dependencies"] = tuple(d for d in given["dependencies"] if d)
    if inv.args.config:  # given on this command line (not $SERVICEHOST_CONFIG of this shell)
        given["config_file"] = str(inv.config_file)
    new, changes = updated(base, options=given, environment=getattr(inv.args, "env", ()),
                           settings=inv.cli_settings, target=inv.target if inv.service_cls is not None else "")
    refused = refusals(new.options, manager.name)
    if refused:
        raise UsageError(f"{manager.name} cannot honour: " + "; ".join(refused))
    _no_url_password(new.command, new.options.environment)
    manager.update(new.options, list(new.command))
    for change in changes:
        print(change.line())
    said = "; restart it to apply" if changes else ": nothing given changed (rewritten as recorded)"
    print(f"updated {name} under {manager.name}{said}")
    return ExitCode.OK


def _target_defaults(inv: Invocation, name: str) -> InstallOptions:
    """The install options of a TARGET with every option at its default (what an install of an
    older servicehost is taken to have had, before ``update`` lays the given ones over it)."""
    return InstallOptions(
        name=name, description=getattr(inv.service_cls, "description", ""),
        stop_timeout=inv.loaded.host.shutdown_timeout, config_file=str(inv.config_file or ""),
        state_dir=str(inv.loaded.host.state_dir))


def _list_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true",
                   help="print one JSON list of {name, manager, state, target, command} (command: what the manager runs)")


def _cmd_list(inv: Invocation) -> ExitCode:
    """Every service servicehost installed on this machine, under every manager whose services may
    be here (or only ``--manager``'s), with its state and what it runs."""
    from . import logs

    logs.configure(level="INFO", console=True)
    chosen = inv.loaded.host.manager
    if chosen != "auto":
        looked = [platforms.load(chosen)]
    else:
        looked = platforms.managers_here()
    rows: list[dict[str, Any]] = []
    for platform in looked:
        try:
            manager = platform.manager()
            names = manager.installed()
        except ServiceHostError as exc:
            print(f"servicehost: warning: cannot list the services of {platform.name}: {exc}", file=sys.stderr)
            continue
        for name in names:
            rows.append(_listed(manager, name))
    if inv.args.json:
        print(json.dumps(rows, indent=2))
    elif not rows:
        print(f"no servicehost service is installed here (looked under: "
              f"{', '.join(p.name for p in looked) or 'no manager'})")
    else:
        table = [{"name": "NAME", "manager": "MANAGER", "state": "STATE", "target": "TARGET"}, *rows]
        widths = {key: max(len(row[key]) for row in table) for key in ("name", "manager", "state")}
        for row in table:
            print("  ".join(row[key].ljust(widths[key]) for key in ("name", "manager", "state")) + "  " + row["target"])
    return ExitCode.OK


def _listed(manager: Manager, name: str) -> dict[str, Any]:
    """One row of ``list``: what the manager says now; a part it cannot tell is ``unknown``."""
    command: list[str] = []
    try:
        recorded = manager.record(name)
        target = recorded.target if recorded is not None else "(not recorded: installed by an older servicehost)"
        command = list(recorded.command) if recorded is not None else []
    except ServiceHostError as exc:
        target = f"(unreadable: {exc})"
    try:
        state = manager.status(name).state
    except ServiceHostError:
        state = "unknown"
    return {"name": name, "manager": manager.name, "state": state, "target": target, "command": command}


def _remove_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", type=service_name, help="service name (default: the class's name)")
    p.add_argument("--purge", action="store_true", help="also delete its state and logs")


def _cmd_remove(inv: Invocation) -> ExitCode:
    manager = _manager(inv)
    manager.remove(_service_name(inv), purge=inv.args.purge)
    print(f"removed {_service_name(inv)} from {manager.name}")
    return ExitCode.OK


def _name_wait(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", type=service_name, help="service name (default: the class's name)")
    _wait_arg(p)


def _start_args(p: argparse.ArgumentParser) -> None:
    _name_wait(p)
    p.add_argument("--arg", dest="start_args", action="append", default=[], type=text, metavar="ARG",
                   help="a start argument passed to the service (Windows; repeatable)")


def _cmd_start(inv: Invocation) -> ExitCode:
    _manager(inv).start(_service_name(inv), args=inv.args.start_args, wait=inv.args.wait)
    return ExitCode.OK


def _cmd_stop(inv: Invocation) -> ExitCode:
    _manager(inv).stop(_service_name(inv), wait=inv.args.wait)
    return ExitCode.OK


def _cmd_restart(inv: Invocation) -> ExitCode:
    _manager(inv).restart(_service_name(inv), wait=inv.args.wait)
    return ExitCode.OK


def _name_only(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name", type=service_name, help="service name (default: the class's name)")


#: Seconds between two screens of ``status --watch`` unless ``--interval`` says otherwise.
WATCH_INTERVAL = 2.0


def _status_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("--json", action="store_true",
                   help=f"print one JSON document (schema {STATUS_SCHEMA}: see the README) instead of lines")
    p.add_argument("--watch", action="store_true",
                   help="show it again every --interval seconds until Ctrl-C (with --json: one document a line)")
    p.add_argument("--interval", type=number(float, min=0.1, max=86400), default=WATCH_INTERVAL, metavar="SECONDS",
                   help=f"seconds between two screens of --watch (default {WATCH_INTERVAL:g})")


def _cmd_status(inv: Invocation) -> int:
    """Exit 0 running (or on its way: starting, pausing, paused, resuming, draining, stopping), 3
    not running (stopped, failed, restarting), 4 not installed or unknown: ``StatusCode``, as LSB
    and ``systemctl status``. A name no manager has but that answers on its control channel (a
    ``servicehost run`` in a terminal) is running. ``--watch``: the last screen's code."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:  # a service's words (its last error) may hold what the console's code page lacks
        reconfigure(errors="backslashreplace")
    name = _service_name(inv)
    manager: Manager | None = None
    unavailable = ""
    try:
        manager = _manager(inv)
    except PlatformUnavailable as exc:  # no manager can be asked here: a foreground run may still answer
        unavailable = str(exc)
    if not inv.args.watch:
        status = _status_of(name, manager, inv, unavailable)
        print(json.dumps(status.as_json(), indent=2) if inv.args.json else "\n".join(status.lines()))
        return int(status.code)
    return _watch(lambda: _status_of(name, manager, inv, unavailable), inv.args.json, inv.args.interval)


def _status_of(name: str, manager: Manager | None, inv: Invocation, unavailable: str = "") -> ServiceStatus:
    """``name``'s status from its manager, else (not installed, or no manager) from its own
    control channel when a run in a terminal answers by that name."""
    from .platforms.control_client import foreground_status

    try:
        if manager is None:
            raise PlatformUnavailable(unavailable or "no manager can be asked here")
        status = manager.status(name)
    except PlatformUnavailable as exc:  # the manager cannot tell: LSB's "unknown", said as such
        status = ServiceStatus(name, manager.name if manager else str(inv.loaded.host.manager), "unknown",
                               detail={"error": str(exc)})
    if status.state == "not-installed" or manager is None:
        status = foreground_status(name) or status
    return status


def _watch(read: Any, as_json: bool, interval: float) -> int:
    """``status --watch``: a screen (on a terminal: the screen cleared first, as ``watch`` does)
    or a JSON line every ``interval`` seconds until Ctrl-C; the last one's exit code."""
    import threading
    import time

    clear = sys.stdout.isatty() and not as_json
    tick = threading.Event()  # never set: its wait is the pause between two screens
    code = 0
    try:
        while True:
            status = read()
            code = int(status.code)
            if as_json:
                print(json.dumps(status.as_json(), separators=(",", ":")), flush=True)
            else:
                head = f"every {interval:g}s: {time.strftime('%Y-%m-%d %H:%M:%S')} (Ctrl-C ends)"
                print(("\x1b[H\x1b[2J" if clear else "") + "\n".join([head, "", *status.lines()]) + "\n",
                      flush=True)
            tick.wait(interval)
    except KeyboardInterrupt:  # how watching ends
        return code


def _cmd_pause(inv: Invocation) -> ExitCode:
    _manager(inv).pause(_service_name(inv))
    return ExitCode.OK


def _cmd_continue(inv: Invocation) -> ExitCode:
    _manager(inv).resume(_service_name(inv))
    return ExitCode.OK


def ask_running(inv: Invocation, command: str, *, timeout: float | None = None, **args: Any) -> Any:
    """Run ``command`` (``control.COMMANDS``) in the running service on its control channel: through
    the manager it is installed under (``Manager.ask``), else the run in a terminal that answers by
    its name. Its result; ControlChannelError (exit 2) when it cannot be asked, or refuses."""
    from .platforms.control import ControlUnavailable, socket_path
    from .platforms.control_client import ControlClient

    name = _service_name(inv)
    manager = _manager(inv)
    if manager.is_installed(name):
        ask = getattr(manager, "ask", None)
        if ask is None:
            raise PlatformUnavailable(f"{command}: {manager.name} has no control channel to carry it")
        return ask(name, command, timeout=timeout, **args)
    try:
        client = ControlClient(socket_path(name)) if timeout is None else ControlClient(socket_path(name), timeout=timeout)
        return client.call(command, **args)
    except ControlUnavailable:
        raise ControlUnavailable(f"{command}: {name} is not installed under {manager.name}, and no run in a terminal "
                                 "answers by that name (see: servicehost status)") from None


def _drain_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("--wait", type=number(float, min=0, max=86400), metavar="SECONDS", default=0.0,
                   help="then wait up to SECONDS until nothing is queued or running (exit 4 if work is left)")


def _cmd_drain(inv: Invocation) -> ExitCode:
    """Hold intake (producers wait, timers skip) while queued and running work finishes; the
    service keeps running for its manager. ``resume`` takes work again."""
    wait = inv.args.wait
    answer = ask_running(inv, "drain", wait=wait, **({"timeout": wait + 10.0} if wait else {}))
    name = _service_name(inv)
    left = f"{answer.get('queued', '?')} queued, {answer.get('running', '?')} running"
    if answer.get("drained"):
        print(f"{name}: drained, nothing queued or running; intake held until: servicehost resume {name}")
        return ExitCode.OK
    if wait:
        print(f"{name}: still draining after {wait:g}s ({left}); intake held until: servicehost resume {name}")
        return ExitCode.STOP_INCOMPLETE
    print(f"{name}: draining ({left}); intake held until: servicehost resume {name}")
    return ExitCode.OK


def _cmd_resume(inv: Invocation) -> ExitCode:
    """From a drain or a pause, back to running (``continue`` is the SCM's word for a pause)."""
    ask_running(inv, "resume")
    print(f"{_service_name(inv)}: running")
    return ExitCode.OK


def _control_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("code", type=number(int, min=128, max=255), metavar="CODE", help="custom control code, 128-255")


def _cmd_control(inv: Invocation) -> ExitCode:
    code = inv.args.code
    if not 128 <= code <= 255:
        raise UsageError(f"control code {code}: expected 128-255 (the range Windows allows for custom codes)")
    _manager(inv).control(_service_name(inv), code)
    return ExitCode.OK


def _cmd_reload(inv: Invocation) -> ExitCode:
    _manager(inv).reload(_service_name(inv))
    return ExitCode.OK


def _threads_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("--json", action="store_true", help="print the control channel's answer as JSON")


def _cmd_threads(inv: Invocation) -> ExitCode:
    """Every thread of the running service, by name, with its stack (innermost call last)."""
    from .ops.threads import format_threads

    dump = ask_running(inv, "threads")
    print(json.dumps(dump, indent=2) if inv.args.json else "\n".join(format_threads(dump)))
    return ExitCode.OK


_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h``, ``1d`` → seconds (argparse type)."""
    import re

    match = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([smhd]?)\s*", text.lower())
    if match is None or not float(match[1]) > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration: a number of seconds, or with s, m, h or d "
                                         "(90s, 10m, 1h)")
    return float(match[1]) * _UNITS[match[2]]


def _loglevel_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("logger", metavar="LOGGER", help="the logger's name (root: the root logger)")
    p.add_argument("level", metavar="LEVEL", type=str.upper,
                   choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", "NOTSET"),
                   help="DEBUG, INFO, WARNING, ERROR, CRITICAL, or NOTSET (inherit its parent's)")
    p.add_argument("--for", dest="for_", type=duration, default=None, metavar="DURATION",
                   help="then back to its level before, by itself (90s, 10m, 1h; at most 7d)")


def _cmd_loglevel(inv: Invocation) -> ExitCode:
    """Set a logger's level in the running service, for a while or until changed again."""
    import time

    args = inv.args
    answer = ask_running(inv, "loglevel", logger=args.logger, level=args.level,
                         **({"for": args.for_} if args.for_ is not None else {}))
    line = f"{_service_name(inv)}: logger {answer.get('logger')} now {answer.get('level')} (was {answer.get('was')})"
    until = answer.get("reverts_at")
    if isinstance(until, (int, float)):
        line += (f"; back to {answer.get('reverts_to')} by itself at "
                 f"{time.strftime('%H:%M:%S', time.localtime(until))} (in {args.for_:g}s)")
    else:
        line += "; until changed again"
    print(line)
    if answer.get("existed") is False:
        print(f"note: no code in the service had asked for logger {answer.get('logger')} yet: check its name",
              file=sys.stderr)
    return ExitCode.OK


def _logs_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("--bytes", type=number(int, min=1, max=1 << 30), default=16384, metavar="N",
                   help="how much of the end of the log to show")
    p.add_argument("-n", "--lines", type=number(int, min=1, max=1 << 20), default=None, metavar="LINES",
                   help="show the last LINES lines (as tail -n, journalctl -n)")
    p.add_argument("-f", "--follow", action="store_true",
                   help="then keep showing new lines until Ctrl-C (as tail -f, journalctl -f)")


#: Bytes asked of a manager per line wanted by ``logs -n LINES`` (lines are cut from its answer).
_BYTES_PER_LINE = 1024


def _cmd_logs(inv: Invocation) -> ExitCode:
    manager, lines = _manager(inv), inv.args.lines
    if inv.args.follow:
        import subprocess

        follow = manager.follow_logs(_service_name(inv), 10 if lines is None else lines)
        try:  # the manager's own follower (journalctl -f, tail -F) writes to this terminal
            subprocess.run(follow, check=False, stdin=subprocess.DEVNULL)
        except KeyboardInterrupt:  # how following ends
            pass
        return ExitCode.OK
    size = inv.args.bytes if lines is None else min(1 << 30, lines * _BYTES_PER_LINE)
    text = manager.logs(_service_name(inv), size).replace("\r\n", "\n")  # a Windows log file's line ends
    if lines is not None:
        kept = text.split("\n")
        if kept[-1] == "":  # the last line's end
            kept.pop()
        text = "".join(line + "\n" for line in kept[-lines:])
    print(text, end="")
    return ExitCode.OK


def _cmd_managers(inv: Invocation) -> ExitCode:
    run_platform, run_reason = platforms.detect()
    print(f"running under:  {run_platform.name} ({run_reason})")
    try:
        platform, reason = platforms.detect_for_install(choice=inv.loaded.host.manager)
        print(f"installing into: {platform.name} ({reason})")
    except ServiceHostError as exc:
        print(f"installing into: none ({exc})")
    for name in platforms.PLATFORMS:
        print(f"  known: {name}")
    return ExitCode.OK


#: The settings a verb on an installed service takes: only which manager (the service loads its own).
ON_INSTALLED = ("manager",)

#: The manager commands, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("install", "install the service into the service manager (then start it with: start)", _cmd_install, _install_args),
    Command("update", "change only the options given (the others keep their installed values) and say what "
            "changed; the service is not restarted", _cmd_update, _update_args,
            operand=NAME_OR_TARGET),
    Command("remove", "stop and uninstall the service (its data is kept unless --purge)", _cmd_remove, _remove_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("start", "start the installed service", _cmd_start, _start_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("stop", "stop the installed service (dependents first)", _cmd_stop, _name_wait,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("restart", "stop, then start the installed service", _cmd_restart, _name_wait,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("status", "show state and since when, pid, version, restarts, last exit and, from the running "
            "service, each component's busy workers, queue, done, failed, run times and the last error (the same "
            "on every manager); exit 0 running, 3 not running, 4 not installed or unknown", _cmd_status, _status_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("pause", "pause the running service", _cmd_pause, _name_only,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("continue", "continue a paused service", _cmd_continue, _name_only,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("drain", "hold intake (producers wait, timers skip) and let queued and running work finish; the "
            "service keeps running for its manager until: resume", _cmd_drain, _drain_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("resume", "take work again after a drain (or a pause)", _cmd_resume, _name_only,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("control", "send a custom control code (128-255) to the running service", _cmd_control, _control_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("reload", "ask the running service to reload (SIGHUP / PARAMCHANGE)", _cmd_reload, _name_only,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("threads", "show every thread of the running service by name, with its stack (read through its "
            "control channel; SIGUSR2 makes the service write the same to stderr)", _cmd_threads, _threads_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("loglevel", "set a logger's level in the running service: LOGGER LEVEL [--for DURATION] (then back "
            "by itself)", _cmd_loglevel, _loglevel_args, settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("logs", "show the end of the installed service's log, as its manager keeps it", _cmd_logs, _logs_args,
            settings=ON_INSTALLED, operand=NAME_OR_TARGET),
    Command("list", "list every service servicehost installed on this machine (every manager), with its state",
            _cmd_list, _list_args, settings=ON_INSTALLED, operand=NOTHING),
    Command("managers", "say which service manager was detected (for running and for installing) and why", _cmd_managers,
            settings=ON_INSTALLED),
)
