"""What seeing inside a running service costs (issue 12): how fast ``status`` answers on the
control channel while the pools are saturated, and what the counters and systemd's ``STATUS=``
line take from task throughput.

status    A real Host runs one service whose ``run()`` keeps a ThreadPool's queue full; its control
          channel (``platforms/control.py``, the unix socket every Linux carrier serves) is asked
          ``status`` from another process (``status_client``), one call every ~10 ms; each call's
          time, connect to reply, is a sample. With 256 workers on 5 ms sleeps (I/O-bound) the
          target is a median <= 50 ms (p99 printed); with 8 workers on pure-Python tasks the same
          figures are printed without a target: the GIL decides them.
counters  The same tasks on the same pool type with the counters on and off, interleaved rounds:
          "on" is the pool as shipped plus a thread that reads every counter and sends the
          ``STATUS=`` line (``Notifier``, to a real AF_UNIX datagram socket) every 50 ms — twenty
          times as often as the systemd session does, while "on" runs; "off" is the same pool
          whose worker loop leaves out every line marked ``# counters`` (run-time samples, busy
          time: :func:`uncounted_pool_class`), and no reader. Fresh pools each round, made in
          alternating order. Bulk (``submit_many``: counted per chunk) and per-task
          (``submit``: counted per task) paths; ratio on/off in tasks/s, target >= 0.97 (<= 3%).
"""

from __future__ import annotations

import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Seconds between two ``status`` calls of the client (it measures answers, not a flood).
STATUS_SPACING = 0.01


# -- status: a client in its own process -----------------------------------------------------------------
CLIENT = r'''
import json, sys, time
from pathlib import Path
from servicehost.platforms.control_client import ControlClient

path, count, spacing = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
client = ControlClient(path, timeout=30.0)
client.call("status")  # warm-up: imports, the first connection, what the first answer caches
out = []
for _ in range(count):
    t0 = time.perf_counter()
    answer = client.call("status")
    out.append(time.perf_counter() - t0)
    assert answer["counters"], answer
    time.sleep(spacing)
print(json.dumps(out))
'''


class SaturatedService:
    """A Host running one service whose pool of ``workers`` threads runs ``task`` and whose
    ``run()`` keeps its queue full; its control channel served at ``path``. ``close()`` stops it."""

    def __init__(self, workers: int, task: Callable[[int], Any], queue_size: int, path: Path) -> None:
        from servicehost import HostConfig, Service, StopToken, ThreadPool
        from servicehost.errors import QueueClosed
        from servicehost.host import Host
        from servicehost.lifecycle import HostState
        from servicehost.platforms.control import ControlServer

        class Saturated(Service):
            name = "bench-status"

            def start(self) -> None:
                self.pool = self.use(ThreadPool(workers, name="saturated", queue_size=queue_size))

            def run(self, stop: StopToken) -> None:
                i = 0
                try:
                    while not stop.stop_requested:
                        self.pool.submit(task, i)  # blocks while the queue is full: it stays full
                        i += 1
                except QueueClosed:
                    pass

        self.service = Saturated()
        self.host = Host([self.service], HostConfig(shutdown_timeout=60))
        self.thread = threading.Thread(target=self.host.run, name="bench-host", daemon=True)
        self.thread.start()
        if not self.host.lifecycle.wait_for({HostState.RUNNING}, 60):
            raise RuntimeError(f"the benchmark's host did not become ready: {self.host.state}")
        self.server = ControlServer(self.host, path)
        self.server.start()
        self.path = path

    def queue(self) -> tuple[int, int | None]:
        c = self.service.pool.counters()
        return c.queue_depth, c.queue_capacity

    def close(self) -> None:
        self.server.close()
        self.host.request_stop("benchmark done")
        self.thread.join(120)


class BareAnswer:
    """The floor: a bare unix-socket server thread in the same saturated process that answers
    every request with a canned reply in the channel's framing (no thread per connection, no
    permissions, no status read). What is left of a ``status`` time above this is servicehost's."""

    def __init__(self, path: Path) -> None:
        from servicehost.platforms.control import encode_message

        self.path = path
        self.reply = encode_message({"ok": True, "result": {"counters": [{}]}})
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen(8)
        self.thread = threading.Thread(target=self._serve, name="bench-bare-answer", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            with conn:
                while conn.recv(65536):  # one request a connection: answer it, then see the end
                    conn.sendall(self.reply)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(10)


def status_latencies(path: Path, count: int) -> list[float]:
    """``count`` status answers at ``path``, timed by a client process, in seconds."""
    proc = subprocess.run([sys.executable, "-c", CLIENT, str(path), str(count), str(STATUS_SPACING)],
                          capture_output=True, text=True, timeout=300, env=dict(os.environ))
    if proc.returncode != 0:
        raise RuntimeError(f"status client failed: {proc.stderr.strip()[-2000:]}")
    return json.loads(proc.stdout)


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


class StatusFigures:
    """What :func:`measure_status` found: every answer (ms), each round's p99 (ms), the same for
    the bare floor (:class:`BareAnswer`), the queue depth when measuring began."""

    def __init__(self) -> None:
        self.every: list[float] = []
        self.p99s: list[float] = []
        self.bare: list[float] = []
        self.bare_p99s: list[float] = []
        self.depth = 0


def measure_status(workers: int, task: Callable[[int], Any], queue_size: int, rounds: int,
                   calls: int, say: Callable[[str], None]) -> StatusFigures:
    """Per round, ``calls`` answers of ``status`` and as many of the bare floor, in turns."""
    import shutil

    base = Path(tempfile.mkdtemp(prefix="shb-"))
    service = SaturatedService(workers, task, queue_size, base / "bench-status" / "control.sock")
    bare = BareAnswer(base / "bare.sock")
    out = StatusFigures()
    try:
        deadline = time.monotonic() + 30
        while service.queue()[0] < queue_size // 2 and time.monotonic() < deadline:
            time.sleep(0.05)  # the feeder fills the queue (bench setup, bounded)
        out.depth = service.queue()[0]
        for r in range(rounds):
            steps = [("status", service.path, out.every, out.p99s), ("bare", bare.path, out.bare, out.bare_p99s)]
            for _, path, into, p99s in (steps if r % 2 == 0 else steps[::-1]):
                got = [t * 1000 for t in status_latencies(path, calls)]
                into += got
                p99s.append(p99(got))
            depth_now, capacity = service.queue()
            say(f"  round {r + 1}: status median {statistics.median(out.every[-calls:]):.2f} ms, p99 "
                f"{out.p99s[-1]:.2f} ms; bare floor median {statistics.median(out.bare[-calls:]):.2f} ms, p99 "
                f"{out.bare_p99s[-1]:.2f} ms; queue {depth_now}/{capacity}")
        return out
    finally:
        bare.close()
        service.close()
        shutil.rmtree(base, ignore_errors=True)


# -- counters: on and off ------------------------------------------------------------------------------------
def uncounted_pool_class() -> type:
    """ThreadPool without its counters: its worker loop compiled from ThreadPool's own source with
    every line marked ``# counters`` left out (the run-time samples, the busy time), so the
    benchmark measures exactly what those lines cost and follows the code as it changes. What a
    task's end counts (done, failed: the queue depth is derived from them) stays."""
    import inspect
    import textwrap

    from servicehost.workers import thread_pool

    source = textwrap.dedent(inspect.getsource(thread_pool.ThreadPool._work))
    kept = [line for line in source.splitlines() if not line.rstrip().endswith("# counters")]
    if len(kept) == len(source.splitlines()):
        raise RuntimeError("ThreadPool._work has no line marked '# counters': nothing to leave out")
    namespace: dict[str, Any] = {}
    exec(compile("\n".join(kept) + "\n", "<ThreadPool._work without counters>", "exec"),
         vars(thread_pool), namespace)
    return type("UncountedThreadPool", (thread_pool.ThreadPool,), {"_work": namespace["_work"]})


class StatusLine:
    """What the systemd session does each tick, ``every`` seconds: read every counter, make the
    ``STATUS=`` line, send it as a datagram to a real AF_UNIX socket (read by nobody: its buffer
    drops what does not fit, as a busy systemd's would not)."""

    def __init__(self, pools: list[Any], every: float) -> None:
        from servicehost.platforms.systemd.notify import Notifier

        self.dir = Path(tempfile.mkdtemp(prefix="shn-"))
        self.sink = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sink.bind(str(self.dir / "notify"))
        self.sink.setblocking(False)
        self.notifier = Notifier(str(self.dir / "notify"))
        self.pools, self.every = pools, every
        self.sent = 0
        self.active = threading.Event()  # set: sending (the benchmark sets it around each "on" run)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="bench-status-line", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            if not self.active.is_set():
                continue
            line = "; ".join(["running"] + [p.counters().summary() for p in self.pools])
            self.notifier.notify(f"STATUS={line}")
            self.sent += 1
            try:
                while self.sink.recv(65536):
                    pass
            except BlockingIOError:
                pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join(10)
        self.sink.close()
        import shutil

        shutil.rmtree(self.dir, ignore_errors=True)
