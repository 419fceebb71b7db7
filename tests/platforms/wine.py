"""Wine with the official Windows CPython and pywin32 (the shared ``wine-python-env.sh``), for tests.

Every ``wine`` child gets stdin from /dev/null (or a pipe, to feed it) and pipes for stdout and
stderr: CPython 3.13 under Wine aborts on a regular file (see the tools README's pitfalls). Each
Windows process costs 0.3–0.6 s to start, so scenarios run as one script inside Wine where they can.
Timeouts are hang guards only.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 120.0


NATIVE = sys.platform == "win32"


def winpath(path: Path | str) -> str:
    """The Windows path of a Linux path (Wine maps / to drive Z:); on Windows, the path itself."""
    if NATIVE:
        return str(Path(path).resolve())
    return "Z:" + str(Path(path).resolve()).replace("/", "\\")


@dataclass
class Wine:
    """The Windows Python: under Wine on Linux, or this interpreter on a real Windows (CI's
    windows workflow runs the same tests natively)."""

    tools: Path | None
    env: dict[str, str]
    base_python: str = ""
    prefix: str = ""
    system: dict[str, list[tuple[int, int]]] | None = None
    """Wine's own processes (wineserver, services.exe) when the harness started: a failure report
    says whether they were restarted since (another run's ``wine-python-env.sh stop``, a crash)."""

    @property
    def site_packages(self) -> Path:
        return Path(self.env["WINPY_SITE_PACKAGES"])

    @property
    def eventlog(self) -> Path:
        return Path(self.env["WINPY_EVENTLOG"])

    def py(self, *args: str, input: str | None = None, timeout: float = HANG_GUARD,
           check: bool = False, harmless: bool = False) -> subprocess.CompletedProcess[str]:
        """``C:\\Python313\\python.exe ARGS`` under Wine; CR/LF folded to LF in the output.

        Now and then (about once in twenty CI runs) Wine ends a process with exit 1 and no output
        before Python has started. Whether it started is known: the harness's ``.pth`` hook
        (:data:`STARTED_HOOK`) touches the file ``$SERVICEHOST_TEST_STARTED`` names while ``site``
        starts up, before any code of the command. A process that ended so without that file ran
        nothing, and is run again (up to ``STARTS`` times); so is a ``harmless`` one (it changes
        nothing: the readiness probe) that ended so after Python started. Any other ending is the
        command's own."""
        argv = [sys.executable, *args] if NATIVE else ["wine", self.env["WINPY_PYTHON"], *args]
        with tempfile.TemporaryDirectory(prefix="winpy-started-") as folder:
            for attempt in range(1, STARTS + 1):
                marker = Path(folder) / f"started-{attempt}"
                proc = subprocess.run(
                    argv, env={**self.env, STARTED_VARIABLE: winpath(marker)}, timeout=timeout, text=True,
                    input=input, **({} if input is not None else {"stdin": subprocess.DEVNULL}),
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                )
                silent = proc.returncode != 0 and not (proc.stdout.strip() or proc.stderr.strip())
                started = marker.exists()
                if NATIVE or not silent or (started and not harmless) or attempt == STARTS:
                    break
                when = "after Python started, harmless" if started else "before Python started"
                print(f"wine harness: Wine ended {shown_args(args)} with exit {proc.returncode} and no output {when} "
                      f"(start {attempt} of {STARTS}); running it again", file=sys.stderr)
        proc.stdout, proc.stderr = proc.stdout.replace("\r\n", "\n"), proc.stderr.replace("\r\n", "\n")
        if check and proc.returncode != 0:
            report = failure_report(args, proc)
            if not NATIVE and silent:
                now = wine_system()
                same = "unchanged" if now == self.system else f"CHANGED: then {self.system}, now"
                report += f"\n--- Wine's own processes (pid, start tick) since the harness started: {same} {now}"
                report += f"\n--- Python {'had started (site ran)' if started else 'never started'}"
            raise AssertionError(report)
        return proc

    def servicehost(self, *args: str, input: str | None = None, check: bool = True,
                    timeout: float = HANG_GUARD) -> subprocess.CompletedProcess[str]:
        return self.py("-m", "servicehost", *args, input=input, check=check, timeout=timeout)

    def status(self, *args: str, timeout: float = HANG_GUARD) -> subprocess.CompletedProcess[str]:
        """``servicehost status ARGS``: its exit code must be the one its state calls for (LSB:
        0 running or on its way, 3 not running, 4 not installed or unknown)."""
        from servicehost.platforms.base import STATE_CODES

        proc = self.servicehost("status", *args, check=False, timeout=timeout)
        state = next((line.split(":", 1)[1].strip() for line in proc.stdout.splitlines()
                      if line.startswith("state:")), "")
        assert state and proc.returncode == STATE_CODES[state], \
            f"status {args!r}: state {state!r}, exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc

    def script(self, code: str, *args: str, timeout: float = HANG_GUARD) -> object:
        """Run ``code`` inside Wine; it prints one JSON document last, which is returned."""
        proc = self.py("-c", textwrap.dedent(code), *args, timeout=timeout, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def eventlog_size(self) -> int:
        return self.eventlog.stat().st_size if not NATIVE and self.eventlog.exists() else 0

    def eventlog_since(self, offset: int) -> str:
        """What services wrote to the Event Log since ``offset``: Wine's ReportEvent trace as the
        harness captures it; on Windows, the Application log read back."""
        if NATIVE:
            return str(self.script(READ_EVENTLOG))
        with open(self.eventlog, "rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")


#: How many times :meth:`Wine.py` starts a command that Wine ended before Python started.
STARTS = 3
#: The variable naming the file the hook touches, and the hook: a ``.pth`` line ``site`` runs at
#: every start of the Windows Python (a no-op without the variable: the SCM's services).
STARTED_VARIABLE = "SERVICEHOST_TEST_STARTED"
STARTED_PTH = "servicehost-test-started.pth"
STARTED_HOOK = ("import os; _started = os.environ.get('SERVICEHOST_TEST_STARTED'); "
                "_started and os.path.isdir(os.path.dirname(_started)) and open(_started, 'a').close()\r\n")
# (The folder check: a process started by one that had the variable, services.exe brought back by
# a test's command, inherits it after that command's folder is gone.)


def shown_args(args: tuple[str, ...]) -> list[str]:
    """A command's arguments as a report shows them: a long or multi-line one (a script) cut short."""
    return [a if len(a) < 200 and "\n" not in a else f"<{len(a)} chars: {a.strip().splitlines()[0][:80]}...>"
            for a in args]


def wine_system() -> dict[str, list[tuple[int, int]]]:
    """The running wineserver and services.exe processes: name → [(pid, start time in ticks)]."""
    found: dict[str, list[tuple[int, int]]] = {}
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if comm.startswith("wineserver") or comm == "services.exe":
            found.setdefault(comm, []).append((int(proc.name), int(stat[stat.rindex(")") + 2:].split()[19])))
    return {k: sorted(v) for k, v in sorted(found.items())}


def failure_report(args: tuple[str, ...], proc: subprocess.CompletedProcess[str]) -> str:
    """Why a Windows process failed, its gist on the FIRST line (pytest's summary shows only that
    line): the exit code and the last line of stderr (a Python exception's type and message), or
    that there was no output at all; then the command, stdout and stderr in full."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if lines:
        gist = lines[-1].strip()
    elif proc.stdout.strip():
        gist = "nothing on stderr; stdout below"
    else:
        gist = ("no output at all: not an uncaught Python exception (that prints a traceback) but sys.exit, "
                "or the process was ended from outside, or Wine could not run it")
    shown = shown_args(args)
    return "\n".join([
        f"wine python exited {proc.returncode}: {gist}",
        f"--- command: {shown}",
        *([f"--- code:", *args[args.index('-c') + 1].strip("\n").splitlines()] if "-c" in args else []),
        "--- stdout:", proc.stdout.rstrip() or "(empty)",
        "--- stderr:", proc.stderr.rstrip() or "(empty)",
    ])


READ_EVENTLOG = r"""
import json, win32evtlog
h = win32evtlog.OpenEventLog(None, "Application")
flags = win32evtlog.EVENTLOG_BACKWARDS_READ | win32evtlog.EVENTLOG_SEQUENTIAL_READ
out = []
while len(out) < 2000:
    records = win32evtlog.ReadEventLog(h, flags, 0)
    if not records:
        break
    out += [f"{r.SourceName} {r.EventID & 0xFFFF} {r.EventType} " + " ".join(r.StringInserts or ()) for r in records]
print(json.dumps("\n".join(reversed(out))))
"""


def start_wine(tools: Path, in_ci: bool) -> Wine:
    """Bring the environment up (idempotent, ~1 s when up) and make this checkout importable in
    the Windows Python (an editable install: a .pth naming this checkout's src)."""
    if NATIVE:
        wine = Wine(None, dict(os.environ))
        return _describe(wine)
    script = tools / "wine-python-env.sh"
    if not in_ci and shutil.which("wine") is None:
        pytest.skip("Wine is not installed here: run .ci/setup-wine.sh (installs it, ~30 s) to run the Windows tests")
    system = wine_system()
    live = {name for name, procs in system.items() if any(_alive(pid) for pid, _ in procs)}  # not zombies
    if any(name.startswith("wineserver") for name in live) and "services.exe" not in live:
        # Half up: a wineserver whose system processes are gone (killed with a run that ended). `up`
        # finds the server running and would let its first Windows process, started with pipes,
        # bring services.exe back holding those pipes: it never returns. Start from nothing.
        end_wine(script, f"a wineserver without services.exe: {system}")
    up = wine_up(script)
    if up is None:
        end_wine(script, f"wine-python-env.sh up did not finish within {UP_GUARD:.0f} s")
        up = wine_up(script)
        if up is None:
            raise AssertionError(f"wine-python-env.sh up did not finish within {UP_GUARD:.0f} s, twice "
                                 "(the second time after every Wine process was ended)")
    rc, stdout, stderr = up
    if rc != 0:
        raise AssertionError(f"wine-python-env.sh up failed (exit {rc}):\n{stderr[-3000:]}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
    for line in stdout.splitlines():
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            env[key] = value.strip("'")
    wine = Wine(tools, env, system=wine_system())
    for name, want in (("servicehost-checkout.pth", winpath(ROOT / "src") + "\r\n"), (STARTED_PTH, STARTED_HOOK)):
        pth = wine.site_packages / name
        if not pth.exists() or pth.read_text() != want:
            pth.write_text(want)
    return _describe(wine)


UP_GUARD = 300.0
"""How long ``wine-python-env.sh up`` may take: ~1 s when Wine is up, ~50 s on a fresh machine."""


def wine_up(script: Path) -> tuple[int, str, str] | None:
    """``wine-python-env.sh up``: its exit code, stdout and stderr, or None when it hung and was
    ended. Its output goes to files, not pipes: a Windows process that outlives it (services.exe
    inherits the standard handles of the process that started it) cannot hold them open."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(["bash", str(script), "up"], stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                text=True, start_new_session=True)
        try:
            rc: int | None = proc.wait(UP_GUARD)
        except subprocess.TimeoutExpired:
            rc = None
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.seek(0)
        err.seek(0)
        return None if rc is None else (rc, out.read(), err.read())


def wine_pids() -> list[int]:
    """The wineserver and every Windows process: their executable is one of Wine's own."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            exe = os.readlink(proc / "exe")
        except OSError:
            continue
        if "/wine/" in exe or exe.rsplit("/", 1)[-1].startswith("wine"):
            pids.append(int(proc.name))
    return pids


def end_wine(script: Path, why: str) -> None:
    """End every Wine process, so that the next ``up`` starts Wine afresh: the way out of a Wine
    left half up. The services' processes end with it (a test module's fixture starts its own)."""
    print(f"wine harness: {why}: ending every Wine process", file=sys.stderr)
    try:
        subprocess.run(["bash", str(script), "stop"], env={**os.environ, "WINPY_STOP_GRACEFUL": "0"},
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       timeout=60, start_new_session=True)
    except subprocess.TimeoutExpired:
        pass
    for pid in wine_pids():
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 30  # a hang guard: killed processes are gone within a second
    while time.monotonic() < deadline and any(_alive(pid) for pid in wine_pids()):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Running, not a zombie waiting for its parent."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def _describe(wine: Wine) -> Wine:
    """Ask the Windows Python where it lives: the harness's readiness probe, the first Windows
    process a test module starts, often just after ``up`` started the wineserver and services.exe
    (where Wine ended a process before Python started, at stop 20: :meth:`Wine.py` runs it again)."""
    code = "import json, sys; print(json.dumps([sys._base_executable, sys.prefix]))"
    proc = wine.py("-c", code, check=True, harmless=True)
    wine.base_python, wine.prefix = json.loads(proc.stdout.strip().splitlines()[-1])
    return wine
