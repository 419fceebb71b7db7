"""Who may ask a running service what, and the introspection commands (issue 12 item 2), with real
parts: a real AF_UNIX socket and real peer credentials (a forked process of uid 65534, with and
without the control group), and real ``servicehost run`` processes asked through the command line
(``threads``, ``loglevel``) and by a real SIGUSR2."""

from __future__ import annotations

import grp
import json
import logging
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from servicehost import HostConfig, HostState
from servicehost.ops.settings import REDACTED, effective_settings
from servicehost.platforms import control
from servicehost.platforms.control import READ_COMMANDS, ControlServer, Peer, Permissions
from servicehost.platforms.control_client import ControlClient

from ..conftest import IN_CI
from .harness import need_supervisor_package, until
from .test_control_channel import HANG_GUARD, NOBODY, Recorder, Running

ROOT = Path(__file__).resolve().parents[2]


def _need_root() -> None:
    if os.geteuid() != 0:
        reason = "needs root to run a peer as uid 65534 (nobody); CI runs as root"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


def _group() -> grp.struct_group:
    """A group that exists on every Linux machine and that nobody (65534) is not in."""
    for name in ("users", "staff", "adm"):
        try:
            return grp.getgrnam(name)
        except KeyError:
            continue
    pytest.skip("no users/staff/adm group on this machine")


@pytest.fixture
def base():
    path = Path(tempfile.mkdtemp(prefix="sha-"))
    os.chmod(path, 0o755)  # a peer of another uid may reach the runtime dir's parent
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def running():
    run = Running(Recorder())
    yield run
    if not run.host.state.is_final:
        run.stop()


def _as_other(path: Path, commands: list[str], groups: list[int]) -> dict[str, object]:
    """Fork a child of uid 65534 with supplementary ``groups`` that sends each of ``commands`` on
    a connection of its own; {"connect": "PermissionError"} or {"replies": [...]}. The child only
    makes system calls (it was forked from a process with threads: no locks, no logging)."""
    requests = []
    for command in commands:
        body = json.dumps({"command": command}).encode()
        requests.append(struct.pack(">I", len(body)) + body)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            os.close(read_end)
            os.setgroups(groups)
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            for request in requests:
                s = socket.socket(socket.AF_UNIX)
                s.settimeout(HANG_GUARD)
                try:
                    s.connect(str(path))
                except PermissionError:
                    os.write(write_end, b"E")
                    break
                s.sendall(request)
                head = b""
                while len(head) < 4:
                    head += s.recv(4 - len(head))
                size = struct.unpack(">I", head)[0]
                body = b""
                while len(body) < size:
                    chunk = s.recv(size - len(body))
                    if not chunk:
                        break
                    body += chunk
                s.close()
                os.write(write_end, struct.pack(">I", len(body)) + body)
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as fh:
        out = fh.read()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, "the child failed before it could report"
    if out == b"E":
        return {"connect": "PermissionError"}
    replies = []
    while out:
        size = struct.unpack(">I", out[:4])[0]
        replies.append(json.loads(out[4:4 + size]))
        out = out[4 + size:]
    return {"replies": replies}


# -- who may ask what ---------------------------------------------------------------------------------------
def test_read_commands_are_the_ones_that_change_nothing():
    assert READ_COMMANDS == {"ping", "status", "threads", "config"}
    assert {"pause", "resume", "drain", "stop", "control", "reload", "loglevel"} <= set(control.COMMANDS) - READ_COMMANDS


def test_permissions_give_writers_everything_the_group_reads_and_others_nothing():
    rules = Permissions(frozenset({0, 1000}), group=100, group_name="users")
    assert rules.access(Peer(1, 0, 0)) == rules.access(Peer(1, 1000, 1000)) == control.WRITE
    assert rules.access(Peer(1, 2000, 100)) == control.READ  # its primary group
    assert rules.access(Peer(1, 2000, 2000, (5, 100))) == control.READ  # a supplementary group
    assert rules.access(Peer(1, 2000, 2000, (5,))) is None
    assert "join that group" in rules.refusal(Peer(1, 2000, 2000)) and "group users" in rules.refusal(Peer(1, 2000, 2000))
    assert Permissions(frozenset({0})).access(Peer(1, 2000, 100)) is None  # no group configured: no readers


def test_a_member_of_the_control_group_reads_but_may_not_change_and_others_are_told_which_group(base, running,
                                                                                                caplog):
    _need_root()
    group = _group()
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path, group=group.gr_name) as server:
        # The directory and the socket belong to the group (0750, 0660): members can reach it.
        st_dir, st_sock = os.stat(path.parent), os.stat(path)
        assert (st_dir.st_gid, st_dir.st_mode & 0o777, st_sock.st_gid, st_sock.st_mode & 0o777) == (
            group.gr_gid, 0o750, group.gr_gid, 0o660)
        # A member (by a supplementary group) reads status, threads and config...
        with caplog.at_level(logging.WARNING, "servicehost"):
            replies = _as_other(path, ["status", "threads", "config", "pause", "stop", "loglevel"],
                                [group.gr_gid])["replies"]
        status, threads, config, *writes = replies
        assert status["ok"] and status["result"]["state"] == "running", status
        assert threads["ok"] and any(t["name"] == "MainThread" for t in threads["result"]["threads"])
        assert config["ok"] and {s["name"] for s in config["result"]["settings"]} >= {"shutdown_timeout", "control_group"}
        # ...and is refused every command that changes the service, saying what it needs.
        for command, reply in zip(["pause", "stop", "loglevel"], writes):
            assert not reply["ok"] and reply["error"].startswith(
                f"{command}: uid {NOBODY} may read this service (group {group.gr_name}) but not change it"), reply
        assert running.host.state is HostState.RUNNING and running.service.calls == []
        assert [r for r in caplog.records if getattr(r, "event_id", 0) == 5223]
        # A peer outside the group cannot reach the socket (the directory is the group's)...
        assert _as_other(path, ["status"], []) == {"connect": "PermissionError"}
        # ...and, the directory opened up by mistake, is refused by its credentials, told which group.
        os.chmod(path.parent, 0o755)
        os.chmod(path, 0o777)
        (refused,) = _as_other(path, ["status"], [])["replies"]
        assert refused == {"ok": False, "error": (
            f"uid {NOBODY} may not control this service: only root and uid 0 may; members of group {group.gr_name} may "
            "read its status, threads and config (join that group)")}
        assert server.permissions.group == group.gr_gid
        assert ControlClient(path).call("pause")["state"] in ("pausing", "paused"), "root may still change it"


def test_the_client_says_which_group_to_join_when_it_cannot_reach_the_socket(base, running):
    _need_root()
    group = _group()
    path = base / "Recorder" / "control.sock"
    with ControlServer(running.host, path, group=group.gr_name):
        client = ControlClient(path)
        assert "join group " + group.gr_name in client._who_may()


def test_the_control_group_setting_is_read_from_the_host_config(base):
    _need_root()
    group = _group()
    run = Running(Recorder())
    run.host.config = HostConfig(control_group=group.gr_name)  # as loaded from a file, env or --control-group
    try:
        with ControlServer(run.host, base / "Recorder" / "control.sock") as server:
            assert (server.permissions.group, server.permissions.group_name) == (group.gr_gid, group.gr_name)
    finally:
        run.stop()


def test_an_unknown_control_group_fails_the_start_saying_how_to_make_it(base, running):
    from servicehost.errors import StartupError

    with pytest.raises(StartupError, match=r"control_group 'shnosuchgroup': this machine has no such group; "
                                           r"create it \(groupadd shnosuchgroup\)"):
        ControlServer(running.host, base / "Recorder" / "control.sock", group="shnosuchgroup").start()


# -- config: effective settings, secrets redacted ------------------------------------------------------------
def test_config_redacts_secret_names_and_any_value_holding_a_file_secret(tmp_path):
    from dataclasses import dataclass

    from servicehost import Host, Service, setting

    @dataclass(frozen=True, kw_only=True)
    class Settings:
        api_token: str = setting("tok-visible-in-code", "a token")
        dsn: str = setting("postgres://app:hunter2-from-file@db/app", "where the database is")
        workers: int = setting(4, "workers")

    class Configured(Service[Settings]):
        name = "Configured"

    secret = tmp_path / "DB_PASSWORD"
    secret.write_text("hunter2-from-file\n")
    service = Configured(Settings())
    host = Host([service], HostConfig())
    shown = {(s["owner"], s["name"]): s for s in effective_settings(host, {"DB_PASSWORD_FILE": str(secret)})}
    assert shown[("Configured", "api_token")] == {"owner": "Configured", "name": "api_token",
                                                  "value": REDACTED, "redacted": True}
    assert shown[("Configured", "dsn")]["value"] == REDACTED  # holds the --env @file secret
    assert shown[("Configured", "workers")] == {"owner": "Configured", "name": "workers", "value": 4,
                                                "redacted": False}
    assert shown[("host", "shutdown_timeout")]["redacted"] is False
    assert "hunter2" not in json.dumps(list(shown.values())) and "tok-visible" not in json.dumps(list(shown.values()))


def test_config_shows_a_url_setting_with_only_its_password_redacted():
    from dataclasses import dataclass

    from servicehost import Host, Service, setting

    @dataclass(frozen=True, kw_only=True)
    class Settings:
        store: str = setting("postgresql://app:pw-in-url@db:5432/jobs?sslmode=require", "the intake's store")
        plain: str = setting("sqlite:////var/lib/app/jobs.sqlite3", "a URL without a secret")

    class Stored(Service[Settings]):
        name = "Stored"

    shown = {(s["owner"], s["name"]): s for s in effective_settings(Host([Stored(Settings())], HostConfig()), {})}
    assert shown[("Stored", "store")] == {"owner": "Stored", "name": "store", "redacted": True,
                                          "value": "postgresql://app:***@db:5432/jobs?sslmode=require"}
    assert shown[("Stored", "plain")]["redacted"] is False
    assert "pw-in-url" not in json.dumps(list(shown.values()))


# -- a real service: threads, SIGUSR2, loglevel ------------------------------------------------------------
STUCK_SERVICE = '''
"""One task blocked in a known function; a logger that logs a DEBUG line every 20 ms."""
import logging
import threading

from servicehost import Service, StopToken, ThreadPool

log = logging.getLogger("stuckapp")
GATE = threading.Event()


def stuck_in_a_known_function() -> None:
    GATE.wait(600)  # hang guard only: the test stops the service long before


class Stuck(Service):
    name = "shstuck{suffix}"

    def start(self) -> None:
        self.pool = self.use(ThreadPool(2, name="stuckpool"))
        self.pool.submit(stuck_in_a_known_function)

    def run(self, stop: StopToken) -> None:
        n = 0
        while not stop.wait(0.02):
            n += 1
            log.debug("tick %d", n)

    def stop(self, deadline) -> None:
        GATE.set()
'''


@pytest.fixture
def stuck(tmp_path: Path):
    """A ``servicehost run`` of the stuck service (its stderr in a file), and how to ask it."""
    if not sys.platform.startswith("linux"):
        pytest.skip("a run in a terminal serves its control channel on Linux only")
    need_supervisor_package()
    target = tmp_path / "stuck_service.py"
    target.write_text(STUCK_SERVICE.replace("{suffix}", str(os.getpid() % 100000)))
    env = {**os.environ, "SERVICEHOST_RUNTIME_DIR": str(tmp_path / "run"),
           "SERVICEHOST_SUPERVISORD_HOME": str(tmp_path / "sv"), "PYTHONPATH": str(ROOT / "src")}
    env.pop("SERVICEHOST_MANAGER", None)
    err = tmp_path / "stderr"
    with open(err, "wb") as fh:
        run = subprocess.Popen([sys.executable, "-m", "servicehost", "run", str(target), "--log-file", "none",
                                "--state-dir", str(tmp_path / "state")],
                               env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=fh, cwd=ROOT)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "servicehost", args[0], str(target), *args[1:]],
                              env={**env, "SERVICEHOST_MANAGER": "supervisord"}, capture_output=True, text=True,
                              timeout=HANG_GUARD, stdin=subprocess.DEVNULL, cwd=ROOT)

    try:
        until(lambda: cli("status").returncode == 0, "the run to answer on its control channel")
        yield run, cli, err
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(HANG_GUARD)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()


def _blocks(text: str) -> dict[str, str]:
    """``servicehost threads`` output: thread name → its block."""
    out = {}
    for block in text.split("\n\n"):
        head = block.split("\n", 1)[0]
        if head.startswith("Thread "):
            out[head[len("Thread "):].split(" (")[0].rstrip(":")] = block
    return out


def test_a_thread_dump_names_the_thread_stuck_in_a_task(stuck):
    run, cli, err = stuck
    dump = cli("threads")
    assert dump.returncode == 0, dump.stderr
    blocks = _blocks(dump.stdout)
    stuck_threads = [name for name, block in blocks.items() if "in stuck_in_a_known_function" in block]
    assert len(stuck_threads) == 1 and stuck_threads[0].startswith("stuckpool"), dump.stdout
    block = blocks[stuck_threads[0]]
    assert block.rstrip().endswith("GATE.wait(600)  # hang guard only: the test stops the service long before") \
        or "threading.py" in block.rstrip().splitlines()[-2], block  # innermost last: the wait it blocks in
    assert "answering this request" in dump.stdout  # the channel's own thread says which it is
    doc = json.loads(cli("threads", "--json").stdout)
    assert {t["name"] for t in doc["threads"]} >= {"MainThread", "servicehost-control", stuck_threads[0]}

    # The same through SIGUSR2, written by faulthandler from C: the stuck function is named.
    run.send_signal(signal.SIGUSR2)
    until(lambda: "in stuck_in_a_known_function" in err.read_text(errors="replace"), "faulthandler's dump")
    assert run.poll() is None, "SIGUSR2 does not stop the service"
    run.send_signal(signal.SIGTERM)
    assert run.wait(HANG_GUARD) == 0


def test_loglevel_for_a_while_turns_a_logger_up_and_back_by_itself(stuck):
    run, cli, err = stuck
    assert "tick" not in err.read_text()  # INFO: no DEBUG lines
    answer = cli("loglevel", "stuckapp", "debug", "--for", "1s")
    assert answer.returncode == 0, answer.stderr
    assert answer.stdout.startswith(f"shstuck{os.getpid() % 100000}: logger stuckapp now DEBUG (was NOTSET); "
                                    "back to NOTSET by itself at "), answer.stdout
    until(lambda: "stuckapp: tick" in err.read_text(), "DEBUG lines from the logger turned up")
    until(lambda: "log level of stuckapp back to NOTSET (its 1s ran out)" in err.read_text(), "the revert")
    text = err.read_text()
    assert "log level of stuckapp set to DEBUG (was NOTSET) until " in text
    after = text.split("log level of stuckapp back to NOTSET")[1]
    # After the revert no new tick is logged (at most one already on its way), while the service
    # goes on ticking every 20 ms: a status query through the CLI outlasts many ticks.
    ticks_then = after.count("stuckapp: tick")
    assert cli("status").returncode == 0 and run.poll() is None
    assert err.read_text().split("log level of stuckapp back to NOTSET")[1].count("stuckapp: tick") <= ticks_then + 1
    # Without --for, the change stays and says so; a name nobody logs to is pointed out; bad input is refused.
    stays = cli("loglevel", "nosuch.logger", "WARNING")
    assert stays.returncode == 0 and stays.stdout.rstrip().endswith("until changed again")
    assert "no code in the service had asked for logger nosuch.logger yet" in stays.stderr
    assert cli("loglevel", "stuckapp", "LOUD").returncode == 2
    assert cli("loglevel", "stuckapp", "DEBUG", "--for", "soon").returncode == 2
