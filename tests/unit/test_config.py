from dataclasses import dataclass
from pathlib import Path

import pytest

from servicehost.config import HostConfig, load, setting, settings_table
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
