"""Services the Wine tests install into the real Service Control Manager (a target file, not tests).

Each hook appends one JSON line to ``<state_dir>/trace.jsonl``, so a test reads from Linux what ran,
in which order, with which start arguments, environment and working directory. Start arguments
choose a scenario, so one install serves several starts:

    crash-in-start   start() raises                 → STOPPED, service exit code 3 (START_FAILURE)
    crash-in-run     run() raises once ready         → STOPPED, service exit code 1 (CRASH)
    slow-start       ready only after 3 s            → START_PENDING with rising checkpoints, then RUNNING
    slow-stop        stop() drains for 8 s           → STOP_PENDING with rising checkpoints, then STOPPED 0
    stdio            prints 256 KiB to stdout/stderr → nothing blocks, the lines reach the log
    pool             a spawn process pool squares 0..7 (multiprocessing under the service host)
"""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass

from servicehost import Deadline, Service, StopToken, ThreadPool, setting


def square(n: int) -> int:
    return n * n


def secret_seen() -> dict[str, object]:
    """What the service got for ``--env TOKEN=@file``: the path, and a hash of what it read there
    (never the secret itself: the tests look for the secret in every file)."""
    import hashlib

    path = os.environ.get("TOKEN_FILE")
    digest = None
    if path:
        with open(path, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()
    return {"TOKEN_FILE": path, "TOKEN": os.environ.get("TOKEN"), "MODE": os.environ.get("MODE"), "sha256": digest}


class Traced(Service):
    """Records every hook; misbehaves on request (see the module docstring)."""

    name = "Traced"
    description = "servicehost Wine test service"

    def record(self, hook: str, **data: object) -> None:
        line = json.dumps({"t": time.time(), "hook": hook, **data})
        with open(self.state_dir / "trace.jsonl", "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    @property
    def args(self) -> tuple[str, ...]:
        return tuple(getattr(self, "start_args", ()))

    def start(self) -> None:
        import win32api
        import win32service  # noqa: F401  (from the environment's own site-packages)

        import servicehost

        self.ready_on_start = "slow-start" not in self.args
        self.record("start", args=list(self.args), env=os.environ.get("SH_TEST_ENV"), cwd=os.getcwd(),
                    prefix=sys.prefix, servicehost=servicehost.__file__, pywin32=sys.modules["win32service"].__file__,
                    executable=sys.executable, path=sys.path, pid=os.getpid(), user=win32api.GetUserName(),
                    secret=secret_seen())
        if "crash-in-start" in self.args:
            raise RuntimeError("asked to fail in start()")
        if "stdio" in self.args:
            chunk = "x" * 1023 + "\n"
            for _ in range(256):
                sys.stdout.write(chunk)
                print(chunk, end="", file=sys.stderr)
            print("stdio-marker-out")
            print("stdio-marker-err", file=sys.stderr)
            self.record("stdio-written")
        if "pool" in self.args:
            with multiprocessing.get_context("spawn").Pool(2) as pool:
                self.record("pool", squares=pool.map(square, range(8)), executable=multiprocessing.spawn.get_executable())

    def run(self, stop: StopToken) -> None:
        if "slow-start" in self.args:
            stop.wait(3.0)
            self.record("ready")
            self.ready()
        if "crash-in-run" in self.args:
            stop.wait(1.0)  # long enough for `start` to see RUNNING
            self.record("crashing")
            raise RuntimeError("asked to fail in run()")
        stop.wait()

    def stop(self, deadline: Deadline) -> None:
        self.record("stop")
        if "slow-stop" in self.args:
            for step in range(16):  # an 8 s drain, well inside shutdown_timeout
                time.sleep(0.5)
                self.record("draining", step=step)
            self.record("drained")

    def pause(self) -> None:
        self.record("pause")

    def resume(self) -> None:
        self.record("resume")

    def reload(self) -> None:
        self.record("reload")

    def control(self, code: int) -> None:
        self.record("control", code=code)


@dataclass(frozen=True, kw_only=True)
class TcpSettings:
    port: int = setting(0, "TCP port on 127.0.0.1", min=0, max=65535)


class ThreadedTcp(Service):
    """A line service: 16 pool threads answer ``ping N`` with ``pong N <thread>`` after 0.3 s."""

    name = "ThreadedTcp"
    Settings = TcpSettings

    def start(self) -> None:
        self.pool = self.use(ThreadPool(16, name="tcp"))
        self.listener = socket.create_server(("127.0.0.1", self.settings.port))
        self.listener.settimeout(0.2)

    def run(self, stop: StopToken) -> None:
        while not stop.stop_requested:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.pool.submit(self.answer, conn)

    def answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(10)
            line = conn.makefile("r", encoding="utf-8").readline().strip()
            time.sleep(0.3)
            conn.sendall(f"pong {line.split()[-1]} {threading.current_thread().name}\n".encode())

    def stop(self, deadline: Deadline) -> None:
        self.listener.close()


class Brief(Service):
    """Runs once and returns: the host stops cleanly by itself (for runs outside the SCM)."""

    name = "Brief"

    def run(self, stop: StopToken) -> None:
        self.log.info("brief run under %s", sys.executable)
