r"""How a service process starts: the ImagePath the SCM runs, and :func:`service_main`, its entry.

Venv-native, strategy "base interpreter + the venv's site-packages" (no exe is moved, no DLL is
copied, nothing goes into System32)::

    ImagePath = "C:\Python313\python.exe" -S -s -P -c "<BOOT>" "<prefix>" "<start cache>" "<name>" run TARGET ... --manager windows

1. ``python.exe`` is the *base* interpreter (``sys._base_executable``): python3XY.dll and the VC
   runtime sit beside it, so the loader always finds them. (A venv's ``Scripts\python.exe`` is a
   launcher that runs the base interpreter as a *child* process, which the SCM cannot track.)
2. :data:`BOOT` sets ``sys.prefix`` to the installing environment (the venv) *before* ``site`` is
   imported, then runs ``site.main()``: the venv's site-packages and its .pth files (pywin32.pth puts
   pywin32_system32 on the DLL path; editable installs) are added exactly as the venv's own python
   adds them, and the base site-packages are not (as in a venv). ``-S -s -P``: no implicit site, no
   user site, no cwd (System32) on ``sys.path``. BOOT is the program that puts the pieces together:
   the start cache first (``servicehost/_startcache.py``: the code of every source module the last
   start imported, read from one file, ``%ProgramData%\servicehost\start-cache\<name>``), then
   :func:`prepare` (this module imports nothing at its top but ``sys`` and ``os``), then it
   imports the command line's runner (``servicehost.cli.run_cli``) and hands it to
   :func:`service_main` — the platform never imports the CLI.
3. :func:`service_main` connects to the SCM at once, on a thread, *before* the target is imported (a
   slow import can never cause error 1053), applies the service's environment and working
   directory, then runs the ordinary ``servicehost run`` through the runner it was handed; the
   platform (``platform.py``) then serves the host under the session (``session.py``); once the
   service is ready, the platform has the start cache written again when this start imported a
   source module it did not hold (:func:`service_main` waits for that write before it exits).

An ImagePath written by an older servicehost calls ``service_main()`` with no runner: the service
fails to start with CONFIG_ERROR and says so in the Event Log (5319); ``servicehost update`` (or
``install`` again) writes the current BOOT.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

#: The -c program of every servicehost ImagePath (see the module docstring, step 2). No double
#: quotes in it, so it survives Windows command-line quoting unchanged.
BOOT = ("import sys;sys.prefix=sys.exec_prefix=sys.argv.pop(1);import site;site.main();"
        "from servicehost._startcache import use;use(sys.argv.pop(1));"
        "from servicehost.platforms.windows.boot import prepare, service_main;prepare();"
        "from servicehost.cli import run_cli;service_main(run_cli)")

#: Modules that exist only on POSIX systems. The standard library asks for them on Windows too and
#: takes the ImportError (pathlib: pwd, grp; posixpath: posix), after a search of every sys.path
#: entry for each (a few ms apiece where file access is slow, as under Wine). :func:`prepare` marks
#: them absent (None in sys.modules: ``import pwd`` raises ModuleNotFoundError at once).
POSIX_ONLY = ("posix", "pwd", "grp")

#: At exit, how long a start cache write begun when the service became ready may still take.
SAVE_WAIT = 10.0

#: What runs the service once connected: ``servicehost run TARGET ...``'s argv → exit code.
Runner = Callable[[Sequence[str]], int]


def prepare() -> None:
    """The service process's first step (BOOT), before the CLI and the target are imported: the
    modules Windows never has (:data:`POSIX_ONLY`) are known absent, not searched for."""
    if sys.platform == "win32":
        for name in POSIX_ONLY:
            sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def service_command(command: Sequence[str], *, name: str, prefix: str, python: str, start_cache: str) -> list[str]:
    """The argv of the service's ImagePath, from ``launch_command``'s ``[python, -m, servicehost, ...]``.

    ``python`` is the base interpreter, ``prefix`` the environment whose site-packages the service
    uses (a venv's root, or the base prefix itself), ``start_cache`` the start cache's file.
    """
    if list(command[1:3]) != ["-m", "servicehost"] or len(command) < 4:
        from ...errors import UsageError

        raise UsageError(f"cannot run {list(command)!r} as a Windows service: expected PYTHON -m servicehost run ...")
    rest = list(command[3:])
    if "--manager" in rest:
        at = rest.index("--manager")
        del rest[at:at + 2]
    return [python, "-S", "-s", "-P", "-c", BOOT, prefix, start_cache, name, *rest, "--manager", "windows"]


def command_line(argv: Sequence[str]) -> str:
    """Quote an argv as one Windows command line (CommandLineToArgvW parses it back)."""
    import subprocess

    return subprocess.list2cmdline(list(argv))


def base_python() -> str:
    """The base interpreter: what a venv's python.exe launcher would run (see the module docstring)."""
    from pathlib import Path

    base = Path(getattr(sys, "_base_executable", "") or sys.executable)
    if base.name.lower() != "python.exe":
        base = Path(sys.base_exec_prefix) / "python.exe"
    return str(base)


def apply_parameters(name: str) -> None:
    """The service's environment and working directory, from its registry key (the SCM applies
    ``Environment`` itself on Windows, Wine does not; applying it again changes nothing)."""
    if sys.platform != "win32":  # no registry (and mypy checks winreg only on win32)
        return
    import winreg

    from .paths import service_key

    key_path = service_key(name)
    try:
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path) as key:
            try:
                pairs = winreg.QueryValueEx(key, "Environment")[0]
            except FileNotFoundError:
                pairs = []
        with winreg.OpenKey(winreg.HKEY_LOCAL_MACHINE, key_path + r"\Parameters") as key:
            workdir = winreg.QueryValueEx(key, "WorkingDirectory")[0]
    except FileNotFoundError:
        return
    for pair in pairs:
        k, sep, v = pair.partition("=")
        if sep and k:
            os.environ[k] = v
    if workdir:
        os.makedirs(workdir, exist_ok=True)
        os.chdir(workdir)


def include_system_site_packages() -> None:
    """What a venv with ``include-system-site-packages = true`` adds after its own site-packages."""
    cfg = os.path.join(sys.prefix, "pyvenv.cfg")
    if sys.prefix == sys.base_prefix or not os.path.isfile(cfg):
        return
    import configparser
    import site

    parser = configparser.ConfigParser()
    with open(cfg, encoding="utf-8", errors="replace") as file:
        parser.read_string("[venv]\n" + file.read())
    if parser.get("venv", "include-system-site-packages", fallback="false").strip().lower() == "true":
        for path in site.getsitepackages([sys.base_prefix]):
            site.addsitedir(path)


def service_main(run: Runner | None = None, argv: Sequence[str] | None = None) -> NoReturn:
    """The entry point of every servicehost ImagePath (after :data:`BOOT`): ``NAME run TARGET ...``.

    ``run`` runs that command line (BOOT hands over the CLI's ``run_cli``); None is an ImagePath an
    older servicehost wrote, which called this without one.
    """
    import logging

    from ... import logs
    from ...errors import ExitCode
    from . import eventlog
    from .session import open_session
    from .stdio import ServiceStdio

    log = logging.getLogger("servicehost.platforms.windows")
    args = list(sys.argv[1:] if argv is None else argv)
    name, rest = args[0], args[1:]
    include_system_site_packages()
    stdout, stderr = ServiceStdio(logs.windows_stdout), ServiceStdio(logs.windows_stderr)
    sys.stdout, sys.stderr = stdout, stderr
    if sys.stdin is None:
        sys.stdin = open(os.devnull, encoding="utf-8")  # noqa: SIM115  (the process's stdin)
    session = open_session(name)  # connect now: the SCM waits at most 30 s for this (error 1053)
    apply_parameters(name)
    code: int = ExitCode.CONFIG_ERROR
    if run is not None:
        try:
            code = run(rest)
        except BaseException:  # a bug below the CLI: still report it, and a failure exit
            import traceback

            traceback.print_exc()
            code = ExitCode.CRASH
    from ..._startcache import current

    start_cache = current()
    if start_cache is not None:
        start_cache.wait_saved(SAVE_WAIT)  # a write begun once the service was ready ends whole
    if session.host is None and session.wait_connected():
        # The host never ran (bad config, unknown target, an outdated ImagePath...): say why where
        # admins look.
        eventlog.attach_event_log(name)  # where it cannot be opened, the SCM still gets the exit code
        if run is None:
            logs.windows_boot_outdated(log, name, _update_command(name, rest))
        else:
            reason = (stderr.kept() or stdout.kept()).strip() or f"exit code {code}"
            logs.scm_start_aborted(log, code, reason)
        session.finish(code or ExitCode.START_FAILURE)
    logs.flush()
    sys.exit(code)


def _update_command(name: str, rest: Sequence[str]) -> str:
    """The command that rewrites the ImagePath of service ``name`` (``rest``: ``run TARGET ...``)."""
    target = rest[1] if len(rest) > 1 and rest[0] == "run" else "TARGET"
    return command_line(["servicehost", "update", target, "--name", name])


__all__ = [
    "BOOT", "POSIX_ONLY", "Runner", "apply_parameters", "base_python", "command_line",
    "include_system_site_packages", "prepare", "service_command", "service_main",
]
