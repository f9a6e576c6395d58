"""The fleet flow with broken tenants among good ones, on the real stores (DVC, Great Expectations,
MLflow, Prefect) and the tiny encoder: a tenant's failure, a crashed chunk or a kill -9 of the
whole command costs only what it was doing; candidates are registered while other chunks still
compute; a rerun registers nothing twice and an unchanged fleet adapts nothing."""
import json
import os
import subprocess
import sys
import time

import pytest

from tailor import cli
from tests import governance as g
from tests.conftest import synthetic_tenant, tiny_settings
from tests.e2e.test_loop import write_csv
from workspace import versioning
from workspace.create import init_workspace
from workspace.paths import Workspace

# sorted, in chunks of two: [a-good b-good] [c-edited d-invalid] [e-good f-good]
GOOD = {"a-good": ["animal", "food"], "b-good": ["tool", "music"], "e-good": ["sport", "car"],
        "f-good": ["weather", "law"]}
ALL = sorted([*GOOD, "c-edited", "d-invalid"])


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    root = tmp_path_factory.mktemp("fleet") / "ws"
    inbox = tmp_path_factory.mktemp("inbox")
    settings = tiny_settings(tenants="a-good,b-good,e-good", val_tenants="f-good")
    ws = init_workspace(root, settings.replace("schedule", chunk_size=2, workers=1))
    for i, (tenant, classes) in enumerate([*GOOD.items(), ("c-edited", ["animal", "law"])]):
        versioning.track(ws, tenant, write_csv(inbox / f"{tenant}.csv", *synthetic_tenant(classes, 10, seed=i)))
    one_label = synthetic_tenant(["food"], 10, seed=5)
    versioning.track(ws, "d-invalid", write_csv(inbox / "d-invalid.csv", *one_label))
    assert cli.main(["-w", str(root), "meta-train", "--register-anyway"]) == 0
    g.approve_base_cli(root)
    edited = versioning.data_file(ws, "c-edited")
    original = edited.read_bytes()
    edited.write_bytes(original + b"edited by hand,Animal\n")  # no data version describes it now
    os.environ["TAILOR_USER"] = "ci-bot"
    yield {"root": root, "ws": Workspace(root), "inbox": inbox, "c-edited": original}
    os.environ.pop("TAILOR_USER", None)


def versions(tenant):
    from registry.storage import store

    return [str(mv.version) for mv in store.versions(f"tailor-tenant-{tenant}")]


def adapt_all(root, capsys, *more):
    capsys.readouterr()
    code = cli.main(["-w", str(root), "adapt", "--all", *more])
    out = capsys.readouterr()
    record = json.loads((root / "pipeline" / "candidates.json").read_text())["tenants"]
    return code, out, record


def test_broken_tenants_and_a_crashed_chunk_cost_only_their_own(fleet, capsys, monkeypatch):
    """The third chunk crashes (its worker is lost), but only once the first chunk's candidates are
    registered: registration does not wait for the whole fleet."""
    from flows import adaptation

    real, calls = adaptation.load_encoder, []

    def crash_third_chunk(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            deadline = time.monotonic() + 60
            while not versions("a-good") and time.monotonic() < deadline:
                time.sleep(0.5)
            raise RuntimeError(f"worker lost (a-good registered: {bool(versions('a-good'))})")
        return real(*args, **kwargs)

    monkeypatch.setattr(adaptation, "load_encoder", crash_third_chunk)
    code, out, record = adapt_all(fleet["root"], capsys)
    assert code == 2 and len(out.err.strip().splitlines()) == 1 and "Traceback" not in out.err
    assert "2 new candidate(s) pending review" in out.out
    assert {t: versions(t) for t in ALL} == {"a-good": ["1"], "b-good": ["1"], "c-edited": [], "d-invalid": [],
                                             "e-good": [], "f-good": []}
    assert "changed outside Tailor" in record["c-edited"]["reason"] and record["c-edited"]["status"] == "failed"
    assert record["d-invalid"]["status"] == "invalid" and "label" in record["d-invalid"]["reason"]
    for tenant in ("e-good", "f-good"):
        assert record[tenant]["status"] == "error"
        assert "worker lost (a-good registered: True)" in record[tenant]["reason"], \
            "a-good was registered while the third chunk still ran"
        assert tenant in out.err


@pytest.mark.slow   # a minute or more of servers and subprocesses: `make test-slow` (keeps `make test` < 15 min)
def test_a_rerun_after_kill_9_registers_nothing_twice(fleet, capsys):
    root = fleet["root"]
    env = {**os.environ, "TAILOR_FAULT": "adapt:registered", "TAILOR_USER": "ci-bot"}
    killed = subprocess.run([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
                             "adapt", "--all"], env=env, capture_output=True, text=True, timeout=300)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert versions("e-good") == ["1"] and versions("f-good") == [], "killed right after e-good's registration"
    code, out, record = adapt_all(root, capsys)
    assert code == 2  # c-edited still fails, and says so
    assert {t: versions(t) for t in GOOD} == {t: ["1"] for t in GOOD}
    assert {t: record[t]["status"] for t in GOOD} == {"a-good": "skipped", "b-good": "skipped",
                                                      "e-good": "skipped", "f-good": "adapted"}
    assert "1 new candidate(s) pending review" in out.out and "3 unchanged" in out.out


def test_an_unchanged_fleet_adapts_nothing_and_a_changed_tenant_alone_is_adapted(fleet, capsys):
    root, ws = fleet["root"], fleet["ws"]
    versioning.data_file(ws, "c-edited").write_bytes(fleet["c-edited"])  # the hand edit undone
    code, out, record = adapt_all(root, capsys)
    assert code == 0 and versions("c-edited") == ["1"]
    code, out, record = adapt_all(root, capsys)
    assert code == 0 and "0 new candidate(s) pending review" in out.out
    assert {t: o["status"] for t, o in record.items()} == {**{t: "skipped" for t in [*GOOD, "c-edited"]},
                                                          "d-invalid": "invalid"}
    versioning.track(ws, "b-good", write_csv(fleet["inbox"] / "b2.csv", *synthetic_tenant(GOOD["b-good"], 9, seed=9)))
    code, out, record = adapt_all(root, capsys)
    assert code == 0 and versions("b-good") == ["1", "2"]
    assert record["b-good"]["status"] == "adapted" and record["b-good"]["version"] == "2"
    assert all(record[t]["status"] == "skipped" for t in ("a-good", "c-edited", "e-good", "f-good"))
    before = {t: versions(t) for t in ALL}
    code, out, record = adapt_all(root, capsys, "--force")  # adapts all again: the same deltas, no new versions
    assert code == 0 and {t: record[t]["status"] for t in GOOD} == {t: "adapted" for t in GOOD}
    assert {t: versions(t) for t in ALL} == before
    assert "0 new candidate(s) pending review" in out.out  # each named as the version it already was
    assert "b-good: v2 already existed (pending): the same delta" in out.out


def test_each_run_leaves_a_markdown_summary_in_prefect(fleet):
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["tailor-fleet-adaptation"])))
    assert found, "no fleet summary artifact"
    texts = [a.data for a in found]
    assert any("## Skipped" in t and "unchanged since v1" in t for t in texts)
    assert any("d-invalid" in t and "## Not registered" in t for t in texts)


_LIMITED_RUN = """
import json, sys, time
from pathlib import Path
from tailor import cli, commands

root = sys.argv[1]
commands.Context(Path(root)).open(prefect=True, mlflow=False)  # Prefect's settings before Prefect is imported
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName
from prefect.client.schemas.sorting import FlowRunSort
from flows import adaptation

real = adaptation.load_encoder
def slow_start(*args, **kwargs):  # each chunk takes seconds: without the limit, two would overlap
    time.sleep(3)
    return real(*args, **kwargs)
adaptation.load_encoder = slow_start
limited = sys.argv[2] == "limited"
if limited:
    with get_client(sync_client=True) as client:
        client.create_concurrency_limit(tag=adaptation.ADAPT_TAG, concurrency_limit=1)
try:
    code = cli.main(["-w", root, "adapt", "--all", "--force"])
finally:
    if limited:
        with get_client(sync_client=True) as client:
            client.delete_concurrency_limit_by_tag(adaptation.ADAPT_TAG)
with get_client(sync_client=True) as client:
    run = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)[0]
    chunks = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[run.id])),
                                   task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="adapt-")))
print(json.dumps({"code": code, "spans": sorted([t.start_time.timestamp(), t.end_time.timestamp()] for t in chunks)}))
"""


@pytest.mark.slow   # a minute or more of servers and subprocesses: `make test-slow` (keeps `make test` < 15 min)
def test_a_prefect_concurrency_limit_bounds_chunks_across_runs(fleet):
    """`prefect concurrency-limit create tailor-adapt 1` holds the chunks of a run with
    schedule.workers 2 (and any other run's) to one at a time; without the limit they overlap.
    Each run is a fresh process, as a command is (Prefect keeps client state per process)."""
    params = fleet["root"] / "params.yaml"
    original = params.read_text()
    assert "workers: 1" in original
    params.write_text(original.replace("workers: 1", "workers: 2"))
    env = {**os.environ, "TAILOR_USER": "ci-bot"}
    try:
        spans = {}
        for mode in ("limited", "free"):
            done = subprocess.run([sys.executable, "-c", _LIMITED_RUN, str(fleet["root"]), mode], env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            spans[mode] = json.loads(done.stdout.strip().splitlines()[-1])["spans"]
    finally:
        params.write_text(original)

    def overlapping(found):
        return any(found[i][1] > found[i + 1][0] for i in range(len(found) - 1))

    assert len(spans["limited"]) == 3 and not overlapping(spans["limited"]), spans["limited"]
    assert len(spans["free"]) == 3 and overlapping(spans["free"]), "two workers without a limit run chunks at once"


def _api(url, path, body=None):
    import urllib.request

    request = urllib.request.Request(f"{url}{path}", data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="GET" if body is None else "POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read() or b"null")


@pytest.mark.slow   # a minute or more of servers and subprocesses: `make test-slow` (keeps `make test` < 15 min)
def test_tailor_serve_deploys_on_params_cron_and_a_triggered_run_registers_candidates(fleet, tmp_path):
    """`tailor serve` against a real `prefect server start`: the deployment carries params.yaml's
    cron, timezone and parameters; a run triggered through the API is picked up by the served
    runner and registers the new tenant's candidate (and skips the unchanged ones)."""
    from tests.servers import prefect_server

    root, ws = fleet["root"], fleet["ws"]
    versioning.track(ws, "g-new", write_csv(fleet["inbox"] / "g-new.csv", *synthetic_tenant(["law", "food"], 8, seed=11)))
    params = root / "params.yaml"
    original = params.read_text()
    with prefect_server(tmp_path) as server:
        url = server.ready()
        params.write_text(original.replace('adapt_cron: "0 2 * * *"', 'adapt_cron: "30 3 * * 1"')
                          .replace('timezone: "UTC"', 'timezone: "Europe/Berlin"')
                          .replace('prefect_api_url: ""', f'prefect_api_url: "{url}"'))
        env = {k: v for k, v in os.environ.items() if not k.startswith("PREFECT_")}
        env.update(TAILOR_USER="ci-bot", PREFECT_RUNNER_POLL_FREQUENCY="1")
        log = open(tmp_path / "serve.log", "wb")
        serving = subprocess.Popen([sys.executable, "-c", "from tailor.cli import console; console()", "-w", str(root),
                                    "serve"], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline, deployment = time.monotonic() + 120, None
            while deployment is None and time.monotonic() < deadline:
                assert serving.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
                found = _api(url, "/deployments/filter", {"deployments": {"name": {"any_": ["nightly-adapt"]}}})
                deployment = found[0] if found else None
                time.sleep(1)
            assert deployment, (tmp_path / "serve.log").read_text()[-3000:]
            schedule = deployment["schedules"][0]["schedule"]
            assert (schedule["cron"], schedule["timezone"]) == ("30 3 * * 1", "Europe/Berlin")
            assert deployment["parameters"] == {"root": str(root), "requested_by": "service:scheduler"}
            run = _api(url, f"/deployments/{deployment['id']}/create_flow_run", {})
            state = None
            while time.monotonic() < deadline + 60 and state not in ("COMPLETED", "FAILED", "CRASHED"):
                time.sleep(1)
                state = _api(url, f"/flow_runs/{run['id']}")["state"]["type"]
            assert state == "COMPLETED", (tmp_path / "serve.log").read_text()[-3000:]
        finally:
            os.killpg(serving.pid, 2)  # Ctrl-C: the command stops serving
            try:
                serving.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(serving.pid, 9)
            log.close()
            params.write_text(original)
    assert versions("g-new") == ["1"]
    from registry.storage import store

    assert store.client().get_model_version("tailor-tenant-g-new", "1").tags["requested_by"] == "service:scheduler"
    record = json.loads((root / "pipeline" / "candidates.json").read_text())["tenants"]
    assert record["g-new"]["status"] == "adapted" and record["a-good"]["status"] == "skipped"


def test_review_list_reads_the_registry_without_mlflow_and_sees_what_mlflow_sees(fleet):
    """`review list` reads the embedded sqlite store directly (MLflow's import alone takes seconds):
    every row, alias, gate and champion must be what MLflow's own client gives."""
    from registry.review import approval
    from registry.storage import store
    from workspace.settings import load_settings

    ws = fleet["ws"]
    settings = load_settings(ws.params_file)
    store.configure(ws, settings)
    approval.approve(ws, settings, "a-good", "1", "alice", "checked", override_reason="test")
    mlflow_rows = approval.list_reviews(None, settings)
    with g.read_only(ws, settings):
        assert approval.list_reviews(None, settings) == mlflow_rows
        assert approval.list_reviews("pending", settings) == [r for r in mlflow_rows if r["status"] == "pending"]
    assert type(store.client()).__name__ == "MlflowClient", "the next command writes through MLflow again"
    assert any(r["champion_version"] == "1" for r in mlflow_rows) and len(mlflow_rows) >= 2


def test_predict_reads_the_champion_and_its_audit_records_as_mlflow_gives_them(fleet):
    """`tailor predict` reads the embedded store through ``registry.storage.reader``: the champion, its
    tags and files' location, and the tenant's audit records must be what MLflow's client gives."""
    from registry.artifacts import serving
    from registry.storage import store
    from registry.trail import audit, drift
    from workspace.settings import load_settings

    ws = fleet["ws"]
    settings = load_settings(ws.params_file)

    def seen() -> dict:
        c, mv = store.client(), serving.champion_version("a-good")
        return {"version": str(mv.version), "tags": dict(mv.tags), "source": mv.source,
                "aliases": sorted(mv.aliases),
                "uri": c.get_model_version_download_uri(mv.name, str(mv.version)),
                "records": audit.records(ws, "a-good"), "open": audit.open_intents("a-good"),
                "everyone": [r["seq"] for r in audit.all_records()],
                "problem": drift.champion_problem("a-good", mv),
                "missing": store.alias_version("tailor-tenant-a-good", "nothing-here")}

    store.configure(ws, settings)
    if store.alias_version("tailor-tenant-a-good", "champion") is None:  # run on its own
        from registry.review import approval

        approval.approve(ws, settings, "a-good", "1", "alice", "checked", override_reason="test")
    with_mlflow = seen()
    with g.read_only(ws, settings):
        assert seen() == with_mlflow
    assert with_mlflow["records"] and with_mlflow["uri"].startswith("file:") and with_mlflow["problem"] is None
