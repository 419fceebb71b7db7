"""supervisord with real parts: the real ``supervisor`` package, a real supervisord with its own
config in a temp dir (never the machine's /etc/supervisor), real service processes, real kill -9.

The pure parts (which supervisord, what goes into the files) are checked against supervisor's own
config parser; the real-manager tests drive install → start → status → kill -9 → stop → remove.
"""

from __future__ import annotations

import importlib
import os
import pwd
import re
import shlex
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from servicehost import platforms
from servicehost.platforms import exit_status
from servicehost.errors import ConfigError, ExitCode, StartupError, UsageError
from servicehost.platforms.base import InstallOptions, launch_command
from servicehost.platforms.supervisord import (
    STARTS_FILE,
    Layout,
    SupervisordManager,
    SupervisordPlatform,
    boot_hint,
    discover,
    exit_codes,
    last_exit_from_log,
    layout_from_conf,
    owned_layout,
    read_program,
    record_start,
    render_program,
    render_supervisord_conf,
    stop_wait_secs,
)

from ..conftest import IN_CI
from .harness import (
    HANG_GUARD,
    need_supervisor_package,
    read_pid,
    supervisord_env,
    supervisord_home,
    until,
    wait_gone,
)

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = str(ROOT / "examples" / "sample_service.py")

#: /etc/supervisor/supervisord.conf as Debian 12's package ships it (comments included).
DEBIAN_CONF_TEXT = """\
; supervisor config file

[unix_http_server]
file=/var/run/supervisor.sock   ; (the path to the socket file)
chmod=0700                       ; sockef file mode (default 0700)

[supervisord]
logfile=/var/log/supervisor/supervisord.log ; (main log file;default $CWD/supervisord.log)
pidfile=/var/run/supervisord.pid ; (supervisord pidfile;default supervisord.pid)
childlogdir=/var/log/supervisor            ; ('AUTO' child log dir, default $TEMP)

; the below section must remain in the config file for RPC
; (supervisorctl/web interface) to work, additional interfaces may be
; added by defining them in separate rpcinterface: sections
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///var/run/supervisor.sock ; use a unix:// URL  for a unix socket

; The [include] section can just contain the "files" setting.  This
; setting can list multiple files (separated by whitespace or
; newlines).  It can also contain wildcards.  The filenames are
; interpreted as relative to this file.  Included files *cannot*
; include files themselves.

[include]
files = /etc/supervisor/conf.d/*.conf
"""


# -- which supervisord: pure ------------------------------------------------------------------------
def test_debian_conf_d_is_found_from_debians_config_text():
    layout = layout_from_conf(DEBIAN_CONF_TEXT, Path("/etc/supervisor/supervisord.conf"),
                              Path("/var/lib/servicehost/supervisord"), "Debian's")
    assert layout == Layout(
        conf=Path("/etc/supervisor/supervisord.conf"), programs_dir=Path("/etc/supervisor/conf.d"),
        socket=Path("/var/run/supervisor.sock"), home=Path("/var/lib/servicehost/supervisord"),
        owned=False, origin="Debian's", log_dir=Path("/var/log/supervisor"))
    relative = DEBIAN_CONF_TEXT.replace("files = /etc/supervisor/conf.d/*.conf", "files = extra.ini\n  progs/*.conf")
    assert layout_from_conf(relative, Path("/opt/sv/sv.conf"), Path("/h"), "x").programs_dir == Path("/opt/sv/progs")
    assert layout_from_conf(DEBIAN_CONF_TEXT.replace("[include]", "[nothing]"), Path("/c"), Path("/h"), "x") is None
    with pytest.raises(ConfigError, match="never reads passwords from files"):
        layout_from_conf(DEBIAN_CONF_TEXT.replace("chmod=0700", "password=secret"), Path("/c"), Path("/h"), "x")


def test_discover_order_given_conf_then_own_home_then_debian_then_own_default(tmp_path):
    debian = tmp_path / "supervisord.conf"
    debian.write_text(DEBIAN_CONF_TEXT)
    assert discover({}, 0, debian_conf=debian).programs_dir == Path("/etc/supervisor/conf.d")
    assert discover({}, 0, debian_conf=tmp_path / "absent") == owned_layout(Path("/var/lib/servicehost/supervisord"))
    # a user does not write into root's supervisord: their own, in their state dir
    mine = discover({"XDG_STATE_HOME": "/home/u/.st"}, 1000, debian_conf=debian)
    assert mine.owned and mine.conf == Path("/home/u/.st/servicehost/supervisord/supervisord.conf")
    home = discover({"SERVICEHOST_SUPERVISORD_HOME": str(tmp_path / "h")}, 0, debian_conf=debian)
    assert home.owned and home.socket == tmp_path / "h" / "supervisor.sock"
    given = discover({"SERVICEHOST_SUPERVISORD_CONF": str(debian), "SERVICEHOST_SUPERVISORD_HOME": "/x"}, 0,
                     debian_conf=tmp_path / "absent")
    assert not given.owned and given.programs_dir == Path("/etc/supervisor/conf.d") and given.home == Path("/x")


def test_detection_for_running_and_for_installing(tmp_path):
    platform = SupervisordPlatform(systemd_marker=tmp_path / "systemd")
    assert platform.detect({"SUPERVISOR_ENABLED": "1", "SUPERVISOR_PROCESS_NAME": "svc"}) == \
        "SUPERVISOR_PROCESS_NAME=svc set by supervisord"
    assert platform.detect({"SUPERVISOR_ENABLED": "1"}) is None and platform.detect({}) is None
    assert "supervisord is the fallback" in platform.installable({})
    (tmp_path / "systemd").mkdir()  # systemd runs as PID 1: install there instead
    assert platform.installable({}) is None
    chosen, reason = platforms.detect({"SUPERVISOR_ENABLED": "1", "SUPERVISOR_PROCESS_NAME": "svc"})
    assert chosen.name == "supervisord" and "SUPERVISOR_PROCESS_NAME" in reason
    assert platforms.detect({})[0].name != "supervisord"


def test_the_package_is_light_and_names_where_each_name_lives():
    # The registry imports the package on every start: it must load none of its modules, and
    # running under supervisord loads neither the manager nor XML-RPC.
    code = ("import sys, servicehost.platforms.supervisord as p; before = sorted(m for m in sys.modules "
            "if m.startswith('servicehost.platforms.supervisord.')); from servicehost import platforms; "
            "platforms.load('supervisord'); print(before, sorted(m for m in sys.modules if m.startswith("
            "('servicehost.platforms.supervisord.manager', 'xmlrpc', 'http'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "[] []"
    from servicehost.platforms import supervisord

    modules = set(supervisord.NAMES.values())
    assert modules == {"platform", "layout", "config", "credentials", "files", "rpc", "manager", "backoff"}
    for module in modules:
        exported = importlib.import_module(f"servicehost.platforms.supervisord.{module}").__all__
        assert {n for n, m in supervisord.NAMES.items() if m == module} == set(exported), module
    assert supervisord.SupervisordManager is importlib.import_module(
        "servicehost.platforms.supervisord.manager").SupervisordManager
    with pytest.raises(AttributeError):
        getattr(supervisord, "not_a_name")
    assert platforms.load("supervisord").__class__ is SupervisordPlatform


def test_a_start_that_cannot_be_counted_is_its_own_event_and_the_service_runs_on(tmp_path, caplog):
    with caplog.at_level("DEBUG", logger="servicehost.platforms.supervisord"):
        assert record_start(tmp_path / "absent") == 1  # no runtime dir: not counted, no exception
    (record,) = [r for r in caplog.records if getattr(r, "event_id", None) == 5209]
    assert str(tmp_path / "absent" / STARTS_FILE) in record.getMessage()
    assert record_start(tmp_path) == 1 and record_start(tmp_path) == 2


# -- what goes into the files: checked by supervisor's own parser -----------------------------------
@pytest.fixture
def supervisor_package() -> None:
    """The real supervisor package (the ``supervisor``/``test`` extras); CI must have it."""
    need_supervisor_package()


def _parsed(layout: Layout):
    from supervisor.options import ServerOptions

    opts = ServerOptions()
    opts.configfile = str(layout.conf)
    opts.process_config(do_usage=False)
    return opts


def test_program_file_as_supervisor_reads_it(tmp_path, supervisor_package):
    layout = owned_layout(tmp_path)
    layout.programs_dir.mkdir()
    layout.log_dir.mkdir()
    layout.conf.write_text(render_supervisord_conf(layout))
    nobody = pwd.getpwnam("nobody")
    options = InstallOptions(
        name="svc", description="does % things", start_mode="manual", account="nobody", restart=False,
        environment=(("TOKEN_FILE", "/etc/x,y %z"), ("EMPTY", "")), stop_timeout=12.5, working_directory="/srv",
        state_dir="/var/lib/servicehost/svc")
    command = ["/usr/bin/python3", "-m", "servicehost", "run", "/opt/it's here/svc.py", "--interval", "5%"]
    (layout.programs_dir / "svc.conf").write_text(
        render_program(options, command, layout=layout, runtime_dir=Path("/r"), account=nobody))
    opts = _parsed(layout)
    (group,) = opts.process_group_configs
    (program,) = group.process_configs
    assert shlex.split(program.command) == command
    assert program.exitcodes == [0, 2, 3, 4] == sorted(
        exit_status("supervisord").success + exit_status("supervisord").prevent_restart)
    assert program.stopwaitsecs == 18 == stop_wait_secs(12.5)  # stop_timeout rounded up + 5 s margin
    # startsecs=0: exitcodes decide from the first instant (no "exited too quickly" retries of exit 2/3)
    assert (program.autostart, program.autorestart, program.startsecs) == (False, False, 0)
    assert program.stopasgroup and program.killasgroup and program.stopsignal == signal.SIGTERM
    assert program.uid == nobody.pw_uid and program.directory == "/srv"
    assert program.environment == {  # no SERVICEHOST_RESTART_DELAY: restart=False
        "SERVICEHOST_RUNTIME_DIR": "/r", "SERVICEHOST_SUPERVISORD_HOME": str(tmp_path), "HOME": nobody.pw_dir,
        "USER": "nobody", "LOGNAME": "nobody", "TOKEN_FILE": "/etc/x,y %z", "EMPTY": ""}
    assert program.redirect_stderr and program.stdout_logfile == str(layout.log_dir / "svc.log")
    assert (program.stdout_logfile_maxbytes, program.stdout_logfile_backups) == (10 * 1024 * 1024, 5)
    (server,) = opts.configroot.supervisord.server_configs
    assert server["file"] == str(layout.socket) and server["chmod"] == 0o700 and server["password"] is None
    assert read_program(layout.programs_dir / "svc.conf")["runtime_dir"] == "/r"


def test_options_supervisord_has_no_form_for_are_refused(tmp_path):
    layout = owned_layout(tmp_path)
    for options in (InstallOptions(name="svc", start_mode="delayed"), InstallOptions(name="svc", dependencies=("db",))):
        with pytest.raises(UsageError, match="supervisord cannot honour"):
            render_program(options, ["/bin/true"], layout=layout, runtime_dir=Path("/r"))
    for secret in ('pass"word', "pass\nword"):  # refused, and the value is not repeated in the error
        with pytest.raises(UsageError, match="--env A") as refused:
            render_program(InstallOptions(name="svc", environment=(("A", secret),)), ["/bin/true"], layout=layout,
                           runtime_dir=Path("/r"))
        assert "word" not in str(refused.value)


def test_last_exit_comes_from_supervisords_own_words():
    text = ("INFO exited: svc (exit status 1; not expected)\nINFO exited: other (exit status 3; expected)\n"
            "WARN exited: svc (terminated by SIGKILL; not expected)\nINFO spawned: 'svc' with pid 4\n")
    assert last_exit_from_log(text, "svc") == -signal.SIGKILL
    assert last_exit_from_log(text + "INFO stopped: svc (exit status 4)\n", "svc") == ExitCode.STOP_INCOMPLETE
    assert last_exit_from_log(text, "sv") is None and exit_codes() == (0, 2, 3, 4)


# -- a real supervisord ---------------------------------------------------------------------------------
@pytest.fixture
def home(monkeypatch):
    """A temp home for servicehost's own supervisord and its services' runtime dirs
    (``harness.supervisord_home``), used by this process and the ``servicehost`` it runs."""
    with supervisord_home() as path:
        for key, value in supervisord_env(path).items():
            monkeypatch.setenv(key, value)
        yield path


def _options(name: str, home: Path, **kw) -> InstallOptions:
    return InstallOptions(name=name, stop_timeout=10, state_dir=str(home / "state" / name), **kw)


@pytest.mark.real_manager
def test_install_starts_supervisord_then_start_kill_9_restart_stop_remove(home):
    manager = SupervisordManager()
    assert manager.layout.home == home / "sv" and not manager.is_running()
    options = _options("SampleService", home)
    manager.install(options, launch_command(SAMPLE, state_dir=options.state_dir) + ["--interval", "0.05"])
    # supervisord was not running: install started it, with a private socket and no password
    assert manager.is_running()
    assert stat.S_IMODE(os.stat(manager.layout.socket).st_mode) == 0o700
    assert not re.search(r"^\s*(username|password)\s*=", manager.layout.conf.read_text(), re.M)
    program = manager.layout.program_file("SampleService")
    assert stat.S_IMODE(program.stat().st_mode) == 0o600
    assert "supervisord -n -c" in boot_hint(manager.layout, sys.executable)
    assert "-n -c" in manager.layout.boot_unit.read_text()
    assert manager.status("SampleService").state == "stopped"  # installed; start starts it
    with pytest.raises(UsageError, match="already installed"):
        manager.install(options, ["/bin/true"])

    manager.start("SampleService", wait=HANG_GUARD)
    first = manager.status("SampleService")
    assert (first.state, first.restarts) == ("running", 0) and first.pid and first.uptime is not None
    assert first.detail["ready"] == "yes (running)"

    os.kill(first.pid, signal.SIGKILL)
    again = until(lambda: (s := manager.status("SampleService")).state == "running" and s.pid != first.pid and s,
                   "supervisord to restart the killed service")
    assert again.restarts == 1 and again.last_exit == -signal.SIGKILL
    assert again.detail["last exit"] == "killed by SIGKILL"

    manager.stop("SampleService", wait=HANG_GUARD)
    stopped = manager.status("SampleService")
    assert (stopped.state, stopped.pid, stopped.last_exit) == ("stopped", None, ExitCode.OK)
    assert "SampleService stopping after" in manager.logs("SampleService")  # its stop hook ran

    # supervisord gone (as after a reboot without its unit): status says so, start brings both back
    supervisord_pid = read_pid(manager.layout.pidfile)
    manager.rpc("shutdown")
    wait_gone(supervisord_pid)
    down = manager.status("SampleService")
    assert down.state == "stopped" and "supervisord is not running" in down.detail["note"]
    manager.start("SampleService", wait=HANG_GUARD)
    assert read_pid(manager.layout.pidfile) != supervisord_pid
    back = manager.status("SampleService")
    assert (back.state, back.restarts) == ("running", 0)

    supervisord_pid = read_pid(manager.layout.pidfile)
    manager.remove("SampleService", purge=True)
    assert manager.status("SampleService").state == "not-installed"
    assert not program.exists() and not Path(options.state_dir).exists()
    # its last program removed, the supervisord servicehost started is stopped too
    assert not manager.is_running()
    wait_gone(supervisord_pid)


SERVICES = '''
import os, time
from pathlib import Path
from servicehost import Service


class FailsToStart(Service):
    def start(self):
        raise RuntimeError("no database")  # at once: startsecs=0, so exit 3 is final however quick


class Crashes(Service):
    def run(self, stop):
        if not stop.wait(1.5):
            raise RuntimeError("boom")


class Gated(Service):
    """Ready only once the file named by $GATE exists."""
    ready_on_start = False

    def run(self, stop):
        while not stop.wait(0.05):
            if Path(os.environ["GATE"]).exists():
                self.ready()
                break
        stop.wait()


class ReadsSecret(Service):
    """Records what it was given for TOKEN (a hash of the secret, never the secret) in its state dir."""

    def start(self):
        import hashlib, json
        path = os.environ.get("TOKEN_FILE", "")
        seen = {"TOKEN_FILE": path, "TOKEN": os.environ.get("TOKEN"), "MODE": os.environ.get("MODE"),
                "uid": os.getuid(), "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest() if path else None}
        (Path(os.environ["SEEN"]) / f"seen-{os.getpid()}.json").write_text(json.dumps(seen))

    def run(self, stop):
        stop.wait()
'''


@pytest.fixture
def services(home) -> Path:
    path = home / "sh_test_services.py"
    path.write_text(SERVICES)
    return path


def _install(manager: SupervisordManager, home: Path, services: Path, cls: str, **kw) -> None:
    options = _options(cls, home, **kw)
    manager.install(options, launch_command(f"{services}:{cls}", state_dir=options.state_dir))


@pytest.mark.real_manager
def test_exit_codes_decide_whether_supervisord_restarts(home, services):
    manager = SupervisordManager()
    _install(manager, home, services, "FailsToStart")
    _install(manager, home, services, "Crashes")
    # a failed start (exit 3) is expected by supervisord: no restart storm
    with pytest.raises(StartupError, match=r"FailsToStart did not start: supervisord says EXITED \(exit status 3\)"):
        manager.start("FailsToStart", wait=HANG_GUARD)
    failed = manager.status("FailsToStart")
    assert (failed.state, failed.last_exit, failed.restarts) == ("failed", ExitCode.START_FAILURE, 0)
    # a crash (exit 1) is not: supervisord starts it again
    manager.start("Crashes", wait=HANG_GUARD)
    crashed = until(lambda: (s := manager.status("Crashes")).restarts and s, "a restart after the crash")
    assert crashed.last_exit == ExitCode.CRASH and crashed.state in ("starting", "running")
    manager.stop("Crashes", wait=HANG_GUARD)
    # still exactly one start of FailsToStart, seconds later
    runtime = home / "run" / "FailsToStart"
    assert (runtime / STARTS_FILE).read_text().strip() == "1"
    assert manager.rpc("getProcessInfo", "FailsToStart")["statename"] == "EXITED"


@pytest.mark.real_manager
def test_status_says_starting_until_the_service_itself_is_ready(home, services):
    manager = SupervisordManager()
    gate = home / "gate"
    _install(manager, home, services, "Gated", environment=(("GATE", str(gate)),))
    manager.ensure_running()
    manager.rpc("reloadConfig")
    manager.rpc("addProcessGroup", "Gated")  # autostart=true: supervisord starts it now
    # startsecs=0: supervisord says RUNNING once it has spawned it; status waits for the service itself
    until(lambda: manager.rpc("getProcessInfo", "Gated")["statename"] == "RUNNING", "supervisord's RUNNING")
    assert manager.status("Gated").state == "starting"
    waiting = until(lambda: (s := manager.status("Gated")).detail.get("ready") == "no (starting)" and s,
                    "the service's control channel to answer")
    assert waiting.state == "starting" and waiting.detail["ready"] == "no (starting)"
    with pytest.raises(StartupError, match=r"Gated is not ready after 0.5s \(supervisord: RUNNING\)"):
        manager.start("Gated", wait=0.5)
    gate.touch()
    until(lambda: manager.status("Gated").state == "running", "the service to say it is ready")
    manager.stop("Gated", wait=HANG_GUARD)
    assert manager.status("Gated").last_exit == ExitCode.OK
    # update changes the file only; the next start applies it (here: a gate that is open already)
    other = home / "other-gate"
    other.touch()
    options = _options("Gated", home, environment=(("GATE", str(other)),))
    manager.update(options, launch_command(f"{services}:Gated", state_dir=options.state_dir))
    assert manager.status("Gated").state == "stopped"  # not restarted by the update
    gate.unlink()
    manager.start("Gated", wait=HANG_GUARD)
    assert manager.status("Gated").state == "running"


# -- secrets: --env NAME=@/path/to/file -------------------------------------------------------------
def test_a_secret_is_rendered_as_the_path_of_its_copy_and_at_at_is_a_literal_at(tmp_path, supervisor_package):
    layout = owned_layout(tmp_path)
    layout.programs_dir.mkdir()
    layout.log_dir.mkdir()
    layout.conf.write_text(render_supervisord_conf(layout))
    options = InstallOptions(name="svc", environment=(("TOKEN", "@/etc/hostname"), ("MODE", "@@fast"), ("A", "b")))
    text = render_program(options, ["/bin/true"], layout=layout, runtime_dir=Path("/r"))
    (layout.programs_dir / "svc.conf").write_text(text)
    (program,) = _parsed(layout).process_group_configs[0].process_configs
    assert program.environment == {"SERVICEHOST_RUNTIME_DIR": "/r", "MODE": "@fast", "A": "b",
                                   "TOKEN_FILE": str(tmp_path / "credentials" / "svc" / "TOKEN"),
                                   "SERVICEHOST_SUPERVISORD_HOME": str(tmp_path), "SERVICEHOST_RESTART_DELAY": "5"}
    assert "/etc/hostname" not in text  # not even where the secret came from
    for bad, why in ((("TOKEN", "@"),), "name the file"), ((("TOKEN", "@/a"), ("TOKEN_FILE", "x")), "given twice"):
        with pytest.raises(UsageError, match=why):
            render_program(InstallOptions(name="svc", environment=bad), ["/bin/true"], layout=layout,
                           runtime_dir=Path("/r"))


def _secret_file(path: Path, secret: bytes) -> Path:
    path.write_bytes(secret)
    path.chmod(0o600)
    return path


def _seen(state: Path) -> list[dict]:
    import json

    return [json.loads(p.read_text()) for p in sorted(state.glob("seen-*.json"), key=lambda p: p.stat().st_mtime)]


def _everywhere_but(secret: bytes, roots: list[Path], allowed: set[Path]) -> list[str]:
    """Every file under ``roots`` (but ``allowed``) and every process's cmdline/environ holding ``secret``."""
    found = []
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink() and path not in allowed and secret in path.read_bytes():
                found.append(str(path))
    for proc in Path("/proc").iterdir():
        for part in ("cmdline", "environ"):
            try:
                if secret in (proc / part).read_bytes():
                    found.append(str(proc / part))
            except OSError:
                pass  # gone, or a kernel thread
    return found


@pytest.mark.real_manager
def test_a_secret_file_reaches_the_service_as_name_file_and_nowhere_else(home, services):
    import hashlib
    import uuid

    secret = f"s3cr3t-{uuid.uuid4().hex}".encode()
    source = _secret_file(home / "token.txt", secret)
    state = home / "state" / "ReadsSecret"
    target = f"{services}:ReadsSecret"
    _cli("install", target, "--state-dir", str(state), "--env", f"TOKEN=@{source}", "--env", "MODE=@@fast",
         "--env", f"SEEN={state}")
    manager = SupervisordManager()
    copy = manager.layout.credentials_dir("ReadsSecret") / "TOKEN"
    assert copy.read_bytes() == secret
    assert stat.S_IMODE(copy.stat().st_mode) == 0o400 and copy.stat().st_uid == os.geteuid()
    assert stat.S_IMODE(copy.parent.stat().st_mode) == 0o700 and copy.parent.stat().st_uid == os.geteuid()
    _cli("start", target)
    (seen,) = _seen(state)
    assert seen == {"TOKEN_FILE": str(copy), "TOKEN": None, "MODE": "@fast", "uid": os.geteuid(),
                    "sha256": hashlib.sha256(secret).hexdigest()}
    _cli("reload", target)  # more log lines while it runs
    assert _everywhere_but(secret, [home / "sv", state], {copy}) == []
    assert secret not in manager.logs("ReadsSecret").encode()

    # update with a new file replaces the copy (atomically, same modes); the next start sees it
    newer = f"n3w-{uuid.uuid4().hex}".encode()
    _cli("update", target, "--state-dir", str(state), "--env", f"TOKEN=@{_secret_file(home / 'token2.txt', newer)}",
         "--env", f"SEEN={state}")
    assert copy.read_bytes() == newer and stat.S_IMODE(copy.stat().st_mode) == 0o400
    assert sorted(p.name for p in copy.parent.iterdir()) == ["TOKEN"]  # no leftovers of the write
    _cli("restart", target)
    assert _seen(state)[-1]["sha256"] == hashlib.sha256(newer).hexdigest()
    assert _everywhere_but(newer, [home / "sv", state], {copy}) == []
    _cli("stop", target)
    _cli("remove", target)
    assert not copy.parent.exists()  # remove takes the secrets with it


@pytest.mark.real_manager
def test_a_missing_or_unreadable_secret_file_is_one_line_exit_2_and_installs_nothing(home, services):
    target = f"{services}:ReadsSecret"
    fifo = home / "fifo"
    os.mkfifo(fifo)
    for value, found in ((f"@{home / 'absent'}", "no such file"), (f"@{home}", "a directory"),
                         (f"@{fifo}", "not a regular file"), ("@/dev/zero", "not a regular file"),
                         ("@", "name the file holding the secret")):
        proc = subprocess.run([sys.executable, "-m", "servicehost", "install", target, "--env", f"TOKEN={value}",
                               "--manager", "supervisord"], capture_output=True, text=True, timeout=HANG_GUARD)
        assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and found in proc.stderr and "Traceback" not in proc.stderr
        assert not SupervisordManager().layout.program_file("ReadsSecret").exists()
        assert not SupervisordManager().layout.credentials_dir("ReadsSecret").exists()


@pytest.mark.real_manager
def test_a_secret_is_owned_by_the_services_account_which_reads_it(home, services):
    """user=nobody: the copy is nobody's (0400) in nobody's 0700 folder; the service, switched to
    nobody by supervisord, reads it. The interpreter is the system's (root's pyenv is 0700)."""
    import hashlib

    if os.geteuid() != 0 or not os.access("/usr/bin/python3", os.X_OK):
        pytest.fail("needs root and /usr/bin/python3 (CI has both)") if IN_CI else pytest.skip("needs root")
    nobody = pwd.getpwnam("nobody")
    secret = b"only-nobody-reads-this"
    source = _secret_file(home / "token.txt", secret)
    home.chmod(0o755)
    services.chmod(0o644)
    state = home / "state" / "nobodys"
    manager = SupervisordManager()
    options = InstallOptions(name="nobodys", account="nobody", state_dir=str(state), environment=(
        ("TOKEN", f"@{source}"), ("SEEN", str(state)), ("PYTHONPATH", str(ROOT / "src"))))
    command = launch_command(f"{services}:ReadsSecret", state_dir=str(state), interpreter="/usr/bin/python3")
    manager.install(options, command)
    copy = manager.layout.credentials_dir("nobodys") / "TOKEN"
    assert (copy.stat().st_uid, copy.parent.stat().st_uid) == (nobody.pw_uid, nobody.pw_uid)
    assert (stat.S_IMODE(copy.stat().st_mode), stat.S_IMODE(copy.parent.stat().st_mode)) == (0o400, 0o700)
    manager.start("nobodys", wait=HANG_GUARD)
    (seen,) = _seen(state)
    assert (seen["uid"], seen["sha256"]) == (nobody.pw_uid, hashlib.sha256(secret).hexdigest())
    manager.stop("nobodys", wait=HANG_GUARD)
    manager.remove("nobodys")
    assert not copy.parent.exists()
    # a home the account cannot enter: refused, saying which folder, and nothing left behind
    home.chmod(0o700)
    with pytest.raises(UsageError, match=rf"account nobody cannot reach its secrets .*{home} \(mode 0700"):
        manager.install(options, command)
    assert not manager.layout.program_file("nobodys").exists() and not copy.parent.exists()


# -- the seed sample, installed and driven through the command line ---------------------------------
def _cli(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    """``servicehost ARGS --manager supervisord``, expecting exit ``code`` (status: 0 running,
    3 not running, 4 not installed)."""
    proc = subprocess.run([sys.executable, "-m", "servicehost", *args, "--manager", "supervisord"],
                          capture_output=True, text=True, timeout=HANG_GUARD, cwd=ROOT)
    assert proc.returncode == code, f"{args}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


def _field(status: str, name: str) -> str:
    return next(line.split(":", 1)[1].strip() for line in status.splitlines() if line.startswith(name + ":"))


@pytest.mark.real_manager
def test_sample_service_under_supervisord_through_the_cli(home):
    state = home / "state"
    installed = _cli("install", SAMPLE, "--state-dir", str(state), "--interval", "0.05")
    assert "installed SampleService under supervisord" in installed.stdout
    assert "does not come back after a reboot by itself" in installed.stderr
    _cli("start", SAMPLE)
    status = _cli("status", SAMPLE).stdout
    assert _field(status, "state") == "running" and _field(status, "restarts") == "0"
    log_file = home / "sv" / "logs" / "SampleService.log"

    def logged(text: str) -> bool:
        return text in log_file.read_text()

    _cli("pause", SAMPLE)
    assert _field(_cli("status", SAMPLE).stdout, "state") == "paused"
    until(lambda: logged("SampleService: paused"), "the pause hook")
    _cli("continue", SAMPLE)
    _cli("control", SAMPLE, "200")
    _cli("reload", SAMPLE)
    for text in ("running under supervisord (SUPERVISOR_PROCESS_NAME=SampleService set by supervisord)",
                 "SampleService: continued", "SampleService: control code 200", "SampleService: reloaded"):
        until(lambda text=text: logged(text), text)
    _cli("stop", SAMPLE)
    stopped = _cli("status", SAMPLE, code=3).stdout
    assert _field(stopped, "state") == "stopped" and _field(stopped, "last exit") == "0 (OK)"
    assert (state / "logs" / "SampleService.log").is_file()  # the host's own log, with event ids
    refused = subprocess.run([sys.executable, "-m", "servicehost", "pause", SAMPLE, "--manager", "supervisord"],
                             capture_output=True, text=True, timeout=HANG_GUARD, cwd=ROOT)
    assert refused.returncode == ExitCode.CONFIG_ERROR
    assert "SampleService is not running under supervisord" in refused.stderr
    _cli("remove", SAMPLE, "--purge")
    assert _field(_cli("status", SAMPLE, code=4).stdout, "state") == "not-installed"
    assert not state.exists()
