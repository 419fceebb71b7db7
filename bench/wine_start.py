"""Windows start under Wine's Service Control Manager: SCM StartService → SERVICE_RUNNING.

Three services of the same shape, installed once, started and stopped in interleaved rounds by one
Windows python process (each ``wine python.exe`` costs 0.3-0.6 s, so one poller does every round):

    plain    the seed's pywin32 ``SampleService`` with its own imports (``import win32serviceutil, ...``),
             installed by pywin32's ``HandleCommandLine`` (hosted by pythonservice.exe)
    compat   the same script ported through ``servicehost.compat`` (only its import lines differ)
    native   ``examples/sample_service.py`` (servicehost), installed by ``servicehost install``
             (the ImagePath runs the base python.exe with servicehost's boot program)

The seed's ``main`` is an empty placeholder, so SvcDoRun would return at once and the service would
stop as soon as it runs; here ``main`` waits for the stop event, identically in plain and compat.

A round starts each service in turn (order rotated each round): the poller notes ``perf_counter``,
calls ``StartService`` and polls ``QueryServiceStatus`` until RUNNING, then stops the service and
waits until its process has exited, so no two starts overlap. Targets (issue 9): compat ≤ 1.2×
plain, native ≤ 1.2× plain, per round, median over the rounds. Beside them, one ``-X importtime``
run per variant's import chain (in a Windows python, outside the SCM) shows where the time goes.

The Wine harness is ``wine-python-env.sh`` in ``$SERVICEHOST_TOOLS`` (default ``../shared/tools``
beside the checkout); where it or ``wine`` is missing the benchmark says so and is skipped.
Timeouts are hang guards only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import ROOT, Contender, Target, ratios

HANG_GUARD = 120.0  # any one Windows process (install, the poller: it has its own per-step guards)
LIMIT = 1.2  # both targets: ≤ 1.2× the plain pywin32 original
NAMES = {"plain": "shbenchplain", "compat": "shbenchcompat", "native": "shbenchnative"}
NATIVE_TARGET = ROOT / "examples" / "sample_service.py"

TITLE = ("Windows start under Wine's SCM: StartService → SERVICE_RUNNING, one Windows poller "
         "(seed SampleService: plain pywin32 / through servicehost.compat; examples/sample_service.py)")

# The seed's SampleService; {imports} and {name} filled in per variant. main() waits for the stop
# event (the seed's is an empty placeholder: the service would stop as soon as it ran).
SEED = '''\
{imports}
import socket


class AppServerSvc (win32serviceutil.ServiceFramework):
    _svc_name_ = '{name}'
    _svc_display_name_ = 'Sample Service ({name})'

    def __init__(self,args):
        win32serviceutil.ServiceFramework.__init__(self,args)
        self.hWaitStop = win32event.CreateEvent(None,0,0,None)
        socket.setdefaulttimeout(60)
        self.is_alive = True

    def SvcStop(self):
        self.ReportServiceStatus(win32service.SERVICE_STOP_PENDING)
        win32event.SetEvent(self.hWaitStop)
        self.is_alive = False

    def SvcDoRun(self):
        servicemanager.LogMsg(servicemanager.EVENTLOG_INFORMATION_TYPE,
                              servicemanager.PYS_SERVICE_STARTED,
                              (self._svc_name_,''))
        self.main()

    def main(self):
        win32event.WaitForSingleObject(self.hWaitStop, win32event.INFINITE)

if __name__ == '__main__':
    win32serviceutil.HandleCommandLine(AppServerSvc)
'''
PLAIN_IMPORTS = "import win32serviceutil\nimport win32service\nimport win32event\nimport servicemanager"
COMPAT_IMPORTS = "\n".join(f"from servicehost.compat import {m}"
                           for m in ("win32serviceutil", "win32service", "win32event", "servicemanager"))

# The one Windows process that times every start. argv: a JSON document {"names": [...], "rounds": N,
# "warmup": bool}. Prints one JSON line per round ({"round": r, "ms": {name: ms}}; round 0 = warm-up).
POLLER = r'''
import json, sys, time
import win32api, win32con, win32event, win32service as ws
spec = json.loads(sys.argv[1])
GUARD = 60.0
scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
handles = {n: ws.OpenService(scm, n, ws.SERVICE_ALL_ACCESS) for n in spec["names"]}

def until(h, state, what):
    end = time.perf_counter() + GUARD
    while True:
        now = ws.QueryServiceStatus(h)[1]
        if now == state:
            return
        if time.perf_counter() > end:
            raise SystemExit(f"{what}: still in state {now} after {GUARD} s")
        time.sleep(0.005)

def start_ms(name):
    h = handles[name]
    until(h, ws.SERVICE_STOPPED, f"{name} before its start")
    t0 = time.perf_counter()
    ws.StartService(h, None)
    until(h, ws.SERVICE_RUNNING, f"{name} starting")
    ms = (time.perf_counter() - t0) * 1e3
    pid = ws.QueryServiceStatusEx(h)["ProcessId"]
    ws.ControlService(h, ws.SERVICE_CONTROL_STOP)
    until(h, ws.SERVICE_STOPPED, f"{name} stopping")
    try:  # the next start must not overlap this process's exit
        proc = win32api.OpenProcess(win32con.SYNCHRONIZE, False, pid)
    except win32api.error:
        return ms  # already gone
    if win32event.WaitForSingleObject(proc, int(GUARD * 1000)) != win32event.WAIT_OBJECT_0:
        raise SystemExit(f"{name}: process {pid} still there {GUARD} s after STOPPED")
    return ms

names = spec["names"]
for r in range(0 if spec["warmup"] else 1, spec["rounds"] + 1):
    k = r % len(names)
    order = names[k:] + names[:k]
    print(json.dumps({"round": r, "ms": {n: start_ms(n) for n in order}, "order": order}), flush=True)
'''

# What each variant imports before it can report RUNNING, timed with -X importtime in a Windows python
# (outside the SCM: the SCM gives a service services.exe's environment, not ours).
NATIVE_IMPORTS = ("from servicehost.platforms.windows.boot import prepare, service_main; prepare(); "
                  "from servicehost.cli import run_cli; "
                  "import servicehost.platforms.windows.platform")


def find_tools() -> tuple[Path | None, str]:
    """The Wine harness (``wine-python-env.sh``), or None and why it is not usable here."""
    tools = Path(os.environ.get("SERVICEHOST_TOOLS", ROOT.parent / "shared" / "tools"))
    if not (tools / "wine-python-env.sh").is_file():
        return None, f"no Wine harness: {tools / 'wine-python-env.sh'} not found (set SERVICEHOST_TOOLS)"
    if shutil.which("wine") is None:
        return None, "no Wine harness: wine is not installed here (see the tools README)"
    return tools, f"Wine harness: {tools / 'wine-python-env.sh'}"


def winpath(path: Path) -> str:
    """The Windows path of a Linux path: Wine maps / to drive Z:."""
    return "Z:" + str(path.resolve()).replace("/", "\\")


@dataclass
class Wine:
    """The Windows CPython + pywin32 that ``wine-python-env.sh up`` lays out."""

    env: dict[str, str]

    @classmethod
    def up(cls, tools: Path) -> Wine:
        """Bring the harness up (idempotent, ~1 s when up); this checkout's src/ importable there."""
        up = subprocess.run(["bash", str(tools / "wine-python-env.sh"), "up"], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, timeout=900)
        if up.returncode != 0:
            raise RuntimeError(f"wine-python-env.sh up failed:\n{up.stderr[-3000:]}")
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON") and k != "VIRTUAL_ENV"}
        for line in up.stdout.splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export "):].partition("=")
                env[key] = value.strip("'")
        pth = Path(env["WINPY_SITE_PACKAGES"]) / "servicehost-checkout.pth"
        want = winpath(ROOT / "src") + "\r\n"
        if not pth.exists() or pth.read_text() != want:
            pth.write_text(want)  # the same .pth the Wine tests write: this checkout's src/
        return cls(env)

    def popen(self, *args: str, cwd: Path | None = None) -> subprocess.Popen[str]:
        # stdin /dev/null and pipes for stdout/stderr: CPython 3.13 under Wine aborts on a regular file.
        return subprocess.Popen(["wine", self.env["WINPY_PYTHON"], *args], env=self.env, cwd=cwd,
                                encoding="utf-8", errors="replace",
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def py(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        proc = self.popen(*args)
        try:
            out, err = proc.communicate(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        done = subprocess.CompletedProcess(proc.args, proc.returncode, out.replace("\r\n", "\n"),
                                           err.replace("\r\n", "\n"))
        if check and done.returncode != 0:
            raise RuntimeError(f"wine python {list(args)[:3]}... exited {done.returncode}:\n"
                               f"{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
        return done


REMOVE = r'''
import sys, time, win32evtlogutil, win32service as ws
scm = ws.OpenSCManager(None, None, ws.SC_MANAGER_ALL_ACCESS)
for name in sys.argv[1:]:
    try:
        h = ws.OpenService(scm, name, ws.SERVICE_ALL_ACCESS)
    except ws.error:
        continue
    try:
        ws.ControlService(h, ws.SERVICE_CONTROL_STOP)
    except ws.error:
        pass
    end = time.monotonic() + 30
    while ws.QueryServiceStatus(h)[1] != ws.SERVICE_STOPPED and time.monotonic() < end:
        time.sleep(0.05)
    ws.DeleteService(h)
    try:
        win32evtlogutil.RemoveSourceFromRegistry(name)
    except Exception:
        pass
'''


@contextmanager
def installed(wine: Wine, tmp: Path) -> Iterator[None]:
    """The three services, installed for manual start; removed afterwards (also what a broken run left)."""
    wine.py("-c", REMOVE, *NAMES.values())
    scripts = {}
    for variant, imports in (("plain", PLAIN_IMPORTS), ("compat", COMPAT_IMPORTS)):
        scripts[variant] = tmp / f"seed_{variant}.py"
        scripts[variant].write_text(SEED.format(imports=imports, name=NAMES[variant]), encoding="utf-8")
    try:
        for variant in ("plain", "compat"):
            out = wine.py(winpath(scripts[variant]), "--startup", "manual", "install").stdout
            if "Service installed" not in out and "Service updated" not in out:
                raise RuntimeError(f"{variant}: pywin32's install said:\n{out}")
        wine.py("-m", "servicehost", "install", winpath(NATIVE_TARGET), "--name", NAMES["native"],
                "--start", "manual", "--state-dir", winpath(tmp / "state"))
        yield
    finally:
        wine.py("-m", "servicehost", "remove", winpath(NATIVE_TARGET), "--name", NAMES["native"], check=False)
        wine.py("-c", REMOVE, *NAMES.values(), check=False)


def import_profile(wine: Wine, tmp: Path) -> list[str]:
    """One ``-X importtime`` run of each variant's import chain (after site, in a Windows python):
    how many modules it loads, their cumulative time, servicehost's own share (self times) and the
    largest top-level entries. Informational: one run each, outside the SCM."""
    notes = []
    mark = "import sys; sys.stderr.write('<<chain>>\\n'); "
    chains = {"plain": ["-c", mark + "import seed_plain"], "compat": ["-c", mark + "import seed_compat"],
              "native, ImagePath's boot + platform before the target, without the start cache":
                  ["-S", "-s", "-P", "-c", "import site; site.main(); " + mark + NATIVE_IMPORTS]}
    for label, args in chains.items():
        proc = wine.popen("-X", "importtime", *args, cwd=tmp)
        try:
            _, err = proc.communicate(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        rows = []  # (self µs, cumulative µs, depth, name), after the marker
        for line in err.partition("<<chain>>")[2].splitlines():
            m = re.match(r"import time:\s+(-?\d+)\s+\|\s+(\d+)\s+\|( *)(\S+)", line)
            if m:
                rows.append((int(m.group(1)), int(m.group(2)), len(m.group(3)) // 2, m.group(4)))
        total = sum(r[1] for r in rows if r[2] == 0) / 1e3
        ours = sum(max(r[0], 0) for r in rows if r[3].startswith("servicehost")) / 1e3
        biggest = sorted((r for r in rows if r[2] <= 1), key=lambda r: -r[1])[:4]
        notes.append(f"-X importtime, {label}: {len(rows)} modules, {total:.0f} ms ({ours:.0f} ms in servicehost's "
                     "own modules); largest: " + ", ".join(f"{r[3]} {r[1] / 1e3:.0f}" for r in biggest))
    return notes


def measure(res: Any, rounds: int, say: Callable[[str], None]) -> None:
    """Fill ``res`` (bench/run.py's Result: contenders, targets, info, notes, status)."""
    targets = [Target("wine", "compat-ported seed vs the plain pywin32 seed (StartService → RUNNING)", "<=",
                      LIMIT, "x"),
               Target("wine", "examples/sample_service.py vs the plain pywin32 seed (StartService → RUNNING)", "<=",
                      LIMIT, "x")]
    res.targets += targets
    tools, where = find_tools()
    res.notes.append(where)
    if tools is None:
        for t in targets:
            t.status, t.note = "SKIPPED", "no Wine harness here"
        res.status = "skipped"
        say(f"  SKIPPED: {where}")
        return
    wine = Wine.up(tools)
    contenders = {
        "plain": Contender("plain pywin32 seed (pythonservice.exe)", "ms", short="plain"),
        "compat": Contender("seed through servicehost.compat (pythonservice.exe)", "ms", short="compat"),
        "native": Contender("examples/sample_service.py (servicehost install; python.exe + boot)", "ms",
                            short="native"),
    }
    with tempfile.TemporaryDirectory(prefix="servicehost-bench-wine-") as d, installed(wine, Path(d)):
        spec = {"names": [NAMES[v] for v in contenders], "rounds": rounds, "warmup": True}
        proc = wine.popen("-c", POLLER, json.dumps(spec))
        assert proc.stdout is not None
        variant_of = {n: v for v, n in NAMES.items()}
        for line in proc.stdout:
            got = json.loads(line)
            for name, ms in got["ms"].items():
                if got["round"]:
                    contenders[variant_of[name]].samples.append(ms)
            parts = "; ".join(f"{variant_of[n]} {got['ms'][n]:.0f} ms" for n in got["order"])
            say(f"  {'warm-up round (not counted)' if not got['round'] else 'round ' + str(got['round'])}: {parts}")
        err = proc.stderr.read() if proc.stderr else ""
        if proc.wait(timeout=HANG_GUARD) != 0 or any(len(c.samples) != rounds for c in contenders.values()):
            raise RuntimeError(f"the Windows poller failed (exit {proc.returncode}):\n{err[-3000:]}")
        res.notes += import_profile(wine, Path(d))
    plain, compat, native = (contenders[v] for v in ("plain", "compat", "native"))
    targets[0].samples = ratios(compat.samples, plain.samples)
    targets[1].samples = ratios(native.samples, plain.samples)
    res.contenders += [plain, compat, native]
    res.info += [("compat − plain", [a - b for a, b in zip(compat.samples, plain.samples, strict=True)], "ms"),
                 ("native − plain", [a - b for a, b in zip(native.samples, plain.samples, strict=True)], "ms")]
