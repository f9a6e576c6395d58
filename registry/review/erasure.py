"""Erasure, the registry's part: a departing tenant's versions archived so they can never serve,
the text-bearing tags of those versions overwritten, the artifacts of its runs deleted, every base
trained on its data marked (never adapted from again), and the retraining planned.

Each registry change is a transition (plan, executor, audit intent and commit); the audit records
carry ids, versions and data hashes, never the tenant's texts. The tenant model's ``erasure`` tag
says where an erasure stands (``started`` until every store is clean, then ``done``), so a killed
``tailor tenant erase`` is finished by running it again.
"""
from __future__ import annotations

import json
import sqlite3
import time

from registry.artifacts import base_model
from registry.artifacts.base_model import ERASED
from registry.artifacts.describe import describe
from registry.storage import store
from registry.storage.names import APPROVED, CANDIDATE, CHAMPION, PENDING, PREFIX
from registry.trail import audit, identity, transitions
from workspace.paths import Workspace
from workspace.tenants import BASE_MODEL_NAME, check_tenant_id, tenant_model_name

ERASURE = "erasure"   # tenant model tag: {"state": "started" | "done", "at", "by", "data_versions"}
STATUS = "erased"     # a version's status once its tenant was erased: it never serves again
# tags whose values may quote the tenant's data (examples, reports): overwritten on erasure
SCRUBBED = {"data_change": json.dumps({"erased": True}), "validation_report": json.dumps({"erased": True}),
            "compare_error": "erased", "data_docs": ""}


def state(tenant: str) -> dict | None:
    """The tenant's erasure tag ({"state", "at", "by", "data_versions"}), None if never erased."""
    name = tenant_model_name(tenant)
    if not store.has_model(name):
        return None
    try:
        value = json.loads(store.client().get_registered_model(name).tags.get(ERASURE) or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def erased_tenants() -> dict[str, str]:
    """tenant -> "erased at T by W" (or "erasure under way since T") for every erased tenant."""
    out = {}
    for rm in store.registered_models(f"{PREFIX}%"):
        raw = rm.tags.get(ERASURE)
        if not raw or not rm.name.startswith(PREFIX):
            continue
        try:
            s = json.loads(raw)
        except ValueError:
            continue
        done = s.get("state") == "done"
        out[rm.name[len(PREFIX):]] = (f"erased at {s.get('at')} by {s.get('by')}" if done
                                      else f"erasure under way since {s.get('at')}")
    return out


# --- what an erasure touches ---------------------------------------------------------------------

def bases_with(tenant: str) -> list:
    """Base versions meta-trained on ``tenant``'s data (any of its data versions)."""
    if not store.has_model(BASE_MODEL_NAME):
        return []
    return [mv for mv in store.versions(BASE_MODEL_NAME) if f"data_version.{tenant}" in mv.tags]


def adapted_from(base_versions: set[str], skip: str | None = None) -> dict[str, list[dict]]:
    """tenant -> its champion and pending versions adapted from one of ``base_versions``: what must
    be re-adapted (as ordinary candidates) once a base without the erased data is approved."""
    out: dict[str, list[dict]] = {}
    champions = {rm.name: str(rm.aliases.get(CHAMPION)) for rm in store.registered_models(f"{PREFIX}%")
                 if CHAMPION in rm.aliases}
    for mv in store.versions(f"{PREFIX}%", like=True):
        tenant = mv.name[len(PREFIX):]
        if tenant == skip or mv.tags.get("base_version") not in base_versions:
            continue
        role = "champion" if champions.get(mv.name) == str(mv.version) else (
            "pending" if mv.tags.get("status") == PENDING else None)
        if role:
            out.setdefault(tenant, []).append({"version": str(mv.version), "role": role,
                                               "base_version": mv.tags.get("base_version")})
    return out


def runs_of(tenant: str) -> list[str]:
    """Every run of the tenant's experiment (adaptations registered or not)."""
    exp = store.client().get_experiment_by_name(tenant_model_name(tenant))
    if exp is None:
        return []
    out, token = [], None
    while True:
        page = store.client().search_runs([exp.experiment_id], max_results=1000, page_token=token)
        out += [r.info.run_id for r in page]
        token = page.token
        if not token:
            return out


def registry_plan(tenant: str) -> dict:
    """What the registry part of an erasure changes (``--dry-run``): versions archived, runs whose
    artifacts go, bases marked, and the re-adaptation and retraining it plans."""
    check_tenant_id(tenant)
    name = tenant_model_name(tenant)
    versions = store.versions(name) if store.has_model(name) else []
    aliases = store.aliases(name) if versions else {}
    bases = bases_with(tenant)
    current = store.alias_version(BASE_MODEL_NAME, base_model.CURRENT) if store.has_model(BASE_MODEL_NAME) else None
    affected = {str(b.version) for b in bases}
    return {
        "versions": [{"version": str(mv.version), "status": mv.tags.get("status", ""),
                      "aliases": sorted(aliases.get(str(mv.version), [])), "data_version": mv.tags.get("data_version", "")}
                     for mv in versions],
        "runs": runs_of(tenant) if versions or store.has_model(name) else [],
        "bases": [{"version": str(b.version), "status": b.tags.get("status") or APPROVED,
                   "current": current is not None and str(current.version) == str(b.version),
                   "trained_on": b.tags.get(f"data_version.{tenant}")} for b in bases],
        "readapt": adapted_from(affected, skip=tenant),
        "retrain": bool(current is not None and str(current.version) in affected),
    }


# --- the transitions -----------------------------------------------------------------------------

def plan_archive(tenant: str, actor: str, reason: str, versions: list, aliases: dict, data_versions: list[str],
                 at: str) -> transitions.Plan:
    """Every version of the tenant ``erased`` (so it never serves), its aliases removed, the tags
    that may quote its data overwritten, and the model's ``erasure`` tag set to ``started``."""
    tags, descriptions = {}, {}
    for mv in versions:
        v = str(mv.version)
        new = {"status": STATUS, "erased_at": at, "erased_by": actor, "labels": "[]",
               **{k: value for k, value in SCRUBBED.items() if k in mv.tags}}
        tags[v] = new
        descriptions[v] = describe({**mv.tags, **new}, "erased with the tenant's data")
    moves = [(alias, None, None) for alias in (CHAMPION, CANDIDATE) if any(alias in a for a in aliases.values())]
    return transitions.Plan(
        action="erase", model=tenant_model_name(tenant), tenant=tenant, actor=actor, reason=reason,
        frm=None, to=None, tags=tags, aliases=moves, descriptions=descriptions,
        model_tags={ERASURE: json.dumps({"state": "started", "at": at, "by": actor, "data_versions": data_versions},
                                        sort_keys=True)},
        details={"versions": sorted(tags, key=int), "data_versions": data_versions,
                 "was": {v: mv.tags.get("status", "") for v, mv in ((str(m.version), m) for m in versions)}})


def begin(ws: Workspace, tenant: str, actor: str, reason: str, data_versions: list[str]) -> dict:
    """Archive the tenant's versions (one transition). Already started: nothing new is recorded."""
    name = tenant_model_name(tenant)
    store.ensure_registered_model(name, f"Tailor tenant {tenant}: base + delta per version")

    def make():
        s = state(tenant)
        versions = store.versions(name)
        if s is not None and s.get("state") == "started":
            raise _Started(s)
        return plan_archive(tenant, actor, reason, versions, store.aliases(name), data_versions, audit.now())

    try:
        plan, commit = transitions.execute(ws, tenant, make)
    except _Started as started:
        return {"resumed": True, "since": started.state.get("at"), "versions": []}
    return {"resumed": False, "versions": plan.details["versions"], "audit_seq": commit["seq"]}


class _Started(Exception):
    def __init__(self, s: dict):
        self.state = s


def plan_mark_bases(tenant: str, bases: list, actor: str, reason: str, at: str) -> transitions.Plan | None:
    """The ``erased_data`` tag of every base trained on ``tenant``'s data names it; None when every
    one does already."""
    tags = {}
    for mv in bases:
        named = [t for t in mv.tags.get(ERASED, "").split(",") if t]
        if tenant not in named:
            tags[str(mv.version)] = {ERASED: ",".join(sorted(named + [tenant])), "erased_data_at": at}
    if not tags:
        return None
    return transitions.Plan(action="mark-erased-data", model=BASE_MODEL_NAME, tenant=None, actor=actor,
                            reason=reason, tags=tags, details={"erased_tenant": tenant, "bases": sorted(tags, key=int)})


def mark_bases(ws: Workspace, tenant: str, actor: str, reason: str) -> list[str]:
    """Mark the bases trained on ``tenant``'s data (one transition on tailor-base); their versions."""
    if not store.has_model(BASE_MODEL_NAME):
        return []

    def make():
        plan = plan_mark_bases(tenant, bases_with(tenant), actor, reason, audit.now())
        if plan is None:
            raise _Nothing()
        return plan

    try:
        plan, _ = transitions.execute(ws, None, make)
    except _Nothing:
        return [str(b.version) for b in bases_with(tenant)]
    return sorted(plan.tags, key=int)


class _Nothing(Exception):
    pass


def finish(ws: Workspace, tenant: str, actor: str, reason: str, summary: dict) -> dict:
    """The erasure's last record: ``erasure`` = done, with what was removed (counts, ids, hashes)."""
    name = tenant_model_name(tenant)

    def make():
        s = state(tenant) or {}
        done = {**s, "state": "done", "at": audit.now(), "by": actor}
        return transitions.Plan(action="erase-done", model=name, tenant=tenant, actor=actor, reason=reason,
                                model_tags={ERASURE: json.dumps(done, sort_keys=True)}, details=summary)

    _, commit = transitions.execute(ws, tenant, make)
    return commit


# --- the stores ----------------------------------------------------------------------------------

def delete_artifacts(tenant: str) -> dict:
    """Delete the artifacts of every run and logged model of the tenant's experiment, through
    MLflow's artifact repositories (local folder, S3, ...); returns what was deleted (ids)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    c = store.client()
    exp = c.get_experiment_by_name(tenant_model_name(tenant))
    if exp is None:
        return {"runs": [], "models": []}
    runs = runs_of(tenant)
    for run_id in runs:
        get_artifact_repository(c.get_run(run_id).info.artifact_uri).delete_artifacts()
    models = []
    for lm in _logged_models(c, exp.experiment_id):
        get_artifact_repository(lm.artifact_location).delete_artifacts()
        models.append(lm.model_id)
    return {"runs": runs, "models": models}


def _logged_models(c, experiment_id: str) -> list:
    out, token = [], None
    while True:
        page = c.search_logged_models(experiment_ids=[experiment_id], max_results=100, page_token=token)
        out += list(page)
        token = page.token
        if not token:
            return out


def cached_delta_keys(tenant: str) -> list[str]:
    """The prefixes under which serving cached this tenant's versions (``serving``: delta digest)."""
    name = tenant_model_name(tenant)
    if not store.has_model(name):
        return []
    return sorted({mv.tags["delta_sha256"][:32] for mv in store.versions(name) if mv.tags.get("delta_sha256")})


def compact_store(wait_s: float = 60.0) -> bool:
    """Rewrite the embedded sqlite store (VACUUM) so that overwritten tag values leave no bytes in
    free pages; False for a tracking server (its database is its operator's to compact)."""
    from registry.storage.reader import sqlite_path

    path = sqlite_path(store.tracking_uri())
    if path is None or not path.is_file():
        return False
    deadline = time.monotonic() + wait_s
    while True:
        db = sqlite3.connect(str(path), timeout=30)
        try:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.execute("VACUUM")
            return True
        except sqlite3.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)  # a reader holds the database: try again
        finally:
            db.close()


def require_actor(actor: str) -> str:
    return identity.require_person(actor, "erase a tenant")
