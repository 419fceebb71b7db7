"""The command line in-process (run_cli returns the code; nothing exits)."""

import pytest

from servicehost.cli import COMMANDS, load_target, run_cli
from servicehost.errors import ExitCode, UsageError

from .conftest_paths import FIXTURES


def test_core_commands_are_registered_and_no_stub_exists():
    assert {"run", "debug", "settings"} <= set(COMMANDS)
    for cmd in COMMANDS.values():
        assert cmd.help and callable(cmd.handler)


def test_a_file_with_several_services_is_refused_listing_them(capsys):
    code = run_cli(["run", str(FIXTURES / "two_services.py")])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG_ERROR
    assert "Alpha, Beta" in err and ":CLASS" in err and "Traceback" not in err


def test_choosing_one_of_several_services():
    assert load_target(f"{FIXTURES / 'two_services.py'}:Beta").__name__ == "Beta"
    with pytest.raises(UsageError, match="services there: Alpha, Beta"):
        load_target(f"{FIXTURES / 'two_services.py'}:Gamma")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "no/such/file.py"], "no such file"),
        (["run", "no_such_module_xyz:Svc"], "no module named 'no_such_module_xyz'"),
        (["run", str(FIXTURES / "no_service.py")], "defines no Service subclass"),
        (["run", str(FIXTURES / "two_services.py") + ":Alpha", "--shutdown-timeout", "-3"], "--shutdown-timeout"),
        (["run", str(FIXTURES / "two_services.py") + ":Alpha", "--config", "/nonexistent.toml"], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    assert run_cli(argv) == ExitCode.CONFIG_ERROR
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert err.startswith("servicehost: error:")


def test_argparse_errors_also_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(["frobnicate"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        run_cli(["run", str(FIXTURES / "two_services.py") + ":Alpha", "--no-such-flag", "1"])
    assert exc.value.code == 2


def test_help_everywhere(capsys):
    for argv in (["--help"], ["run", "--help"], ["debug", "--help"], ["settings", "--help"]):
        with pytest.raises(SystemExit) as exc:
            run_cli(argv)
        assert exc.value.code == 0
    assert "--shutdown-timeout" in capsys.readouterr().out
