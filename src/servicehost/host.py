"""Host: runs services — start in order, stop in reverse before the deadline, collect errors.

Start (``Host.start``), on the calling thread:
  CREATED → STARTING → for each service: ``start()``, then its ``run`` thread → wait until every
  service is ready (``start_timeout``) → RUNNING (platforms now say SERVICE_RUNNING / READY=1).
  A failure or time-out stops what had started (reverse order) and raises StartupError.

Stop (``Host.wait``), after ``request_stop`` (a signal, SvcStop) or a failure:
  → STOPPING; the deadline is ``now + shutdown_timeout``. On a stopper thread: every component's
  intake closes (producers blocked on a full queue wake with QueueClosed); then for each started
  service in reverse: ``stop(deadline)`` → join its ``run`` thread → close and drain its
  components in reverse → collect what did not finish. The waiting thread returns when that is
  done, or at the deadline, or at a forced stop (second request), whichever is first; then every
  component not drained yet is drained with an expired deadline, so what it held is reported and
  handed back, never dropped silently. → STOPPED (or FAILED after a crash, a hang, a failed start).

Drain (``Host.drain``), on the caller's thread: RUNNING → DRAINING; every component holds its
intake (producers block as on a full queue, timers skip ticks) while its workers finish what was
accepted; ``wait_drained`` says when nothing is queued or running; ``resume`` → RUNNING opens
intake again. A stop during a drain closes intake as from RUNNING (``lifecycle.py``).

The host never imports a platform. Platforms call ``start``/``request_stop``/``wait``/``pause``/
``drain``/``resume``/``reload``/``control`` and subscribe to ``lifecycle`` to tell their manager.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence

from . import logs
from .config import HangPolicy, HostConfig
from .errors import ControlRefused, ExitCode, QueueClosed, ServiceHostError, StartupError, describe_error, error_message
from .lifecycle import HostState, Lifecycle
from .service import Service
from .stopping import Deadline, StopToken
from .components import Beat, Component, Counters, HoldsIntake, Unfinished

log = logging.getLogger("servicehost.host")
S = HostState

#: Seconds between two looks at the counters while ``wait_drained`` waits (within its timeout).
DRAIN_POLL = 0.02

#: Seconds a forced stop waits for a drain under way to finish handing work back (well inside the
#: 10 s the managers allow past the stop timeout before they kill).
HAND_BACK_GRACE = 5.0


class _Drain:
    """One component's drain: done once it returned; what it left."""

    __slots__ = ("done", "left")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.left: Unfinished | None = None


class StopReport:
    """What the last stop left behind: filled as the stop proceeds. (A plain class: the records
    on the start path are cheap to define.)"""

    def __init__(self) -> None:
        self.unfinished: list[Unfinished] = []
        self.errors: list[BaseException] = []
        self.still_stopping: list[str] = []
        self.forced = False

    @property
    def complete(self) -> bool:
        return not self.unfinished and not self.still_stopping and not self.forced

    def __repr__(self) -> str:
        return (f"StopReport(unfinished={self.unfinished!r}, errors={self.errors!r}, "
                f"still_stopping={self.still_stopping!r}, forced={self.forced!r})")


class Host:
    """Runs a sequence of services under one lifecycle. Thread-safe public methods."""

    def __init__(self, services: Sequence[Service], config: HostConfig | None = None) -> None:
        if not services:
            raise ValueError("a host needs at least one service")
        names = [s.name for s in services]
        if len(set(names)) != len(names):
            raise ValueError(f"service names must be unique: {names}")
        self.services = list(services)
        self.config = config or HostConfig()
        self.lifecycle = Lifecycle()
        self.stop_token = StopToken()
        self.report = StopReport()
        self._failure: ExitCode | None = None
        self._failure_reason = ""
        self._started: list[Service] = []
        self._run_threads: dict[str, threading.Thread] = {}
        self._changed = threading.Condition()
        self._ops = threading.Lock()
        self._drains: dict[int, _Drain] = {}  # one drain per component, whoever starts it
        self._drain_lock = threading.Lock()
        self._report_closed = False
        self._stopper_done = threading.Event()
        self._wake = threading.Event()  # set when the stopper is done or the stop is forced
        self._started_at = 0.0
        self._drain_began: float | None = None  # monotonic time of the drain under way, if any
        self._after_ready: list[Callable[[], object]] = []

    def after_ready(self, fn: Callable[[], object]) -> None:
        """``fn()`` runs on the starting thread once the host is RUNNING and has logged that it is
        ready: for work the start must not wait for (``platforms/once_ready.py``: the control
        channel), which listeners of the move to RUNNING would still run before the ready line."""
        self._after_ready.append(fn)

    @property
    def state(self) -> HostState:
        return self.lifecycle.state

    @property
    def name(self) -> str:
        return self.services[0].name

    # -- start ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start every service in order and wait until all are ready. Blocks up to
        ``start_timeout``. Raises StartupError (after stopping what started) on failure.
        A stop requested meanwhile ends the start early without an error."""
        self._started_at = time.monotonic()
        self.lifecycle.move(S.STARTING)
        logs.host_starting(log, len(self.services), ", ".join(s.name for s in self.services))
        deadline = Deadline.after(self.config.start_timeout)
        try:
            for service in self.services:
                if self.stop_token.stop_requested:
                    return
                self._start_one(service)
            if not self._wait_ready(deadline):
                if self.stop_token.stop_requested:
                    return
                waiting = [s.name for s in self.services if not s.is_ready]
                raise StartupError(
                    f"not ready after start_timeout={self.config.start_timeout:g}s: {', '.join(waiting)}")
        except BaseException as exc:
            self._fail(ExitCode.START_FAILURE, f"start failed: {error_message(exc)}")
            if not isinstance(exc, StartupError):
                raise StartupError(describe_error(exc, limit=2000)) from exc
            raise
        self.lifecycle.move(S.RUNNING)
        logs.host_ready(log, time.monotonic() - self._started_at)
        for fn in self._after_ready:
            fn()
        if self.config.hang_timeout > 0:
            threading.Thread(target=self._watch_hangs, name="servicehost-hang-watch", daemon=True).start()

    def _start_one(self, service: Service) -> None:
        logs.service_starting(log, service.name)
        service._on_ready = self._notify
        service.state_dir = self.config.state_dir
        try:
            service.start()
        except BaseException as exc:
            if isinstance(exc, (OSError, ServiceHostError)):
                # The environment (a path, a permission, a port) or a setting: one line names
                # service, hook and error; the traceback is for `debug` (DEBUG), not the console.
                logs.service_start_failed(log, service.name, "start()", describe_error(exc, limit=2000))
                logs.service_hook_traceback(log, service.name, "start()", exc_info=exc)
            else:  # a bug in start(): its traceback is what fixes it
                logs.service_hook_failed(log, service.name, "start()", exc_info=exc)
            self._started.append(service)  # its components may hold threads: stop them too
            raise StartupError(f"{service.name}.start() raised {describe_error(exc, limit=2000)}") from exc
        self._started.append(service)
        if service.has_run():
            thread = threading.Thread(
                target=self._run_service, args=(service,), name=f"{service.name}-run", daemon=True)
            self._run_threads[service.name] = thread
            thread.start()
        if service.ready_on_start:
            service.ready()
        logs.service_started(log, service.name)

    def _wait_ready(self, deadline: Deadline) -> bool:
        def settled() -> bool:
            return all(s.is_ready for s in self.services) or self._failure is not None or \
                self.stop_token.stop_requested
        with self._changed:
            self._changed.wait_for(settled, deadline.remaining())
        if self._failure is not None:
            raise StartupError(self._failure_reason)
        return all(s.is_ready for s in self.services)

    def _notify(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _run_service(self, service: Service) -> None:
        try:
            service.run(self.stop_token)
        except BaseException as exc:
            if not self.stop_token.stop_requested:  # a crash fails the host; the manager restarts it
                logs.service_crashed(log, service.name, "run()", exc_info=exc)
                self._fail(ExitCode.CRASH, f"{service.name}.run() raised {describe_error(exc, limit=2000)}")
            elif isinstance(exc, QueueClosed):
                # The stop closed the intake it was blocked on (submit, put): that is how it ends.
                logs.run_ended_by_stop(log, service.name, exc.__class__.__name__)
            else:
                # Raised while a stop was under way (e.g. from a socket stop() closed): the stop
                # was asked for, so it stays a stop — as a stop() hook that raises: logged, collected.
                logs.service_hook_failed(log, service.name, "run() while stopping", exc_info=exc)
                self.report.errors.append(exc)
            return
        if not self.stop_token.stop_requested:
            logs.service_finished(log, service.name)
            self._request(f"{service.name}.run() returned")

    # -- failures and hangs -------------------------------------------------------------------
    def fail(self, code: ExitCode, reason: str) -> None:
        """Fail the host (a crash the platform saw, a hung worker): stop it with ``code``."""
        self._fail(code, reason)

    def _fail(self, code: ExitCode, reason: str) -> None:
        with self._changed:
            if self._failure is None:
                self._failure, self._failure_reason = code, reason
                logs.host_failing(log, reason)
            self._changed.notify_all()
        self._request(reason)

    def hung(self, now: float | None = None) -> list[Beat]:
        """Workers running one task longer than their hang timeout right now."""
        now = time.monotonic() if now is None else now
        out: list[Beat] = []
        for component in self.components():
            limit = getattr(component, "hang_timeout", None) or self.config.hang_timeout
            out.extend(b for b in component.beats() if limit > 0 and b.hung(now, limit))
        return out

    def healthy(self) -> bool:
        """True while the host runs and no worker is hung: the systemd watchdog's condition."""
        return self._failure is None and not self.hung()

    def _watch_hangs(self) -> None:
        interval = max(0.05, min(self.config.hang_timeout / 4, 5.0))
        while not self.stop_token.wait(interval):
            for beat in self.hung():
                assert beat.busy_since is not None
                logs.worker_hung(log, beat.component, beat.worker, beat.current,
                                 time.monotonic() - beat.busy_since, self.config.hang_timeout)
                if self.config.hang_policy is HangPolicy.RESTART:
                    self._fail(ExitCode.HUNG, f"{beat.component}/{beat.worker} hung in {beat.current}")
                    # A hung thread never finishes: waiting out shutdown_timeout for it would only
                    # delay the restart. Stop now: report, hand back, exit 5.
                    self.stop_token.force()
                    self._wake.set()
                    return

    # -- stop -------------------------------------------------------------------------------------
    def request_stop(self, reason: str = "requested") -> None:
        """Ask for a graceful stop (any thread; never blocks). A second request forces it."""
        if not self._request(reason) and not self.stop_token.forced:
            logs.stop_forced(log, reason)
            self.stop_token.force()
            self._wake.set()

    def _request(self, reason: str) -> bool:
        """Start the graceful phase (no forcing: for the host's own reasons). True if first."""
        first = self.stop_token.request_stop(self.config.shutdown_timeout, reason)
        if first:
            logs.stop_requested(log, reason, self.config.shutdown_timeout)
        self._notify()
        return first

    def wait(self) -> ExitCode:
        """Block until a stop is requested (or a service fails), then stop everything.

        Returns the exit code: OK, STOP_INCOMPLETE (a requested stop left work unfinished),
        CRASH / HUNG / START_FAILURE (failures). Call once, from the thread that ran ``start``.
        """
        self.stop_token.wait()
        token = self.stop_token
        if self.state not in (S.STOPPING, S.STOPPED, S.FAILED):
            self.lifecycle.move(S.STOPPING)
        stopper = threading.Thread(target=self._stop_all, name="servicehost-stopper", daemon=True)
        stopper.start()
        # Wake at the end of the stop, at the deadline, or when forced: whichever comes first.
        self._wake.wait(token.deadline.remaining())
        with self._drain_lock:
            if not self._stopper_done.is_set():
                self.report.forced = True
                self.report.still_stopping = [s.name for s in self._started]
            self._report_closed = True  # a stopper still running from here on reports nothing
        if self.report.forced:
            left = [self._drain_forced(c) for c in self.components()]
            reported = {u.component for u in self.report.unfinished}
            for name, thread in self._run_threads.items():
                if thread.is_alive() and name not in reported:
                    self.report.unfinished.append(Unfinished(name, "run() thread", 0, 1, False, (f"{name}.run",)))
        else:
            left = [d.left for d in self._drains.values()]
        self.report.unfinished[:0] = [u for u in left if u is not None and u.total]
        for item in self.report.unfinished:
            logs.work_unfinished(
                log, item.component, item.total, item.kind, item.queued,
                ", handed back" if item.handed_back else "", item.running, ", ".join(item.running_what) or "-")
        code = self._exit_code()
        self.lifecycle.move(S.FAILED if code.is_failure else S.STOPPED)
        logs.host_stopped(log, code, code.name)
        return code

    def _stop_all(self) -> None:
        deadline = self.stop_token.deadline
        try:
            for component in self.components():  # intake stops first; blocked producers wake up
                component.close()
            for service in reversed(self._started):
                logs.service_stopping(log, service.name)
                try:
                    service.stop(deadline)
                except BaseException as exc:  # every stop() runs even if one failed
                    logs.service_hook_failed(log, service.name, "stop()", exc_info=exc)
                    self.report.errors.append(exc)
                thread = self._run_threads.get(service.name)
                if thread is not None:
                    thread.join(deadline.remaining())
                for component in reversed(service.components):
                    self._drain_once(component, deadline)
                if thread is not None and thread.is_alive():
                    with self._drain_lock:
                        if not self._report_closed:
                            self.report.unfinished.append(
                                Unfinished(service.name, "run() thread", 0, 1, False, (f"{service.name}.run",)))
                else:
                    logs.service_stopped(log, service.name)
                self._started.remove(service)
        finally:
            self._stopper_done.set()
            self._wake.set()

    def _drain_once(self, component: Component, deadline: Deadline) -> _Drain:
        """Drain ``component`` unless a drain of it has begun: one drain per component, one report."""
        with self._drain_lock:
            entry = self._drains.get(id(component))
            if entry is not None:
                return entry
            entry = self._drains[id(component)] = _Drain()
        try:
            entry.left = component.drain(deadline)
        except BaseException as exc:
            logs.service_hook_failed(log, component.name, "drain()", exc_info=exc)
            self.report.errors.append(exc)
        finally:
            entry.done.set()
        return entry

    def _drain_forced(self, component: Component) -> Unfinished | None:
        """At a forced stop: what ``component`` left. A drain the stopper has under way may be
        joining its workers until its own deadline: take back what it has not, now, with an
        expired deadline (a component takes work back and hands it over under its own lock, so
        two drains never give back the same task, and this one returns after a hand-back in
        progress). When the stop deadline has passed, the stopper's drain is finishing: give it a
        short grace so that its report counts too; otherwise count it only if it is done."""
        entry = self._drain_once(component, Deadline(0.0))  # here, unless the stopper has begun
        if entry.done.is_set():
            return entry.left
        try:
            late = component.drain(Deadline(0.0))
        except BaseException as exc:
            logs.service_hook_failed(log, component.name, "drain()", exc_info=exc)
            self.report.errors.append(exc)
            late = None
        if self.stop_token.deadline.expired:
            entry.done.wait(HAND_BACK_GRACE)
        return Unfinished.merge(entry.left, late) if entry.done.is_set() else late

    def _exit_code(self) -> ExitCode:
        if self._failure is not None:
            return self._failure
        if not self.report.complete:
            return ExitCode.STOP_INCOMPLETE
        return ExitCode.OK

    def run(self) -> ExitCode:
        """``start()`` then ``wait()``; a failed start is stopped and returns START_FAILURE."""
        try:
            self.start()
        except StartupError:
            pass  # already failing: wait() stops what had started and returns the code
        return self.wait()

    # -- operations platforms trigger -----------------------------------------------------------
    def pause(self) -> None:
        """RUNNING → PAUSED: components stop taking work, then each service's ``pause()``.
        A hook that raises leaves the host RUNNING and re-raises."""
        def pause(service: Service) -> None:
            self._each(service.components, "pause")
            service.pause()

        def undo(service: Service) -> None:
            service.resume()
            self._each(service.components, "resume")

        with self._ops:
            self.lifecycle.move(S.PAUSING)
            try:
                self._each_service(pause)
            except BaseException:
                try:
                    self._each_service(undo)
                finally:  # even if undoing fails, the host is running, not stuck in PAUSING
                    self.lifecycle.move(S.RUNNING)
                raise
            self.lifecycle.move(S.PAUSED)
            logs.host_paused(log)

    def drain(self) -> None:
        """RUNNING → DRAINING: every component holds its intake without closing it (``lifecycle.py``):
        producers block as on a full queue (a ``run()`` blocked in ``submit`` just waits), timers
        skip their ticks, and the workers finish everything queued and running. ``resume`` ends it;
        ``wait_drained`` says when nothing is left. IllegalTransition unless RUNNING."""
        with self._ops:
            self.lifecycle.move(S.DRAINING)
            self._drain_began = time.monotonic()
            for component in self.components():
                if isinstance(component, HoldsIntake):
                    component.hold_intake()
            logs.host_draining(log)

    def wait_drained(self, timeout: float | None) -> bool:
        """Block until a drain has finished — nothing queued or running in any component — or
        ``timeout`` (None: no limit) passes, or the host leaves DRAINING (resumed, stopping).
        True once drained (logged once per drain). Looks at the counters every ``DRAIN_POLL``."""
        deadline = Deadline.after(timeout)
        while self.state is S.DRAINING and not self.stop_token.stop_requested:
            began = self._drain_began
            if self.idle():
                if began is not None and self._drain_began is began:
                    self._drain_began = None  # log it once
                    logs.host_drained(log, time.monotonic() - began)
                return self.state is S.DRAINING
            left = deadline.remaining()
            if left is not None and left <= 0:
                return False
            self.stop_token.wait(DRAIN_POLL if left is None else min(DRAIN_POLL, left))
        return False

    def idle(self) -> bool:
        """Nothing queued or running in any component now."""
        return all(c.queue_depth == 0 and c.in_flight == 0 for c in self.counters())

    def resume(self) -> None:
        """Back to RUNNING: from a drain (DRAINING), every component takes work again and blocked
        producers go on; from a pause (PAUSED), each service's ``resume()``, then its components
        take work again. IllegalTransition from any other state."""
        with self._ops:
            if self.state is S.DRAINING:
                for component in self.components():
                    if isinstance(component, HoldsIntake):
                        component.release_intake()
                self.lifecycle.move(S.RUNNING)
                self._drain_began = None
                logs.host_drain_ended(log)
                return
            self._resume_paused()

    def _resume_paused(self) -> None:
        def resume(service: Service) -> None:
            service.resume()
            self._each(service.components, "resume")

        self.lifecycle.move(S.RESUMING)
        try:
            self._each_service(resume)
        except BaseException:
            self.lifecycle.move(S.PAUSED)
            raise
        self.lifecycle.move(S.RUNNING)
        logs.host_resumed(log)

    def reload(self) -> None:
        """Call every service's ``reload()`` (SIGHUP, PARAMCHANGE)."""
        with self._ops:
            logs.reload_requested(log)
            self._each_service(lambda s: s.reload())

    def control(self, code: int) -> None:
        """Pass a custom control code (128–255, the range Windows allows) to every service."""
        if not 128 <= code <= 255:
            raise ValueError(f"custom control codes are 128-255, got {code}")
        with self._ops:
            logs.control_received(log, code)
            self._each_service(lambda s: s.control(code))

    def _each_service(self, op: Callable[[Service], object]) -> None:
        errors: list[BaseException] = []
        for service in self.services:
            try:
                op(service)
            except ControlRefused as exc:  # not a failure: the service says it takes no such control
                logs.service_control_refused(log, service.name, exc.reason or str(exc))
                errors.append(exc)
            except BaseException as exc:
                logs.service_hook_failed(log, service.name, getattr(op, "__name__", "hook"), exc_info=exc)
                errors.append(exc)
        if len(errors) == 1:
            raise errors[0]
        if errors:
            raise BaseExceptionGroup("several services failed", errors)

    @staticmethod
    def _each(components: Sequence[Component], method: str) -> None:
        for component in components:
            getattr(component, method)()

    # -- observation ------------------------------------------------------------------------------
    def components(self) -> Iterator[Component]:
        for service in self.services:
            yield from service.components

    def counters(self) -> list[Counters]:
        """Each component's counters, its ``kind`` (worker model) filled in when it left it out."""
        out = []
        for component in self.components():
            counters = component.counters()
            if counters.kind is None:
                counters = dataclasses.replace(counters, kind=type(component).__name__)
            out.append(counters)
        return out

    def status_line(self, counters: Sequence[Counters] | None = None, state: HostState | None = None) -> str:
        """One line for a manager's status (systemd ``STATUS=``): the state, then per component
        (php-fpm style) done, failed, busy/size and queued/capacity. ``counters``/``state``: ones
        read already (one snapshot for a whole status document)."""
        counters = self.counters() if counters is None else counters
        parts = [(state or self.state).value] + [c.summary() for c in counters]
        return "; ".join(parts)
