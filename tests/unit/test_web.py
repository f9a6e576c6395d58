"""The review app's guards without a browser: every page needs a login, every form needs the
session's token (same origin or not), and a decision acts as the logged-in identity."""
import re

import pytest
from fastapi.testclient import TestClient

from registry.storage import store
from tailor.web import users
from tailor.web.app import create_app
from tests import governance as g


@pytest.fixture
def client(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    version = g.register(ws, base, base_dir, "webt", requested_by="Bob")
    users.add_user(ws, "bob", "bob's long password")
    users.add_user(ws, "alice", "alice's long password")
    return TestClient(create_app(ws, settings), base_url="http://localhost"), version


def token(html: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', html).group(1)


def login(c, who):
    page = c.get("/login")
    return c.post("/login", data={"user": who, "password": f"{who}'s long password", "csrf": token(page.text)},
                  follow_redirects=False)


def test_pages_need_a_login_and_forms_need_the_sessions_token(client):
    c, version = client
    assert c.get("/", follow_redirects=False).status_code == 303
    assert c.get(f"/t/webt/v/{version}", follow_redirects=False).headers["location"] == "/login"
    assert c.post("/login", data={"user": "alice", "password": "alice's long password"}).status_code == 403
    assert login(c, "alice").status_code == 303
    page = c.get(f"/t/webt/v/{version}")
    assert page.status_code == 200 and "approve as alice" in page.text
    wrong = c.post(f"/t/webt/v/{version}/approve", data={"reason": "x", "csrf": "guess"},
                   headers={"origin": "http://localhost"})
    assert wrong.status_code == 403
    assert store.alias_version("tailor-tenant-webt", "champion") is None


def test_a_decision_acts_as_the_login_and_four_eyes_applies(client):
    c, version = client
    login(c, "bob")
    page = c.get(f"/t/webt/v/{version}")
    refused = c.post(f"/t/webt/v/{version}/approve", data={"reason": "mine", "csrf": token(page.text)})
    assert refused.history[0].status_code == 303 and "four-eyes: bob requested" in refused.text
    c.post("/logout", data={"csrf": token(page.text)})
    login(c, "alice")
    page = c.get(f"/t/webt/v/{version}")
    done = c.post(f"/t/webt/v/{version}/approve", data={"reason": "fine", "csrf": token(page.text)})
    assert done.history[0].status_code == 303 and "now champion (approved by alice)" in done.text
    assert "now champion" not in c.get(f"/t/webt/v/{version}").text  # said once, not on every reload
    mv = store.alias_version("tailor-tenant-webt", "champion")
    assert str(mv.version) == version and mv.tags["approved_by"] == "alice"


def test_the_candidate_page_shows_a_swapped_delta_and_refuses_to_approve_it(client, tmp_path):
    import shutil
    from pathlib import Path
    from urllib.parse import urlparse

    c, version = client
    uri = store.client().get_model_version_download_uri("tailor-tenant-webt", version)
    stored = Path(urlparse(uri).path) / "data" / "artifacts" / "delta" / "delta.safetensors"
    data = bytearray(stored.read_bytes())
    data[-1] ^= 1  # one flipped bit in the stored tensors
    stored.write_bytes(bytes(data))
    shutil.rmtree(store.workspace().cache_dir / "models", ignore_errors=True)
    login(c, "alice")
    page = c.get(f"/t/webt/v/{version}")
    assert 'id="isolation" class="fail"' in page.text and "are not the ones registered" in page.text
    refused = c.post(f"/t/webt/v/{version}/approve", data={"reason": "ok", "csrf": token(page.text)})
    assert refused.history[0].status_code == 303 and "fail isolation" in refused.text
    assert store.alias_version("tailor-tenant-webt", "champion") is None


def test_the_data_docs_link_serves_the_versions_page_and_nothing_outside_the_site(tmp_path):
    ws, settings = g.fresh_workspace(tmp_path / "ws")
    base, base_dir = g.make_base(ws)
    page = ws.data_docs_dir / "validations" / "tailor-docs" / "abc" / "run" / "tailor-docs.html"
    page.parent.mkdir(parents=True)
    page.write_text("<h1>validation of abc</h1>")
    version = g.register(ws, base, base_dir, "docs", validation={**g.PASSED, "data_docs": page.as_uri()})
    users.add_user(ws, "alice", "alice's long password")
    c = TestClient(create_app(ws, settings), base_url="http://localhost")
    login(c, "alice")
    html = c.get(f"/t/docs/v/{version}").text
    link = re.search(r'id="data-docs" href="([^"]+)"', html).group(1)
    served = c.get(link)
    assert served.text == "<h1>validation of abc</h1>"
    assert served.headers["content-security-policy"].startswith("sandbox;")  # no CDN script runs here
    assert c.get("/docs/..%2F..%2Fusers.json").status_code == 404
    assert c.get("/docs/../users.json").status_code == 404


def test_logout_ends_the_session_an_old_cookie_included(client):
    c, version = client
    login(c, "alice")
    stolen = dict(c.cookies)
    page = c.get(f"/t/webt/v/{version}")
    c.post("/logout", data={"csrf": token(page.text)})
    c.cookies.clear()
    c.cookies.update(stolen)  # the cookie as it was before logout, replayed
    assert c.get(f"/t/webt/v/{version}", follow_redirects=False).headers["location"] == "/login"
    replay = c.post(f"/t/webt/v/{version}/reject", data={"reason": "replayed", "csrf": token(page.text)},
                    follow_redirects=False)
    assert replay.status_code == 303 and replay.headers["location"] == "/login"
    assert store.client().get_model_version("tailor-tenant-webt", version).tags["status"] == "pending"


def test_a_removed_user_or_a_reset_password_ends_their_sessions(client):
    c, version = client
    ws = store.workspace()
    login(c, "alice")
    assert c.get(f"/t/webt/v/{version}").status_code == 200
    users.add_user(ws, "alice", "alice's long password")  # password reset (here: to the same)
    assert c.get(f"/t/webt/v/{version}", follow_redirects=False).status_code == 303
    login(c, "alice")
    assert c.get(f"/t/webt/v/{version}").status_code == 200
    assert users.remove_user(ws, "alice")
    assert c.get(f"/t/webt/v/{version}", follow_redirects=False).headers["location"] == "/login"


def test_failed_logins_back_off(client, monkeypatch):
    c, _ = client
    checked = []
    real = users.check
    monkeypatch.setattr(users, "check", lambda ws, name, pw: checked.append(pw) or real(ws, name, pw))
    csrf = token(c.get("/login").text)
    answers = [c.post("/login", data={"user": "alice", "password": f"guess {i}", "csrf": csrf}).status_code
               for i in range(30)]
    assert len(checked) == 5 and answers[:5] == [401] * 5 and set(answers[5:]) == {429}
    right = c.post("/login", data={"user": "alice", "password": "alice's long password", "csrf": csrf},
                   follow_redirects=False)
    assert right.status_code == 429 and len(checked) == 5  # not even the right one is tried yet


def test_every_response_has_csp_and_frame_options_and_other_hosts_are_refused(client):
    c, version = client
    for response in (c.get("/login"), c.get("/health"), c.get("/static/review.css")):
        assert response.headers["x-frame-options"] == "DENY"
        assert "default-src 'none'" in response.headers["content-security-policy"]
        assert "script-src" not in response.headers["content-security-policy"]
    assert "<style" not in c.get("/login").text and "/static/review.css" in c.get("/login").text
    assert c.get("/login", headers={"host": "evil.example"}).status_code == 400


def test_the_page_names_who_when_what_and_says_refusals_in_its_own_words(client):
    c, version = client
    login(c, "alice")
    page = c.get(f"/t/webt/v/{version}").text
    assert 'id="requested-by">bob<' in page.lower() and "sha256:" in page and 'id="run"' in page
    assert "no other candidate waits for review" in page
    empty = c.post(f"/t/webt/v/{version}/approve", data={"reason": " ", "csrf": token(page)})
    assert "write a reason before you approve" in empty.text and "--reason" not in empty.text


def test_the_page_shows_past_decisions_the_vs_champion_column_and_every_accuracy_with_n(client):
    """Issue 31, finding 10: after a decision the page showed no who/when/why and no history; the
    list had no "vs champion" column; accuracies had no n and interval."""
    c, version = client
    login(c, "alice")
    listed = c.get("/").text
    assert "vs champion, same texts (95%)" in listed and re.search(r"0\.900 \[0\.\d\d,1\.00\] n=4", listed)
    page = c.get(f"/t/webt/v/{version}").text
    assert re.search(r'id="accuracy">0\.900 \[0\.\d\d,1\.00\] n=4<', page)
    assert 'id="decisions"' in page and ">registered<" in page  # the audit log's register record
    c.post(f"/t/webt/v/{version}/approve", data={"reason": "checked the per-label table", "csrf": token(page)})
    page = c.get(f"/t/webt/v/{version}").text
    decisions = page[page.index('id="decisions"'):page.index("</table>", page.index('id="decisions"'))]
    assert ">approved<" in decisions and ">alice<" in decisions and "checked the per-label table" in decisions
    assert 'id="history"' in page and "approve" in page[page.index('id="history"'):]
