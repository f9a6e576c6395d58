"""The read-only view of MLflow's database store (``registry.storage.reader``) answers what MLflow's
own client answers, on a store that has been tampered with by hand, on sqlite and on PostgreSQL
(a real server the suite starts): the read commands (`review list`, `lineage`, `audit verify`,
`predict`) use it instead of importing MLflow."""
import pytest

from registry.review import approval, lineage
from registry.storage import store
from registry.trail import drift
from tests import governance as g
from workspace.settings import load_settings

MODEL = "tailor-tenant-rd"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def tampered(request, tmp_path_factory):
    uri = request.getfixturevalue("postgres").database("reader") if request.param == "postgresql" else ""
    ws, settings = g.fresh_workspace(tmp_path_factory.mktemp("reader") / "ws", tracking_uri=uri)
    base, base_dir = g.make_base(ws)
    v1 = g.register(ws, base, base_dir, "rd", seed=1)
    approval.approve(ws, settings, "rd", v1, "bob", "ok")
    v2 = g.register(ws, base, base_dir, "rd", seed=2)
    v3 = g.register(ws, base, base_dir, "rd", seed=3)
    g.register(ws, base, base_dir, "other", seed=1)
    c = store.client()
    c.set_registered_model_alias(MODEL, "champion", v2)  # moved by hand, as MLflow's UI would
    c.set_model_version_tag(MODEL, v3, "delta_sha256", "sha256:0")  # edited by hand
    c.delete_model_version("tailor-tenant-other", "1")
    return ws, load_settings(ws.params_file)


def _both(ws, settings, ask):
    """``ask()`` through MLflow's client, then through the read-only view."""
    store.configure(ws, settings)
    through_mlflow = ask()
    with g.read_only(ws, settings):
        return through_mlflow, ask()


def _version(mv) -> tuple:
    return (mv.name, int(mv.version), mv.creation_timestamp, mv.last_updated_timestamp, mv.description,
            mv.source, mv.run_id, str(mv.status).rsplit(".", 1)[-1], dict(mv.tags), sorted(mv.aliases))


def _error(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the error code is what callers read
        return exc.error_code
    return None


def test_registry_calls_answer_as_mlflow_does(tampered):
    ws, settings = tampered

    def ask():
        c = store.client()
        rm = c.get_registered_model(MODEL)
        return {"model": (rm.name, rm.description, dict(rm.tags), {k: int(v) for k, v in rm.aliases.items()}),
                "versions": [_version(c.get_model_version(MODEL, v)) for v in ("1", "2", "3")],
                "champion": _version(c.get_model_version_by_alias(MODEL, "champion")),
                "no such version": _error(lambda: c.get_model_version(MODEL, "9")),
                "deleted version": _error(lambda: c.get_model_version("tailor-tenant-other", "1")),
                "no such alias": _error(lambda: c.get_model_version_by_alias(MODEL, "nope")),
                "no such model": _error(lambda: c.get_registered_model("tailor-tenant-nobody")),
                "helpers": (store.has_model(MODEL), store.has_model("tailor-tenant-nobody"),
                            store.alias_version(MODEL, "candidate").version, store.alias_version(MODEL, "x")),
                "listing": [_version(mv) for mv in store.versions("tailor-tenant-%", like=True)],
                "pending": [_version(mv) for mv in store.versions("tailor-tenant-%", like=True,
                                                                  tags={"status": "pending"})]}

    through_mlflow, through_view = _both(ws, settings, ask)
    assert through_view == through_mlflow
    assert through_mlflow["champion"][1] == 2 and through_mlflow["no such version"] == "RESOURCE_DOES_NOT_EXIST"


def test_runs_and_experiments_answer_as_mlflow_does(tampered):
    ws, settings = tampered

    def ask():
        c = store.client()
        exp = c.get_experiment_by_name("tailor-audit")
        runs = lambda f: [(r.info.run_id, dict(r.data.tags)) for r in c.search_runs(  # noqa: E731
            [exp.experiment_id], filter_string=f, order_by=["tags.seq ASC"], max_results=3)]
        return {"experiment": (exp.experiment_id, exp.name, exp.artifact_location, exp.lifecycle_stage,
                               dict(exp.tags)),
                "missing": c.get_experiment_by_name("nobody"),
                "all": runs(""), "one tenant": runs("tags.tenant = 'rd'"),
                "two tags": runs("tags.tenant = 'rd' AND tags.action = 'approve'"),
                "page 2": [r.info.run_id for r in c.search_runs(
                    [exp.experiment_id], order_by=["tags.seq ASC"], max_results=3,
                    page_token=c.search_runs([exp.experiment_id], order_by=["tags.seq ASC"], max_results=3).token)]}

    through_mlflow, through_view = _both(ws, settings, ask)
    assert through_view == through_mlflow
    assert len(through_mlflow["all"]) == 3 and through_mlflow["page 2"]


def test_drift_and_lineage_read_the_same_through_both(tampered):
    ws, settings = tampered
    through_mlflow, through_view = _both(ws, settings, lambda: (drift.differences(), lineage.lineage(ws, "rd")))
    assert through_view == through_mlflow
    problems = " | ".join(through_mlflow[0])
    assert "@champion points to v2" in problems and "tag delta_sha256" in problems
    assert "tailor-tenant-other: v1 was deleted outside Tailor" in problems
    assert "moved outside Tailor" in through_mlflow[1]["drift"]


def test_review_list_asks_for_one_status_and_pages_as_mlflow_would(tampered):
    """`review list` reads only the versions with the asked status and only the page's tenants'
    aliases; a page is the slice of the whole listing, on both backends and both clients."""
    ws, settings = tampered

    def ask():
        page: dict = {}
        rows = approval.list_reviews("pending", settings)
        return rows, approval.list_reviews("pending", settings, limit=1, offset=1, page=page), page, \
            approval.list_reviews(None, settings)

    through_mlflow, through_view = _both(ws, settings, ask)
    assert through_view == through_mlflow
    rows, second, page, every = through_mlflow
    assert {r["status"] for r in rows} == {"pending"} and len(rows) == page["total"] >= 2
    assert second == rows[1:2] and [r for r in every if r["status"] == "pending"] == rows
