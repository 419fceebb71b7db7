"""Logging setup, and every framework log message as a named event with a stable id.

Ids are stable across releases (the Windows Event Log shows them, admins filter on them):
1xxx host lifecycle, 2xxx services, 3xxx workers, 4xxx config and CLI, 5xxx platforms,
6xxx the operations view (``ops/``: the HTTP listener, health checks, metrics).
Use an event as a function: ``logs.task_failed(log, "pool", "mod.fn", exc_info=exc)``.
Each record carries ``event_id`` and ``event`` attributes for handlers that need them.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the same record to a type checker (``_records.py``)
    from typing import NamedTuple
else:
    from ._records import NamedTuple

DEBUG, INFO, WARNING, ERROR, CRITICAL = (
    logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL,
)

log = logging.getLogger("servicehost")


class LogEvent(NamedTuple):
    """A named log message with a stable id; call it to log."""

    id: int
    name: str
    level: int
    template: str

    def __call__(self, logger: logging.Logger, *args: Any, exc_info: Any = None) -> None:
        if logger.isEnabledFor(self.level):
            logger.log(
                self.level, self.template, *args, exc_info=exc_info,
                extra={"event_id": self.id, "event": self.name}, stacklevel=2,
            )


EVENTS: dict[int, LogEvent] = {}


def _event(id: int, name: str, level: int, template: str) -> LogEvent:
    if id in EVENTS:
        raise RuntimeError(f"log event id {id} used twice ({EVENTS[id].name}, {name})")
    EVENTS[id] = event = LogEvent(id, name, level, template)
    return event


# -- 1xxx: host lifecycle --------------------------------------------------------------------------
host_starting = _event(1001, "host_starting", INFO, "starting %d service(s): %s")
host_ready = _event(1002, "host_ready", INFO, "ready: every service said so (%.3fs after start)")
stop_requested = _event(1003, "stop_requested", INFO, "stop requested (%s); graceful until %.1fs from now")
stop_forced = _event(1004, "stop_forced", WARNING, "stop forced (%s): no longer graceful")
host_stopped = _event(1005, "host_stopped", INFO, "stopped: exit code %d (%s)")
work_unfinished = _event(
    1006, "work_unfinished", WARNING,
    "%s: %d %s not finished at the stop deadline (%d queued%s, %d running: %s)",
)
host_paused = _event(1007, "host_paused", INFO, "paused")
host_resumed = _event(1008, "host_resumed", INFO, "resumed")
reload_requested = _event(1009, "reload_requested", INFO, "reload requested")
control_received = _event(1010, "control_received", INFO, "control code %d received")
worker_hung = _event(1011, "worker_hung", ERROR, "%s/%s hung: one task (%s) running for %.1fs > hang_timeout %.1fs")
host_failing = _event(1012, "host_failing", ERROR, "host failing: %s")
stop_took_long = _event(1013, "stop_took_long", WARNING, "%s is still stopping; %.1fs left before the deadline")
log_flush_failed = _event(1014, "log_flush_failed", DEBUG, "a log handler could not be flushed before exit (ignored: %s)")
host_draining = _event(1015, "host_draining", INFO,
                       "draining: intake held (producers wait, timers skip); queued and running work finishes")
host_drained = _event(1016, "host_drained", INFO, "drained: nothing queued or running (%.3fs after the drain began)")
host_drain_ended = _event(1017, "host_drain_ended", INFO, "resumed after a drain: intake open again")

# -- 2xxx: services --------------------------------------------------------------------------------
service_starting = _event(2001, "service_starting", DEBUG, "%s: starting")
service_started = _event(2002, "service_started", INFO, "%s: started")
service_stopping = _event(2003, "service_stopping", DEBUG, "%s: stopping")
service_stopped = _event(2004, "service_stopped", INFO, "%s: stopped")
service_crashed = _event(2005, "service_crashed", CRITICAL, "%s: %s raised; the host stops")
service_finished = _event(2006, "service_finished", INFO, "%s: run() returned; the host stops")
service_hook_failed = _event(2007, "service_hook_failed", ERROR, "%s: %s raised")
run_ended_by_stop = _event(
    2008, "run_ended_by_stop", DEBUG, "%s: run() ended by the stop (%s: its intake was closed)")
service_control_refused = _event(2009, "service_control_refused", WARNING, "%s: %s")
# 202x: a start that failed because of the environment or a setting (host.py): one line, traceback at DEBUG
service_start_failed = _event(2020, "service_start_failed", ERROR, "%s: %s failed: %s")
service_hook_traceback = _event(2021, "service_hook_traceback", DEBUG, "%s: %s raised (the traceback)")

# -- 3xxx: workers ---------------------------------------------------------------------------------
task_failed = _event(3001, "task_failed", ERROR, "%s: task %s raised")
tick_skipped = _event(3002, "tick_skipped", WARNING, "%s: tick skipped, the previous run was still busy (%d skipped so far)")
worker_crashed = _event(3003, "worker_crashed", CRITICAL, "%s: worker %s died")
connection_error = _event(3004, "connection_error", WARNING, "%s: connection %s: %s")
process_pool_terminated = _event(3005, "process_pool_terminated", WARNING, "%s: %d worker process(es) terminated at the deadline")
item_abandoned = _event(3006, "item_abandoned", WARNING, "%s: an item bound for stage %s finished after the stop deadline; dropped (no on_unfinished)")
ticks_missed = _event(3007, "ticks_missed", WARNING, "%s: %d tick(s) not run: %s (%d skipped so far)")
server_listening = _event(3008, "server_listening", INFO, "%s: listening on %s")
connections_refused = _event(3009, "connections_refused", WARNING, "%s: max_connections=%d reached: new connections are closed at once (%d refused so far)")
connection_closed = _event(3010, "connection_closed", DEBUG, "%s: connection %s closed: %s")
accept_failed = _event(3011, "accept_failed", WARNING, "%s: accept failed (%s); accepting again in %.1fs")
worker_process_died = _event(3012, "worker_process_died", ERROR, "%s: worker process %s (pid %s) died with exit code %s %s")
process_pool_broken = _event(3013, "process_pool_broken", CRITICAL, "%s: worker process %s could not start; the pool takes no more tasks")
# 302x: EventServer (workers/event_server.py)
connections_evicted = _event(
    3020, "connections_evicted", WARNING,
    "%s: max_connections=%d reached: the longest-idle connection is closed to make room for each new one "
    "(%d so far)")
open_files_limited = _event(
    3021, "open_files_limited", WARNING,
    "%s: the open-file limit is %d, below max_connections=%d plus %d: when it is reached, the longest-idle "
    "connection makes room (raise LimitNOFILE= or ulimit -n to hold more)")

# -- 4xxx: config and command line -----------------------------------------------------------------
config_loaded = _event(4001, "config_loaded", DEBUG, "config from: %s")
config_error = _event(4002, "config_error", ERROR, "%s")
state_dir_used = _event(4003, "state_dir_used", INFO, "%s keeps its state in %s (%s)")

# -- 5xxx: platforms -------------------------------------------------------------------------------
platform_chosen = _event(5001, "platform_chosen", INFO, "running under %s (%s)")
signal_received = _event(5002, "signal_received", INFO, "signal %s received")
notify_failed = _event(5003, "notify_failed", DEBUG, "manager notification failed (ignored: %s)")
reload_failed = _event(5004, "reload_failed", DEBUG, "reload failed; the service keeps running (%s)")
signal_repeated = _event(
    5005, "signal_repeated", DEBUG, "signal %s received again within %gs: the same request (a process group's)")
# 52xx: the control channel (platforms/control.py) and supervisord (platforms/supervisord/)
control_listening = _event(5201, "control_listening", DEBUG, "control channel listening on %s")
control_refused = _event(5202, "control_refused", WARNING, "control channel: refused pid %d (%s): %s")
control_command = _event(5203, "control_command", DEBUG, "control channel: %s from pid %d (%s)")
control_failed = _event(5204, "control_failed", WARNING, "control channel: %s failed: %s")
control_stale_socket = _event(5205, "control_stale_socket", INFO, "control channel: removed a stale socket %s")
control_busy = _event(
    5220, "control_busy", WARNING,
    "control channel: %d connections open already: new ones get a 'busy' reply until one ends")
control_marker_failed = _event(
    5221, "control_marker_failed", DEBUG, "control channel: %s the ready marker %s failed (ignored: %s)")
control_unavailable = _event(
    5222, "control_unavailable", INFO,
    "control channel unavailable (%s): servicehost status cannot see this run")
control_write_refused = _event(
    5223, "control_write_refused", WARNING,
    "control channel: refused %s from pid %d (%s): a reader (the control group) may only read")
control_group_unreachable = _event(
    5224, "control_group_unreachable", WARNING,
    "control channel: the control group %s cannot reach it: %s")
control_level_set = _event(5225, "control_level_set", WARNING, "log level of %s set to %s (was %s) %s")
control_level_reverted = _event(5226, "control_level_reverted", WARNING, "log level of %s back to %s (%s)")
thread_dump_signal = _event(
    5227, "thread_dump_signal", DEBUG, "signal %s dumps every thread's stack to %s (faulthandler)")
supervisord_started = _event(5206, "supervisord_started", INFO, "started supervisord (%s, config %s)")
supervisord_not_at_boot = _event(5207, "supervisord_not_at_boot", WARNING, "%s")
supervisord_program_written = _event(5208, "supervisord_program_written", INFO, "%s: wrote %s")
supervisord_start_not_counted = _event(
    5209, "supervisord_start_not_counted", DEBUG,
    "this start was not counted in %s: status shows restarts as unknown (ignored: %s)")
supervisord_restart_waiting = _event(
    5230, "supervisord_restart_waiting", WARNING,
    "restarting after %d crash(es) in a row: waiting %.1fs first (a stop ends the wait)")
supervisord_restart_abandoned = _event(
    5231, "supervisord_restart_abandoned", INFO, "%s while waiting to restart: not starting")
supervisord_stopped = _event(
    5232, "supervisord_stopped", INFO, "stopped supervisord (%s): its last program was removed")
# 54xx: systemd (platforms/systemd/)
systemd_notifying = _event(5401, "systemd_notifying", DEBUG, "systemd notifications to %s (watchdog: %s)")
systemd_watchdog_starved = _event(
    5402, "systemd_watchdog_starved", ERROR,
    "not feeding systemd's watchdog: %s; systemd kills and restarts the service after WatchdogSec=")
systemd_watchdog_fed = _event(5403, "systemd_watchdog_fed", INFO, "workers heartbeat again: feeding systemd's watchdog")
systemd_control_unavailable = _event(
    5404, "systemd_control_unavailable", WARNING,
    "control channel unavailable (%s): pause, continue and control cannot reach this service")
systemd_unit_written = _event(5405, "systemd_unit_written", INFO, "%s: wrote %s")
systemd_hardening_relaxed = _event(5406, "systemd_hardening_relaxed", WARNING, "%s: %s")
systemd_restart_to_apply = _event(
    5407, "systemd_restart_to_apply", INFO, "%s runs with its old settings until it is restarted")
systemd_stop_incomplete = _event(5408, "systemd_stop_incomplete", WARNING, "%s: %s")
systemd_data_kept = _event(5409, "systemd_data_kept", INFO, "%s: kept its data in %s (remove --purge deletes it)")
systemd_notify_socket_unsupported = _event(
    5410, "systemd_notify_socket_unsupported", DEBUG, "systemd notifications off: %s")
systemd_watchdog_env_invalid = _event(
    5411, "systemd_watchdog_env_invalid", DEBUG, "systemd watchdog off: $WATCHDOG_USEC/$WATCHDOG_PID unreadable (%s)")
systemd_move_not_told = _event(
    5412, "systemd_move_not_told", DEBUG, "systemd not told of the move %s -> %s (ignored: %s)")
systemd_tick_failed = _event(
    5413, "systemd_tick_failed", DEBUG, "systemd tick (watchdog, status, timeout extension) failed (ignored: %s)")
# 53xx: Windows — the Service Control Manager, the Event Log (platforms/windows/) and servicehost.compat
scm_connected = _event(5301, "scm_connected", INFO, "connected to the Service Control Manager as %s (start arguments: %s)")
scm_not_a_service = _event(
    5302, "scm_not_a_service", WARNING, "not started by the Service Control Manager (%s): running in the foreground")
scm_control = _event(5303, "scm_control", DEBUG, "SCM control %s received")
scm_control_failed = _event(5304, "scm_control_failed", WARNING, "SCM control %s failed: %s")
scm_stopped = _event(5305, "scm_stopped", INFO, "reporting STOPPED to the SCM: win32 exit code %d, service exit code %d")
scm_start_aborted = _event(5306, "scm_start_aborted", ERROR, "the service could not start (exit code %d): %s")
windows_installed = _event(5307, "windows_installed", INFO, "%s: installed: %s")
windows_updated = _event(5308, "windows_updated", INFO, "%s: configuration updated: %s")
windows_removed = _event(5309, "windows_removed", INFO, "%s: removed (service, Event Log source%s)")
windows_manager_lacks = _event(
    5310, "windows_manager_lacks", WARNING, "%s: this Service Control Manager does not implement %s (error %d): %s")
windows_access_warning = _event(5311, "windows_access_warning", WARNING, "%s")
windows_stdout = _event(5312, "windows_stdout", INFO, "stdout: %s")
windows_stderr = _event(5313, "windows_stderr", WARNING, "stderr: %s")
windows_already_installed = _event(5314, "windows_already_installed", WARNING, "%s is already installed: updating it instead")
windows_event_log_unavailable = _event(
    5315, "windows_event_log_unavailable", DEBUG, "%s: records cannot go to the Event Log (ignored: %s)")
windows_event_source_absent = _event(
    5316, "windows_event_source_absent", DEBUG, "%s: no Event Log source to remove (error %s; ignored: %s)")
windows_account_groups_unknown = _event(
    5317, "windows_account_groups_unknown", DEBUG,
    "%s: its local groups cannot be listed (a domain account?); access is checked without them: %s")
windows_uptime_unknown = _event(5318, "windows_uptime_unknown", DEBUG, "uptime of pid %s unknown (ignored: %s)")
windows_boot_outdated = _event(
    5319, "windows_boot_outdated", ERROR,
    "%s: its ImagePath was written by an older servicehost and cannot start this one; rewrite it with: %s")
compat_log_info = _event(5320, "compat_log_info", INFO, "%s")
compat_log_warning = _event(5321, "compat_log_warning", WARNING, "%s")
compat_log_error = _event(5322, "compat_log_error", ERROR, "%s")
compat_status_unwritable = _event(
    5323, "compat_status_unwritable", WARNING,
    "%s: its SERVICE_STATUS cannot be kept in %s (QueryServiceStatus elsewhere sees less of it): %s")

# -- 6xxx: the operations view (ops/) --------------------------------------------------------------
# 600x: the HTTP listener (ops/http.py)
http_listening = _event(
    6001, "http_listening", INFO, "HTTP listener on http://%s/ (/livez, /readyz, /metrics, /status, the page /)")
http_not_loopback = _event(
    6002, "http_not_loopback", WARNING,
    "HTTP listener on %s is reachable from other machines: it has no authentication (status and metrics "
    "are readable by anyone who reaches it)")
http_refused = _event(6003, "http_refused", INFO, "HTTP: refused %s %s from %s: %s")
http_failed = _event(6004, "http_failed", ERROR, "HTTP: %s %s failed (answered 500)")
http_closed = _event(6005, "http_closed", DEBUG, "HTTP listener on %s closed")
# 601x: health checks (ops/health.py)
health_check_failing = _event(6010, "health_check_failing", WARNING, "health check %s: %s -> %s (%s)")
health_check_passing = _event(6011, "health_check_passing", INFO, "health check %s: %s -> %s (%s)")

# -- 7xxx: the durable intake (intake/) -------------------------------------------------------------
# 700x-704x: the stores (intake/sqlite.py); every URL in them is redacted (store.redact)
intake_store_opened = _event(7001, "intake_store_opened", INFO, "intake store %s open (schema v%d, synchronous=%s)")
intake_store_migrated = _event(7002, "intake_store_migrated", INFO, "intake store %s: schema migrated from v%d to v%d")
intake_store_closed = _event(7003, "intake_store_closed", DEBUG, "intake store %s closed")
intake_store_crashed = _event(7004, "intake_store_crashed", CRITICAL, "intake store %s: its store thread died; every call now fails")
intake_store_close_failed = _event(7005, "intake_store_close_failed", WARNING, "intake store %s: closing the database failed: %s")
intake_store_write_failed = _event(
    7006, "intake_store_write_failed", ERROR,
    "intake store %s cannot write: %s; %d waiting call(s) told so (nothing of them was written), "
    "%d ack(s)/fail(s)/renewal(s) kept and retried until it can")
intake_store_writable = _event(7007, "intake_store_writable", INFO, "intake store %s writes again")
intake_store_unwritten = _event(
    7008, "intake_store_unwritten", ERROR,
    "intake store %s closed with %d ack(s)/fail(s)/renewal(s) not written (%s): those jobs run again after their lease")
intake_late_completion = _event(
    7009, "intake_late_completion", DEBUG,
    "intake store %s: job %d: %s from %s came after its lease was lost; ignored (it may run again elsewhere)")
intake_lease_dead = _event(
    7010, "intake_lease_dead", ERROR,
    "intake store %s: job %d dead-lettered: its lease ran out on its last attempt (%d; node %s)")
intake_leases_lapsed = _event(7011, "intake_leases_lapsed", WARNING, "intake store %s: %d job(s) taken back from lapsed leases (node %s)")
intake_checkpoint_failed = _event(7012, "intake_checkpoint_failed", WARNING, "intake store %s: %s checkpoint failed: %s")
intake_prune_failed = _event(7013, "intake_prune_failed", WARNING, "intake store %s: pruning old idempotency keys failed: %s")
intake_vacuum_failed = _event(7014, "intake_vacuum_failed", WARNING, "intake store %s: vacuuming its hot table failed: %s")
intake_lost_claims_released = _event(
    7015, "intake_lost_claims_released", WARNING,
    "intake store %s: %d job(s) claimed by a commit whose answer was lost (the connection broke) given back")
intake_payloads_unreadable = _event(
    7016, "intake_payloads_unreadable", ERROR,
    "intake store %s: %d job(s) whose stored payload is not valid JSON (written outside servicehost, or "
    "damaged) dead-lettered unread, so they cannot stop every claim: %s")
# 705x-707x: the Intake component (intake/component.py); 7001-7049 are the stores'
intake_started = _event(7050, "intake_started", INFO, "%s: taking jobs from %s (%d workers, lease %.1fs, node %s)")
intake_job_failed = _event(
    7051, "intake_job_failed", WARNING, "%s: job %d raised on attempt %d of %d: retried in %.1fs")
intake_job_dead = _event(
    7052, "intake_job_dead", ERROR, "%s: job %d raised on attempt %d of %d: dead-lettered (servicehost jobs NAME dead)")
intake_job_overran = _event(
    7053, "intake_job_overran", WARNING,
    "%s: job %d has run %.1fs > the intake's hang_timeout %.1fs on %s: its lease is no longer renewed, so it "
    "may be taken back and run again; the host is not restarted for it")
intake_late_ack = _event(
    7054, "intake_late_ack", INFO,
    "%s: job %d (attempt %d) finished after its lease was lost: the ack changed nothing (whoever claimed it since "
    "completes it)")
intake_store_failed = _event(
    7055, "intake_store_failed", WARNING, "%s: %s failed: %s (again in %.1fs; the store keeps every job)")
intake_released = _event(7056, "intake_released", INFO, "%s: %d claimed job(s) not started given back to the store")
intake_attempts_spent = _event(
    7057, "intake_attempts_spent", ERROR,
    "%s: job %d claimed for attempt %d > max_attempts %d (its earlier attempts ended with their process): "
    "dead-lettered without running")
intake_rolled_back = _event(
    7058, "intake_rolled_back", INFO,
    "%s: job %d (attempt %d) finished after its lease was lost: its transaction was rolled back, nothing it wrote "
    "landed (whoever claimed it since completes it)")


class _EventIdDefault(logging.Filter):
    """Give records logged without an event (user code) ``event_id`` 0 for formatters."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "event_id"):
            record.event_id = 0
            record.event = ""
        return True


CONSOLE_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FILE_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(name)s #%(event_id)s: %(message)s"


class RotatingFile(logging.FileHandler):
    """``logging.handlers.RotatingFileHandler(path, maxBytes=max_bytes, backupCount=backups,
    encoding="utf-8")``, the same files and rollover (``NAME.1`` … ``NAME.<backups>``, before a
    record would take the file to ``max_bytes``), without importing ``logging.handlers`` (pickle,
    socket, struct, queue: a start cost for every service, most under Wine)."""

    def __init__(self, path: Path | str, *, max_bytes: int, backups: int) -> None:
        super().__init__(path, mode="a", encoding="utf-8")
        self.max_bytes, self.backups = max_bytes, backups

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.should_roll(record):
                self.roll()
            super().emit(record)
        except Exception:
            self.handleError(record)

    def should_roll(self, record: logging.LogRecord) -> bool:
        if self.stream is None:  # closed by a rollover that could not reopen, or by close()
            self.stream = self._open()
        if self.max_bytes <= 0:
            return False
        at = self.stream.tell()
        if not at or at + len(f"{self.format(record)}\n") < self.max_bytes:
            return False
        return not os.path.exists(self.baseFilename) or os.path.isfile(self.baseFilename)  # not /dev/null

    def roll(self) -> None:
        if self.stream:
            self.stream.close()
            self.stream = None
        if self.backups > 0:
            for i in range(self.backups - 1, 0, -1):
                older, newer = f"{self.baseFilename}.{i}", f"{self.baseFilename}.{i + 1}"
                if os.path.exists(older):
                    if os.path.exists(newer):
                        os.remove(newer)
                    os.rename(older, newer)
            first = self.baseFilename + ".1"
            if os.path.exists(first):
                os.remove(first)
            if os.path.exists(self.baseFilename):
                os.rename(self.baseFilename, first)
        self.stream = self._open()


#: The handlers :func:`configure` (or :func:`add_handler`) put on the root logger: ours, and the only
#: ones it ever removes. Everything else there (a script's ``basicConfig(filename=...)``, pytest's
#: capture) is user code's and stays as it was.
_ours: list[logging.Handler] = []
#: The root logger's level before the first :func:`configure`, which :func:`release` gives back.
_root_level: list[int] = []
#: The level :func:`configure` gave our handlers, and the levels set on a running service
#: (:func:`set_logger_level`, the control channel's ``loglevel``): logger name → level.
_configured: list[int] = []
_overrides: dict[str, int] = {}


def configure(
    *,
    level: str = "INFO",
    console: bool = True,
    log_file: Path | None = None,
    max_bytes: int = 10 * 1024 * 1024,
    backups: int = 5,
    syslog: bool = False,
    extra_handlers: Mapping[str, logging.Handler] | None = None,
    console_formatter: logging.Formatter | None = None,
) -> None:
    """Add servicehost's handlers to the root logger, beside the ones user code installed (a second
    call replaces only the handlers an earlier one added; user handlers are never removed).

    ``console`` writes to stderr (what every manager captures), formatted by ``console_formatter``
    when the platform's manager reads stderr its own way (journald's priority prefixes), so that
    the first line is already in that form; when user code already logs to stderr, that handler
    is the console (no line twice). ``log_file`` adds a rotating file; ``syslog`` adds /dev/log.
    A broken or missing stderr (a Windows service has none) is skipped rather than crashing later
    on the first write. Our handlers log from ``level`` up; the root logger's level becomes the
    lower of ``level`` and the one user code set with handlers of its own, so their handlers keep
    what they asked for and ours get what the settings ask for.
    """
    release()
    root = logging.getLogger()
    ours = logging.getLevelName(level) if isinstance(level, str) else int(level)
    if not isinstance(ours, int):
        raise ValueError(f"unknown log level {level!r}")
    _root_level.append(root.level)
    user_handlers = list(root.handlers)
    root.setLevel(min(root.level, ours) if user_handlers and root.level != logging.NOTSET else ours)
    handlers: list[logging.Handler] = []
    if console and sys.stderr is not None and not any(_writes_to_stderr(h) for h in user_handlers):
        console_handler = logging.StreamHandler(sys.stderr)
        if console_formatter is None:
            _with_format(console_handler, CONSOLE_FORMAT)
        else:
            console_handler.setFormatter(console_formatter)
        handlers.append(console_handler)
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(
            _with_format(
                RotatingFile(log_file, max_bytes=max_bytes, backups=backups),
                FILE_FORMAT,
            )
        )
    if syslog:
        from logging.handlers import SysLogHandler  # only then: its imports (pickle, socket, struct) cost

        address = "/dev/log" if Path("/dev/log").exists() else ("localhost", 514)
        handlers.append(
            _with_format(SysLogHandler(address), "servicehost: %(name)s: %(message)s")
        )
    handlers.extend((extra_handlers or {}).values())
    count_records()
    _configured[:] = [ours]
    for handler in handlers:
        handler.setLevel(_handler_level())
        add_handler(handler)
    logging.captureWarnings(True)


#: Records logged at each level since :func:`configure` first ran (every record a logger made: its
#: level was enabled), a level between two standard ones counted at the lower; a process pool's
#: children's added as their replies bring them (:func:`add_messages`). Read by the metrics
#: (``ops/metrics.py``: ``servicehost_log_messages_total``).
MESSAGES: dict[int, int] = dict.fromkeys((DEBUG, INFO, WARNING, ERROR, CRITICAL), 0)
_counting = threading.Lock()


def add_messages(counts: Mapping[int, int]) -> None:
    """Add records counted elsewhere (a process pool's child) to :data:`MESSAGES`."""
    with _counting:
        for level, count in counts.items():
            if level in MESSAGES:
                MESSAGES[level] += count


def count_records() -> None:
    """Count every record made from now on into :data:`MESSAGES`, through the record factory (so no
    handler is added: user code's list of handlers stays as it was), wrapping the factory user code
    may have set. Once per process."""
    previous = logging.getLogRecordFactory()
    if getattr(previous, "_servicehost_counts", False):
        return

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        level = record.levelno
        key = CRITICAL if level >= CRITICAL else ERROR if level >= ERROR else WARNING if level >= WARNING \
            else INFO if level >= INFO else DEBUG
        with _counting:
            MESSAGES[key] += 1
        return record

    make._servicehost_counts = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make)


def add_handler(handler: logging.Handler) -> None:
    """Put one of servicehost's handlers on the root logger (a platform's, e.g. the Event Log's):
    ours, so the next :func:`configure` or :func:`release` removes it."""
    handler.addFilter(_EventIdDefault())
    _ours.append(handler)
    logging.getLogger().addHandler(handler)


def ours(handler: logging.Handler) -> bool:
    """Whether ``handler`` is one servicehost put on the root logger (a platform may restyle it;
    a user's handler it leaves as it is)."""
    return any(handler is h for h in _ours)


def release() -> None:
    """Take servicehost's handlers off the root logger (flushed and closed) and give the root its
    level back; handlers user code installed stay. A run that ends in a process that goes on (a
    compat script after ``StartServiceCtrlDispatcher``) leaves its logging as it found it."""
    root = logging.getLogger()
    while _ours:
        handler = _ours.pop()
        root.removeHandler(handler)
        try:
            handler.flush()
        except (OSError, ValueError) as exc:  # a closed stream: nothing left to save
            log_flush_failed(log, exc)
        handler.close()
    if _root_level:
        root.setLevel(_root_level.pop())


def set_logger_level(name: str, level: int) -> int:
    """Set logger ``name``'s level (``""``: the root) in a running service; the level it had.
    Our handlers log from the configured level, or from the lowest level set this way, so a
    logger turned to DEBUG shows its DEBUG lines while every other logger logs as before (their
    own levels still filter)."""
    logger = logging.getLogger(name or None)
    before = logger.level
    logger.setLevel(level)
    if level == logging.NOTSET:  # inherits its parent's again: nothing for our handlers to let through
        _overrides.pop(name, None)
    else:
        _overrides[name] = level
    _apply_handler_level()
    return before


def restore_logger_level(name: str, level: int) -> None:
    """Give logger ``name`` back the ``level`` it had before :func:`set_logger_level`."""
    logging.getLogger(name or None).setLevel(level)
    _overrides.pop(name, None)
    _apply_handler_level()


def _handler_level() -> int:
    return min([*_configured, *_overrides.values()]) if _configured else logging.NOTSET


def _apply_handler_level() -> None:
    if _configured:
        for handler in _ours:
            handler.setLevel(_handler_level())


def _writes_to_stderr(handler: logging.Handler) -> bool:
    stream = getattr(handler, "stream", None)
    return isinstance(handler, logging.StreamHandler) and stream is not None and (
        stream is sys.stderr or stream is sys.__stderr__)


def _with_format(handler: logging.Handler, fmt: str) -> logging.Handler:
    handler.setFormatter(logging.Formatter(fmt))
    return handler


def flush() -> None:
    """Flush every handler (before a non-graceful exit)."""
    for handler in logging.getLogger().handlers:
        try:
            handler.flush()
        except (OSError, ValueError) as exc:  # a closed stream at exit: nothing left to save
            log_flush_failed(log, exc)
