import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from servicehost.config import HostConfig, default_log_file, load, setting, settings_table, shown_default, specs
from servicehost.errors import ConfigError, ExitCode, UsageError


@dataclass(frozen=True, kw_only=True)
class DropSettings:
    drop_dir: Path = setting(Path("drop"), "folder to watch")
    workers: int = setting(4, "threads hashing files", min=1, max=256)
    compress: bool = setting(True, "gzip each file")


def test_precedence_defaults_toml_env_cli(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text('shutdown_timeout = 5\nworkers = 8\nstart_timeout = 7\nlog_level = "DEBUG"\n')
    env = {"SERVICEHOST_WORKERS": "16", "SERVICEHOST_START_TIMEOUT": "9", "SERVICEHOST_UNRELATED": "x"}
    got = load(service_name="svc", service_settings=DropSettings, config_file=toml, env=env,
               cli={"start_timeout": "11"})
    assert got.host.shutdown_timeout == 5.0      # TOML over default
    assert got.service.workers == 16              # env over TOML
    assert got.host.start_timeout == 11.0         # CLI over env
    assert got.host.log_level == "DEBUG"
    assert got.service.compress is True           # default
    assert got.sources == ("defaults", f"config file {toml}", "environment", "command line")
    assert got.host.state_dir.is_absolute()


def test_state_dir_defaults(tmp_path):
    got = load(service_name="svc", env={"STATE_DIRECTORY": str(tmp_path)})
    assert got.host.state_dir == tmp_path


@pytest.mark.parametrize(
    ("toml", "key", "expected"),
    [
        ("shutdown_timeout = 'soon'", "shutdown_timeout", "a number"),
        ("shutdown_timeout = -1", "shutdown_timeout", "from 0"),
        ("workers = 0", "workers", "from 1 to 256"),
        ("workers = 2.5", "workers", "an integer"),
        ("compress = 1", "compress", "true or false"),
        ("hang_policy = 'explode'", "hang_policy", "one of restart, report"),
        ("workrs = 3", "workrs", "did you mean workers"),
    ],
)
def test_bad_toml_values_name_source_key_expected_found(tmp_path, toml, key, expected):
    path = tmp_path / "bad.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as err:
        load(service_name="s", service_settings=DropSettings, config_file=path, env={})
    msg = str(err.value)
    assert str(path) in msg and key in msg and expected in msg and "found" in msg
    assert err.value.exit_code is ExitCode.CONFIG_ERROR


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load(service_name="s", config_file=tmp_path / "missing.toml", env={})
    broken = tmp_path / "broken.toml"
    broken.write_text("shutdown_timeout = = 3\n")
    with pytest.raises(ConfigError, match="valid TOML"):
        load(service_name="s", config_file=broken, env={})
    binary = tmp_path / "bin.toml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError, match="UTF-8"):
        load(service_name="s", config_file=binary, env={})


def test_bad_env_and_cli_name_their_variable_and_flag():
    with pytest.raises(ConfigError, match="environment: SERVICEHOST_SYSLOG: expected true or false, found 'maybe'"):
        load(service_name="s", env={"SERVICEHOST_SYSLOG": "maybe"})
    with pytest.raises(ConfigError, match=r"command line: --workers: expected an integer from 1 to 256, found '0x'"):
        load(service_name="s", service_settings=DropSettings, env={}, cli={"workers": "0x"})


def test_a_service_setting_may_not_shadow_a_host_setting():
    @dataclass(frozen=True)
    class Clash:
        shutdown_timeout: float = setting(1.0, "mine")

    with pytest.raises(UsageError, match="clashes"):
        load(service_name="s", service_settings=Clash, env={})


def test_every_host_setting_is_documented_and_in_the_table():
    table = settings_table(DropSettings)
    for name in HostConfig.__dataclass_fields__:
        f = HostConfig.__dataclass_fields__[name]
        assert f.metadata["doc"], name
        assert f"`{name}`" in table
    assert "`SERVICEHOST_DROP_DIR`" in table and "`--drop-dir`" in table


# -- strict types, for every source -----------------------------------------------------------------
@pytest.mark.parametrize(
    ("toml", "key", "fix"),
    [
        ('workers = "4"', "workers", "write it without quotes: workers = 4"),
        ('shutdown_timeout = "2.5"', "shutdown_timeout", "shutdown_timeout = 2.5"),
        ('compress = "true"', "compress", "compress = true"),
        ('syslog = "no"', "syslog", "syslog = false"),
        ('workers = "many"', "workers", "workers = 4"),
        ("state_dir = 3", "state_dir", "a path"),
        ("log_file = true", "log_file", "a string"),
        ("workers = [4]", "workers", "found an array"),
        ("workers = {n = 4}", "workers", "found a table"),
        ("shutdown_timeout = 1979-05-27", "shutdown_timeout", "a number"),
    ],
)
def test_toml_values_must_have_the_setting_s_type(tmp_path, toml, key, fix):
    path = tmp_path / "typed.toml"
    path.write_text(toml + "\n")
    with pytest.raises(ConfigError) as err:
        load(service_name="s", service_settings=DropSettings, config_file=path, env={})
    assert f"config file {path}: {key}: expected" in str(err.value) and fix in str(err.value)


@pytest.mark.parametrize("text", ["٣", "３", "3\u200b", "1_000", " 3", "3 ", "0x10", "1e3", "+", "", "٣.٥", "nan", "inf",
                                  "-inf", "9" * 5000])
def test_numbers_from_text_are_ascii_digits_only(text):
    with pytest.raises(ConfigError, match="command line: --workers: expected an integer"):
        load(service_name="s", service_settings=DropSettings, env={}, cli={"workers": text})
    if text not in ("1e3",):
        with pytest.raises(ConfigError, match="environment: SERVICEHOST_SHUTDOWN_TIMEOUT: expected a number"):
            load(service_name="s", env={"SERVICEHOST_SHUTDOWN_TIMEOUT": text})


def test_valid_text_still_converts():
    got = load(service_name="s", service_settings=DropSettings, env={"SERVICEHOST_SYSLOG": "Yes"},
               cli={"workers": "+8", "shutdown_timeout": "1e1", "start_timeout": ".5", "compress": "OFF"})
    assert (got.service.workers, got.host.shutdown_timeout, got.host.start_timeout) == (8, 10.0, 0.5)
    assert got.host.syslog is True and got.service.compress is False


@pytest.mark.parametrize("text", ["a\nb", "tab\there", "bell\x07", "c1\x85"])
def test_strings_and_paths_hold_no_control_characters(text):
    for name in ("log_file", "state_dir", "manager"):
        with pytest.raises(ConfigError, match=f"--{name.replace('_', '-')}: .*a control character"):
            load(service_name="s", env={}, cli={name: text})


# -- paths: checked in one validator, whatever the source -------------------------------------------
def test_a_state_dir_must_be_usable_as_a_directory(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match=r"command line: --state-dir: expected a directory, found '.*file': a file"):
        load(service_name="s", env={}, cli={"state_dir": str(a_file)})
    with pytest.raises(ConfigError, match=r"environment: SERVICEHOST_STATE_DIR: .*'.*file' is a file, not a directory"):
        load(service_name="s", env={"SERVICEHOST_STATE_DIR": str(a_file / "below" / "deeper")})
    toml = tmp_path / "c.toml"
    toml.write_text('state_dir = "/etc/passwd"\n')
    with pytest.raises(ConfigError, match=f"config file {toml}: state_dir: expected a directory"):
        load(service_name="s", env={}, config_file=toml)
    with pytest.raises(ConfigError, match=r"STATE_DIRECTORY.*state_dir: expected a directory"):
        load(service_name="s", env={"STATE_DIRECTORY": str(a_file)})
    assert load(service_name="s", env={}, cli={"state_dir": str(tmp_path / "new" / "dir")}).host.state_dir == \
        tmp_path / "new" / "dir"  # not there yet: the service makes it


def test_a_log_file_must_be_usable_as_a_file(tmp_path):
    for bad, found in ((tmp_path, "a directory"), ("/dev/null", "a character device"),
                       (tmp_path / "f" / "x.log", "is a file, not a directory")):
        (tmp_path / "f").write_text("x")
        with pytest.raises(ConfigError, match=f"--log-file: expected a regular file, found .*{found}"):
            load(service_name="s", env={}, cli={"log_file": str(bad)})
    for good in ("none", "NONE", "", str(tmp_path / "new.log")):
        assert load(service_name="s", env={}, cli={"log_file": good}).host.log_file == good


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("a\x00b", "a control character '\\x00'"),
        ("x" * 256, "a name of 256 bytes (at most 255"),
        ("/tmp/" + "é" * 128, "a name of 256 bytes"),
        ("/" + "d/" * 2100, "a path of 4201 bytes (at most 4096)"),
    ],
)
def test_path_values_fit_the_os_limits(tmp_path, value, problem):
    for source, kwargs in (("command line: --state-dir", {"cli": {"state_dir": value}, "env": {}}),
                           ("environment: SERVICEHOST_LOG_FILE", {"env": {"SERVICEHOST_LOG_FILE": value}}),
                           ("command line: --drop-dir", {"cli": {"drop_dir": value}, "env": {}})):
        with pytest.raises(ConfigError) as err:
            load(service_name="s", service_settings=DropSettings, **kwargs)
        assert str(err.value).startswith(source) and problem in str(err.value)
    toml = tmp_path / "c.toml"
    toml.write_text(f"state_dir = {json.dumps(value)}\n", encoding="utf-8")  # a JSON string is a TOML one
    with pytest.raises(ConfigError, match=f"config file {toml}: state_dir: expected a path"):
        load(service_name="s", env={}, config_file=toml)


# -- the config file: read bounded, never blocking --------------------------------------------------
def _load_in_thread(path: Path) -> BaseException | None:
    import threading

    result: list[BaseException | None] = []

    def attempt() -> None:
        try:
            load(service_name="s", env={}, config_file=path)
            result.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            result.append(exc)

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(60)  # a hang guard: a FIFO without a writer would block forever
    assert not thread.is_alive(), f"reading {path} blocked"
    return result[0]


def test_a_config_that_is_not_a_regular_file_is_refused_without_reading_it(tmp_path):
    import os

    fifo = tmp_path / "settings.toml"
    os.mkfifo(fifo)
    for path, kind in ((fifo, "a FIFO"), (Path("/dev/zero"), "a character device"), (tmp_path, "a directory")):
        err = _load_in_thread(path)
        assert isinstance(err, ConfigError) and f"expected a regular TOML file, found {kind}" in str(err)


def test_a_config_file_is_read_bounded(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# padding\n" * 200_000)  # 2 MB of comments: valid TOML, but no settings file is that big
    with pytest.raises(ConfigError, match="expected a TOML file of at most 1024 KiB, found a larger file"):
        load(service_name="s", env={}, config_file=big)


@pytest.mark.parametrize(
    "text",
    ["x = " + "[" * 1000 + "]" * 1000, "x = " + "{a = " * 1000 + "1" + "}" * 1000,
     "[" + ".".join(["a"] * 3000) + "]", "workers = " + "9" * 5000],
)
def test_a_pathological_toml_document_is_one_config_error(tmp_path, text):
    path = tmp_path / "deep.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as err:
        load(service_name="s", service_settings=DropSettings, config_file=path, env={})
    assert str(err.value).startswith(f"config file {path}")


def test_a_config_path_with_a_nul_byte_is_a_config_error():
    with pytest.raises(ConfigError, match="NUL byte"):
        load(service_name="s", env={}, config_file=Path("a\x00b.toml"))


# -- a service's Settings class: a programming error in the target is one line too ------------------
def test_a_malformed_settings_class_is_a_usage_error():
    class NotADataclass:
        workers: int = 4

    @dataclass(frozen=True)
    class NoDefault:
        workers: int

    @dataclass(frozen=True)
    class BadType:
        workers: tuple = setting((), "x")  # type: ignore[assignment]

    for cls, message in ((NotADataclass, "declared as a @dataclass"), (NoDefault, "needs a default"),
                         (BadType, "must be bool, int, float, str or Path")):
        with pytest.raises(UsageError, match=message):
            load(service_name="s", service_settings=cls, env={})
    with pytest.raises(TypeError, match="'dir' or 'file'"):
        setting(Path(""), "x", path="folder")


# -- issue 10: state and logs follow the installed name; each value says where it came from -----------
def test_the_default_state_dir_and_log_file_are_named_after_the_service(tmp_path):
    env = {"XDG_STATE_HOME": str(tmp_path / "xdg")}
    one, two = (load(service_name=name, env=env).host.state_dir for name in ("svc-a", "svc-b"))
    assert one != two and one.name == "svc-a" and two.name == "svc-b"  # two installs of one class
    assert default_log_file("svc-a", one, {}) == one / "logs" / "svc-a.log"
    logs_dir = tmp_path / "var-log"
    assert default_log_file("svc-a", one, {"LOGS_DIRECTORY": f"{logs_dir}:/other"}) == logs_dir / "svc-a.log"


def test_each_value_says_where_it_came_from(tmp_path):
    toml = tmp_path / "s.toml"
    toml.write_text("workers = 8\nsyslog = true\n")
    got = load(service_name="svc", service_settings=DropSettings, config_file=toml,
               env={"SERVICEHOST_WORKERS": "16", "STATE_DIRECTORY": str(tmp_path)}, cli={"hang_timeout": "7"})
    assert got.origins["shutdown_timeout"] == "default"
    assert got.origins["syslog"] == f"config file {toml}"
    assert got.origins["workers"] == "environment SERVICEHOST_WORKERS"
    assert got.origins["hang_timeout"] == "command line --hang-timeout"
    assert got.origins["state_dir"] == "$STATE_DIRECTORY"
    assert load(service_name="svc", env={}).origins["state_dir"] == "the default for svc"


@pytest.mark.parametrize("source", ["env", "cli", "toml"])
def test_a_closed_set_is_taken_in_any_ascii_case(tmp_path, source):
    toml = tmp_path / "s.toml"
    toml.write_text('log_level = "debug"\nhang_policy = "Report"\n')
    kwargs: dict[str, object] = {
        "env": {"env": {"SERVICEHOST_LOG_LEVEL": "debug", "SERVICEHOST_HANG_POLICY": "Report"}},
        "cli": {"env": {}, "cli": {"log_level": "debug", "hang_policy": "Report"}},
        "toml": {"env": {}, "config_file": toml},
    }[source]
    got = load(service_name="svc", **kwargs)  # type: ignore[arg-type]
    assert got.host.log_level == "DEBUG" and got.host.hang_policy == "report"
    with pytest.raises(ConfigError, match="one of DEBUG"):
        load(service_name="svc", env={}, cli={"log_level": "DEBUGGING"})
    with pytest.raises(ConfigError, match="one of restart"):  # only ASCII folds: "ſ" is not "s"
        load(service_name="svc", env={}, cli={"hang_policy": "reſtart"})


def test_empty_defaults_show_as_empty():
    by_name = {s.name: s for s in specs(HostConfig)}
    assert shown_default(by_name["state_dir"]) == "(empty)" and shown_default(by_name["log_file"]) == "(empty)"
    assert shown_default(by_name["shutdown_timeout"]) == "30.0"
