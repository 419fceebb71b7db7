"""The command line in-process (run_cli returns the code; nothing exits), and as real processes
where the input is the process's own (argv bytes, permissions, a script's servicehost.main)."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from servicehost import cli
from servicehost.arguments import option_strings
from servicehost.cli import COMMANDS, load_target, parse, run_cli
from servicehost.errors import ExitCode, UsageError

from .conftest_paths import FIXTURES

ROOT = Path(__file__).resolve().parents[2]
ALPHA = str(FIXTURES / "two_services.py") + ":Alpha"
CONFIGURED = str(FIXTURES / "with_settings.py")
SAFE = ["--manager", "foreground"]  # a manager command that got past parsing still installs nothing


def _child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), SERVICEHOST_MANAGER="foreground")
    env.pop("SERVICEHOST_CONFIG", None)
    env.update(extra)
    return env


def servicehost(*args: str | bytes, cwd: Path | None = None, prefix: tuple[str, ...] = (),
                **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m servicehost ARGS`` as a real process (a 60 s hang guard)."""
    return subprocess.run([*prefix, sys.executable, "-m", "servicehost", *args], cwd=cwd, env=_child_env(**env),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)


def one_error_line(err: str) -> str:
    """The single line a bad input prints (and nothing else)."""
    assert "Traceback" not in err, err
    assert err.count("\n") == 1 and err.startswith("servicehost: error: "), err
    return err


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
        (["run", ALPHA, "--shutdown-timeout", "-3"], "--shutdown-timeout"),
        (["run", ALPHA, "--config", "/nonexistent.toml"], "no such file"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "required: COMMAND"),
        (["settings"], "required: TARGET"),
        (["run", ALPHA, "--no-such-flag", "1"], "unknown option --no-such-flag"),
        (["settings", ALPHA, "--shutdown-timeout"], "--shutdown-timeout: expected one argument"),
        (["install", ALPHA, "--manager", "foreground", "--password"], "--password: expected one argument"),
        (["settings", ALPHA, ALPHA], "an unexpected argument (word 3"),
        (["settings", "-"], "target '-'"),
        (["settings", "--", "-"], "target '-'"),
        (["settings", ":Alpha"], "expected path/to/file.py"),
        (["settings", str(FIXTURES)], "expected a Python file, found a directory"),
        (["settings", str(FIXTURES / "x\x00.py")], "NUL byte"),
        (["settings", "/tmp/" + "a" * 300 + ".py"], "File name too long"),
        (["settings", "/" + "a/" * 2100 + "x.py"], "File name too long"),
        (["settings", str(FIXTURES / "two_services.txt")], "no such file"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(capsys, argv, message):
    assert run_cli(argv) == ExitCode.CONFIG_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert message in err


def test_help_everywhere(capsys):
    for argv in (["--help"], ["run", "--help"], ["debug", "--help"], ["settings", "--help"]):
        with pytest.raises(SystemExit) as exc:
            run_cli(argv)
        assert exc.value.code == 0
    assert "--shutdown-timeout" in capsys.readouterr().out


# -- the target: found as argparse finds it, every failure to load it one line ------------------------
def test_the_target_after_double_dash_after_flags_and_after_options_taking_no_value():
    assert parse(["settings", "--", ALPHA]).target == ALPHA
    assert parse(["settings", "--hang-timeout", "-0", ALPHA]).target == ALPHA  # -0: a value, not an option
    assert parse(["settings", "--hang-timeout=7", "--", ALPHA]).loaded.host.hang_timeout == 7
    inv = parse(["remove", "--purge", ALPHA, *SAFE])  # --purge takes no value: ALPHA is the target
    assert inv.target == ALPHA and inv.args.purge
    inv = parse(["install", "--no-restart", "--password-stdin", CONFIGURED, "--workers", "8", *SAFE])
    assert inv.target == CONFIGURED and inv.loaded.service.workers == 8


def test_a_target_that_is_not_a_regular_file_is_refused_without_blocking(tmp_path, capsys):
    (tmp_path / "folder.py").mkdir()
    os.mkfifo(tmp_path / "fifo.py")
    for name, kind in (("folder.py", "a directory"), ("fifo.py", "a FIFO")):
        assert run_cli(["settings", str(tmp_path / name)]) == ExitCode.CONFIG_ERROR
        assert f"expected a Python file, found {kind}" in one_error_line(capsys.readouterr().err)
    (tmp_path / "a.b.py").write_text("")
    assert run_cli(["settings", str(tmp_path / "a.b.py")]) == ExitCode.CONFIG_ERROR
    assert "named like a module" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    ("source", "line", "kind"),
    [
        ("from servicehost import Service\n\nclass S(Service:\n    pass\n", 3, "SyntaxError"),
        ("from servicehost import Service\nif True:\nx = 1\n", 3, "IndentationError"),
        ("import os\nimport no_such_dependency_xyz\n", 2, "ModuleNotFoundError"),
        ("from os import no_such_name\n", 1, "ImportError"),
        ("import os\n\nopen('/no/such/file/at/import')\n", 3, "FileNotFoundError"),
        ("raise RuntimeError('boom\\nsecond line')\n", 1, "RuntimeError"),
        ("def f():\n    return f()\nf()\n", 2, "RecursionError"),
    ],
)
def test_a_target_that_fails_to_import_is_file_line_message_and_exit_2(tmp_path, capsys, source, line, kind):
    path = tmp_path / f"broken_{kind.lower()}.py"
    path.write_text(source)
    assert run_cli(["run", str(path)]) == ExitCode.CONFIG_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert f"error: {path}:{line}: {kind}: " in err


def test_debug_shows_the_traceback_of_a_target_that_fails_to_import(tmp_path):
    path = tmp_path / "broken_import.py"
    path.write_text("import os\nimport no_such_dependency_xyz\n")
    proc = servicehost("debug", str(path))
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "Traceback" in proc.stderr and f'File "{path}", line 2' in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith(f"servicehost: error: {path}:2: ModuleNotFoundError")
    proc = servicehost("run", str(path))  # what a manager launches: one line, no restart (exit 2)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    one_error_line(proc.stderr)


def test_a_target_this_user_cannot_read_is_one_line(tmp_path):
    path = tmp_path / "secret_service.py"
    path.write_text("from servicehost import Service\nclass S(Service):\n    pass\n")
    path.chmod(0)
    # root reads anything: drop the capabilities that let it (a real process, real permission checks)
    prefix = ("setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--inh-caps", "-all", "--") \
        if os.geteuid() == 0 else ()
    if prefix and not Path("/usr/bin/setpriv").exists():
        pytest.skip("running as root without setpriv: cannot make a file unreadable")
    proc = servicehost("settings", str(path), prefix=prefix)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "cannot read it: Permission denied" in one_error_line(proc.stderr)


def test_a_service_setting_whose_flag_is_taken_is_one_line(tmp_path, capsys):
    path = tmp_path / "clashing_flag.py"
    path.write_text("from dataclasses import dataclass\nfrom servicehost import Service, setting\n\n"
                    "@dataclass(frozen=True, kw_only=True)\nclass Settings:\n    name: str = setting('', 'x')\n\n"
                    "class Clash(Service):\n    Settings = Settings\n")
    for argv in (["settings", str(path)], ["run", str(path)], ["install", str(path), *SAFE]):  # each has --name
        assert run_cli(argv) == ExitCode.CONFIG_ERROR
        assert "Settings.name: its flag --name is already a servicehost option" in one_error_line(capsys.readouterr().err)
    # a verb on an installed service takes no service settings: nothing to clash with
    assert parse(["stop", str(path), *SAFE]).args.name is None


# -- options are never abbreviated, in any parser ---------------------------------------------------
def _long_options(command: str, target: str = CONFIGURED) -> list[str]:
    parser, group = cli._parser(True, command)
    if group is not None:  # the command takes every setting: the service's join the host's
        cli._add_settings(group, cli.config_mod.all_specs(load_target(target).Settings)[len(cli.config_mod.specs(cli.config_mod.HostConfig)):])
    return sorted(o for o in option_strings(parser) if o.startswith("--") and o not in ("--help", "--version"))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_no_option_of_any_command_is_taken_abbreviated(capsys, command):
    target = CONFIGURED if command != "managers" else ALPHA
    options = _long_options(command)
    assert "--config" in options and "--manager" in options
    for option in options:
        for prefix in {option[:-1], option[:max(3, len(option) // 2)]} - set(options):
            operands = {"control": ["200"], "loglevel": ["app", "DEBUG"], "jobs": ["stats"]}.get(command, [])
            code = run_cli([command, target, *operands, prefix, "1", *SAFE])
            err = capsys.readouterr().err
            assert code == ExitCode.CONFIG_ERROR, (command, prefix)
            assert f"unknown option {prefix}" in one_error_line(err), (command, prefix)


def test_the_issue_s_abbreviations(capsys):
    assert run_cli(["settings", CONFIGURED, "--work", "3"]) == ExitCode.CONFIG_ERROR
    assert "unknown option --work (did you mean --workers?)" in one_error_line(capsys.readouterr().err)
    for argv in (["install", CONFIGURED, "--password", "hunter2", *SAFE],
                 ["install", CONFIGURED, "--password=hunter2", *SAFE],
                 ["install", CONFIGURED, "--username", "bob", "hunter2", *SAFE]):
        assert run_cli(argv) == ExitCode.CONFIG_ERROR
        err = one_error_line(capsys.readouterr().err)
        assert "hunter2" not in err  # a password typed in the wrong place is never repeated


def test_a_script_s_own_command_line_is_not_abbreviated_either():
    proc = subprocess.run([sys.executable, CONFIGURED, "settings", "--work", "3"], env=_child_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "unknown option --work" in one_error_line(proc.stderr)
    proc = subprocess.run([sys.executable, CONFIGURED, "settings", "--workers", "3"], env=_child_env(),
                          capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0 and "workers = 3" in proc.stdout


def test_every_argument_parser_in_the_project_refuses_abbreviations():
    """A future parser cannot forget: each one is cli.ArgumentParser or says allow_abbrev=False."""
    offenders = []
    for path in [*ROOT.glob("src/**/*.py"), *ROOT.glob("bench/**/*.py"), *ROOT.glob("examples/**/*.py"),
                 *ROOT.glob("scripts/**/*.py")]:
        text = path.read_text(encoding="utf-8")
        for m in re.finditer(r"argparse\.ArgumentParser\((.*?)\)\s*$", text, re.M | re.S):
            if "allow_abbrev=False" not in m.group(1) and not path.name == "cli.py":
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders
    assert cli.ArgumentParser().allow_abbrev is False
    assert cli.ArgumentParser(allow_abbrev=True).allow_abbrev is False


def test_the_pywin32_shaped_command_line_does_not_abbreviate(tmp_path):
    script = tmp_path / "compat_app.py"
    script.write_text("from servicehost.compat import win32serviceutil\n"
                      "class S(win32serviceutil.ServiceFramework):\n    _svc_name_ = _svc_display_name_ = 'S'\n"
                      "import sys\nsys.exit(win32serviceutil.HandleCommandLine(S))\n")
    for argv, refused in ((["--user", "bob", "status"], "--user"), (["--pass", "hunter2", "status"], "--pass"),
                          (["--wai=3", "status"], "--wai")):
        proc = subprocess.run([sys.executable, str(script), *argv], env=_child_env(), capture_output=True,
                              text=True, timeout=60, stdin=subprocess.DEVNULL)
        assert proc.returncode == 1, proc.stdout
        assert f"option {refused} not recognized" in proc.stdout and "hunter2" not in proc.stdout + proc.stderr


# -- manager-command options ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["install", CONFIGURED, "--name", ""], "--name: expected a service name, found '': it is empty"),
        (["status", CONFIGURED, "--name", " "], "it is empty"),
        (["remove", CONFIGURED, "--name", " svc"], "spaces around it"),
        (["start", CONFIGURED, "--name", "a/b"], "path separator"),
        (["stop", CONFIGURED, "--name", "a\nb"], "control character"),
        (["start", CONFIGURED, "--wait", "٣"], "--wait: expected a number from 0 to 86400, found '٣'"),
        (["stop", CONFIGURED, "--wait", "nan"], "--wait: expected a number"),
        (["install", CONFIGURED, "--restart-delay", "-1"], "--restart-delay: expected a number from 0 to 86400"),
        (["install", CONFIGURED, "--watchdog", "inf"], "--watchdog"),
        (["control", CONFIGURED, "٢٠٠"], "CODE: expected an integer from 128 to 255"),
        (["control", CONFIGURED, "300"], "CODE: expected an integer from 128 to 255"),
        (["logs", CONFIGURED, "--bytes", "0x10"], "--bytes: expected an integer"),
        (["install", CONFIGURED, "--env", "NOVALUE"], "--env: expected KEY=VALUE with a non-empty KEY"),
        (["install", CONFIGURED, "--env", "=hunter2"], "--env: expected KEY=VALUE with a non-empty KEY, found ''"),
        (["install", CONFIGURED, "--start", "sometimes"], "--start: invalid choice"),
    ],
)
def test_manager_command_options_are_checked_while_parsing(capsys, argv, message):
    assert run_cli([*argv, *SAFE]) == ExitCode.CONFIG_ERROR
    err = one_error_line(capsys.readouterr().err)
    assert message in err and "hunter2" not in err


# -- the environment around a run: one line, exit 2 -------------------------------------------------
def test_a_log_file_that_cannot_be_opened_is_a_setting_to_fix(tmp_path):
    proc = servicehost("run", ALPHA, "--state-dir", str(tmp_path), "--log-file", "/proc/no/such/dir/x.log")
    assert proc.returncode == ExitCode.CONFIG_ERROR
    assert "settings: log_file: expected a log destination this user can write" in one_error_line(proc.stderr)


def test_values_that_are_not_valid_utf8_print_escaped(tmp_path):
    state = os.fsencode(tmp_path) + b"/st\xff"
    proc = subprocess.run([sys.executable, "-m", "servicehost", "settings", ALPHA, "--state-dir", state],
                          env=_child_env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    assert "st\\udcff" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["install", CONFIGURED, "--display-name", "a\nb"], "--display-name: expected text on one line"),
        (["install", CONFIGURED, "--description", "a\x1bb"], "--description: expected text on one line"),
        (["install", CONFIGURED, "--username", "bob\x00"], "--username: expected text on one line"),
        (["install", CONFIGURED, "--depends", ""], "--depends: expected a service name"),
        (["install", CONFIGURED, "--workdir", "/" + "n" * 300], "--workdir: expected a path"),
        (["start", CONFIGURED, "--arg", "a\rb"], "--arg: expected text on one line"),
        (["stop", CONFIGURED, "--wait", "1e308"], "--wait: expected a number from 0 to 86400"),
        (["settings", CONFIGURED, "--config", ""], "--config: expected a TOML file, found an empty name"),
    ],
)
def test_every_option_s_text_is_checked_while_parsing(capsys, argv, message):
    assert run_cli([*argv, *SAFE]) == ExitCode.CONFIG_ERROR
    assert message in one_error_line(capsys.readouterr().err)


def test_a_module_whose_attributes_raise_is_one_line(tmp_path, capsys):
    path = tmp_path / "lazy_module.py"
    path.write_text("def __getattr__(name):\n    raise RuntimeError('lazy ' + name)\n")
    assert run_cli(["settings", f"{path}:Svc"]) == ExitCode.CONFIG_ERROR
    assert "'Svc' is not a Service subclass" in one_error_line(capsys.readouterr().err)


# -- issue 10 item 7: command-line habits -------------------------------------------------------------
def _help(*argv: str) -> str:
    proc = servicehost(*argv, "--help")
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_help_of_a_verb_on_an_installed_service_lists_only_what_it_uses():
    for verb in ("status", "start", "stop", "logs", "control"):
        text = _help(verb)
        assert "--manager" in text and "--config" in text, verb
        for unused in ("--shutdown-timeout", "--log-level", "--state-dir", "--hang-policy", "--syslog"):
            assert unused not in text, (verb, unused)
    for verb in ("run", "install"):  # running, or installing what will run, takes every setting
        assert "--shutdown-timeout" in _help(verb) and "--state-dir" in _help(verb)


def test_empty_defaults_show_as_empty_not_a_dot():
    text = " ".join(_help("run").split())
    assert "default (empty)]" in text and "default .]" not in text


def test_pywin32_spellings_mean_the_same(capsys):
    for given, mode in (("auto", "auto"), ("Manual", "manual"), ("DISABLED", "disabled"), ("delayed", "delayed")):
        assert parse(["install", CONFIGURED, "--startup", given, *SAFE]).args.start_mode == mode
        assert parse(["install", CONFIGURED, "--start", given, *SAFE]).args.start_mode == mode
    assert parse(["install", CONFIGURED, "--username", "svc-app", *SAFE]).args.username == "svc-app"
    assert parse(["settings", CONFIGURED, "--log-level", "debug"]).loaded.host.log_level == "DEBUG"
    assert parse(["settings", CONFIGURED, "--mode", "FAST"]).loaded.service.mode == "fast"  # a service's StrEnum


def test_a_password_on_the_command_line_is_refused_with_the_way_to_give_it(capsys):
    for argv in (["--password", "hunter2"], ["--password=hunter2"], ["--username", "bob", "--password", "hunter2"]):
        assert run_cli(["install", CONFIGURED, *argv, *SAFE]) == ExitCode.CONFIG_ERROR
        err = one_error_line(capsys.readouterr().err)
        assert "never taken from the command line" in err and "--password-stdin" in err and "hunter2" not in err


def test_control_takes_the_service_and_the_code_in_either_order():
    for argv in (["control", CONFIGURED, "200"], ["control", "200", CONFIGURED],
                 ["control", "200", "--name", "svc", CONFIGURED], ["control", "--", "200", CONFIGURED]):
        inv = parse([*argv, *SAFE] if "--" not in argv else [argv[0], *SAFE, *argv[1:]])
        assert inv.target == CONFIGURED and inv.args.code == 200


def test_logs_takes_lines_and_follow():
    inv = parse(["logs", CONFIGURED, "-n", "5", "--follow", *SAFE])
    assert inv.args.lines == 5 and inv.args.follow
    inv = parse(["logs", CONFIGURED, "--lines=7", "-f", *SAFE])
    assert inv.args.lines == 7 and inv.args.follow


def test_settings_shows_where_each_value_came_from(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text("workers = 8\n")
    proc = servicehost("settings", CONFIGURED, "--config", str(toml), "--log-level", "warning",
                       SERVICEHOST_HANG_TIMEOUT="9", SERVICEHOST_STATE_DIR="")
    assert proc.returncode == 0, proc.stderr
    rows = {line.split(" = ")[0]: line for line in proc.stdout.splitlines() if " = " in line}
    assert re.fullmatch(r"workers = 8 +# config file .*s\.toml", rows["workers"])
    assert re.fullmatch(r"log_level = WARNING +# command line --log-level", rows["log_level"])
    assert re.fullmatch(r"hang_timeout = 9\.0 +# environment SERVICEHOST_HANG_TIMEOUT", rows["hang_timeout"])
    assert re.fullmatch(r"log_file = +# default", rows["log_file"])  # empty shows empty, not '.'
    assert re.fullmatch(r"state_dir = \S+/Configured +# the default for Configured", rows["state_dir"])


def test_settings_with_a_name_shows_that_name_s_state_dir():
    proc = servicehost("settings", CONFIGURED, "--name", "svc-two", SERVICEHOST_STATE_DIR="")
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^state_dir = \S+/servicehost/svc-two +# the default for svc-two$", proc.stdout, re.M)


@pytest.mark.parametrize("argv", [
    ["run", CONFIGURED],
    ["run", CONFIGURED, "--name", "svc", "--shutdown-timeout", "7", "--log-file", "none"],
    ["run", ALPHA, "--log-level", "debug", "--config", ""],
])
def test_a_manager_s_run_line_is_read_without_argparse_as_argparse_reads_it(argv, monkeypatch):
    """``run TARGET --OPTION VALUE ...`` (what a manager launches) never builds a parser, and gives
    the Invocation argparse gives (the same names and values), or the same error."""
    monkeypatch.delenv("SERVICEHOST_CONFIG", raising=False)
    def read(fast: bool) -> object:
        if not fast:
            monkeypatch.setattr(cli, "_plain_run", lambda argv, with_target: False)
        try:
            inv = parse(argv)
        except UsageError as exc:
            return str(exc)
        except Exception as exc:
            return f"{type(exc).__name__}: {exc}"
        return vars(inv.args), inv.service_cls, inv.target, inv.loaded.host, inv.loaded.service, inv.name
    monkeypatch.setattr(cli, "_parser", lambda *a, **k: pytest.fail("a parser was built"))
    fast = read(True)
    monkeypatch.undo()
    monkeypatch.delenv("SERVICEHOST_CONFIG", raising=False)
    assert fast == read(False)


@pytest.mark.parametrize("argv", [
    ["run", CONFIGURED, "--shutdown-timeout=7"], ["run", CONFIGURED, "--shutdown-timeout", "-7"],
    ["run", CONFIGURED, "--no-such", "1"], ["run", CONFIGURED, "--name", " x"], ["run", CONFIGURED, "--help"],
    ["run", CONFIGURED, "--name", "a", "--name", "b"], ["run", "--name", "a", CONFIGURED],
    ["run", CONFIGURED, "--", "--name", "x"], ["run", CONFIGURED, "extra"], ["debug", CONFIGURED],
])
def test_any_other_run_line_goes_through_argparse(argv, monkeypatch, capsys):
    calls = []
    real = cli._parser
    def spy(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    monkeypatch.setattr(cli, "_parser", spy)
    with contextlib.suppress(Exception, SystemExit):  # argparse's verdict, whatever it is
        parse(argv)
    assert calls
