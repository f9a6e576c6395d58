"""Every registry state change in one place: a pure plan, then one executor that applies it.

As in Alembic and Django migrations, the plan (tags to set, aliases to move, the version to
create, the audit record) is data, testable without MLflow; the executor is the only code that
moves an alias. It holds the tenant's lock across processes, re-reads the state and plans under
that lock (so two reviewers cannot both pass the gates), writes the plan as an audit *intent*,
applies every step idempotently and writes the *commit*. A process killed at any point leaves an
open intent; the next transition of that tenant, serving it, or ``tailor audit verify --repair``
applies the plan again (each step is "make it so", never "toggle") and commits it.

``TAILOR_FAULT=<action>:<point>`` kills the process at that point (SIGKILL): the crash tests use it.
"""
from __future__ import annotations

import os
import signal
from dataclasses import asdict, dataclass, field

from registry.storage import store
from registry.trail import audit
from workspace.errors import UserError
from workspace.paths import Workspace

NEW = "$new"  # stands for the version a plan's ``create`` step makes
POINTS = ("after-intent", "after-create", "after-tags", "after-aliases", "before-commit", "after-commit")


@dataclass(frozen=True)
class Plan:
    """One state change of one registered model. ``aliases``: (alias, version or None to delete,
    only-if it currently points at this version or None); ``model_tags`` values None delete."""

    action: str
    model: str
    tenant: str | None
    actor: str
    reason: str
    frm: str | None = None
    to: str | None = None
    tags: dict = field(default_factory=dict)          # version -> {tag: value}
    aliases: list = field(default_factory=list)
    descriptions: dict = field(default_factory=dict)  # version -> text
    model_tags: dict = field(default_factory=dict)
    create: dict | None = None                        # {"source", "run_id", "model_id", "tags", "description"}
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Plan":
        data = dict(data)
        data["aliases"] = [tuple(a) for a in data.get("aliases", [])]
        return cls(**data)

    def key(self) -> str:
        return self.tenant or audit.BASE_KEY


def _fault(action: str, point: str) -> None:
    if os.environ.get("TAILOR_FAULT") == f"{action}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def _sub(value, created: str | None):
    return created if value == NEW else value


def _ensure_version(plan: Plan) -> str:
    """The version ``plan.create`` describes: found by its run (a retry) or created now."""
    spec = plan.create
    c = store.client()
    for mv in c.search_model_versions(f"name = '{plan.model}' AND run_id = '{spec['run_id']}'"):
        if mv.source == spec["source"]:
            return str(mv.version)
    kwargs = {"model_id": spec["model_id"]} if spec.get("model_id") else {}
    mv = c.create_model_version(plan.model, spec["source"], spec["run_id"], tags=spec.get("tags") or {},
                                description=spec.get("description"), **kwargs)
    return str(mv.version)


def apply(plan: Plan) -> str | None:
    """Make the registry match ``plan`` (idempotent); returns the created version, if any."""
    c = store.client()
    created = None
    if plan.create is not None:
        created = _ensure_version(plan)
        _fault(plan.action, "after-create")
    for version, tags in plan.tags.items():
        version = _sub(version, created)
        for key, value in tags.items():
            c.set_model_version_tag(plan.model, version, key, str(value))
    for key, value in plan.model_tags.items():
        if value is None:
            c.delete_registered_model_tag(plan.model, key) if key in c.get_registered_model(plan.model).tags else None
        else:
            c.set_registered_model_tag(plan.model, key, str(value))
    _fault(plan.action, "after-tags")
    for alias, target, only_if in plan.aliases:
        target = _sub(target, created)
        if target is not None:
            c.set_registered_model_alias(plan.model, alias, target)
            continue
        current = store.alias_version(plan.model, alias)
        if current is not None and (only_if is None or str(current.version) == str(_sub(only_if, created))):
            c.delete_registered_model_alias(plan.model, alias)
    _fault(plan.action, "after-aliases")
    for version, text in plan.descriptions.items():
        c.update_model_version(plan.model, _sub(version, created), description=text)
    return created


def _commit(ws: Workspace, plan: Plan, intent: dict, created: str | None, outcome: str = "applied") -> dict:
    _fault(plan.action, "before-commit")
    record = audit.append(ws, actor=plan.actor, action=plan.action, tenant=plan.tenant, frm=plan.frm,
                          to=_sub(plan.to, created), reason=plan.reason, phase="commit",
                          intent=intent["seq"], details={"outcome": outcome})
    _fault(plan.action, "after-commit")
    return record


def recover(ws: Workspace, tenant: str | None) -> list[dict]:
    """Finish every open intent of ``tenant`` (None: tailor-base); call under its lock. Which
    intents are open is what the signed head of the log says (``audit.open_intents``): an intent
    is open until its commit is appended, and no tag can reopen one."""
    done = []
    for intent in audit.open_intents(tenant):
        from mlflow.exceptions import MlflowException

        plan = Plan.from_json(intent["details"]["plan"])
        try:
            created = apply(plan)
        except MlflowException as exc:
            # what the plan acts on is gone (e.g. the run to register was deleted): record that
            # nothing happened; anything else (a busy database) leaves the intent for the next try
            if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
                raise
            commit = _commit(ws, plan, intent, None, outcome="aborted")
        else:
            commit = _commit(ws, plan, intent, created)
        done.append(commit)
    return done


def execute(ws: Workspace, tenant: str | None, make_plan) -> tuple[Plan, dict]:
    """Under the tenant's lock: finish open intents, plan on fresh state, record, apply, commit.

    ``make_plan()`` reads the registry and returns a ``Plan`` (or raises ``UserError``: nothing is
    written). Returns the plan and its commit record (``to`` names a created version).
    """
    with audit.lock(ws, tenant or audit.BASE_KEY):
        recover(ws, tenant)
        plan = make_plan()
        intent = audit.append(ws, actor=plan.actor, action=plan.action, tenant=plan.tenant, frm=plan.frm,
                              to=plan.to, reason=plan.reason, phase="intent",
                              details={**plan.details, "plan": plan.to_json()})
        _fault(plan.action, "after-intent")
        created = apply(plan)
        return plan, _commit(ws, plan, intent, created)


def preview(tenant: str | None, make_plan) -> dict:
    """What ``execute`` would do (``--dry-run``): the same plan on the current state, every check of
    ``make_plan`` run, nothing recorded or applied. An open intent is named, not finished."""
    pending = audit.open_intents(tenant) if tenant else []
    plan = make_plan()
    return {"dry_run": True, "action": plan.action, "tenant": plan.tenant, "from": plan.frm, "to": plan.to,
            "actor": plan.actor, "details": {k: v for k, v in plan.details.items() if k != "plan"},
            "interrupted_first": [r.get("action") for r in pending]}


def repair(ws: Workspace, tenants: list[str | None]) -> list[dict]:
    """Finish the open intents of ``tenants`` (``audit verify --repair``)."""
    done = []
    for tenant in tenants:
        with audit.lock(ws, tenant or audit.BASE_KEY):
            done += recover(ws, tenant)
    return done


def open_tenants() -> list[str | None]:
    """Tenants (None for tailor-base) with open intents."""
    found = {r.get("tenant") for r in audit.open_intents(None, every_tenant=True)}
    return sorted(found, key=lambda t: t or "")
