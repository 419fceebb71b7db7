"""A start that fails because of the environment (a path, a permission) exits 3 with one line
naming service, hook and error; its traceback is for ``debug``. A bug in start() keeps its
traceback. Real processes: the console is what a manager logs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servicehost.errors import ExitCode

from .conftest_paths import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
STARTER = str(FIXTURES / "start_fails.py")


def servicehost(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    env.pop("SERVICEHOST_CONFIG", None)
    return subprocess.run([sys.executable, "-m", "servicehost", *args, "--state-dir", str(tmp_path / "state"),
                           "--shutdown-timeout", "10"], env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line or " CRITICAL " in line]


@pytest.mark.parametrize("where", ["/proc/no/such/folder", "a file"])
def test_an_environment_failure_in_start_is_one_line_and_exit_3(tmp_path, where):
    if where == "a file":
        where = str(tmp_path / "a-file")
        Path(where).write_text("not a folder")
    proc = servicehost("run", STARTER, "--inbox", where, tmp_path=tmp_path)
    assert proc.returncode == ExitCode.START_FAILURE, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    first = _errors(proc.stderr)[0]
    assert "Starter: start() failed: " in first and ("FileNotFoundError" in first or "FileExistsError" in first)
    assert (where if "a-file" in where else "/proc/no") in first


def test_debug_shows_the_traceback_of_that_start_failure(tmp_path):
    proc = servicehost("debug", STARTER, "--inbox", "/proc/no/such/folder", tmp_path=tmp_path)
    assert proc.returncode == ExitCode.START_FAILURE
    assert "Traceback" in proc.stderr and "start_fails.py" in proc.stderr


def test_a_bug_in_start_keeps_its_traceback_on_the_console(tmp_path):
    proc = servicehost("run", STARTER, "--bug", "true", tmp_path=tmp_path)
    assert proc.returncode == ExitCode.START_FAILURE
    assert "Traceback" in proc.stderr and "ValueError: a bug in start()" in proc.stderr


@pytest.mark.parametrize("drop_dir", ["/proc/x", "a file"])
def test_the_drop_folder_example_with_a_bad_drop_dir_is_one_line_and_exit_3(tmp_path, drop_dir):
    if drop_dir == "a file":
        drop_dir = str(tmp_path / "a-file")
        Path(drop_dir).write_text("not a folder")
    proc = servicehost("run", str(ROOT / "examples" / "drop_folder.py"), "--drop-dir", drop_dir, tmp_path=tmp_path)
    assert proc.returncode == ExitCode.START_FAILURE, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "start() failed: " in _errors(proc.stderr)[0] and drop_dir in _errors(proc.stderr)[0]


UNPRINTABLE_TARGET = '''
from servicehost import Service


class Unprintable(Exception):
    def __str__(self):
        raise RuntimeError("__str__ raised")


class Hostile(Service):
    def start(self):
        if WHERE == "start":
            raise Unprintable()

    def run(self, stop):
        if WHERE == "run":
            raise Unprintable()
        stop.wait()


if WHERE == "import":
    raise Unprintable()
'''


@pytest.mark.parametrize("where, code", [("import", ExitCode.CONFIG_ERROR), ("start", ExitCode.START_FAILURE),
                                         ("run", ExitCode.CRASH)])
def test_an_error_whose_message_cannot_be_made_still_gets_its_exit_code_and_reason(tmp_path, where, code):
    """An exception's ``__str__`` is user code too: one that raises still ends the run with the
    documented exit code and a reason naming the error (before: a traceback and exit 1 for an
    import, and start's reason was the message of the __str__'s own error)."""
    target = tmp_path / "hostile.py"
    target.write_text(f"WHERE = {where!r}\n" + UNPRINTABLE_TARGET)
    proc = servicehost("run", str(target), tmp_path=tmp_path)
    assert proc.returncode == code, proc.stderr
    reason = "Unprintable: <its message could not be made: RuntimeError>"
    if where == "import":
        assert "Traceback" not in proc.stderr and reason in proc.stderr.splitlines()[-1], proc.stderr
    else:
        assert any(reason in line for line in _errors(proc.stderr)), proc.stderr
