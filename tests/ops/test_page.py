"""The status page in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``, driven by
selenium), against a real service process (``tests/ops/ops_app.py``). In CI these never skip:
``.ci/setup-ops.sh`` installs the browser. Screenshots go to ``build/test-artifacts/`` (or
``$SERVICEHOST_ARTIFACTS``). Time limits are hang guards only."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..conftest import IN_CI
from ..integration.proc import ROOT, ServiceProcess

HANG_GUARD = 30.0
APP = "tests/ops/ops_app.py"
ARTIFACTS = Path(os.environ.get("SERVICEHOST_ARTIFACTS") or ROOT / "build" / "test-artifacts")
HOSTILE_MARK = '<img src=x onerror="document.title'


def _need(reason: str) -> None:
    if IN_CI:
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def browser() -> Iterator[object]:
    drv = launch()
    try:
        yield drv
    finally:
        drv.quit()


def launch(*extra: str) -> object:
    """A headless Chromium under selenium, DevTools logs on, CSP violations collected."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver:
        _need("needs Debian's chromium and chromium-driver: run `bash .ci/setup-ops.sh` as root")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service as DriverService
    except ImportError:
        _need("needs selenium: pip install -e '.[test]'")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1200,900", "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-default-apps", *extra):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    drv = webdriver.Chrome(options=options, service=DriverService(driver))
    drv.set_page_load_timeout(HANG_GUARD)
    drv.set_script_timeout(HANG_GUARD)
    # Collect CSP violations from the first instant (a DevTools script runs before the page's own).
    drv.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": (
        "window.__csp = []; document.addEventListener('securitypolicyviolation', "
        "e => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));")})
    return drv


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[ServiceProcess, str, Path]]:
    """The example with hostile names, serving its page; a task has failed with a hostile text."""
    (tmp_path / "fail").touch()
    with ServiceProcess("run", APP, "--http", "127.0.0.1:0", "--gate", str(tmp_path), "--hostile", "true",
                        "--log-file", "none", "--state-dir", str(tmp_path / "state")) as proc:
        port = int(proc.expect(r"HTTP listener on http://127\.0\.0\.1:(\d+)/").group(1))
        proc.ready()
        yield proc, f"http://127.0.0.1:{port}/", tmp_path


def wait(drv: object, what: str, predicate) -> object:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, HANG_GUARD, poll_frequency=0.1).until(lambda d: predicate(d), message=f"never: {what}")


def text(drv: object, element_id: str) -> str:
    """What ``element_id`` shows (read in one go: each answer replaces the rows)."""
    return drv.execute_script("return document.getElementById(arguments[0]).innerText", element_id)  # type: ignore[attr-defined]


def network(drv: object) -> tuple[list[str], dict[str, dict[str, str]]]:
    """Every URL the page asked for, and each response's headers (lower-case), from DevTools."""
    urls: list[str] = []
    headers: dict[str, dict[str, str]] = {}
    for entry in drv.get_log("performance"):  # type: ignore[attr-defined]
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
        elif message["method"] == "Network.responseReceived":
            response = message["params"]["response"]
            headers[response["url"]] = {k.lower(): v for k, v in response["headers"].items()}
    return urls, headers


def save(drv: object, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    assert drv.save_screenshot(str(path)), path  # type: ignore[attr-defined]
    return path


def test_the_page_shows_live_counters_hostile_names_as_text_and_loads_nothing_from_elsewhere(browser, app):
    drv = browser
    _, base, _ = app
    drv.get(base)
    wait(drv, "the first answer", lambda d: "ThreadPool" in text(d, "component-rows"))

    # states in words, and hostile names and error texts as text: no element made of them
    assert text(drv, "state").startswith("running")
    assert text(drv, "accepting") == "yes"
    names = drv.execute_script(  # read in one go: each answer replaces the rows
        "return Array.from(document.querySelectorAll('#component-rows .component-name'), e => e.textContent)")
    assert any(HOSTILE_MARK in n and "</script><script>" in n for n in names), names
    wait(drv, "the last error", lambda d: "RuntimeError: asked to fail: " + HOSTILE_MARK in text(d, "last-error"))
    wait(drv, "the check's result", lambda d: "healthy" in text(d, "check-rows"))
    assert HOSTILE_MARK in text(drv, "check-rows")
    assert drv.execute_script("return document.querySelectorAll('img').length") == 0
    assert drv.execute_script("return Array.from(document.scripts).map(s => s.getAttribute('src'))") == ["page.js"]
    assert "pwned" not in drv.title and drv.title.startswith("OpsApp")

    # counters change without a reload
    def done() -> int:
        return int(drv.execute_script("return document.querySelector('#component-rows td.done').textContent"))
    before = done()
    wait(drv, "the done counter moving", lambda d: done() > before)
    wide = save(drv, "status-page-wide.png")

    # nothing went wrong in the console, no CSP violation, nothing asked of another origin, never cached
    errors = [e for e in drv.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []
    assert drv.execute_script("return window.__csp") == []
    urls, headers = network(drv)
    assert urls and all(u.startswith(base) for u in urls), urls
    assert base + "status" in urls and base + "page.js" in urls
    for url in (base, base + "status"):
        assert headers[url]["cache-control"] == "no-store"
    assert headers[base]["content-security-policy"].startswith("default-src 'none'; script-src 'self'")

    # narrow screens: no sideways scrolling, every cell says what it is
    drv.set_window_size(360, 800)
    wait(drv, "the narrow layout", lambda d: d.execute_script(
        "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"))
    label = drv.execute_script("return getComputedStyle(document.querySelector('#component-rows td'), '::before').content")
    assert "Name" in label
    narrow = save(drv, "status-page-narrow.png")

    # keyboard: Tab reaches the refresh button and every link, each with a visible focus ring
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    drv.set_window_size(1200, 900)
    drv.find_element("tag name", "h1").click()  # the page has focus, nothing in it does
    reached = []
    for _ in range(14):
        ActionChains(drv).send_keys(Keys.TAB).perform()
        focused = drv.execute_script(
            "const e = document.activeElement; return [e.id || e.getAttribute('href') || e.tagName, "
            "getComputedStyle(e).outlineStyle]")
        reached.append(focused[0])
        assert focused[0] == "BODY" or focused[1] != "none", (reached, focused)
    assert {"refresh", "readyz?verbose", "livez?verbose", "status", "metrics"} <= set(reached), reached
    polls = int(drv.execute_script("return document.documentElement.getAttribute('data-polls')"))
    drv.find_element("id", "refresh").send_keys(Keys.ENTER)
    wait(drv, "a poll on Enter", lambda d: int(d.execute_script(
        "return document.documentElement.getAttribute('data-polls')")) > polls)
    assert wide.stat().st_size > 0 and narrow.stat().st_size > 0


def test_the_page_polls_less_while_hidden_and_says_stale_since_when_the_service_is_killed(browser, app):
    drv = browser
    proc, base, _ = app
    drv.get(base)
    wait(drv, "the first answer", lambda d: "ThreadPool" in text(d, "component-rows"))
    every = "return document.documentElement.getAttribute('data-poll-every')"
    polls = "return Number(document.documentElement.getAttribute('data-polls'))"
    assert drv.execute_script(every) == "2000"

    drv.minimize_window()  # the tab is hidden: polling backs off to once a minute
    wait(drv, "hidden", lambda d: d.execute_script("return document.hidden"))
    assert drv.execute_script(every) == "60000"
    hidden_polls = drv.execute_script(polls)
    drv.set_window_size(1200, 900)  # visible again: a poll at once, then every 2 s
    wait(drv, "visible", lambda d: not d.execute_script("return document.hidden"))
    wait(drv, "a poll on becoming visible", lambda d: d.execute_script(polls) > hidden_polls)
    wait(drv, "polling every 2 s again", lambda d: d.execute_script(every) == "2000")
    assert drv.find_element("id", "banner").is_displayed() is False

    proc.proc.send_signal(signal.SIGKILL)
    proc.proc.wait(HANG_GUARD)
    wait(drv, "the stale banner", lambda d: d.find_element("id", "banner").is_displayed())
    banner = text(drv, "banner")
    assert re.match(r"Stale since \d\d:\d\d:\d\d: the service does not answer", banner), banner
    assert "last answer" in banner
    assert text(drv, "state").startswith("unknown")  # never a lingering "running"
    assert text(drv, "accepting") == "unknown"
    assert "ThreadPool" in text(drv, "component-rows")  # the last answer stays, under the banner
    wait(drv, "retries backing off", lambda d: int(d.execute_script(every)) > 2000)
    assert drv.execute_script("return window.__csp") == []
    save(drv, "status-page-stale.png")


def test_dns_rebinding_a_page_on_a_foreign_name_that_resolves_to_loopback_gets_nothing(app):
    """The attack itself: the browser resolves evil.test to 127.0.0.1 (--host-resolver-rules) and
    loads the service's port under that name; the page's script (same origin as evil.test) would
    read everything. The listener answers 403 to Host: evil.test, so there is nothing to read."""
    _, base, _ = app
    port = base.rstrip("/").rsplit(":", 1)[1]
    drv = launch("--host-resolver-rules=MAP evil.test 127.0.0.1")
    try:
        drv.get(f"http://evil.test:{port}/")
        assert "Host header not allowed" in drv.find_element("tag name", "body").text
        # a script there gets nothing either: the 403's own CSP forbids the fetch, and the answer is 403
        status = drv.execute_script("return fetch('/status').then(r => String(r.status), e => 'blocked')")
        assert status in ("403", "blocked")
        assert "OpsApp" not in drv.page_source
    finally:
        drv.quit()
