"""Manager commands: install, update, remove, start, stop, restart, status, pause, continue,
control, reload — one set for every service manager, each a thin call on the chosen platform's
:class:`~servicehost.platforms.base.Manager`. Listed in :data:`COMMANDS`, which ``cli.py`` joins to its own.

The manager is chosen by ``--manager`` (a setting) or detected for installing: Windows → the SCM;
Linux with systemd as PID 1 → systemd; otherwise supervisord (see ``servicehost managers``).
"""

from __future__ import annotations

import argparse
from . import platforms
from .arguments import Command, Invocation, number, path, service_name, text
from .errors import ExitCode, ServiceHostError, UsageError
from .platforms.base import START_MODES, InstallOptions, Manager, launch_command, refusals


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


def _install_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("install options (one set for every manager; refused where a manager has no equivalent)")
    g.add_argument("--name", type=service_name, help="service name (default: the class's name)")
    g.add_argument("--display-name", type=text, default="", help="display name (Windows)")
    g.add_argument("--description", type=text, default=None, help="one-line description (default: the class's)")
    g.add_argument("--start", dest="start_mode", choices=START_MODES, default="auto", help="start mode")
    g.add_argument("--depends", action="append", default=[], type=service_name, metavar="SERVICE",
                   help="a service that must run first (repeatable)")
    g.add_argument("--username", type=text, default="", help="account to run as (default: the least-privileged account the manager offers)")
    g.add_argument("--password-stdin", action="store_true",
                   help="read the account's password from stdin (never give it on the command line)")
    g.add_argument("--env", action="append", default=[], type=_env_pair, metavar="KEY=VALUE",
                   help="environment variable (repeatable); KEY=@/path/to/file: a secret, read by the "
                   "service from the file named by $KEY_FILE (never in the manager's config); @@ for a literal @")
    g.add_argument("--workdir", type=path, default="", help="working directory of the service")
    g.add_argument("--no-restart", action="store_true", help="do not restart after a failure exit")
    g.add_argument("--restart-delay", type=number(float, min=0, max=86400), default=5.0, metavar="SECONDS",
                   help="delay before a restart")
    g.add_argument("--watchdog", type=number(float, min=0, max=86400), default=0.0, metavar="SECONDS",
                   help="restart when workers stop heartbeating for SECONDS (0: off)")


def _manager(inv: Invocation) -> Manager:
    from . import logs

    logs.configure(level="INFO", console=True)  # what the manager code logs is for the admin
    platform, _ = platforms.detect_for_install(choice=inv.loaded.host.manager)
    return platform.manager()


def _service_name(inv: Invocation) -> str:
    name = getattr(inv.args, "name", None)  # --name, checked while parsing: never empty
    return name if name is not None else getattr(inv.service_cls, "name", "") or inv.service_cls.__name__


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
        restart=not a.no_restart,
        restart_delay=a.restart_delay,
        watchdog=a.watchdog,
        config_file=str(inv.config_file or ""),
        state_dir=str(inv.loaded.host.state_dir),
    )


def _launch(inv: Invocation) -> list[str]:
    argv = launch_command(inv.target, config_file=str(inv.config_file or ""),
                          state_dir=str(inv.loaded.host.state_dir))
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


def _cmd_install(inv: Invocation) -> ExitCode:
    manager = _manager(inv)
    options = _checked(inv, manager)
    manager.install(options, _launch(inv))
    print(f"installed {options.name} under {manager.name}")
    return ExitCode.OK


def _cmd_update(inv: Invocation) -> ExitCode:
    manager = _manager(inv)
    options = _checked(inv, manager)
    manager.update(options, _launch(inv))
    print(f"updated {options.name} under {manager.name}; restart it to apply")
    return ExitCode.OK


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


def _cmd_status(inv: Invocation) -> ExitCode:
    status = _manager(inv).status(_service_name(inv))
    print("\n".join(status.lines()))
    return ExitCode.OK


def _cmd_pause(inv: Invocation) -> ExitCode:
    _manager(inv).pause(_service_name(inv))
    return ExitCode.OK


def _cmd_continue(inv: Invocation) -> ExitCode:
    _manager(inv).resume(_service_name(inv))
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


def _logs_args(p: argparse.ArgumentParser) -> None:
    _name_only(p)
    p.add_argument("--bytes", type=number(int, min=1, max=1 << 30), default=16384, metavar="N",
                   help="how much of the end of the log to show")


def _cmd_logs(inv: Invocation) -> ExitCode:
    print(_manager(inv).logs(_service_name(inv), inv.args.bytes), end="")
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


#: The manager commands, in the order ``--help`` lists them.
COMMANDS: tuple[Command, ...] = (
    Command("install", "install the service into the service manager (then start it with: start)", _cmd_install, _install_args),
    Command("update", "change the installed service's options (it is not restarted)", _cmd_update, _install_args),
    Command("remove", "stop and uninstall the service (its data is kept unless --purge)", _cmd_remove, _remove_args),
    Command("start", "start the installed service", _cmd_start, _start_args),
    Command("stop", "stop the installed service (dependents first)", _cmd_stop, _name_wait),
    Command("restart", "stop, then start the installed service", _cmd_restart, _name_wait),
    Command("status", "show state, pid, uptime, restarts and last exit (the same on every manager)", _cmd_status, _name_only),
    Command("pause", "pause the running service", _cmd_pause, _name_only),
    Command("continue", "continue a paused service", _cmd_continue, _name_only),
    Command("control", "send a custom control code (128-255) to the running service", _cmd_control, _control_args),
    Command("reload", "ask the running service to reload (SIGHUP / PARAMCHANGE)", _cmd_reload, _name_only),
    Command("logs", "show the end of the installed service's log, as its manager keeps it", _cmd_logs, _logs_args),
    Command("managers", "say which service manager was detected (for running and for installing) and why", _cmd_managers),
)
