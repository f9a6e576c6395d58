"""The comparison a reviewer decides from, in a real browser (Debian's chromium) against a real
`tailor review serve`: a tenant with a champion and a new candidate scored on the same texts."""
import os
import subprocess
import sys

import pytest

from registry.artifacts import serving
from registry.review import approval
from tailor.web import users
from tests import governance as g
from tests.e2e.test_review_page import ROOT, browser, by_id, free_port, wait_up  # noqa: F401 - fixture

TEXTS = ["refund my card", "charged twice", "invoice missing", "cannot sign in", "password reset",
         "locked out", "2fa broken", "wrong amount", "login loop"]
TRUE = [0, 0, 0, 1, 1, 1, 1, 0, 1]
CAND = [0, 0, 0, 1, 1, 1, 0, 1, 1]
CHAMP = ["Billing", "Billing", "Login", "Login", "Login", "Login", "Login", "Billing", "Billing"]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("compare")
    ws, settings = g.fresh_workspace(tmp / "ws")
    base, base_dir = g.make_base(ws)
    v1 = g.register(ws, base, base_dir, "acme", requested_by="bob", labels=("Billing", "Login"), seed=1)
    approval.approve(ws, settings, "acme", v1, "carol", "first champion")
    with pytest.MonkeyPatch.context() as mp:  # the hand-built champion cannot predict: its labels given
        mp.setattr(serving, "predict", lambda tenant, texts, batch_size=64: [
            {"text": t, "label": label, "score": 0.9} for t, label in zip(texts, CHAMP)])
        v2 = g.register(ws, base, base_dir, "acme", requested_by="bob", labels=("Billing", "Login"), seed=2,
                        held_out={"y_true": TRUE, "y_pred": CAND, "texts": TEXTS})
    users.add_user(ws, "alice", "correct horse battery")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from tailor.cli import console; console()", "--workspace",
                             str(ws.root), "review", "serve", "--port", str(port)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_up(url, proc)
        yield {"url": url, "v1": v1, "v2": v2}
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_the_page_compares_candidate_and_champion_on_the_same_texts(site, browser):
    from selenium.webdriver.common.by import By

    browser.get(site["url"] + "/login")
    by_id(browser, "user").send_keys("alice")
    by_id(browser, "password").send_keys("correct horse battery")
    by_id(browser, "login").click()
    by_id(browser, "whoami")
    browser.get(f"{site['url']}/t/acme/v/{site['v2']}")
    assert f"champion v{site['v1']}" in by_id(browser, "comparison-note").text
    table = by_id(browser, "comparison").text
    assert "7 / 9" in table and "0.45 – 0.94" in table
    rows = [[td.text for td in tr.find_elements(By.TAG_NAME, "td")]
            for tr in browser.find_elements(By.CSS_SELECTOR, "#changed tr")[1:]]
    assert ["invoice missing", "Login", "Billing", "Billing"] in rows and len(rows) == 4
    assert by_id(browser, "requested-by").text == "bob" and by_id(browser, "next-pending-none")
    # the local stylesheet applied (nothing from elsewhere): the header cells are shaded
    shade = browser.find_element(By.CSS_SELECTOR, "#comparison th").value_of_css_property("background-color")
    assert shade in ("rgba(245, 245, 245, 1)", "rgb(245, 245, 245)")
    logs = [e for e in browser.get_log("browser") if "Content Security Policy" in e.get("message", "")]
    assert not logs, logs
