"""logs.configure adds servicehost's handlers beside the ones user code installed and never removes
theirs (issue 11 item 2): in this process, and in real ``servicehost debug``/``run`` processes of a
service whose module calls ``logging.basicConfig(filename=...)`` at import."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from servicehost import logs

ROOT = Path(__file__).resolve().parents[2]
HANG_GUARD = 60.0


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger, given back as it was (handlers and level) whatever the test did."""
    logger = logging.getLogger()
    handlers, level = list(logger.handlers), logger.level
    try:
        yield logger
    finally:
        logs.release()
        for handler in list(logger.handlers):
            if handler not in handlers:
                logger.removeHandler(handler)
                handler.close()
        for handler in handlers:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        logger.setLevel(level)


def _texts(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.exists() else ""


def test_a_users_handler_survives_configure_and_gets_the_records(root, tmp_path):
    user = logging.FileHandler(tmp_path / "user.log", encoding="utf-8")
    root.addHandler(user)
    root.setLevel(logging.WARNING)
    logs.configure(level="INFO", console=False, log_file=tmp_path / "ours.log")
    assert user in root.handlers
    logging.getLogger("app").info("from the app")
    logs.host_paused(logging.getLogger("servicehost.host"))
    user.flush()
    for handler in root.handlers:
        handler.flush()
    assert "from the app" in _texts(tmp_path / "user.log") and "paused" in _texts(tmp_path / "user.log")
    assert "from the app" in _texts(tmp_path / "ours.log") and "#1007: paused" in _texts(tmp_path / "ours.log")


def test_a_second_configure_replaces_only_ours_and_release_restores_the_root(root, tmp_path):
    user = logging.FileHandler(tmp_path / "user.log", encoding="utf-8")
    root.addHandler(user)
    root.setLevel(logging.DEBUG)  # the user asked for everything
    logs.configure(level="INFO", console=False, log_file=tmp_path / "one.log")
    logs.configure(level="WARNING", console=False, log_file=tmp_path / "two.log")
    ours = [h for h in root.handlers if logs.ours(h)]
    assert len(ours) == 1 and Path(ours[0].baseFilename).name == "two.log"  # type: ignore[attr-defined]
    assert user in root.handlers and not logs.ours(user)
    assert root.level == logging.DEBUG and ours[0].level == logging.WARNING  # theirs: all; ours: the setting
    logs.release()
    assert root.handlers.count(user) == 1 and not any(logs.ours(h) for h in root.handlers)
    assert root.level == logging.DEBUG


def test_without_user_handlers_the_root_takes_our_level(root):
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.setLevel(logging.WARNING)
    logs.configure(level="DEBUG", console=False)
    assert root.level == logging.DEBUG
    logs.release()
    assert root.level == logging.WARNING


def test_a_user_console_handler_is_the_console(root):
    """A script's ``basicConfig()`` (stderr) is not doubled by ours: each line once."""
    user = logging.StreamHandler(sys.stderr)
    root.addHandler(user)
    logs.configure(level="INFO", console=True)
    consoles = [h for h in root.handlers if isinstance(h, logging.StreamHandler)
                and getattr(h, "stream", None) is sys.stderr]
    assert consoles == [user]


SERVICE = textwrap.dedent("""
    import logging, sys
    from servicehost import Service

    logging.basicConfig(filename=__file__ + ".user.log", level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    log = logging.getLogger("myservice")

    class Mine(Service):
        def start(self):
            log.info("started by servicehost")

        def run(self, stop):
            log.warning("running")
            stop.wait()
            log.info("leaving run")
""")


@pytest.mark.parametrize("verb", ["debug", "run"])
def test_a_service_module_that_configures_logging_at_import_keeps_its_file(tmp_path, verb):
    """The module's basicConfig(filename=...) was emptied before: the framework removed its handler."""
    script = tmp_path / "mine.py"
    script.write_text(SERVICE, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "SERVICEHOST_STATE_DIR": str(tmp_path / "state"),
           "SERVICEHOST_MANAGER": "foreground"}
    proc = subprocess.Popen([sys.executable, "-m", "servicehost", verb, str(script)], env=env, cwd=tmp_path,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if "ready" in line:
                proc.send_signal(signal.SIGTERM)
                break
        rest, _ = proc.communicate(timeout=HANG_GUARD)
    finally:
        if proc.poll() is None:
            proc.kill()
    console = "".join(lines) + rest
    assert proc.returncode == 0, console
    user_log = _texts(Path(str(script) + ".user.log"))
    for text in ("INFO myservice started by servicehost", "WARNING myservice running", "INFO myservice leaving run"):
        assert text in user_log, user_log
    assert "stopped: exit code 0 (OK)" in user_log  # ours reach a root handler too, as any record does
    assert "myservice: running" in console and "stopped: exit code 0 (OK)" in console  # and our console
    if verb == "run":  # and our own log file, beside theirs
        ours = _texts(tmp_path / "state" / "logs" / "Mine.log")
        assert "myservice #0: running" in ours and "#1005: stopped: exit code 0" in ours


def test_the_log_file_rotates_as_the_stdlib_s_rotating_handler_does(tmp_path):
    """logs.RotatingFile (no logging.handlers import at start) writes the same files, rolled over at
    the same records, as RotatingFileHandler(maxBytes, backupCount)."""
    import logging.handlers

    def write(handler: logging.Handler) -> dict[str, str]:
        handler.setFormatter(logging.Formatter("%(message)s"))
        for i in range(60):
            handler.handle(logging.LogRecord("t", logging.INFO, __file__, 1, "record %d " + "x" * (i % 7), (i,), None))
        handler.close()
        folder = Path(handler.baseFilename).parent  # type: ignore[attr-defined]
        return {p.name: p.read_text(encoding="utf-8") for p in sorted(folder.iterdir())}

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    ours = write(logs.RotatingFile(tmp_path / "a" / "x.log", max_bytes=200, backups=3))
    theirs = write(logging.handlers.RotatingFileHandler(tmp_path / "b" / "x.log", maxBytes=200, backupCount=3,
                                                        encoding="utf-8"))
    assert ours == theirs and sorted(ours) == ["x.log", "x.log.1", "x.log.2", "x.log.3"]
