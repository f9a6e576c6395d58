"""`tailor serve-api` as a process, against the real embedded registry, on tiny tenants and the
tiny encoder: every answer is the one `tailor predict` gives for the same texts, under concurrent
mixed-tenant load; a tampered delta is a 409 and never another tenant's answer; an approval and
a rollback reach serving without a restart; a caller sees only its own tenants."""
import json
import os
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tailor import cli
from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import TENANTS, write_csv
from tests.governance import approve_base_cli
from tests.servers import api_server, in_threads
from workspace import versioning
from workspace.create import init_workspace
from workspace.paths import Workspace

FLEET = ["acme", "globex", "initech", "umbrella"]
ASK = {"acme": ["dog cat horse", "bread rice soup", "hammer saw drill", "lion tiger wolf", "cake pie jam", "  "],
       "globex": ["guitar piano drum", "soccer tennis golf", "engine wheel brake", "violin harp choir"],
       "initech": ["dog cat horse", "guitar piano drum", "court judge jury", "appeal verdict bail"]}


def call(url, path, body=None, key=None, rid=None):
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if rid:
        headers["X-Request-ID"] = rid
    request = urllib.request.Request(url + path, data=None if body is None else json.dumps(body).encode(),
                                     headers=headers, method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            raw = response.read()
            return response.status, (json.loads(raw) if raw[:1] in b"[{" else raw.decode()), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null"), dict(exc.headers)


def predict_cli(root, tenant, texts, capsys):
    """What `tailor predict TENANT TEXT... --json` prints (blank texts are refused there: left out)."""
    from registry.storage import store

    capsys.readouterr()
    asked = [t for t in texts if t.strip()]
    assert cli.main(["-w", str(root), "predict", tenant, *asked, "--json", "--cold"]) == 0  # not the server's answer
    store.writable()
    rows = json.loads(capsys.readouterr().out)
    return {r["text"]: r for r in rows}


def same(answer, expected):
    """The server's rows equal `tailor predict`'s (scores within float rounding of a batch)."""
    for row in answer["predictions"]:
        if not row["text"].strip():
            assert row["label"] is None and row["score"] is None
            continue
        want = expected[row["text"]]
        assert row["label"] == want["label"] and abs(row["score"] - want["score"]) < 2e-3, (row, want)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from registry.review import approval
    from registry.storage import store
    from workspace.settings import load_settings

    root = tmp_path_factory.mktemp("serve") / "ws"
    inbox = tmp_path_factory.mktemp("inbox")
    settings = tiny_settings(tenants="acme,globex,initech", val_tenants="umbrella")
    settings = settings.replace("serving", poll_seconds=0.3, verify_seconds=1.0, batch_window_ms=5.0)
    ws = init_workspace(root, settings)
    for i, tenant in enumerate(FLEET):
        versioning.track(ws, tenant, write_csv(inbox / f"{tenant}.csv", *synthetic_tenant(TENANTS[tenant], 10, seed=i)))
    assert cli.main(["-w", str(root), "meta-train", "--register-anyway"]) == 0
    approve_base_cli(root)
    os.environ["TAILOR_USER"] = "ci-bot"
    try:
        assert cli.main(["-w", str(root), "adapt", "--all"]) == 0
        versioning.track(ws, "acme", write_csv(inbox / "acme2.csv", *synthetic_tenant(["animal", "food", "tool"], 9, seed=7)))
        assert cli.main(["-w", str(root), "adapt", "acme"]) == 0
    finally:
        os.environ.pop("TAILOR_USER", None)
    settings = load_settings(ws.params_file)
    store.configure(ws, settings)
    for tenant in FLEET:
        approval.approve(ws, settings, tenant, "1", "alice", "serve test", override_reason="tiny test model")
    from tailor.api import keys

    key_all = keys.add_key(ws, "ops", ["*"])
    key_acme = keys.add_key(ws, "acme-app", ["acme"])
    with api_server(root, root.parent / "serve.log") as server:
        server.ready(90)
        yield {"root": root, "ws": Workspace(root), "settings": settings, "url": server.url, "server": server.proc,
               "keys": {"all": key_all, "acme": key_acme}, "log": server.log}


def test_concurrent_mixed_tenant_load_gets_tailor_predicts_answers(served, capsys):
    url, key = served["url"], served["keys"]["all"]
    expected = {t: predict_cli(served["root"], t, texts, capsys) for t, texts in ASK.items()}
    answers = []

    def client(i):
        for n in range(6):
            tenant = list(ASK)[(i + n) % 3]
            if n % 2:
                status, body, _ = call(url, f"/v1/tenants/{tenant}/predict", {"texts": ASK[tenant]}, key)
                assert status == 200, body
                answers.append(body)
            else:
                mixed = [{"tenant": t, "texts": ASK[t][n % 2:]} for t in ASK]
                status, body, _ = call(url, "/v1/predict", {"requests": mixed}, key)
                assert status == 200, body
                assert [r["tenant"] for r in body["results"]] == list(ASK)
                answers.extend(body["results"])

    failures = in_threads(client, 8)
    assert not failures, failures[:3]
    assert len(answers) == 8 * (3 + 3 * 3)
    for answer in answers:
        assert answer["version"] == "1" and answer["data_version"].startswith("md5:")
        same(answer, expected[answer["tenant"]])
    status, text, _ = call(url, "/metrics")
    batches = [line for line in text.splitlines() if line.startswith("tailor_api_batch_texts_count")]
    tenant_texts = [line for line in text.splitlines() if line.startswith("tailor_api_texts_total")]
    assert status == 200 and batches and tenant_texts
    requests = sum(1 for a in answers)
    assert float(batches[0].split()[-1]) < requests, "requests arriving together share a frozen pass"


def test_a_caller_queries_only_its_own_tenants(served):
    url, acme_key = served["url"], served["keys"]["acme"]
    status, body, headers = call(url, "/v1/tenants/acme/predict", {"texts": ["dog cat"]}, acme_key, rid="rid-acme-1")
    assert status == 200 and body["tenant"] == "acme" and headers["x-request-id"] == "rid-acme-1"
    status, body, _ = call(url, "/v1/tenants/globex/predict", {"texts": ["dog cat"]}, acme_key)
    assert status == 403 and "may not query tenant globex" in body["detail"]
    status, body, _ = call(url, "/v1/predict", {"requests": [{"tenant": "acme", "texts": ["a"]},
                                                             {"tenant": "globex", "texts": ["b"]}]}, acme_key)
    assert status == 403, "one foreign tenant refuses the whole mixed request"
    status, body, _ = call(url, "/v1/tenants/acme/predict", {"texts": ["dog", "cat\ud800"]}, acme_key)
    assert status == 422 and "text 2 is not Unicode text" in str(body), "a lone surrogate: refused, not a 500"
    assert call(url, "/v1/tenants/acme/predict", {"texts": ["dog"]})[0] == 401
    import http.client
    from urllib.parse import urlparse

    conn = http.client.HTTPConnection(urlparse(url).netloc, timeout=30)   # declares 5 MB, sends none of it
    conn.putrequest("POST", "/v1/tenants/acme/predict")
    for name, value in (("Authorization", f"Bearer {acme_key}"), ("Content-Type", "application/json"),
                        ("Content-Length", str(5 << 20))):
        conn.putheader(name, value)
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and b"serving.max_request_bytes" in response.read(), "refused before reading it"
    conn.close()
    assert call(url, "/v1/tenants/acme/predict", {"texts": ["dog"]}, "tk_not-a-key")[0] == 401
    assert "rid-acme-1" in served["log"].read_text(), "request ids are in the server's log"
    keys_file = (served["root"] / ".tailor" / "api-keys.json").read_text()
    assert acme_key not in keys_file and served["keys"]["all"] not in keys_file, "only hashes are stored"


def _artifact(root: Path, tenant: str, version: str) -> Path:
    from registry.storage import store

    uri = store.client().get_model_version_download_uri(f"tailor-tenant-{tenant}", version)
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    return Path(url2pathname(urlparse(uri).path)) / "data" / "artifacts" / "delta" / "delta.safetensors"


def test_a_tampered_delta_is_409_never_an_answer(served):
    url, key, root = served["url"], served["keys"]["all"], served["root"]
    path = _artifact(root, "umbrella", "1")
    original = path.read_bytes()
    path.write_bytes(original[:-4] + b"\x00\x00\x00\x01")
    for cached in (root / ".tailor" / "cache" / "models").glob("*/delta/delta.safetensors"):
        if cached.read_bytes() == original:  # the approval's checked copy: edited too, so it is fetched again
            cached.write_bytes(original[:-4] + b"\x00\x00\x00\x02")
    try:
        status, body, _ = call(url, "/v1/tenants/umbrella/predict", {"texts": ["rain snow"]}, key)
        assert status == 409, body
        assert "not the ones registered" in body["detail"] and "\n" not in body["detail"]
        status, body, _ = call(url, "/v1/predict", {"requests": [{"tenant": "umbrella", "texts": ["rain"]},
                                                                 {"tenant": "acme", "texts": ["dog cat"]}]}, key)
        assert status == 200 and body["results"][0]["status"] == 409 and "predictions" not in body["results"][0]
        assert body["results"][1]["tenant"] == "acme" and body["results"][1]["predictions"][0]["label"]
    finally:
        path.write_bytes(original)
    # restored: the next verification (serving.verify_seconds) serves it again
    deadline = time.monotonic() + 10
    while call(url, "/v1/tenants/umbrella/predict", {"texts": ["rain snow"]}, key)[0] != 200:
        assert time.monotonic() < deadline, "the restored delta was not served again"
        time.sleep(0.3)
    status, text, _ = call(url, "/metrics")
    assert 'tailor_api_refusals_total{tenant="umbrella"}' in text


def _wait_version(url, key, tenant, version, texts, limit=5.0):
    start = time.monotonic()
    while True:
        status, body, _ = call(url, f"/v1/tenants/{tenant}/predict", {"texts": texts}, key)
        assert status == 200, body
        if body["version"] == version:
            return body, time.monotonic() - start
        assert time.monotonic() - start < limit, f"{tenant} v{version} not served within {limit} s"
        time.sleep(0.1)


def test_approval_and_rollback_reach_serving_without_restart(served, capsys):
    from registry.review import approval

    url, key, root, ws, settings = served["url"], served["keys"]["all"], served["root"], served["ws"], served["settings"]
    texts = ASK["acme"]
    v1 = predict_cli(root, "acme", texts, capsys)
    assert call(url, "/v1/tenants/acme/predict", {"texts": texts}, key)[1]["version"] == "1"
    seen, stop = [], threading.Event()

    def hammer():  # requests during the swap: each answered wholly by v1 or wholly by v2
        while not stop.is_set():
            seen.append(call(url, "/v1/tenants/acme/predict", {"texts": texts}, key)[1])

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        approval.approve(ws, settings, "acme", "2", "alice", "new data", override_reason="tiny test model")
        body, took = _wait_version(url, key, "acme", "2", texts)
    finally:
        stop.set()
        thread.join(30)
    v2 = predict_cli(root, "acme", texts, capsys)
    same(body, v2)
    assert served["server"].poll() is None, "no restart"
    for answer in seen:
        same(answer, {"1": v1, "2": v2}[answer["version"]])
    approval.rollback(ws, settings, "acme", "alice", "back to v1")
    body, took = _wait_version(url, key, "acme", "1", texts)
    same(body, predict_cli(root, "acme", texts, capsys))


def test_tailor_predict_asks_the_running_server_and_says_so(served, capsys):
    """A cold `tailor predict` pays torch's import and the champion's load; with the workspace's
    serve-api up, the command asks it (the same engine and checks), says which path answered, and
    gives the answer the cold path gives. --cold still answers in the process."""
    import subprocess
    import sys

    texts = ASK["globex"]
    expected = predict_cli(served["root"], "globex", texts, capsys)
    script = ("import json, sys; from tailor.cli import main; code = main(sys.argv[1:]); "
              "print(json.dumps('torch' in sys.modules), file=sys.stderr); sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, "-w", str(served["root"]), "predict", "globex", *texts,
                           "--json"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "answered by the workspace's `tailor serve-api`" in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "false"  # no model was loaded in the command
    rows = json.loads(done.stdout)
    same({"predictions": rows}, expected)
    assert {r["version"] for r in rows} == {"1"}
    code, out = cli.main(["-w", str(served["root"]), "predict", "nobody-here", "hi"]), capsys.readouterr()
    assert code == 2 and "Traceback" not in out.err  # the server's refusal is the command's one line


def test_no_champion_is_404_and_sigterm_shuts_down_cleanly(served):
    url, key, server = served["url"], served["keys"]["all"], served["server"]
    status, body, _ = call(url, "/v1/tenants/nobody-here/predict", {"texts": ["x"]}, key)
    assert status == 404 and "no approved champion" in body["detail"]
    for n in range(3):  # made-up tenants grow no label series of /metrics (issue 31, finding 10)
        assert call(url, f"/v1/tenants/made-up-{n}/predict", {"texts": ["x"]}, key)[0] == 404
    status, text, _ = call(url, "/metrics")
    assert status == 200 and 'tenant="acme"' in text
    assert "made-up-" not in text and "nobody-here" not in text and 'tenant="unknown"' in text
    server.terminate()
    assert server.wait(30) in (0, -15)  # uvicorn re-raises SIGTERM once it has shut down
    log = served["log"].read_text()
    assert "shutting down: answering queued requests" in log and "Application shutdown complete" in log
