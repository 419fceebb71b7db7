"""systemd units: what install renders, checked by systemd itself.

Every rendered unit must pass ``verify-unit.sh`` (``systemd-analyze verify`` that also fails on the
typos verify only warns about), across the option space (hypothesis). Bad options are refused
before anything is written. The default unit's exposure by ``systemd-analyze security
--offline=true`` stays at or below 3.0; the score is printed.

Needs the shared tools and systemd's binaries (``.ci/setup-systemd.sh``); no running systemd.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicehost import platforms
from servicehost.platforms import exit_status
from servicehost.errors import (
    ConfigError,
    ServiceHostError,
    UsageError,
)
from servicehost.platforms.base import InstallOptions, launch_command
from servicehost.platforms.systemd import (
    HARDENING,
    START_MARGIN,
    STOP_MARGIN,
    JournalFormatter,
    Scope,
    SystemdManager,
    SystemdPlatform,
    UnitSettings,
    code_paths,
    effective_setting,
    exec_line,
    looks_secret,
    read_meta,
    render_unit,
    stderr_is_journal,
    unreachable,
    user_scope,
)

from ..conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]
#: Rendering is a pure function of the options and the command: the units here are rendered for a
#: fixed layout (the system's interpreter, code under /srv), never for where this checkout and its
#: venv happen to be (a clone under /tmp or /home would relax or refuse the hardening). verify
#: wants the interpreter to exist.
PYTHON = next((p for p in ("/usr/bin/python3", "/usr/local/bin/python3") if os.access(p, os.X_OK)), "/bin/sh")
SAMPLE = "/srv/app/sample_service.py"


def command_for(target: str, **kwargs: str) -> list[str]:
    """``launch_command`` for the fixed layout (PYTHON, not this test run's interpreter)."""
    return launch_command(target, interpreter=PYTHON, **kwargs)
MAX_EXPOSURE = 3.0
#: Real units that exist wherever systemd is installed (verify checks dependencies exist).
REAL_DEPENDENCIES = ["systemd-journald", "systemd-journald.socket", "network-online.target", "sysinit.target"]
USER_DEPENDENCIES = ["basic.target", "sockets.target", "paths.target"]


def need(what: str, ok: bool, fix: str) -> None:
    if not ok:
        reason = f"{what} is missing: {fix}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.fixture
def verify(tools: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., None]:
    """verify(path, user=False): fail the test with systemd's reasons unless the unit is accepted."""
    need("systemd-analyze", shutil.which("systemd-analyze") is not None, "run .ci/setup-systemd.sh (apt-get install systemd)")
    runtime = tmp_path_factory.mktemp("xdg-runtime")
    runtime.chmod(0o700)

    def run(path: Path, *, user: bool = False) -> None:
        argv = [str(tools / "verify-unit.sh"), *(["--user"] if user else []), str(path)]
        env = {**os.environ, "XDG_RUNTIME_DIR": str(runtime)}  # verify --user needs one
        proc = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=env)
        assert proc.returncode == 0, f"{path.name} rejected:\n{proc.stderr}\n--- unit ---\n{path.read_text()}"

    return run


def write(tmp: Path, text: str, name: str) -> Path:
    path = tmp / name
    path.write_text(text, encoding="utf-8")
    return path


def options(**kw: object) -> InstallOptions:
    base: dict[str, object] = {"name": "SampleService", "description": "Sample Service",
                               "state_dir": "/var/lib/servicehost/SampleService"}
    base.update(kw)
    return InstallOptions(**base)  # type: ignore[arg-type]


def lines(text: str) -> list[str]:
    return text.splitlines()


def value(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in lines(text) if line.startswith(key + "=")]


# -- the default unit ---------------------------------------------------------------------------------
def test_default_unit_verifies_and_its_exposure_is_low(tmp_path, verify, capsys):
    unit = render_unit(options(), command_for(SAMPLE, state_dir="/var/lib/servicehost/SampleService"))
    path = write(tmp_path, unit.text, unit.name)
    verify(path)
    proc = subprocess.run(["systemd-analyze", "security", "--offline=true", str(path)],
                          check=False, capture_output=True, text=True, timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout + proc.stderr
    score = float(m[1])
    with capsys.disabled():
        print(f"\nsystemd-analyze security --offline=true, default unit: exposure {score} (limit {MAX_EXPOSURE})")
    assert score <= MAX_EXPOSURE, proc.stdout


def test_default_unit_maps_every_option(tmp_path):
    command = command_for(SAMPLE, state_dir="/var/lib/servicehost/SampleService")
    unit = render_unit(options(stop_timeout=30, restart_delay=2.5, watchdog=4),
                       command, settings=UnitSettings(start_timeout=60, limit_nofile=4096))
    text = unit.text
    assert unit.name == "SampleService.service" and text.startswith("# Written by servicehost")
    assert value(text, "Type") == ["notify"] and value(text, "NotifyAccess") == ["main"]
    assert value(text, "ExecStart") == [exec_line(command)]
    assert value(text, "KillMode") == ["mixed"]
    assert value(text, "DynamicUser") == ["yes"] and not value(text, "User")
    assert value(text, "Restart") == ["on-failure"] and value(text, "RestartSec") == ["2500ms"]
    assert value(text, "TimeoutStopSec") == [f"{30 + STOP_MARGIN}s"]
    assert value(text, "TimeoutStartSec") == [f"{60 + START_MARGIN}s"]
    assert value(text, "WatchdogSec") == ["4s"]
    assert value(text, "LimitNOFILE") == ["4096"]
    assert value(text, "StateDirectory") == ["servicehost/SampleService"]
    assert value(text, "LogsDirectory") == ["servicehost/SampleService"]
    assert value(text, "RuntimeDirectory") == ["servicehost/SampleService"]
    status = exit_status("systemd")
    assert value(text, "SuccessExitStatus") == [" ".join(str(int(c)) for c in status.success if c)]
    assert value(text, "RestartPreventExitStatus") == [" ".join(str(int(c)) for c in status.prevent_restart)]
    assert value(text, "WantedBy") == ["multi-user.target"]
    for key, setting in HARDENING:
        assert f"{key}={setting}" in lines(text), key
    assert unit.notes == ()
    # The timeouts the manager waits for are read back from the unit it wrote.
    meta = read_meta(text)
    assert float(meta["TimeoutStopSec"]) == 30 + STOP_MARGIN and meta["state_dir"] == "/var/lib/servicehost/SampleService"


def test_no_watchdog_no_restart_and_an_account(tmp_path, verify):
    unit = render_unit(options(watchdog=0, restart=False, account="daemon:daemon"), command_for(SAMPLE))
    assert not value(unit.text, "WatchdogSec")
    assert value(unit.text, "Restart") == ["no"]
    assert value(unit.text, "User") == ["daemon"] and value(unit.text, "Group") == ["daemon"]
    assert not value(unit.text, "DynamicUser")
    verify(write(tmp_path, unit.text, unit.name))


def test_state_dir_outside_var_lib_is_read_write_for_an_account_only(tmp_path, verify):
    unit = render_unit(options(account="daemon", state_dir="/srv/sample state".replace(" ", "-")), command_for(SAMPLE))
    assert value(unit.text, "ReadWritePaths") == ["/srv/sample-state"]
    assert value(unit.text, "StateDirectory") == ["servicehost/SampleService"]
    verify(write(tmp_path, unit.text, unit.name))
    with pytest.raises(UsageError, match="DynamicUser= services keep state only under /var/lib"):
        render_unit(options(state_dir="/srv/sample-state"), command_for(SAMPLE))


def test_start_modes_and_delayed_is_refused_with_a_reason():
    for mode in ("auto", "manual", "disabled"):
        render_unit(options(start_mode=mode), command_for(SAMPLE))
    with pytest.raises(UsageError, match="systemd has no delayed start; order the unit After= another"):
        render_unit(options(start_mode="delayed"), command_for(SAMPLE))


def test_dependencies_are_requires_and_after(tmp_path, verify):
    unit = render_unit(options(dependencies=("systemd-journald", "network-online.target")), command_for(SAMPLE))
    assert value(unit.text, "Requires") == ["systemd-journald.service network-online.target"]
    assert value(unit.text, "After") == ["network.target systemd-journald.service network-online.target"]
    verify(write(tmp_path, unit.text, unit.name))


# -- hardening relaxed where the service's files live -----------------------------------------------
def test_protect_home_is_relaxed_with_a_note_when_the_interpreter_lives_under_root(tmp_path, verify):
    # The venv's python (in ExecStart) resolves to an interpreter under /root: that is what counts.
    command = command_for("/srv/app/svc.py")
    unit = render_unit(options(account="root"), command,
                       settings=UnitSettings(paths=("/root/.pyenv/versions/3.11.7/bin/python3.11",)))
    assert "ProtectHome=read-only" in lines(unit.text) and "ProtectHome=yes" not in lines(unit.text)
    assert any("ProtectHome=read-only instead of yes" in n and "/root/.pyenv/versions" in n for n in unit.notes)
    assert render_unit(options(account="root"), command).notes == ()  # nothing under /home or /root: no note
    verify(write(tmp_path, unit.text, unit.name))


def test_private_tmp_is_relaxed_for_an_account_and_refused_for_dynamic_user(tmp_path, verify):
    command = ["/usr/bin/python3", "-m", "servicehost", "run", "/tmp/app/svc.py"]
    unit = render_unit(options(account="daemon"), command)
    assert "PrivateTmp=no" in lines(unit.text) and any("PrivateTmp=no" in n for n in unit.notes)
    verify(write(tmp_path, unit.text, unit.name))
    with pytest.raises(UsageError, match="/tmp/app/svc.py is in a temporary directory"):
        render_unit(options(), command)


def test_an_account_that_cannot_read_the_code_is_named_with_the_directory_in_the_way(tmp_path):
    private = tmp_path / "private"
    (private / "app").mkdir(parents=True)
    (private / "app" / "svc.py").write_text("")
    private.chmod(0o700)
    try:
        why = unreachable(str(private / "app" / "svc.py"), "")
        # The reason names the first directory in the way (pytest's own temp root may be 0700 too).
        assert why is not None and any(why.startswith(f"{d} is mode 0700") for d in [private, *private.parents])
        assert unreachable(str(private / "app" / "svc.py"), "root") is None
        assert unreachable("/usr/bin/env", "") is None
        assert unreachable("/usr/bin/env", "no-such-user-here") == "there is no account 'no-such-user-here'"
    finally:
        private.chmod(0o755)


def test_the_files_an_account_must_read_are_the_code_not_the_state():
    command = command_for("/srv/app/svc.py:Svc", config_file="/etc/app.toml", state_dir="/var/lib/servicehost/Svc")
    assert code_paths(command, options(config_file="/etc/app.toml")) == ["/etc/app.toml", "/srv/app/svc.py"]
    assert code_paths(command_for("package.module:Svc"), options()) == []  # found through sys.path instead


# -- secrets --------------------------------------------------------------------------------------------
def test_a_secret_goes_in_as_a_credential_never_into_the_unit(tmp_path, verify):
    unit = render_unit(options(environment=(("DB_PASSWORD", "@/etc/hostname"), ("MODE", "fast"))), command_for(SAMPLE))
    assert value(unit.text, "LoadCredential") == ["DB_PASSWORD:/etc/hostname"]
    assert '"DB_PASSWORD_FILE=%d/DB_PASSWORD"' in value(unit.text, "Environment")
    assert unit.credentials == (("DB_PASSWORD", "/etc/hostname"),)
    verify(write(tmp_path, unit.text, unit.name))


def test_at_at_is_a_literal_at_and_every_other_at_names_a_file(tmp_path, monkeypatch):
    """The same rule under every manager (base.split_environment): never a silent literal '@...'."""
    monkeypatch.chdir(tmp_path)
    unit = render_unit(options(environment=(("MODE", "@@fast"), ("TOKEN", "@token.txt"))), command_for(SAMPLE))
    assert '"MODE=@fast"' in value(unit.text, "Environment")
    assert unit.credentials == (("TOKEN", str(tmp_path / "token.txt")),)  # relative: from where install runs
    with pytest.raises(UsageError, match="name the file holding the secret"):
        render_unit(options(environment=(("TOKEN", "@"),)), command_for(SAMPLE))
    with pytest.raises(UsageError, match="given twice"):
        render_unit(options(environment=(("TOKEN", "@/a"), ("TOKEN_FILE", "/b"))), command_for(SAMPLE))


def test_a_missing_secret_file_is_a_config_error_naming_it(tmp_path):
    # The machine's checks run the interpreter: this run's own, for an account that may read it wherever
    # this checkout lives (as root a system unit: root's; else a user unit, which runs as this user).
    opts = options(environment=(("TOKEN", f"@{tmp_path / 'absent'}"),), account="root" if os.geteuid() == 0 else "")
    with pytest.raises(ConfigError, match=rf"--env TOKEN=@{tmp_path}/absent: expected a readable regular file"):
        SystemdManager().render(opts, launch_command(str(ROOT / "examples" / "sample_service.py")))


@pytest.mark.parametrize("key", ["DB_PASSWORD", "GITHUB_TOKEN", "api_key", "AWS_SECRET_ACCESS_KEY", "SECRET"])
def test_a_secret_in_the_environment_is_refused_without_showing_it(key):
    secret = "hunter2-s3cr3t-value"
    with pytest.raises(UsageError) as info:
        render_unit(options(environment=((key, secret),)), command_for(SAMPLE))
    assert secret not in str(info.value) and f"--env {key}=@/path/to/file" in str(info.value)


def test_a_secret_flag_in_the_command_is_refused_without_showing_it():
    secret = "hunter2-s3cr3t-value"
    with pytest.raises(UsageError) as info:
        render_unit(options(), [*command_for(SAMPLE), "--api-token", secret])
    assert secret not in str(info.value) and "--api-token" in str(info.value)


def test_secret_names():
    assert looks_secret("DB_PASSWORD") and looks_secret("x-auth-token") and looks_secret("PRIVATE_KEY")
    assert not looks_secret("TOKENIZER_MODEL") and not looks_secret("PASSTHROUGH") and not looks_secret("KEYBOARD")


# -- the settings the installed service will see -----------------------------------------------------
def test_effective_setting_follows_the_config_precedence(tmp_path):
    toml = tmp_path / "svc.toml"
    toml.write_text("start_timeout = 120\n")
    command = command_for(SAMPLE, config_file=str(toml))
    assert effective_setting("start_timeout", options(), command_for(SAMPLE)) == 60.0
    assert effective_setting("start_timeout", options(config_file=str(toml)), command) == 120.0
    env = (("SERVICEHOST_START_TIMEOUT", "90"),)
    assert effective_setting("start_timeout", options(config_file=str(toml), environment=env), command) == 90.0
    assert effective_setting("start_timeout", options(environment=env), [*command, "--start-timeout", "7"]) == 7.0
    with pytest.raises(ConfigError, match="--start-timeout"):
        effective_setting("start_timeout", options(), [*command, "--start-timeout", "soon"])


# -- running: detection, journald ------------------------------------------------------------------------
def test_detection_for_running():
    platform = SystemdPlatform()
    assert platform.detect({"NOTIFY_SOCKET": "/run/systemd/notify"}) == "NOTIFY_SOCKET set by systemd"
    # INVOCATION_ID alone is inherited by every child of a unit (a CI runner's tests): not enough.
    assert platform.detect({"INVOCATION_ID": "abc"}) is None
    assert platform.detect({"NOTIFY_SOCKET": "/x", "SUPERVISOR_ENABLED": "1"}) is None
    chosen, reason = platforms.detect({"NOTIFY_SOCKET": "/run/systemd/notify"})
    assert chosen.name == "systemd" and "NOTIFY_SOCKET" in reason
    assert platforms.detect({})[0].name == "foreground"
    assert list(platforms.PLATFORMS).index("systemd") < list(platforms.PLATFORMS).index("foreground")


def test_stderr_is_the_journal_only_when_journal_stream_names_it(tmp_path):
    with open(tmp_path / "stream", "w") as fh:
        st = os.fstat(fh.fileno())
        env = {"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"}
        assert stderr_is_journal(env, fh.fileno())
        assert SystemdPlatform().detect({"INVOCATION_ID": "abc", **env}) is None  # fd 2 is not that file
        assert not stderr_is_journal({"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino + 1}"}, fh.fileno())
        assert not stderr_is_journal({}, fh.fileno())


def test_detection_for_installing(tmp_path):
    marker = tmp_path / "system"
    assert SystemdPlatform(booted_marker=marker).installable({}) is None
    marker.mkdir()
    if os.geteuid() == 0:
        assert "a system unit" in (SystemdPlatform(booted_marker=marker).installable({}) or "")
    else:
        runtime = tmp_path / "runtime"
        (runtime / "systemd").mkdir(parents=True)
        assert "a user unit" in (SystemdPlatform(booted_marker=marker).installable({"XDG_RUNTIME_DIR": str(runtime)}) or "")


def test_journal_formatter_gives_every_line_its_priority():
    formatter = JournalFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord("svc", logging.ERROR, __file__, 1, "failed %s", ("x",), sys.exc_info())
    out = formatter.format(record).splitlines()
    assert out[0] == "<3>ERROR svc: failed x" and len(out) > 2 and all(line.startswith("<3>") for line in out)
    for level, prio in ((logging.CRITICAL, 2), (logging.WARNING, 4), (logging.INFO, 6), (logging.DEBUG, 7)):
        rec = logging.LogRecord("svc", level, __file__, 1, "m", (), None)
        assert formatter.format(rec).startswith(f"<{prio}>")


# -- the option space (hypothesis) ---------------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=30)
_word = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=0, max_size=20)
_segment = st.text(st.characters(whitelist_categories=("Ll", "Lu", "Nd"), whitelist_characters="_-.%$@+,:é "),
                   min_size=1, max_size=12).filter(lambda s: s.strip() == s and s not in (".", ".."))
_abs_path = st.lists(_segment, min_size=1, max_size=3).map(lambda parts: "/srv/" + "/".join(parts))
_name = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,40}", fullmatch=True)
_key = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(lambda k: not looks_secret(k))
_seconds = st.floats(min_value=0, max_value=86400, allow_nan=False)


@st.composite
def valid_options(draw: st.DrawFn, *, user_unit: bool = False) -> tuple[InstallOptions, list[str]]:
    dependencies = USER_DEPENDENCIES if user_unit else REAL_DEPENDENCIES
    name = draw(_name)
    account = "" if user_unit else draw(st.sampled_from(["", "", "root", "daemon", "daemon:daemon", "nobody"]))
    env = draw(st.lists(st.tuples(_key, _text.map(lambda t: "@" + t if t.startswith("@") else t)), max_size=4,
                        unique_by=lambda kv: kv[0]))  # a plain value starting with @ is written @@
    creds = draw(st.lists(st.tuples(_key.map(lambda k: k + "_PASSWORD"), st.just("@/etc/hostname")), max_size=2,
                          unique_by=lambda kv: kv[0]))
    if account and not user_unit:
        state = draw(st.one_of(st.just(""), st.just(f"/var/lib/servicehost/{name}"),
                               _abs_path.filter(lambda p: " " not in p)))
    else:
        state = draw(st.sampled_from(["", f"/var/lib/servicehost/{name}", f"/var/lib/apps/{name}"]))
    opts = InstallOptions(
        name=name,
        display_name=draw(_text),
        description=draw(_text),
        start_mode=draw(st.sampled_from(["auto", "manual", "disabled"])),
        dependencies=tuple(draw(st.lists(st.sampled_from(dependencies), max_size=2, unique=True))),
        account=account,
        environment=tuple(env + creds),
        working_directory=draw(st.one_of(st.just(""), _abs_path)),
        stop_timeout=draw(_seconds),
        restart=draw(st.booleans()),
        restart_delay=draw(st.floats(min_value=0, max_value=600, allow_nan=False)),
        watchdog=draw(st.one_of(st.just(0.0), st.floats(min_value=0.5, max_value=3600, allow_nan=False))),
        state_dir=state,
    )
    target = draw(_abs_path) + ".py"
    args = draw(st.lists(_word, max_size=5))
    command = [*command_for(target), *args]
    return opts, command


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=valid_options(), start_timeout=st.floats(min_value=0.1, max_value=86400, allow_nan=False))
def test_every_rendered_system_unit_passes_verify(case, start_timeout, tmp_path_factory, verify):
    opts, command = case
    unit = render_unit(opts, command, settings=UnitSettings(start_timeout=start_timeout))
    assert unit == render_unit(opts, command, settings=UnitSettings(start_timeout=start_timeout))  # pure
    for key, secret in opts.environment:
        if secret.startswith("@/"):
            assert f"LoadCredential={key}:{secret[1:]}" in unit.text
    timeout_stop = value(unit.text, "TimeoutStopSec")[0]
    assert timeout_stop == f"{math.ceil(opts.stop_timeout) + STOP_MARGIN}s"
    verify(write(tmp_path_factory.mktemp("unit"), unit.text, unit.name))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=valid_options(user_unit=True))
def test_every_rendered_user_unit_passes_verify_user(case, tmp_path_factory, verify):
    opts, command = case
    scope = user_scope({"HOME": "/home/someone"})
    unit = render_unit(opts, command, scope=scope)
    assert value(unit.text, "WantedBy") == ["default.target"]
    assert not value(unit.text, "DynamicUser") and not value(unit.text, "User")
    verify(write(tmp_path_factory.mktemp("user-unit"), unit.text, unit.name), user=True)


#: One bad ingredient each; the rest of the options are fine.
_BAD: list[tuple[str, dict[str, object], list[str] | None]] = [
    ("a template name", {"name": "web@"}, None),
    ("a name with a slash", {"name": "a/b"}, None),
    ("a name with a space", {"name": "a b"}, None),
    ("delayed start", {"start_mode": "delayed"}, None),
    ("a NUL in the environment", {"environment": (("A", "x\x00y"),)}, None),
    ("a bad variable name", {"environment": (("1A", "x"),)}, None),
    ("a secret variable", {"environment": (("DB_PASSWORD", "hunter2-s3cr3t"),)}, None),
    ("a relative working directory", {"working_directory": "srv/app"}, None),
    ("a working directory with ..", {"working_directory": "/srv/../etc"}, None),
    ("a working directory ending in a space", {"working_directory": "/srv/app "}, None),
    ("a bad account", {"account": "bad name"}, None),
    ("a group without a user", {"account": ":grp"}, None),
    ("a bad dependency", {"dependencies": ("foo bar",)}, None),
    ("a specifier in a dependency", {"dependencies": ("x%i",)}, None),
    ("a watchdog too short to feed", {"watchdog": 0.1}, None),
    ("a stop timeout that is not a number", {"stop_timeout": float("nan")}, None),
    ("an infinite restart delay", {"restart_delay": float("inf")}, None),
    ("DynamicUser with state outside /var/lib", {"state_dir": "/srv/state"}, None),
    ("a relative interpreter", {}, ["python3", "-m", "servicehost", "run", "/srv/a.py"]),
    ("a NUL in an argument", {}, ["/usr/bin/python3", "-m", "servicehost", "run", "/srv/a\x00.py"]),
    ("a secret flag", {}, ["/usr/bin/python3", "-m", "servicehost", "run", "/srv/a.py", "--db-password=hunter2-s3cr3t"]),
    ("code in /tmp for a DynamicUser", {}, ["/usr/bin/python3", "-m", "servicehost", "run", "/tmp/a.py"]),
    ("an empty command", {}, []),
    ("an unknown account", {"account": "no-such-user-here"}, None),
]


@pytest.mark.parametrize("what,bad,command", _BAD, ids=[b[0] for b in _BAD])
def test_bad_options_are_refused_before_a_unit_is_written(tmp_path, what, bad, command):
    unit_dir = tmp_path / "units"
    manager = SystemdManager(Scope(False, unit_dir))
    opts = options(**bad)
    cmd = command_for(SAMPLE) if command is None else command
    with pytest.raises(ServiceHostError) as info:
        if what != "an unknown account":  # the pure renderer refuses all but this one (that needs pwd)
            render_unit(opts, cmd)
        manager.install(opts, cmd)
    message = str(info.value)
    assert isinstance(info.value, (UsageError, ConfigError)) and "\n" not in message and message
    assert "hunter2-s3cr3t" not in message
    with pytest.raises(ServiceHostError):
        manager.install(opts, cmd)
    assert not unit_dir.exists() or not any(unit_dir.iterdir())


@settings(max_examples=60, deadline=None)
@given(argv=st.lists(_word, min_size=0, max_size=6))
def test_exec_start_is_one_line_and_keeps_every_word_apart(argv):
    line = exec_line(["/usr/bin/python3", *argv])
    assert "\n" not in line and "\r" not in line and "\x00" not in line
    # Every % and $ is doubled: nothing left for specifier or variable expansion.
    assert re.sub(r"%%", "", line).count("%") == 0 and re.sub(r"\$\$", "", line).count("$") == 0
    assert not line.endswith("\\")


def test_the_package_is_light_and_names_where_each_name_lives():
    # The registry imports the package on every start: it must load none of its modules.
    code = ("import sys, servicehost.platforms.systemd as p; "
            "print(sorted(m for m in sys.modules if m.startswith('servicehost.platforms.systemd.')))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert proc.stdout.strip() == "[]"
    from servicehost.platforms import systemd

    modules = set(systemd.NAMES.values())
    assert modules == {"platform", "notify", "journal", "unit", "checks", "manager"}
    for module in modules:
        exported = importlib.import_module(f"servicehost.platforms.systemd.{module}").__all__
        assert {n for n, m in systemd.NAMES.items() if m == module} == set(exported), module
    assert getattr(systemd, "render_unit") is importlib.import_module("servicehost.platforms.systemd.unit").render_unit
    with pytest.raises(AttributeError):
        getattr(systemd, "not_a_name")
    assert platforms.load("systemd").__class__ is SystemdPlatform
