"""``servicehost status`` as admins expect: LSB exit codes (0 running, 3 not running, 4 not
installed or unknown), ``--json`` with a stable schema, an honest state.

The codes and the JSON on every real manager are steps of the Manager contract suite
(test_manager_contract.py). Here: the record itself (each state's code, the JSON document), a
service run in a terminal that no manager has (a real ``servicehost run`` process, found by its
control channel), and a crash loop under a real systemd and a real supervisord (``restarting``,
exit 3, never ``starting``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost.platforms.base import STATE_CODES, STATUS_SCHEMA, ServiceStatus, StatusCode
from servicehost.platforms.control import STATUS_STATES
from servicehost.platforms.control_client import foreground_status, status_fields
from servicehost.lifecycle import HostState

from .harness import HANG_GUARD, status_fields as text_fields, until
from .test_systemd_real import systemd  # noqa: F401 (the fixture: a real systemd as PID 1)

ROOT = Path(__file__).resolve().parents[2]

#: The keys of schema 1, in order: keys are only ever added (at the end); removing or changing one
#: is a new STATUS_SCHEMA (README: status --json).
SCHEMA_1 = ["schema", "name", "manager", "state", "sub_state", "status_code", "running", "ready", "pid", "since",
            "uptime", "restarts", "last_exit", "account", "start_mode", "status_line", "counters", "detail",
            # added by issue 12 (what the service says of itself on its control channel)
            "state_since", "healthy", "last_error", "version", "servicehost_version", "python"]


# -- the record --------------------------------------------------------------------------------------
def test_each_state_has_its_lsb_code_and_an_unlisted_state_is_unknown():
    running = {"running", "starting", "pausing", "paused", "resuming", "draining", "stopping"}
    not_running = {"stopped", "failed", "restarting"}
    assert {s for s, c in STATE_CODES.items() if c is StatusCode.RUNNING} == running
    assert {s for s, c in STATE_CODES.items() if c is StatusCode.NOT_RUNNING} == not_running
    assert {s for s, c in STATE_CODES.items() if c is StatusCode.UNKNOWN} == {"not-installed", "unknown"}
    assert (StatusCode.RUNNING, StatusCode.NOT_RUNNING, StatusCode.UNKNOWN) == (0, 3, 4)
    assert ServiceStatus("svc", "systemd", "no-such-state").code is StatusCode.UNKNOWN


def test_every_host_state_a_channel_answers_is_a_running_state():
    # A host that answers is alive, whatever it says: status exits 0 for it.
    assert set(STATUS_STATES) == {s.value for s in HostState}
    assert {STATE_CODES[s] for s in STATUS_STATES.values()} == {StatusCode.RUNNING}


def test_the_json_document_has_every_key_of_its_schema_null_where_unknown():
    doc = ServiceStatus("svc", "supervisord", "not-installed").as_json()
    assert list(doc) == SCHEMA_1 and doc["schema"] == STATUS_SCHEMA == 1
    assert (doc["status_code"], doc["running"]) == (4, False)
    assert all(doc[k] is None for k in ("sub_state", "ready", "pid", "since", "uptime", "restarts", "last_exit",
                                        "account", "start_mode", "status_line", "counters", "state_since",
                                        "healthy", "last_error", "version", "servicehost_version", "python"))
    assert doc["detail"] == {}
    json.dumps(doc)  # plain JSON


def test_the_json_document_of_a_running_service():
    counters = [{"name": "pool", "submitted": 3, "completed": 2, "failed": 1, "in_flight": 0, "queue_depth": 0,
                 "latency_p50": 0.001, "latency_p99": None}]
    status = ServiceStatus("svc", "systemd", "running", pid=42, uptime=90.25, restarts=2, last_exit=1,
                           detail={"unit": "/x"}, sub_state="active/running", ready=True, account="DynamicUser",
                           start_mode="auto", status_line="running; pool: 2 done", counters=counters)
    doc = status.as_json(now=1_700_000_090.25)
    assert (doc["status_code"], doc["running"], doc["ready"], doc["pid"]) == (0, True, True, 42)
    assert (doc["since"], doc["uptime"]) == ("2023-11-14T22:13:20+00:00", 90.25)
    assert doc["last_exit"] == {"code": 1, "name": "CRASH", "signal": None}
    assert doc["counters"] == counters and doc["detail"] == {"unit": "/x"}
    killed = ServiceStatus("svc", "supervisord", "restarting", last_exit=-signal.SIGKILL).as_json()
    assert killed["last_exit"] == {"code": None, "name": None, "signal": "SIGKILL"}
    assert (killed["status_code"], killed["running"]) == (3, False)


def test_the_text_keeps_its_fields_and_adds_what_is_known():
    lines = ServiceStatus("svc", "supervisord", "running", pid=7, uptime=3.4, restarts=0, last_exit=0,
                          detail={"log": "/l"}, account="svc", start_mode="manual",
                          status_line="running; pool: 1 done").lines()
    assert lines == ["name:      svc", "manager:   supervisord", "state:     running", "pid:       7",
                     "uptime:    3s", "restarts:  0", "last exit: 0 (OK)", "account: svc", "start mode: manual",
                     "status: running; pool: 1 done", "log: /l"]
    bare = ServiceStatus("svc", "windows", "stopped").lines()
    assert bare[3:] == ["pid:       unknown", "uptime:    unknown", "restarts:  unknown", "last exit: unknown"]


def test_the_screen_shows_each_component_timers_and_the_last_error():
    """The one screen (``status_screen.py``), from what a service answers, against a fixed clock."""
    now = 1_800_000_000.0
    pool = {"name": "files", "kind": "ThreadPool", "submitted": 10_300, "completed": 10_234, "failed": 3,
            "in_flight": 3, "workers": 8, "queue_depth": 12, "queue_capacity": 1024, "latency_p50": 0.0012,
            "latency_p95": 0.008, "last_error": "PermissionError: denied", "last_error_at": now - 7}
    timer = {"name": "summary", "kind": "PeriodicTimer", "submitted": 61, "completed": 61, "failed": 0,
             "in_flight": 0, "workers": 1, "queue_depth": 0, "latency_p50": 0.00031, "latency_p95": 0.0011,
             "last_result": "ok", "last_run": now - 4, "next_run": now + 1, "skipped": 2}
    status = ServiceStatus("drop", "systemd", "draining", pid=42, uptime=182.0, counters=[pool, timer],
                           state_since=now - 182, healthy=True, version="1.4", servicehost_version="0.1.0",
                           python="3.11.2")
    lines = status.lines(now)
    fields = text_fields("\n".join(lines))
    assert (fields["state"], fields["version"], fields["health"]) == ("draining", "1.4 (servicehost 0.1.0, Python 3.11.2)", "ok")
    assert fields["since"].endswith("(3min 2s ago)"), fields
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["component", "kind", "busy", "queue", "done", "failed", "p50", "p95"]
    assert table[1].split() == ["files", "ThreadPool", "3/8", "12/1024", "10234", "3", "1.2ms", "8ms"]
    assert table[2].split() == ["summary", "PeriodicTimer", "0/1", "0", "61", "0", "310us", "1.1ms"]
    assert table[3].startswith("  summary: last run ok at ") and "(4s ago), next at" in table[3], table[3]
    assert table[3].endswith("(in 1s); 2 skipped"), table[3]
    # no last_error sent (an older service): the latest failure in the counters
    assert lines[-1].startswith("last error: files at ") and lines[-1].endswith("(7s ago): PermissionError: denied")
    doc = status.as_json()
    assert doc["state_since"].endswith("+00:00") and doc["status_code"] == 0 and doc["counters"][0] == pool


def test_the_readme_documents_every_key_and_state():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### `status`"):]
    section = section[:section.index("\n## ")]
    for key in SCHEMA_1:
        assert f"`{key}`" in section, f"README's status section does not document the JSON key {key!r}"
    for state, code in STATE_CODES.items():
        row = next(line for line in section.splitlines() if line.startswith(f"| {int(code)} |"))
        assert f"`{state}`" in row, f"README's status table does not give {state!r} exit {int(code)}"


def test_a_manager_that_cannot_tell_is_unknown_exit_4(capsys):
    from servicehost.cli import run_cli

    assert run_cli(["status", "shnosuchservice", "--manager", "foreground", "--json"]) == StatusCode.UNKNOWN
    doc = json.loads(capsys.readouterr().out)
    assert (doc["state"], doc["status_code"], doc["manager"]) == ("unknown", 4, "foreground")
    assert "no service manager" in doc["detail"]["error"], doc


def test_status_fields_of_a_channel_answer():
    answer = {"pid": 1, "name": "svc", "state": "paused", "ready": True, "uptime": 2.0, "healthy": True,
              "status_line": "paused; pool: 0 done", "counters": [{"name": "pool"}]}
    assert status_fields(answer) == {"state": "paused", "sub_state": "paused", "ready": True,
                                     "status_line": "paused; pool: 0 done", "counters": [{"name": "pool"}],
                                     "state_since": None, "healthy": True, "last_error": None, "version": None,
                                     "servicehost_version": None, "python": None}
    ping = status_fields({"state": "starting", "ready": False})  # ping: no summary, no counters
    assert (ping["state"], ping["status_line"], ping["counters"]) == ("starting", None, None)


# -- a run in a terminal, which no manager has ------------------------------------------------------------
TERMINAL_SERVICE = textwrap.dedent('''
    """Runs one task on its pool once ready, so its status has counters."""
    from servicehost import Service, StopToken, ThreadPool

    class Terminal(Service):
        name = "shterminal{suffix}"

        def start(self):
            self.pool = self.use(ThreadPool(2, name="terminal-pool"))

        def run(self, stop: StopToken):
            self.pool.submit(int)
            stop.wait()
''')


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """The service file and an environment: its own runtime dir (where the channel is), and an
    empty supervisord home as the manager ``status`` asks (nothing is installed there)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("a run in a terminal serves its control channel on Linux only")
    from .harness import need_supervisor_package

    need_supervisor_package()
    target = tmp_path / "terminal_service.py"
    target.write_text(TERMINAL_SERVICE.replace("{suffix}", str(os.getpid() % 100000)))
    env = {**os.environ, "SERVICEHOST_RUNTIME_DIR": str(tmp_path / "run"),
           "SERVICEHOST_SUPERVISORD_HOME": str(tmp_path / "sv"), "PYTHONPATH": str(ROOT / "src")}
    env.pop("SERVICEHOST_MANAGER", None)
    yield target, env


def _status(target: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "servicehost", "status", str(target), *args],
                          env={**env, "SERVICEHOST_MANAGER": "supervisord"}, capture_output=True, text=True,
                          timeout=HANG_GUARD, stdin=subprocess.DEVNULL, cwd=ROOT)


def test_a_run_in_a_terminal_is_running_while_it_answers_and_not_installed_once_gone(terminal):
    target, env = terminal
    before = _status(target, env)
    assert before.returncode == StatusCode.UNKNOWN and text_fields(before.stdout)["state"] == "not-installed"

    run = subprocess.Popen([sys.executable, "-m", "servicehost", "run", str(target), "--log-file", "none"],
                           env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT)
    try:
        doc = until(lambda: (p := _status(target, env, "--json")).returncode == 0 and json.loads(p.stdout),
                    "the run to answer on its control channel")
        assert (doc["manager"], doc["state"], doc["ready"], doc["pid"]) == ("foreground", "running", True, run.pid)
        assert list(doc) == SCHEMA_1 and doc["detail"]["control channel"].startswith(str(Path(env["SERVICEHOST_RUNTIME_DIR"])))
        pool = until(lambda: [c for c in json.loads(_status(target, env, "--json").stdout)["counters"]
                              if c["name"] == "terminal-pool" and c["completed"] == 1], "the task in the counters")
        assert pool[0]["failed"] == 0
        text = _status(target, env)
        assert text.returncode == 0 and "terminal-pool: 1 done" in text_fields(text.stdout)["status"], text.stdout
        # The same answer as the library call the command makes.
        name = f"shterminal{os.getpid() % 100000}"
        direct = foreground_status(name, {"SERVICEHOST_RUNTIME_DIR": env["SERVICEHOST_RUNTIME_DIR"]})
        assert direct is not None and (direct.state, direct.pid, direct.manager) == ("running", run.pid, "foreground")
    finally:
        run.send_signal(signal.SIGTERM)
        _, err = run.communicate(timeout=HANG_GUARD)
    assert run.returncode == 0, err
    after = _status(target, env, "--json")
    assert after.returncode == StatusCode.UNKNOWN and json.loads(after.stdout)["state"] == "not-installed"


def test_a_second_run_of_the_same_name_still_runs_without_a_channel(terminal, tmp_path):
    """The channel is optional in a terminal: a name that answers already is logged, not fatal."""
    target, env = terminal
    argv = [sys.executable, "-m", "servicehost", "run", str(target), "--log-file", "none"]
    first = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, cwd=ROOT)
    second = None
    log = tmp_path / "second.log"
    try:
        until(lambda: _status(target, env).returncode == 0, "the first run to answer")
        with open(log, "wb") as err:
            second = subprocess.Popen(argv, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=err, cwd=ROOT)
        until(lambda: "ready: every service said so" in log.read_text(), "the second run to be ready")
        # its channel is opened once it is ready, on a thread of its own: its refusal comes after
        until(lambda: "control channel unavailable" in log.read_text(), "the second run's channel to give up")
        said = log.read_text()
        assert "control channel unavailable" in said and "already serves" in said, said
        doc = json.loads(_status(target, env, "--json").stdout)
        assert doc["pid"] == first.pid  # the channel still answers for the first
        for proc in (second, first):
            proc.send_signal(signal.SIGTERM)
        assert (second.wait(HANG_GUARD), first.wait(HANG_GUARD)) == (0, 0)
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()


# -- a crash loop under a real systemd ----------------------------------------------------------------------
CRASHING_SERVICE = '''
"""Ready at once, then an exception escapes run(): exit 1, which systemd restarts."""
from servicehost import Service, StopToken

class Crasher(Service):
    name = "shcrasher"

    def run(self, stop: StopToken):
        if not stop.wait(0.5):
            raise RuntimeError("crash on purpose")
'''


def test_a_crash_loop_under_systemd_is_restarting_not_starting_and_exits_3(systemd):  # noqa: F811
    sd = systemd
    target = sd.base / "crash_service.py"
    target.write_text(CRASHING_SERVICE)
    target.chmod(0o644)
    # A restart delay far longer than the test needs to look: between two runs it stays restarting.
    r = sd.cli("install", str(target), "--start", "manual", "--restart-delay", "60", "--log-file", "none")
    assert r.returncode == 0, r.stdout + r.stderr
    try:
        sd.cli("start", str(target), "--wait", "0")

        def restarting() -> dict[str, object] | None:
            proc = sd.cli("status", str(target), "--json")
            doc = json.loads(proc.stdout)
            assert proc.returncode == doc["status_code"] == STATE_CODES[doc["state"]], (proc.returncode, doc)
            return doc if doc["state"] == "restarting" else None

        doc = until(restarting, "the crashed service to wait for its restart")
        assert (doc["status_code"], doc["running"], doc["sub_state"]) == (3, False, "activating/auto-restart"), doc
        assert doc["last_exit"] == {"code": 1, "name": "CRASH", "signal": None}, doc
        text = sd.cli("status", str(target))
        assert text.returncode == StatusCode.NOT_RUNNING and text_fields(text.stdout)["state"] == "restarting"
    finally:
        sd.cli("remove", str(target))


# -- a crash loop under a real supervisord --------------------------------------------------------------
def test_a_crash_loop_under_supervisord_is_restarting_and_exits_3(tmp_path):
    from .harness import supervisord_env, supervisord_home

    with supervisord_home() as home:
        target = tmp_path / "crash_service.py"
        target.write_text(CRASHING_SERVICE)
        env = {**os.environ, **supervisord_env(home), "SERVICEHOST_MANAGER": "supervisord"}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "servicehost", *args], env=env, capture_output=True,
                                  text=True, timeout=HANG_GUARD, stdin=subprocess.DEVNULL, cwd=ROOT)

        r = cli("install", str(target), "--start", "manual", "--restart-delay", "60", "--state-dir",
                str(home / "state"))
        assert r.returncode == 0, r.stdout + r.stderr
        assert cli("start", "shcrasher", "--wait", "0").returncode == 0

        def restarting() -> dict[str, object] | None:
            proc = cli("status", "shcrasher", "--json")
            doc = json.loads(proc.stdout)
            assert proc.returncode == doc["status_code"] == STATE_CODES[doc["state"]], (proc.returncode, doc)
            return doc if doc["state"] == "restarting" else None

        doc = until(restarting, "the crashed service to wait for its restart")
        assert (doc["status_code"], doc["running"], doc["ready"]) == (3, False, None), doc
        assert doc["last_exit"] == {"code": 1, "name": "CRASH", "signal": None}, doc
        text = cli("status", "shcrasher")
        assert text.returncode == StatusCode.NOT_RUNNING and text_fields(text.stdout)["state"] == "restarting"
        assert cli("stop", "shcrasher").returncode == 0
        assert cli("status", "shcrasher").returncode == StatusCode.NOT_RUNNING
