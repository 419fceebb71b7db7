"""The Manager contract (``platforms/base.py: Manager``), one suite run against every real manager:
servicehost's own supervisord, systemd as PID 1 (``with-systemd.sh``) and the SCM (Wine).

Each manager gets one service (``contract_service.py``), installed once and driven through the
``servicehost`` command line, as an admin would, step by step: not installed → install → start
with and without ``--wait`` → status fields → pause / continue / control / reload → stop →
restart → update → remove. The service is ready only once a gate file exists, so "start returns
only once it is ready" and "``--wait 0`` returns while it is still starting" are outcomes, not
timings. Timeouts are hang guards only. The tests are steps that build on each other: run the
module, or one manager's column (``-k supervisord``), not one test alone.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from servicehost.errors import ExitCode
from servicehost.platforms.base import STATE_CODES, STATUS_SCHEMA, ServiceStatus, StatusCode

from ..conftest import TOOLS
from .harness import HANG_GUARD, status_fields, supervisord_env, supervisord_home, until
from .test_systemd_real import systemd  # noqa: F401 (the fixture: a real systemd as PID 1)
from .test_windows_wine import wine  # noqa: F401 (the fixture: Wine's SCM)
from .wine import NATIVE, winpath

pytestmark = [pytest.mark.real_manager]

ROOT = Path(__file__).resolve().parents[2]
SERVICE = Path(__file__).resolve().parent / "contract_service.py"
MANAGERS = ("supervisord", "systemd", "windows")
NAME = f"shcontract{os.getpid() % 100000}"
#: The keys of ``status --json``, in order (schema STATUS_SCHEMA): every one always present.
STATUS_KEYS = list(ServiceStatus("x", "m", "running").as_json())


@dataclass
class Managed:
    """One manager with the contract service: how to run ``servicehost`` where that manager is."""

    manager: str
    target: str
    """The service file as the manager's side sees it."""
    gate: Path
    """The gate file (a path on this machine): the service is ready once it exists."""
    prefix: list[str]
    """The command that runs ``servicehost`` there (its arguments follow)."""
    env: dict[str, str] | None = None
    install_args: list[str] = field(default_factory=list)
    unknown: frozenset[str] = frozenset()
    """Status fields this manager cannot tell (they print ``unknown``: ServiceStatus)."""

    def argv(self, command: str, *args: str) -> list[str]:
        return [*self.prefix, command, self.target, "--name", NAME, *args]

    def cli(self, command: str, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        """``servicehost COMMAND TARGET --name NAME ARGS``; its exit code must be ``expect``."""
        proc = subprocess.run(self.argv(command, *args), env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=HANG_GUARD, cwd=ROOT)
        proc.stdout, proc.stderr = proc.stdout.replace("\r\n", "\n"), proc.stderr.replace("\r\n", "\n")
        if expect is not None:
            assert proc.returncode == expect, (f"{self.manager}: servicehost {command} {' '.join(args)}: exit "
                                               f"{proc.returncode}, expected {expect}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def admin(self, *args: str, expect: int | None = 0) -> subprocess.CompletedProcess[str]:
        """``servicehost ARGS`` as an admin types it by the service's name: no TARGET, no manager
        named (SERVICEHOST_MANAGER is dropped: the name is looked up where it is installed), from
        ``/``, where the service's code is not."""
        env = {k: v for k, v in (self.env or os.environ).items() if k != "SERVICEHOST_MANAGER"}
        proc = subprocess.run([*self.prefix, *args], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace", timeout=HANG_GUARD, cwd="/")
        proc.stdout, proc.stderr = proc.stdout.replace("\r\n", "\n"), proc.stderr.replace("\r\n", "\n")
        if expect is not None:
            assert proc.returncode == expect, (f"{self.manager}: servicehost {' '.join(args)}: exit "
                                               f"{proc.returncode}, expected {expect}\n{proc.stdout}\n{proc.stderr}")
        return proc

    def listed(self) -> dict[str, Any]:
        """This service's row of ``servicehost list --json``."""
        rows = [row for row in json.loads(self.admin("list", "--json").stdout) if row["name"] == NAME]
        assert len(rows) == 1, rows
        return rows[0]  # type: ignore[no-any-return]

    def background(self, command: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.argv(command, *args), env=self.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace", cwd=ROOT)

    def status(self) -> dict[str, str]:
        """``servicehost status`` as fields; its exit code must be the state's (0 running, 3 not
        running, 4 not installed: STATE_CODES), whatever the step."""
        proc = self.cli("status", expect=None)
        fields = status_fields(proc.stdout)
        assert "state" in fields and proc.returncode == STATE_CODES[fields["state"]], (
            f"{self.manager}: status exit {proc.returncode} for state {fields.get('state')}\n{proc.stdout}\n{proc.stderr}")
        return fields

    def status_json(self) -> dict[str, Any]:
        """``servicehost status --json``, checked against the schema; its exit code is the state's."""
        proc = self.cli("status", "--json", expect=None)
        doc = json.loads(proc.stdout)
        assert proc.returncode == doc["status_code"] == STATE_CODES[doc["state"]], (proc.returncode, doc)
        assert list(doc) == STATUS_KEYS and doc["schema"] == STATUS_SCHEMA, doc
        assert (doc["name"], doc["manager"]) == (NAME, self.manager), doc
        return doc  # type: ignore[no-any-return]

    def state(self) -> str:
        return self.status()["state"]

    def logs(self) -> str:
        return self.cli("logs").stdout

    def open_gate(self) -> None:
        self.gate.touch()
        self.gate.chmod(0o644)

    def close_gate(self) -> None:
        self.gate.unlink(missing_ok=True)


def _supervisord(tmp: Path) -> Iterator[Managed]:
    with supervisord_home() as home:
        yield Managed(
            "supervisord", str(SERVICE), home / "gate", [sys.executable, "-m", "servicehost"],
            env={**os.environ, **supervisord_env(home), "SERVICEHOST_MANAGER": "supervisord"},
            install_args=["--state-dir", str(home / "state")])


def _systemd(request: pytest.FixtureRequest) -> Iterator[Managed]:
    sd = request.getfixturevalue("systemd")
    folder = sd.base / "contract"
    folder.mkdir(mode=0o755)
    target = folder / SERVICE.name
    shutil.copy(SERVICE, target)
    target.chmod(0o644)
    yield Managed(
        "systemd", str(target), folder / "gate",
        [str(TOOLS / "with-systemd.sh"), "exec", sd.instance, "--", str(sd.python), "-m", "servicehost"])


def _windows(request: pytest.FixtureRequest, tmp: Path) -> Iterator[Managed]:
    wine_env = request.getfixturevalue("wine")
    prefix = [sys.executable] if NATIVE else ["wine", wine_env.env["WINPY_PYTHON"]]
    managed = Managed(
        "windows", winpath(SERVICE), tmp / "gate", [*prefix, "-m", "servicehost"], env=wine_env.env,
        install_args=["--state-dir", winpath(tmp / "state")], unknown=frozenset({"restarts"}))
    try:
        yield managed
    finally:  # whatever state a failed step left it in (the SCM is shared with other runs)
        from .test_windows_wine import _remove

        _remove(wine_env, NAME)


@pytest.fixture(scope="module", params=MANAGERS)
def managed(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Managed]:
    """The contract service's manager; the service is removed afterwards whatever state it is in."""
    tmp = tmp_path_factory.mktemp(f"contract-{request.param}")
    if request.param == "supervisord":
        made = _supervisord(tmp)
    elif request.param == "systemd":
        made = _systemd(request)
    else:
        made = _windows(request, tmp)
    with_it = next(made)
    try:
        yield with_it
    finally:
        try:
            if "not-installed" not in with_it.cli("status", expect=None).stdout:
                with_it.cli("remove", expect=None)
        finally:
            made.close()


def _mark(logs: str) -> str:
    """The mark the service logged at its last start."""
    marks = re.findall(r"contract: started pid=\d+ mark=(\S*)", logs)
    assert marks, logs[-2000:]
    return marks[-1]


# -- the contract, in the order an admin meets it -----------------------------------------------------
NOT_INSTALLED = [("start",), ("stop",), ("restart",), ("remove",), ("pause",), ("continue",), ("reload",),
                 ("control", "200"), ("update",)]


def _gate(managed: Managed) -> str:
    return winpath(managed.gate) if managed.manager == "windows" else str(managed.gate)


def _install_args(managed: Managed, mark: str) -> list[str]:
    return [*managed.install_args, "--start", "manual", "--env", f"CONTRACT_GATE={_gate(managed)}",
            "--env", f"CONTRACT_MARK={mark}"]


def test_a_service_not_installed_is_not_installed_and_every_command_says_so(managed):
    status = managed.status()
    assert (status["name"], status["manager"], status["state"]) == (NAME, managed.manager, "not-installed")
    for command, *args in NOT_INSTALLED:
        proc = managed.cli(command, *args, expect=ExitCode.CONFIG_ERROR)
        assert NAME in proc.stderr and "Traceback" not in proc.stderr, (command, proc.stderr)


def test_status_of_a_service_not_installed_exits_4_with_or_without_json(managed):
    assert managed.cli("status", expect=None).returncode == StatusCode.UNKNOWN
    doc = managed.status_json()
    assert (doc["state"], doc["status_code"], doc["running"], doc["pid"]) == ("not-installed", 4, False, None)


def test_a_name_installed_nowhere_is_said_to_be_so_by_every_verb(managed):
    for command, *args in NOT_INSTALLED:
        if command == "control":
            continue  # its CODE's place on the command line is the CLI's to settle, not this step's
        proc = managed.admin(command, NAME, *args, expect=ExitCode.CONFIG_ERROR)
        assert NAME in proc.stderr and "Traceback" not in proc.stderr, (command, proc.stderr)
    status = managed.admin("status", NAME, expect=StatusCode.UNKNOWN)
    assert status_fields(status.stdout)["state"] == "not-installed"
    assert NAME not in [row["name"] for row in json.loads(managed.admin("list", "--json").stdout)]


def test_install_registers_it_and_install_again_never_makes_a_second_one(managed):
    out = managed.cli("install", *_install_args(managed, "1")).stdout
    assert f"installed {NAME} under {managed.manager}" in out
    assert managed.status()["pid"] == "unknown"
    again = managed.cli("install", *_install_args(managed, "1"), expect=None)
    if managed.manager == "windows":  # pywin32's install updates an installed service in place
        assert again.returncode == 0 and f"{NAME} is already installed: updating it instead" in again.stderr
    else:
        assert again.returncode == ExitCode.CONFIG_ERROR and "already installed" in again.stderr, again.stderr
    assert managed.status()["pid"] == "unknown"  # install never starts it


def test_an_installed_service_that_never_ran_is_stopped(managed):
    assert managed.state() == "stopped"


def test_a_stopped_service_exits_3_and_its_json_says_not_running(managed):
    assert managed.cli("status", expect=None).returncode == StatusCode.NOT_RUNNING
    doc = managed.status_json()
    assert (doc["state"], doc["status_code"], doc["running"], doc["pid"], doc["since"]) == (
        "stopped", 3, False, None, None)
    assert doc["start_mode"] == "manual" and doc["account"] != "", doc  # installed with --start manual


def test_start_wait_0_queues_the_start_and_returns_while_the_service_is_starting(managed):
    managed.close_gate()
    try:
        managed.cli("start", "--wait", "0")
        # queued: the manager may take a moment to act on it, but the gate is shut, so never ready
        state = until(lambda: (s := managed.state()) != "stopped" and s, "the queued start to be taken up")
        assert state == "starting"
    finally:
        managed.open_gate()
    until(lambda: managed.state() == "running", "the service to be ready once the gate is open")
    assert "contract: ready" in managed.logs()


def test_start_not_ready_within_wait_is_a_start_failure(managed):
    managed.cli("stop")
    managed.close_gate()
    try:
        late = managed.cli("start", "--wait", "1", expect=None)
        assert late.returncode == ExitCode.START_FAILURE and "not ready" in late.stderr, late.stderr
        assert managed.state() == "starting"  # still starting: giving up waiting stops nothing
    finally:
        managed.open_gate()
    until(lambda: managed.state() == "running", "the service to be ready once the gate is open")


def test_status_shows_the_same_fields_under_every_manager(managed):
    status = managed.status()
    assert (status["name"], status["manager"], status["state"]) == (NAME, managed.manager, "running")
    assert status["pid"].isdigit() and int(status["pid"]) > 0
    assert re.fullmatch(r"\d+s", status["uptime"]), status
    for key in ("restarts", "last exit"):
        assert key in status
    for key in managed.unknown:
        assert status[key] == "unknown"
    if "restarts" not in managed.unknown:
        assert status["restarts"] == "0"


def test_status_json_of_a_running_service_has_every_field_and_its_counters(managed):
    assert managed.cli("status", expect=None).returncode == StatusCode.RUNNING
    doc = managed.status_json()
    assert (doc["state"], doc["status_code"], doc["running"], doc["ready"]) == ("running", 0, True, True), doc
    assert isinstance(doc["pid"], int) and doc["pid"] > 0 and isinstance(doc["uptime"], float), doc
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", doc["since"]), doc
    assert doc["start_mode"] == "manual" and doc["account"], doc
    assert isinstance(doc["sub_state"], str) and isinstance(doc["detail"], dict), doc
    # The service's own counters, from its control channel: the same under every manager (the
    # unix socket under supervisord and systemd, the named pipe under the SCM).
    pool = until(lambda: [c for c in managed.status_json()["counters"] or [] if c["name"] == "contract-pool"
                          and c["completed"] >= 1], "the contract pool's task in the status counters")
    assert set(pool[0]) >= {"submitted", "completed", "failed", "in_flight", "queue_depth"}, pool
    text = managed.status()
    assert text["status"].startswith("running") and "contract-pool: 1 done" in text["status"], text


def test_pause_continue_control_and_reload_reach_the_service(managed):
    managed.cli("pause")
    assert managed.state() == "paused"
    managed.cli("continue")
    assert managed.state() == "running"
    managed.cli("control", "200")
    managed.cli("reload")
    refused = managed.cli("control", "127", expect=ExitCode.CONFIG_ERROR)
    assert "128" in refused.stderr and "255" in refused.stderr and "Traceback" not in refused.stderr
    for line in ("contract: paused", "contract: continued", "contract: control 200", "contract: reloaded"):
        until(lambda line=line: line in managed.logs(), f"{line!r} in the service's log")


def test_logs_shows_the_last_lines_and_follows_new_ones(managed):
    tail = managed.cli("logs", "-n", "3").stdout.splitlines()
    assert len(tail) == 3 and tail == managed.logs().splitlines()[-3:], tail
    if managed.manager == "windows":  # the Event Log is read in records: nothing to follow, and it says so
        refused = managed.cli("logs", "--follow", expect=ExitCode.CONFIG_ERROR)
        assert "no log that can be followed" in refused.stderr and "Traceback" not in refused.stderr
        return
    follower = subprocess.Popen(managed.argv("logs", "-n", "1", "--follow"), env=managed.env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace",
                                cwd=ROOT, start_new_session=True)  # its own group: the follower inside goes with it
    seen: list[str] = []
    reader = threading.Thread(target=lambda: seen.extend(follower.stdout or ()), daemon=True)
    reader.start()
    try:
        until(lambda: seen, "the follower's first line")
        managed.cli("control", "201")
        until(lambda: any("contract: control 201" in line for line in seen), "a new line while following")
    finally:
        os.killpg(follower.pid, signal.SIGINT)  # Ctrl-C, as an admin ends it
        try:
            follower.wait(HANG_GUARD)
        except subprocess.TimeoutExpired:
            os.killpg(follower.pid, signal.SIGKILL)
            follower.wait(HANG_GUARD)
    if managed.prefix[0] == sys.executable:  # servicehost itself, not a wrapper entering a container
        assert follower.returncode == 0, "".join(seen)  # Ctrl-C is how following ends: not an error


def test_stop_waits_until_it_has_stopped_and_a_stopped_service_takes_no_controls(managed):
    managed.cli("stop")
    status = managed.status()
    assert (status["state"], status["pid"]) == ("stopped", "unknown")
    managed.cli("stop")  # stopped already: nothing to do
    for command, *args in (("pause",), ("continue",), ("reload",), ("control", "200")):
        proc = managed.cli(command, *args, expect=ExitCode.CONFIG_ERROR)
        assert "Traceback" not in proc.stderr, proc.stderr


def test_a_requested_stop_shows_as_a_clean_last_exit(managed):
    managed.cli("start")
    managed.cli("stop")
    assert managed.status()["last exit"] == "0 (OK)"


def test_a_failed_start_exits_3_and_its_manager_never_restarts_it(managed):
    """Exit 3 is final under every manager (README: Restarts): supervisord says EXITED (it respawns
    only codes outside exitcodes), systemd failed (RestartPreventExitStatus=), the SCM stopped with
    win32 exit code 0 (its failure actions run for any other)."""
    fail = Path(str(managed.gate) + ".fail")
    fail.touch()
    fail.chmod(0o644)
    try:
        before = managed.logs().count("contract: started")
        managed.cli("start", expect=ExitCode.START_FAILURE)
        status = managed.status()
        assert (status["state"], status["pid"], status["last exit"]) == ("failed", "unknown", "3 (START_FAILURE)"), status
        if "restarts" not in managed.unknown:
            assert status["restarts"] == "0"
        if managed.manager == "windows":
            assert status["win32 exit code"] == "0"
        until(lambda: managed.logs().count("contract: started") > before, "the failed start in the log")
        assert managed.logs().count("contract: started") == before + 1  # started once, not again
    finally:
        fail.unlink()
    managed.cli("start")  # it starts again once it can
    assert managed.state() == "running"
    managed.cli("stop")


def test_start_without_wait_returns_only_once_the_service_is_ready(managed):
    managed.close_gate()
    start = managed.background("start")
    try:
        until(lambda: managed.state() == "starting", "the service to be starting")
        assert start.poll() is None  # not ready (the gate is shut), so start is still waiting
    finally:
        managed.open_gate()
        try:
            out, err = start.communicate(timeout=HANG_GUARD)
        finally:
            if start.poll() is None:
                start.kill()
                start.communicate()
    assert start.returncode == 0, out + err
    assert managed.state() == "running"  # start returned: it is ready


def test_stop_and_start_with_wait_0_return_at_once_and_get_there(managed):
    managed.cli("stop", "--wait", "0")
    until(lambda: managed.state() == "stopped", "the queued stop to be done")
    managed.cli("start", "--wait", "0")
    until(lambda: managed.state() == "running", "the queued start to be done")


def test_restart_starts_a_new_process(managed):
    first = managed.status()["pid"]
    managed.cli("restart")
    status = managed.status()
    assert status["state"] == "running" and status["pid"] not in ("unknown", first)


def test_restart_wait_0_returns_and_a_new_process_gets_running(managed):
    first = managed.status()["pid"]
    managed.cli("restart", "--wait", "0")
    until(lambda: (s := managed.status())["state"] == "running" and s["pid"] not in ("unknown", first),
          "the queued restart to be done")


def test_update_changes_the_service_and_the_next_restart_applies_it(managed):
    managed.cli("start")  # running whatever an earlier step left
    before = managed.status()["pid"]
    assert _mark(managed.logs()) == "1"
    managed.cli("update", *_install_args(managed, "2"))
    status = managed.status()
    assert (status["state"], status["pid"]) == ("running", before)  # never restarted by update
    managed.cli("restart")
    until(lambda: _mark(managed.logs()) == "2", "the new setting after the restart")


def test_every_verb_takes_the_installed_name_alone_from_any_directory(managed):
    managed.admin("stop", NAME)
    assert status_fields(managed.admin("status", NAME, expect=StatusCode.NOT_RUNNING).stdout)["state"] == "stopped"
    managed.admin("start", NAME)  # ready: start waits for it, as with a TARGET
    first = status_fields(managed.admin("status", NAME).stdout)
    assert (first["name"], first["manager"], first["state"]) == (NAME, managed.manager, "running"), first
    managed.admin("pause", NAME)
    assert status_fields(managed.admin("status", NAME).stdout)["state"] == "paused"
    managed.admin("continue", NAME)
    managed.admin("reload", NAME)
    until(lambda: "contract: reloaded" in managed.admin("logs", NAME).stdout, "the reload in the log, by name")
    managed.admin("restart", NAME)
    again = status_fields(managed.admin("status", NAME).stdout)
    assert again["state"] == "running" and again["pid"] not in (first["pid"], "unknown"), again


def test_list_shows_it_with_its_manager_state_and_target(managed):
    row = managed.listed()
    assert (row["manager"], row["state"]) == (managed.manager, "running"), row
    assert row["target"] == managed.target and managed.target in row["command"], row
    text = managed.admin("list").stdout
    line = next(line for line in text.splitlines() if line.startswith(NAME + " "))
    assert line.split()[:3] == [NAME, managed.manager, "running"] and line.endswith(managed.target), text


def test_update_by_name_changes_only_what_it_is_given_and_says_what(managed):
    before = managed.listed()["command"]
    out = managed.admin("update", NAME, "--env", "CONTRACT_MARK=3").stdout
    assert out.splitlines() == ["changed: --env CONTRACT_MARK: set -> set to a new value",
                                f"updated {NAME} under {managed.manager}; restart it to apply"], out
    assert managed.listed()["command"] == before  # the command and its settings are kept
    managed.admin("restart", NAME)  # ready again only because its gate (CONTRACT_GATE) was kept
    until(lambda: _mark(managed.logs()) == "3", "the new mark after the restart")
    assert managed.status_json()["start_mode"] == "manual"  # kept from the install
    out = managed.admin("update", NAME, "--env", "CONTRACT_EXTRA=x", "--log-level", "DEBUG").stdout
    assert out.splitlines()[:2] == ["changed: --env CONTRACT_EXTRA: (none) -> set",
                                    "changed: --log-level: (default) -> DEBUG"], out
    assert managed.listed()["command"] == [*before, "--log-level", "DEBUG"]
    out = managed.admin("update", NAME, "--env", "CONTRACT_EXTRA=", "--depends", "").stdout  # one removed, none cleared
    assert out.splitlines()[0] == "changed: --env CONTRACT_EXTRA: set -> (removed)" and len(out.splitlines()) == 2, out
    assert "nothing given changed" in managed.admin("update", NAME).stdout


def test_the_manager_was_told_the_restart_policy_the_readme_states(managed):
    """README: Restarts, read back from each manager itself (the default --restart-delay, 5 s)."""
    from servicehost.platforms.base import InstallOptions
    from servicehost.platforms.windows import failure_actions

    managed.cli("start")
    if managed.manager == "supervisord":
        from servicehost.platforms.supervisord import SupervisordManager, owned_layout

        assert managed.env is not None
        supervisord = SupervisordManager(owned_layout(Path(managed.env["SERVICEHOST_SUPERVISORD_HOME"])))
        (config,) = [c for c in supervisord.rpc("getAllConfigInfo") if c["name"] == NAME]
        assert (config["exitcodes"], config["startsecs"]) == ([0, 2, 3, 4], 0)
        pid = int(managed.status()["pid"])
        environ = dict(v.split("=", 1) for v in Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in v)
        assert environ["SERVICEHOST_RESTART_DELAY"] == "5"
        assert environ["SERVICEHOST_SUPERVISORD_HOME"] == managed.env["SERVICEHOST_SUPERVISORD_HOME"]
    elif managed.manager == "systemd":
        systemctl = [*managed.prefix[:managed.prefix.index("--") + 1], "systemctl"]
        shown = subprocess.run([*systemctl, "show", f"{NAME}.service", "-p", "Restart,RestartUSec,RestartPreventExitStatus"],
                               capture_output=True, text=True, timeout=HANG_GUARD, check=True).stdout
        assert dict(line.split("=", 1) for line in shown.splitlines()) == {
            "Restart": "on-failure", "RestartUSec": "5s", "RestartPreventExitStatus": "2 3"}, shown
        unit = subprocess.run([*systemctl, "cat", f"{NAME}.service"], capture_output=True, text=True,
                              timeout=HANG_GUARD, check=True).stdout
        assert "RestartSteps=" not in unit  # the harness runs systemd 252: the steps come from 254
    else:
        if not NATIVE:
            from .test_windows_wine import _wine_lacks

            _wine_lacks("failure actions / restart after crash", "nothing is stored and a crashed service stays down")
        got = subprocess.run([*managed.prefix[:-2], "-c", (
            "import json, sys, win32service as ws; h = ws.OpenService(ws.OpenSCManager(None, None, 1), sys.argv[1], 1);"
            " a = ws.QueryServiceConfig2(h, ws.SERVICE_CONFIG_FAILURE_ACTIONS);"
            " print(json.dumps([a['ResetPeriod'], [d for _, d in a['Actions']]]))"), NAME],
            capture_output=True, text=True, timeout=HANG_GUARD, check=True).stdout
        assert tuple(json.loads(got)) == failure_actions(InstallOptions(name=NAME))


def test_remove_stops_and_unregisters_it(managed):
    managed.admin("remove", NAME)
    assert managed.state() == "not-installed"
    proc = managed.cli("start", expect=ExitCode.CONFIG_ERROR)
    assert NAME in proc.stderr and "Traceback" not in proc.stderr
