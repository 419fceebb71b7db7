"""Example (a) as a real process: real signals, real exit codes, hooks observed in its log."""

import signal

from servicehost.errors import ExitCode

from .proc import EXAMPLES, ServiceProcess

TARGET = str(EXAMPLES / "sample_service.py")


def test_sigterm_stops_cleanly_and_runs_the_stop_hook(tmp_path):
    with ServiceProcess("run", TARGET, "--interval", "0.05", "--state-dir", str(tmp_path)) as svc:
        svc.ready()
        svc.expect(r"round 2")
        svc.signal(signal.SIGHUP)
        svc.expect(r"reloaded")
        svc.signal(signal.SIGTERM)
        assert svc.wait() == ExitCode.OK
        out = "\n".join(svc.output())
    assert "SampleService stopping after" in out and "stopped: exit code 0 (OK)" in out
    log_file = tmp_path / "logs" / "SampleService.log"
    assert "#1002" in log_file.read_text()  # the rotating file carries the stable event ids


def test_ctrl_c_twice_still_exits_as_a_requested_stop(tmp_path):
    with ServiceProcess("debug", TARGET, "--state-dir", str(tmp_path)) as svc:
        svc.ready()
        svc.signal(signal.SIGINT)
        svc.signal(signal.SIGINT)
        assert svc.wait() in (ExitCode.OK, ExitCode.STOP_INCOMPLETE)


def test_own_script_entry_point_is_the_same_cli(tmp_path):
    import subprocess
    import sys

    from .proc import env

    proc = subprocess.run([sys.executable, TARGET, "--help"], capture_output=True, text=True, env=env(), timeout=60)
    assert proc.returncode == 0
    for word in ("run", "debug", "settings"):
        assert word in proc.stdout
    proc = subprocess.run([sys.executable, TARGET, "settings", "--interval", "2"], capture_output=True,
                          text=True, env=env(), timeout=60)
    assert proc.returncode == 0 and "interval = 2.0" in proc.stdout
