"""Drift: what the registry shows that the audit log does not explain.

Replaying every committed plan gives the state Tailor made (aliases, the tags it set, the versions
it created). Anything live that differs was changed outside Tailor: an alias moved in MLflow's UI,
a tag edited, a version deleted or created by hand. ``audit verify`` names each; serving refuses a
``@champion`` the replay does not put there.
"""
from __future__ import annotations

from registry.storage import store
from registry.trail import audit
from registry.trail.transitions import NEW, Plan
from workspace.tenants import BASE_MODEL_NAME, tenant_model_name

GOVERNED = ("tailor-tenant-%", BASE_MODEL_NAME)


def expected_state(records: list[dict]) -> dict[str, dict]:
    """model -> {"aliases": {alias: version}, "tags": {version: {tag: value}}, "model_tags": {...}}."""
    state: dict[str, dict] = {}
    for r in audit.effective(records):
        raw = (r.get("details") or {}).get("plan")
        if not raw:
            continue
        plan = Plan.from_json(raw)
        created = r.get("to") if plan.create else None

        def sub(v):
            return created if v == NEW else v

        st = state.setdefault(plan.model, {"aliases": {}, "tags": {}, "model_tags": {}})
        if plan.create:
            st["tags"][created] = dict(plan.create.get("tags") or {})
        for version, tags in plan.tags.items():
            st["tags"].setdefault(sub(version), {}).update({k: str(v) for k, v in tags.items()})
        for key, value in plan.model_tags.items():
            if value is None:
                st["model_tags"].pop(key, None)
            else:
                st["model_tags"][key] = str(value)
        for alias, target, only_if in plan.aliases:
            if target is not None:
                st["aliases"][alias] = sub(target)
            elif only_if is None or st["aliases"].get(alias) == sub(only_if):
                st["aliases"].pop(alias, None)
    return state


def _live(names: list[str] | None) -> tuple[dict, dict]:
    models, versions = {}, {}
    for pattern in GOVERNED if names is None else names:
        for rm in store.registered_models(pattern):
            if names is None or rm.name == pattern:
                models[rm.name] = {"aliases": {k: str(v) for k, v in rm.aliases.items()}, "tags": dict(rm.tags)}
        for mv in store.versions(pattern, like=names is None):
            versions.setdefault(mv.name, {})[str(mv.version)] = dict(mv.tags)
    return models, versions


def differences(tenants: list[str] | None = None, base: bool = True) -> list[str]:
    """One line per difference between the live registry and the replayed audit log: of every
    governed model, or (an incremental verify) of ``tenants`` and, with ``base``, tailor-base only."""
    if tenants is None:
        expected, models, versions = expected_state(audit.records()), *_live(None)
    else:
        scopes = [*tenants, *([audit.BASE_KEY] if base else [])]
        names = [tenant_model_name(t) if t != audit.BASE_KEY else BASE_MODEL_NAME for t in scopes]
        expected = {}
        for scope in scopes:
            expected.update(expected_state(audit.records(None, scope)))
        models, versions = _live(names)
        expected = {k: v for k, v in expected.items() if k in names}
    out = []
    for name in sorted(set(expected) | set(models)):
        exp = expected.get(name, {"aliases": {}, "tags": {}, "model_tags": {}})
        live = models.get(name)
        if live is None:
            out.append(f"{name}: the registered model was deleted outside Tailor")
            continue
        for alias in sorted(set(exp["aliases"]) | set(live["aliases"])):
            want, got = exp["aliases"].get(alias), live["aliases"].get(alias)
            if want == got:
                continue
            if got is None:
                out.append(f"{name}: @{alias} was removed outside Tailor (the audit log says v{want})")
            elif want is None:
                out.append(f"{name}: @{alias} points to v{got} but no audit record put it there "
                           "(set outside Tailor)")
            else:
                out.append(f"{name}: @{alias} points to v{got} but the audit log says v{want} "
                           "(alias moved outside Tailor)")
        live_versions = versions.get(name, {})
        for version in sorted(exp["tags"], key=lambda v: int(v) if str(v).isdigit() else 0):
            if version not in live_versions:
                out.append(f"{name}: v{version} was deleted outside Tailor")
                continue
            for key, value in sorted(exp["tags"][version].items()):
                got = live_versions[version].get(key)
                if got != value:
                    out.append(f"{name}: v{version} tag {key} is {_show(got)}, the audit log says {_show(value)} "
                               "(edited outside Tailor)")
        for version in sorted(set(live_versions) - set(exp["tags"]), key=int):
            out.append(f"{name}: v{version} has no register record (created outside Tailor)")
        for key in sorted(set(exp["model_tags"]) | ({k for k in live["tags"] if k in ("rollback_request",)})):
            if exp["model_tags"].get(key) != live["tags"].get(key):
                out.append(f"{name}: model tag {key} differs from the audit log (edited outside Tailor)")
    return out


def _show(value) -> str:
    if value is None:
        return "missing"
    text = str(value)
    return repr(text if len(text) <= 40 else text[:37] + "...")


def champion_problem(tenant: str, mv) -> str | None:
    """Why the live ``@champion`` ``mv`` may not be served, or None when the log backs it: the
    tenant's records are signed, none is missing (its own chain, and what this workspace saw of
    it), and their replay puts ``mv`` there with the tags the checks read."""
    name = tenant_model_name(tenant)
    recs = audit.records(tenant=tenant)
    forged = audit.check_scope(tenant, recs)
    if forged:
        return forged
    exp = expected_state(recs).get(name, {"aliases": {}, "tags": {}})
    want = exp["aliases"].get("champion")
    version = str(mv.version)
    if want != version:
        said = f"the audit log's champion is v{want}" if want else "no approval is recorded"
        return f"@champion points to v{version} but {said} (moved outside Tailor)"
    recorded = exp["tags"].get(version, {})
    for key in ("status", "delta_sha256", "base_digest", "labels_sha256", "tenant"):
        if key in recorded and mv.tags.get(key) != recorded[key]:
            return f"v{version} tag {key} was edited outside Tailor"
    return None
