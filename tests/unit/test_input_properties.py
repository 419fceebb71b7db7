"""Property tests: bad config and command-line input gives a ConfigError/exit 2, never a traceback."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicehost.cli import run_cli
from servicehost.config import HostConfig, convert, load, specs
from servicehost.errors import ConfigError, ExitCode

from .conftest_paths import FIXTURES

HOST_SPECS = specs(HostConfig)
ALPHA = str(FIXTURES / "two_services.py") + ":Alpha"

toml_scalars = st.one_of(
    st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(), max_size=3),
)


@given(spec=st.sampled_from(HOST_SPECS), raw=st.one_of(st.text(max_size=20), toml_scalars))
def test_convert_accepts_valid_values_and_rejects_the_rest_with_a_config_error(spec, raw):
    try:
        value = convert(spec, raw, "test")
    except ConfigError as err:
        assert spec.name in str(err) and "expected" in str(err) and "found" in str(err)
        return
    assert isinstance(value, spec.type)
    if spec.min is not None:
        assert value >= spec.min
    if spec.max is not None:
        assert value <= spec.max
    if spec.choices:
        assert value in spec.choices


def _toml_value(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return {float("inf"): "inf", float("-inf"): "-inf"}.get(v, "nan" if v != v else repr(v))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"').encode("unicode_escape").decode("ascii") + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v)


keys = st.one_of(st.sampled_from([s.name for s in HOST_SPECS]), st.text(string.ascii_lowercase + "_", min_size=1, max_size=12))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=150)
@given(doc=st.dictionaries(keys, toml_scalars, max_size=5))
def test_any_toml_document_loads_or_names_what_is_wrong(tmp_path, doc):
    path = Path(tmp_path) / "c.toml"
    path.write_text("".join(f"{k} = {_toml_value(v)}\n" for k, v in doc.items()), encoding="utf-8")
    try:
        got = load(service_name="s", config_file=path, env={})
    except ConfigError as err:
        assert str(path) in str(err)
        return
    for key in doc:
        assert hasattr(got.host, key)


@given(raw=st.binary(max_size=64))
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=100)
def test_arbitrary_bytes_as_a_config_file(tmp_path, raw):
    path = Path(tmp_path) / "b.toml"
    path.write_bytes(raw)
    try:
        load(service_name="s", config_file=path, env={})
    except ConfigError:
        pass  # the expected outcome for garbage; anything else (a traceback) fails the test


flags = st.sampled_from([s.flag for s in HOST_SPECS] + ["--config"])
junk = st.text(alphabet=string.printable.replace("\x0b", "").replace("\x0c", ""), max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pairs=st.lists(st.tuples(flags, junk), max_size=4))
def test_random_setting_flags_give_exit_0_or_2_and_one_line(capsys, pairs):
    argv = ["settings", ALPHA]
    for flag, value in pairs:
        argv += [flag, value]
    code = run_cli(argv)
    out = capsys.readouterr()
    assert code in (ExitCode.OK, ExitCode.CONFIG_ERROR)
    assert "Traceback" not in out.err
    if code == ExitCode.CONFIG_ERROR:
        assert out.err.count("\n") == 1 and out.err.startswith("servicehost: error:"), out.err


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(target=st.text(max_size=30))
def test_random_targets_never_crash(capsys, target):
    if target.startswith("-") or target in ("", "settings"):
        return
    code = run_cli(["settings", target])
    err = capsys.readouterr().err
    assert code in (ExitCode.OK, ExitCode.CONFIG_ERROR)
    assert "Traceback" not in err
    if code == ExitCode.CONFIG_ERROR:
        assert err.count("\n") == 1 and err.startswith("servicehost: error:"), err
