"""A URL's password (``postgresql://app:pw@db/jobs``) is never shown and never installed: every URL
an error, ``settings`` or ``config`` quotes is redacted (``config.redact_urls``), a URL where a
TARGET belongs is refused as one (never imported as module ``postgresql``), and ``install`` refuses
a password in a URL it would put in the service's command line or plain environment."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from servicehost.config import holds_url_secret, redact_url, redact_urls
from servicehost.errors import ExitCode

from .test_cli import CONFIGURED, one_error_line, servicehost

# The password always holds a Q, and nothing else in these URLs does: no Q shown, nothing of it shown.
lower = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=10)
password = st.builds(lambda a, b: a + "Q" + b,
                     st.text(st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs", "Lu")), max_size=12),
                     st.text(st.characters(blacklist_categories=("Zs", "Zl", "Zp", "Cc", "Cs", "Lu")), max_size=12))


@settings(max_examples=400, deadline=None)
@given(user=lower, pw=password, host=lower, port=st.one_of(st.none(), st.integers(1, 65535)),
       path=lower, query=st.sampled_from(["", "?sslmode=require", "?schema=jobs&lease=30"]),
       scheme=st.sampled_from(["postgresql", "postgres", "redis", "amqp"]))
def test_no_part_of_a_url_s_password_is_ever_shown(user, pw, host, port, path, query, scheme):
    """Passwords with : @ / ? # ' " in them, not percent-encoded as a URL wants, as users type them."""
    url = f"{scheme}://{user}:{pw}@{host}{f':{port}' if port else ''}/{path}{query}"
    shown = redact_url(url)
    assert "Q" not in shown and shown.startswith(f"{scheme}://{user}:***@")
    for text in (url, f"target {url!r}: no module", f"a {url} b {url}", f'"{url}"', f"({url})"):
        assert "Q" not in redact_urls(text), text
        assert holds_url_secret(text)


@settings(max_examples=200, deadline=None)
@given(secret=st.text(string.ascii_letters + string.digits + "!$%()*+,;=-._~", min_size=1, max_size=20).map(lambda s: "Q" + s),
       name=st.sampled_from(["password", "PASSWORD", "sslpassword", "api_token", "secret", "sslkey"]))
def test_a_secret_named_query_option_is_redacted(secret, name):
    shown = redact_urls(f"postgresql://db/jobs?sslmode=require&{name.lower()}={secret}")
    assert "Q" not in shown and shown.endswith(f"{name.lower()}=***")


@pytest.mark.parametrize("text", ["sqlite:////var/lib/app/jobs.sqlite3", "postgresql://app@db/jobs",
                                  "postgresql://db:5432/jobs?sslmode=require", "C:\\app\\svc.py:Main",
                                  "http://127.0.0.1:8080/metrics", "no url here", "a://"])
def test_what_holds_no_secret_is_shown_as_it_is(text):
    assert redact_urls(text) == text and not holds_url_secret(text)


@pytest.mark.parametrize("command", ["stop", "status", "start", "install", "run", "debug", "settings"])
def test_a_url_where_a_target_belongs_is_refused_as_one_never_showing_its_password(command):
    proc = servicehost(command, "postgresql://app:hunter2@db:5432/jobs")
    assert proc.returncode == ExitCode.CONFIG_ERROR
    line = one_error_line(proc.stderr)
    assert "is a URL, not a TARGET" in line and "postgresql://app:***@db:5432/jobs" in line
    assert "hunter2" not in proc.stdout + proc.stderr


def test_settings_shows_a_url_setting_with_its_password_redacted():
    for args, env in (((CONFIGURED, "--log-file", "postgresql://app:hunter2@db/jobs"), {}),
                      ((CONFIGURED,), {"SERVICEHOST_LOG_FILE": "postgresql://app:hunter2@db/jobs"})):
        proc = servicehost("settings", *args, **env)
        assert proc.returncode == 0, proc.stderr
        assert "log_file = postgresql://app:***@db/jobs" in proc.stdout
        assert "hunter2" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("manager", ["supervisord", "systemd", "foreground"])
def test_install_refuses_a_password_in_a_url_it_would_put_on_the_command_line(tmp_path, manager):
    for extra, said in ((("--log-file", "postgresql://app:hunter2@db/jobs"), "--log-file postgresql://app:***@db/jobs"),
                        (("--env", "DB=postgresql://app:hunter2@db/jobs"), "--env DB=postgresql://app:***@db/jobs"),
                        (("--env", "DB=@@postgresql://app:hunter2@db/jobs"), "--env DB=@@postgresql://app:***@db/jobs")):
        proc = servicehost("install", CONFIGURED, *extra, "--manager", manager, HOME=str(tmp_path),
                           SERVICEHOST_SUPERVISORD_HOME=str(tmp_path / "supervisord"))
        assert proc.returncode == ExitCode.CONFIG_ERROR, proc.stderr
        line = one_error_line(proc.stderr)
        assert line.startswith(f"servicehost: error: {said}: a password in the URL"), line
        assert "hunter2" not in proc.stdout + proc.stderr
    assert not any(tmp_path.rglob("*.conf")) and not any(tmp_path.rglob("*.service"))  # nothing installed


def test_install_takes_a_secret_file_and_a_url_without_a_password(tmp_path):
    """The ways the refusal names are not refused (the foreground manager then says it installs
    nothing: the check came first and passed)."""
    for extra in (("--env", "DB=@/etc/app/db-url"), ("--log-file", "postgresql://app@db/jobs"),
                  ("--env", "PGPASSFILE=/etc/app/pgpass")):
        proc = servicehost("install", CONFIGURED, *extra, "--manager", "foreground", HOME=str(tmp_path))
        assert "a password in the URL" not in proc.stderr, proc.stderr
