"""The review page, end to end in a real browser (Debian's chromium driven by selenium) against a
real `tailor review serve`: log in, read a candidate, approve it and see the champion move; a
label named like a script stays text; a form posted from another origin is refused."""
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from registry.review import approval
from registry.storage import store
from tailor.web import users
from tests import governance as g
from tests.conftest import tiny_settings

ROOT = Path(__file__).resolve().parents[2]
XSS = '<script>document.title="pwned"</script><img src=x onerror="document.title=\'pwned\'">'
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, proc, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError("review server did not start")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("review")
    ws, settings = g.fresh_workspace(tmp / "ws")
    base, base_dir = g.make_base(ws)
    held_out = {"y_true": [0, 0, 1, 1, 1], "y_pred": [0, 1, 1, 1, 1]}
    v1 = g.register(ws, base, base_dir, "acme", labels=("Billing", "Login"), held_out=held_out, seed=1)
    approval.approve(ws, settings, "acme", v1, "bob", "first champion")
    v2 = g.register(ws, base, base_dir, "acme", labels=(XSS, "Login"), held_out=held_out, seed=2, qa=0.95)
    v3 = g.register(ws, base, base_dir, "acme", labels=("Billing", "Login"), held_out=held_out, seed=3, qa=0.96)
    users.add_user(ws, "Alice", "correct horse battery")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", "from tailor.cli import console; console()", "--workspace",
                             str(ws.root), "review", "serve", "--port", str(port)],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        yield {"ws": ws, "url": url, "v1": v1, "v2": v2, "v3": v3}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    if not shutil.which("chromedriver"):
        pytest.fail("chromedriver is missing: `make setup` installs Debian's chromium and chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chrome')}")
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def by_id(driver, element_id, timeout: float = 30):
    """The element once the page showing it has loaded (a click returns before the next page)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(ec.presence_of_element_located((By.ID, element_id)))


def test_login_is_required_and_a_wrong_password_is_refused(site, browser):
    browser.get(site["url"] + "/")
    assert browser.current_url.endswith("/login")
    by_id(browser, "user").send_keys("alice")
    by_id(browser, "password").send_keys("wrong password")
    by_id(browser, "login").click()
    assert "wrong password" in by_id(browser, "error").text
    by_id(browser, "user").send_keys(" ALICE ")  # the login is a normalised identity
    by_id(browser, "password").send_keys("correct horse battery")
    by_id(browser, "login").click()
    assert by_id(browser, "whoami").text == "alice"
    table = by_id(browser, "pending").text
    assert f"v{site['v2']}" in table and f"v{site['v3']}" in table
    assert "v1 0.900 [0.51,1.00] n=4" in table  # every accuracy with its n and interval


def test_a_script_label_is_shown_as_text_and_never_runs(site, browser):
    from selenium.webdriver.common.by import By

    browser.get(f"{site['url']}/t/acme/v/{site['v2']}")
    labels = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#per-label td.label")]
    assert XSS in labels  # rendered as the literal text a tenant chose
    assert browser.title != "pwned" and not browser.find_elements(By.CSS_SELECTOR, "#per-label img")
    assert "&lt;script&gt;" in browser.page_source
    assert by_id(browser, "isolation").text == "passed"
    assert by_id(browser, "confusion").get_attribute("naturalWidth") not in ("0", None)


def test_approve_on_the_page_moves_the_champion(site, browser):
    browser.get(f"{site['url']}/t/acme/v/{site['v3']}")
    assert by_id(browser, "champion").text == "v1"
    by_id(browser, "approve-reason").send_keys("per-label recall looks right")
    by_id(browser, "approve").click()
    assert f"acme v{site['v3']} is now champion (approved by alice)" in by_id(browser, "notice").text
    assert by_id(browser, "champion").text == f"v{site['v3']}" and by_id(browser, "status").text == "approved"
    store.configure(site["ws"], tiny_settings())
    mv = store.alias_version("tailor-tenant-acme", "champion")
    assert str(mv.version) == site["v3"] and mv.tags["approved_by"] == "alice"
    assert "approved by alice" in mv.description


def test_a_form_posted_from_another_origin_is_refused(site, browser):
    target = f"{site['url']}/t/acme/v/{site['v2']}/reject"
    page = (f'<form id="f" method="post" action="{target}"><input name="reason" value="csrf">'
            '<input name="csrf" value="guessed"></form><script>document.getElementById("f").submit()</script>')

    class Evil(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page.encode())

        def log_message(self, *args):
            pass

    evil = ThreadingHTTPServer(("127.0.0.1", free_port()), Evil)
    evil.daemon_threads = True  # chromium keeps idle connections open: never wait for them
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        browser.get(f"http://127.0.0.1:{evil.server_port}/")
        deadline = time.monotonic() + 20
        while "cross-site request refused" not in browser.page_source and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "cross-site request refused" in browser.page_source
    finally:
        evil.shutdown()
    browser.get(f"{site['url']}/t/acme/v/{site['v2']}")
    assert by_id(browser, "status").text == "pending"  # the forged decision changed nothing
