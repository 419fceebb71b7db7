"""systemd for real: a real systemd 252 as PID 1 in private namespaces (``with-systemd.sh``), driven
through the real ``servicehost`` command line and ``systemctl``, as an admin would.

* A service with a slow start, a pool, a hang switch and a drain, installed with DynamicUser=,
  a credential and a watchdog: install → start (READY gating, past a TimeoutStartSec= shorter
  than its warm-up: EXTEND_TIMEOUT_USEC) → status → pause / continue / reload → ``kill -9`` →
  restarted → a worker made to hang (in C code holding the GIL, so the whole process stops) →
  systemd's watchdog kills it and it is restarted → update (not restarted) → restart → stop during
  an 8 s drain, past a TimeoutStopSec= of 3 s, nothing lost → remove (data kept).
  (A worker hung in Python code is the host's business: with --watchdog the host exits HUNG (5)
  and Restart= restarts it; test_sd_notify.py shows the watchdog starved meanwhile.)
* The seed sample (examples/sample_service.py) installed, run, logged to the journal with the
  right priorities, stopped and removed with --purge.
* The test run's own interpreter (which may live under /root) installed for --username root:
  ProtectHome= relaxed with a note, and it runs.
* ExecStart= and Environment= escaping checked end to end: the words a process receives are the
  words rendered.

Needs root (CI runs as root) and systemd's binaries (``.ci/setup-systemd.sh``). The service must
be readable by a DynamicUser= account and visible through PrivateTmp=, so its files live under
``$SERVICEHOST_SYSTEMD_TEST_DIR`` (default /var/lib/servicehost-tests), bound into the container.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from servicehost.errors import ExitCode
from servicehost.platforms.base import InstallOptions
from servicehost.platforms.systemd import render_unit

from ..conftest import IN_CI, TOOLS

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 90.0  # seconds: only against hangs (the slowest step, the 8 s drain, takes ~9 s)
SYSTEM_PYTHON = Path("/usr/bin/python3")
SECRET = "s3cr3t-drain-token-0451"
#: What servicehost writes on a machine, removed in each container at its start (only there).
FRESH = ("/var/lib/servicehost", "/var/lib/private/servicehost", "/var/log/servicehost", "/var/log/private/servicehost",
         "/run/servicehost")

pytestmark = [pytest.mark.real_manager, pytest.mark.slow]

DRAIN_SERVICE = '''
"""A service with a slow start, a pool, and control codes: 200 queues 64 half-second tasks
(8 s of work on 4 workers), 202 wedges a worker in C code that holds the GIL (no Python thread
runs again: only systemd's watchdog can notice)."""
import os, threading, time
from pathlib import Path
from servicehost import Service, ThreadPool

class DrainService(Service):
    name = "drainsvc"
    ready_on_start = False

    def start(self):
        self.pool = self.use(ThreadPool(4, name="work", queue_size=128))
        token = Path(os.environ["DRAIN_TOKEN_FILE"]).read_bytes()
        self.log.info("credential read: %d bytes", len(token))
        warmup = float(os.environ.get("DRAIN_READY_AFTER", "0"))
        self.log.info("warming up for %.1fs", warmup)
        threading.Timer(warmup, self.ready).start()

    def control(self, code):
        if code == 200:
            with open(self.state_dir / "accepted", "a") as fh:
                for i in range(64):
                    item = f"{os.getpid()}-{i}"
                    self.pool.submit(self.task, item)
                    fh.write(item + "\\n")
                fh.flush()
                os.fsync(fh.fileno())
        elif code == 202:
            self.pool.submit(self.wedge)

    def task(self, item):
        time.sleep(0.5)
        with open(self.state_dir / "done", "a") as fh:
            fh.write(item + "\\n")
            fh.flush()
            os.fsync(fh.fileno())

    def wedge(self):
        time.sleep(0.5)  # let the control reply go out first
        sum(range(10 ** 15))  # C code holding the GIL for hours

    def reload(self):
        self.log.info("reload hook ran")
'''


def need(what: str, ok: bool, fix: str) -> None:
    if not ok:
        reason = f"{what}: {fix}"
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@dataclass
class Systemd:
    """One running container (``with-systemd.sh start``) and the files bound into it."""

    instance: str
    base: Path
    python: Path

    def sh(self, *argv: str, timeout: float = HANG_GUARD, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the container (nsenter), capture its output."""
        proc = subprocess.run([str(TOOLS / "with-systemd.sh"), "exec", self.instance, "--", *argv], check=False,
                              capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check:
            assert proc.returncode == 0, f"{argv} exit {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        return proc

    def cli(self, *args: str, python: Path | None = None, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess[str]:
        """``servicehost ARGS`` as an admin runs it inside the container."""
        return self.sh(str(python or self.python), "-m", "servicehost", *args, timeout=timeout)

    def show(self, unit: str) -> dict[str, str]:
        out = self.sh("systemctl", "show", unit, check=True).stdout
        return dict(line.partition("=")[::2] for line in out.splitlines() if "=" in line)

    def journal(self, unit: str, *extra: str) -> str:
        return self.sh("journalctl", "-u", unit, "--no-pager", "-o", "cat", *extra, check=True).stdout

    def wait_until(self, predicate: Callable[[], bool], what: str, unit: str) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {HANG_GUARD}s; journal:\n{self.journal(unit)[-3000:]}")
            time.sleep(0.2)


def status_of(out: str) -> dict[str, str]:
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}


def make_base() -> Path:
    """A directory a DynamicUser= account can read: not under /tmp (PrivateTmp=), nor a 0700 home."""
    parent = Path(os.environ.get("SERVICEHOST_SYSTEMD_TEST_DIR", "/var/lib/servicehost-tests"))
    for _ in range(3):  # another run may remove the (empty) parent between the two calls
        parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        parent.chmod(0o755)
        try:
            base = Path(tempfile.mkdtemp(prefix="run-", dir=parent))
        except FileNotFoundError:
            continue
        base.chmod(0o755)
        return base
    raise AssertionError(f"could not make a directory under {parent}")


def own_paths_in_private_tmp() -> list[Path]:
    """This checkout and this test run's environment, where the container cannot see them: its /tmp
    is its own, so a checkout cloned under /tmp is bound in (read-only) at the same path. Elsewhere
    (/var/tmp, /home, /root, /srv ...) the container sees the host's files already."""
    out: list[Path] = []
    for path in (ROOT, Path(sys.prefix).resolve()):
        if path.is_relative_to("/tmp") and not any(path.is_relative_to(p) for p in out):
            out.append(path)
    return out


def make_venv(base: Path) -> Path:
    """A venv of the system interpreter holding a copy of servicehost (no network, no pip)."""
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", "--without-pip", str(base / "venv")], check=True, timeout=120)
    lib = base / "lib"
    shutil.copytree(ROOT / "src" / "servicehost", lib / "servicehost",
                    ignore=shutil.ignore_patterns("__pycache__"))
    site = next((base / "venv" / "lib").glob("python3*/site-packages"))
    (site / "servicehost-copy.pth").write_text(f"{lib}\n")
    for path in [base, *base.rglob("*")]:  # readable by any account, as an installed package is
        mode = path.stat().st_mode
        path.chmod(stat.S_IMODE(mode) | 0o044 | (0o011 if stat.S_ISDIR(mode) else 0))
    return base / "venv" / "bin" / "python"


@pytest.fixture(scope="module")
def systemd() -> Iterator[Systemd]:
    need("root", os.geteuid() == 0, "a real systemd as PID 1 needs root (CI runs as root)")
    need("the shared tools", (TOOLS / "with-systemd.sh").is_file(), f"not found at {TOOLS}: set SERVICEHOST_TOOLS")
    need("systemd", Path("/lib/systemd/systemd").is_file(), "run .ci/setup-systemd.sh (apt-get install systemd)")
    ok = SYSTEM_PYTHON.is_file() and subprocess.run(
        [str(SYSTEM_PYTHON), "-c", "import sys; sys.exit(sys.version_info < (3, 11))"], check=False, timeout=60
    ).returncode == 0
    need("/usr/bin/python3 >= 3.11", ok, "run .ci/setup-systemd.sh (apt-get install python3)")
    base = make_base()
    instance = ""
    try:
        python = make_venv(base)
        (base / "drain_service.py").write_text(DRAIN_SERVICE)
        shutil.copy(ROOT / "examples" / "sample_service.py", base / "sample_service.py")
        for name in ("drain_service.py", "sample_service.py"):
            (base / name).chmod(0o644)
        secret = base / "drain-token"
        secret.write_text(SECRET)
        secret.chmod(0o600)
        binds = [arg for path in own_paths_in_private_tmp() for arg in ("--bind-ro", str(path))]
        proc = subprocess.run([str(TOOLS / "with-systemd.sh"), "start", "--bind", str(base), *binds], check=False,
                              capture_output=True, text=True, timeout=HANG_GUARD)
        assert proc.returncode == 0, f"with-systemd.sh start failed:\n{proc.stderr}"
        instance = proc.stdout.strip().splitlines()[-1]
        sd = Systemd(instance, base, python)
        # systemd makes "/" a shared mount at boot, except when it sees $container (as here): then
        # the mount holding a unit's LoadCredential= files, made in a helper's namespace, never
        # reaches PID 1 and the service finds an empty, root-only directory. Do what a booted
        # machine has.
        sd.sh("mount", "--make-rshared", "/", check=True)
        # The container's / is this machine's (an overlay): start from one where servicehost never ran,
        # whatever a root run on this machine left (a state dir a DynamicUser= unit would have to take over).
        sd.sh("rm", "-rf", *FRESH, check=True)
        yield sd
    finally:
        if instance:
            subprocess.run([str(TOOLS / "with-systemd.sh"), "stop", instance], check=False, capture_output=True,
                           timeout=HANG_GUARD)
        shutil.rmtree(base, ignore_errors=True)
        with contextlib.suppress(OSError):  # still used by another run: leave it
            base.parent.rmdir()


def test_install_start_kill_hang_drain_remove(systemd):
    sd = systemd
    drain = str(sd.base / "drain_service.py")
    unit = "drainsvc.service"

    out = sd.cli("managers", drain)
    assert "installing into: systemd (systemd runs as PID 1" in out.stdout, out.stdout + out.stderr

    install = ["--watchdog", "2", "--restart-delay", "0.5", "--shutdown-timeout", "30", "--log-file", "none",
               "--env", f"DRAIN_TOKEN=@{sd.base / 'drain-token'}"]
    r = sd.cli("install", drain, *install, "--env", "DRAIN_READY_AFTER=3")
    assert r.returncode == 0 and "installed drainsvc under systemd" in r.stdout, r.stdout + r.stderr
    text = sd.sh("cat", f"/usr/local/lib/systemd/system/{unit}", check=True).stdout
    assert SECRET not in text and f"LoadCredential=DRAIN_TOKEN:{sd.base / 'drain-token'}" in text
    assert sd.show(unit)["UnitFileState"] == "enabled"  # start mode auto
    # An admin's drop-in shorter than the warm-up (3 s) and the drain (8 s): only EXTEND_TIMEOUT_USEC
    # from the service keeps systemd from calling either a failure.
    sd.sh("sh", "-c", f"mkdir -p /etc/systemd/system/{unit}.d && printf '[Service]\\nTimeoutStartSec=2s\\n"
          f"TimeoutStopSec=3s\\n' > /etc/systemd/system/{unit}.d/short.conf && systemctl daemon-reload", check=True)

    # start returns once READY=1 came: every service ready, after the 3 s warm-up.
    began = time.monotonic()
    r = sd.cli("start", drain)
    took = time.monotonic() - began
    assert r.returncode == 0, r.stderr + sd.journal(unit)
    show = sd.show(unit)
    assert (show["ActiveState"], show["SubState"]) == ("active", "running") and took >= 2.5
    assert show["StatusText"].startswith("running; work: 0 done")
    journal = sd.journal(unit)
    assert journal.index("warming up for 3.0s") < journal.index("Started drainsvc.service")
    assert "ready: every service said so (3." in journal  # the host's own measure of the warm-up
    assert f"credential read: {len(SECRET)} bytes" in journal

    st = status_of(sd.cli("status", drain).stdout)
    assert st["state"] == "running" and st["pid"] == show["MainPID"] and st["restarts"] == "0"

    # pause / continue / reload reach the service through its control channel.
    assert sd.cli("pause", drain).returncode == 0
    assert status_of(sd.cli("status", drain).stdout)["state"] == "paused"
    assert sd.cli("continue", drain).returncode == 0
    assert status_of(sd.cli("status", drain).stdout)["state"] == "running"
    assert sd.cli("reload", drain).returncode == 0
    assert "reload hook ran" in sd.journal(unit)

    # kill -9: systemd restarts it (Restart=on-failure), ready again after the warm-up.
    first = show["MainPID"]
    sd.sh("kill", "-9", first, check=True)
    sd.wait_until(lambda: (s := sd.show(unit))["NRestarts"] == "1" and s["ActiveState"] == "active"
                  and s["MainPID"] not in ("0", first), "restart after kill -9", unit)
    st = status_of(sd.cli("status", drain).stdout)
    assert st["restarts"] == "1" and st["last exit"] == "-9", st

    # A worker wedged in C code holding the GIL: no thread of the process runs, WATCHDOG=1 stops,
    # systemd kills it (SIGABRT) and restarts it.
    second = sd.show(unit)["MainPID"]
    assert sd.cli("control", drain, "202").returncode == 0
    sd.wait_until(lambda: (s := sd.show(unit))["NRestarts"] == "2" and s["ActiveState"] == "active"
                  and s["MainPID"] not in ("0", second), "restart after the watchdog", unit)
    journal = sd.journal(unit)
    assert "drainsvc.service: Watchdog timeout" in journal and "Failed with result 'watchdog'" in journal, journal
    assert status_of(sd.cli("status", drain).stdout)["last exit"] == f"-{int(signal.SIGABRT)}"

    # update never restarts: the running process keeps its pid until an explicit restart.
    third = sd.show(unit)["MainPID"]
    r = sd.cli("update", drain, *install, "--env", "DRAIN_READY_AFTER=0.5")
    assert r.returncode == 0 and "restart it to apply" in r.stdout, r.stderr
    assert sd.show(unit)["MainPID"] == third and "DRAIN_READY_AFTER=0.5" in sd.sh(
        "cat", f"/usr/local/lib/systemd/system/{unit}", check=True).stdout
    assert sd.cli("restart", drain).returncode == 0
    fourth = sd.show(unit)["MainPID"]
    assert fourth not in ("0", third) and sd.show(unit)["ActiveState"] == "active"
    assert "warming up for 0.5s" in sd.journal(unit)

    # Stop while 64 half-second tasks are queued on 4 workers (8 s): the drain finishes although
    # TimeoutStopSec is 3 s, exit 0, and every accepted task is done.
    assert sd.cli("control", drain, "200").returncode == 0
    began = time.monotonic()
    r = sd.cli("stop", drain)
    took = time.monotonic() - began
    assert r.returncode == 0, r.stderr + sd.journal(unit)[-3000:]
    show = sd.show(unit)
    assert (show["ActiveState"], show["Result"], show["ExecMainCode"], show["ExecMainStatus"]) == \
        ("inactive", "success", "1", str(int(ExitCode.OK))), show
    assert took >= 6.0, f"the stop took {took:.1f}s: the drain cannot have run"
    state = "/var/lib/servicehost/drainsvc"
    accepted = sd.sh("cat", f"{state}/accepted", check=True).stdout.split()
    done = sd.sh("cat", f"{state}/done", check=True).stdout.split()
    mine = [a for a in accepted if a.startswith(f"{fourth}-")]
    assert len(mine) == 64 and sorted(d for d in done if d.startswith(f"{fourth}-")) == sorted(mine)
    journal = sd.journal(unit)
    # Busy is not hung: half-second tasks never starved the watchdog during the drain.
    assert "hung: one task" not in journal and "not feeding systemd's watchdog" not in journal

    # Nothing secret anywhere an unprivileged user can look.
    assert SECRET not in sd.journal(unit) and SECRET not in sd.sh("systemctl", "show", unit).stdout

    r = sd.cli("remove", drain)
    assert r.returncode == 0, r.stderr
    assert sd.show(unit)["LoadState"] == "not-found"
    assert sd.sh("test", "-f", f"{state}/done").returncode == 0  # data kept without --purge


def test_seed_sample_runs_under_systemd(systemd):
    sd = systemd
    sample = str(sd.base / "sample_service.py")
    unit = "SampleService.service"
    # A name some other unit has is refused: ours would shadow it.
    r = sd.cli("install", sample, "--name", "systemd-journald")
    assert r.returncode == ExitCode.CONFIG_ERROR and "a unit systemd-journald.service already exists" in r.stderr
    r = sd.cli("install", sample, "--interval", "0.1")
    assert r.returncode == 0, r.stderr
    assert sd.cli("start", sample).returncode == 0
    sd.wait_until(lambda: "round 3" in sd.journal(unit), "three rounds", unit)
    assert status_of(sd.cli("status", sample).stdout)["state"] == "running"

    # journald read each line's priority from its "<N>" prefix (and removed the prefix).
    entries = [json.loads(line) for line in sd.journal(unit, "-o", "json").splitlines()]
    ours = [e for e in entries if "round 3" in str(e.get("MESSAGE", ""))]
    assert ours and ours[0]["PRIORITY"] == "6" and ours[0]["MESSAGE"].startswith("INFO ")

    # systemctl reload: ExecReload= sends SIGHUP; the service's reload() runs (RELOADING=1, READY=1).
    sd.sh("systemctl", "reload", unit, check=True)
    sd.wait_until(lambda: "reloaded" in sd.journal(unit), "the reload hook", unit)
    assert sd.show(unit)["ActiveState"] == "active"

    logs = sd.cli("logs", sample)
    assert logs.returncode == 0 and "round 3" in logs.stdout

    assert sd.cli("stop", sample).returncode == 0
    show = sd.show(unit)
    assert (show["ActiveState"], show["ExecMainStatus"]) == ("inactive", "0")
    assert "SampleService stopping after" in sd.journal(unit)

    # --start disabled masks the unit: start is refused, with the way out.
    assert sd.cli("update", sample, "--interval", "0.1", "--start", "disabled").returncode == 0
    assert sd.show(unit)["UnitFileState"] == "masked"
    r = sd.cli("start", sample)
    assert r.returncode == ExitCode.CONFIG_ERROR and "servicehost update --start manual" in r.stderr, r.stderr
    assert sd.cli("update", sample, "--interval", "0.1", "--start", "manual").returncode == 0
    assert sd.show(unit)["UnitFileState"] == "disabled"
    r = sd.cli("remove", sample, "--purge")
    assert r.returncode == 0, r.stderr
    assert sd.show(unit)["LoadState"] == "not-found"
    assert sd.sh("test", "-e", "/var/lib/private/servicehost/SampleService").returncode != 0  # purged


def test_an_interpreter_in_a_home_directory_runs_as_root_with_protect_home_read_only(systemd):
    sd = systemd
    sample = str(sd.base / "sample_service.py")
    python = Path(sys.executable)  # the test run's venv: its interpreter may well live under /root
    unit = "sample-root.service"
    r = sd.cli("install", sample, "--name", "sample-root", "--username", "root", "--interval", "0.1",
               "--state-dir", "/var/lib/servicehost/sample-root", python=python)
    assert r.returncode == 0, r.stderr
    text = sd.sh("cat", f"/usr/local/lib/systemd/system/{unit}", check=True).stdout
    in_home = any(re.match(r"/(home|root)(/|$)", p) for p in (os.path.realpath(python), sys.prefix, sys.base_prefix))
    if in_home:
        assert "ProtectHome=read-only" in text and "ProtectHome=read-only instead of yes" in r.stderr
    assert "User=root" in text and str(python) in text  # the venv's python, not the one it points to
    assert sd.cli("start", sample, "--name", "sample-root", python=python).returncode == 0, sd.journal(unit)
    assert sd.show(unit)["ActiveState"] == "active"
    assert sd.cli("stop", sample, "--name", "sample-root", python=python).returncode == 0
    assert sd.cli("remove", sample, "--name", "sample-root", python=python).returncode == 0


_NASTY = ["%", "%%", "%n", "$", "$$", "${HOME}", "$HOME", ";", "\\;", "\\", '"', "'", " ", "\t", "\n", "\x01",
          "é", "\u2028", "#", "=", "-", "@", "~", "*"]


def _word(rng: random.Random) -> str:
    return "".join(rng.choice(_NASTY + list("abcXYZ019/._")) for _ in range(rng.randint(0, 6)))


def test_what_a_process_receives_is_what_was_rendered(systemd):
    sd = systemd
    rng = random.Random(20240252)
    script = ("import json, os, sys; print('RT ' + json.dumps([sys.argv[1:], "
              "{k: v for k, v in os.environ.items() if k.startswith('RT_')}]))")
    cases = []
    units = sd.base / "units"
    units.mkdir()
    for i in range(12):
        argv = [_word(rng) for _ in range(rng.randint(0, 6))] + (_NASTY if i == 0 else [])
        env = {f"RT_{j}": _word(rng) for j in range(rng.randint(0, 4))}
        name = f"roundtrip{i}"
        opts = InstallOptions(name=name, environment=tuple(env.items()), state_dir=f"/var/lib/servicehost/{name}")
        unit = render_unit(opts, [str(SYSTEM_PYTHON), "-c", script, *argv])
        (units / unit.name).write_text(unit.text)
        cases.append((name, argv, env))
    units.chmod(0o755)
    names = " ".join(f"{name}.service" for name, _, _ in cases)
    # Type=exec instead of notify: the probe prints and exits; only the words matter here.
    sd.sh("sh", "-c", f"for u in {names}; do cp {units}/$u /etc/systemd/system/ && mkdir -p /etc/systemd/system/$u.d "
          f"&& printf '[Service]\\nType=exec\\n' > /etc/systemd/system/$u.d/exec.conf; done && systemctl daemon-reload "
          f"&& systemctl start {names}", check=True)
    for name, argv, env in cases:
        sd.wait_until(lambda name=name: "RT " in sd.journal(name), f"{name} printed", name)
        line = next(line for line in sd.journal(name).splitlines() if line.startswith("RT "))
        got_argv, got_env = json.loads(line[3:])
        assert (got_argv, got_env) == (argv, env), name


def test_the_seed_via_compat_is_installed_and_run_under_systemd(systemd):
    """The seed's AppServerSvc, only its imports changed, managed by its own HandleCommandLine."""
    from .test_compat_under_managers import seed_that_waits

    sd = systemd
    script = seed_that_waits(sd.base / "compat")
    for path in (script.parent, script):
        path.chmod(0o755 if path.is_dir() else 0o644)
    unit = "SampleService.service"

    def pywin32(*args: str) -> subprocess.CompletedProcess[str]:
        return sd.sh("env", "SERVICEHOST_MANAGER=systemd", str(sd.python), str(script), *args)

    r = pywin32("install")
    assert r.returncode == 0 and "Service installed" in r.stdout, r.stdout + r.stderr
    r = pywin32("start")  # pywin32's StartService queues the start and returns
    assert r.returncode == 0 and "Error" not in r.stdout, r.stdout + r.stderr
    sd.wait_until(lambda: sd.show(unit)["ActiveState"] == "active", "the seed active under systemd", unit)
    sd.wait_until(lambda: "running under systemd" in sd.journal(unit), "the platform's line", unit)
    r = pywin32("--wait", "30", "stop")
    assert r.returncode == 0, r.stdout + r.stderr
    show = sd.show(unit)
    assert (show["ActiveState"], show["ExecMainStatus"]) == ("inactive", "0")  # SvcStop: a clean stop
    assert "main loop ended" in sd.journal(unit)  # SvcStop set the event, SvcDoRun's main returned
    r = pywin32("remove")
    assert r.returncode == 0 and "Service removed" in r.stdout, r.stdout + r.stderr
    assert sd.show(unit)["LoadState"] == "not-found"
