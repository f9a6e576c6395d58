"""Helpers for the governance tests: a fresh MLflow store per test (a copy of one migrated sqlite
file, so no test pays the ~6 s schema migration twice), a tiny base, deltas built by hand, and a
worker other processes run to act on the same store at the same time."""
from __future__ import annotations

import json
import shutil
import sys
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

from registry.artifacts import base_model, candidates
from registry.storage import store
from registry.storage.reader import StoreReader
from workspace.paths import Workspace

PASSED = {"passed": True, "failures": []}
_TEMPLATE: dict = {}


def fresh_workspace(root: Path, settings=None, tracking_uri: str = "") -> tuple[Workspace, object]:
    """A workspace whose MLflow store is a copy of an already migrated empty sqlite file, or the
    database ``tracking_uri`` (a fresh PostgreSQL database, which MLflow migrates on first use)."""
    root = Path(root)
    ws = Workspace(root).ensure()
    (root / "params.yaml").write_text(json.dumps({"stores": {"tracking_uri": tracking_uri}}) + "\n"
                                      if tracking_uri else "{}\n", encoding="utf-8")
    if tracking_uri:
        if settings is None:
            from tests.conftest import tiny_settings

            settings = tiny_settings()
        settings = settings.replace("stores", tracking_uri=tracking_uri)
        store.configure(ws, settings)
        return ws, settings
    if "db" not in _TEMPLATE:
        template = Path(str(root) + "-template.db")
        from mlflow import MlflowClient

        MlflowClient(tracking_uri=f"sqlite:///{template}").search_experiments()
        _TEMPLATE["db"] = template
    ws.mlflow_db.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(_TEMPLATE["db"], ws.mlflow_db)
    if settings is None:
        from tests.conftest import tiny_settings

        settings = tiny_settings()
    store.configure(ws, settings)
    return ws, settings


@contextmanager
def read_only(ws: Workspace, settings):
    """The store as a read command opens it (``registry.storage.reader``'s view, no MLflow), then
    MLflow's client again, as the next command would have it."""
    store.configure(ws, settings, read_only=True)
    try:
        assert isinstance(store.client(), StoreReader)
        yield
    finally:
        store.configure(ws, settings)


def tiny_settings_with(**sections):
    """The tests' tiny settings with some fields of other sections changed."""
    from tests.conftest import tiny_settings

    settings = tiny_settings()
    for section, changes in sections.items():
        settings = settings.replace(section, **changes)
    return settings


def make_base(ws: Workspace, name: str = "base", data_versions: dict | None = None, approve: bool = True,
              evidence: dict | None = None, actor: str = "service:meta-train"):
    """A tiny base registered as a candidate by the meta-training service and (``approve``)
    approved by a reviewer, so it is ``@current``; returns (its ref, its folder)."""
    import torch
    from safetensors.torch import save_file

    from lightning_modules.delta import sha256_file
    folder = ws.root / "bases" / name
    folder.mkdir(parents=True, exist_ok=True)
    save_file({"x": torch.arange(4.0) + zlib.crc32(name.encode()) % 1000}, str(folder / "base.safetensors"))
    (folder / "base.json").write_text(json.dumps(
        {"format": "tailor-base/1", "digest": f"sha256:{sha256_file(folder / 'base.safetensors')}"}))
    ref = base_model.register_base(folder, params={}, metrics={}, actor=actor,
                                   data_versions=data_versions, evidence=evidence)
    if approve:
        from registry.review import bases
        from workspace.settings import Settings

        if ref.version != getattr(base_model.get_base() if store.alias_version("tailor-base", "current") else None,
                                  "version", None):
            bases.approve_base(ws, Settings(), ref.version, "base-reviewer", "reviewed the evidence")
    return ref, folder


def make_delta(ws: Workspace, base, tenant: str, qa=0.9, baseline=0.8, labels=("Billing", "Login"),
               manifest_tenant=None, seed=0):
    import torch

    from lightning_modules.delta import save_delta
    g = torch.Generator().manual_seed(seed)
    tensors = {"L0.attention.self.query.lora_A": torch.randn(2, 8, generator=g),
               "L0.attention.self.query.lora_B": torch.zeros(8, 2),
               "head.weight": torch.randn(len(labels), 8, generator=g), "head.bias": torch.zeros(len(labels))}
    manifest = {"tenant": manifest_tenant or tenant, "labels": list(labels),
                "base": {"name": base.name, "version": base.version, "digest": base.digest},
                "data_version": f"md5:{tenant}-{seed}", "code_version": "git:test",
                "adaptation": {"algorithm": "sgd-inner-loop", "inner_steps": 4, "seed": 0, "head": "meta-learned"},
                "metrics": {"query_accuracy": qa, "baseline_accuracy": baseline, "baseline_method": "logreg",
                            "n_support": 8, "n_query": 4}}
    return save_delta(ws.root / "deltas" / f"{tenant}-{time.monotonic_ns()}", tensors, manifest)


def register(ws, base, base_dir, tenant, requested_by="service:scheduler", held_out=None, validation=None,
             **kw) -> str:
    delta = make_delta(ws, base, tenant, **kw)
    return candidates.register_candidate(ws, tenant, delta, base_dir, base=base, validation=validation or PASSED,
                                         requested_by=requested_by, flow_run_id="flow-1", held_out=held_out)


def worker(argv: list[str]) -> int:
    """``python -m tests.governance ROOT ACTION TENANT VERSION WHO [GO-FILE]``: one transition, as
    another process would run it (waits for GO-FILE to exist, so two workers start together)."""
    root, action, tenant, version, who = argv[:5]
    go = Path(argv[5]) if len(argv) > 5 else None
    from registry.review import approval
    from workspace.errors import UserError
    from workspace.settings import load_settings

    ws = Workspace(Path(root))
    settings = load_settings(ws.params_file)
    store.configure(ws, settings)
    store.client().search_experiments()  # connect before the start signal
    while go is not None and not go.exists():
        time.sleep(0.01)
    try:
        if action == "approve":
            approval.approve(ws, settings, tenant, version, who, "worker", override_reason="test")
        elif action == "reject":
            approval.reject(ws, tenant, version, who, "worker")
        elif action == "rollback":
            approval.rollback(ws, settings, tenant, who, "worker")
        elif action == "approve-base":
            from registry.review import bases

            bases.approve_base(ws, settings, version, who, "worker")
        elif action == "reject-base":
            from registry.review import bases

            bases.reject_base(ws, version, who, "worker")
        elif action == "erase":   # the registry's part of an erasure: archive, then mark the bases
            from registry.review import erasure

            erasure.begin(ws, tenant, who, "worker", [])
            erasure.mark_bases(ws, tenant, who, "worker")
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(worker(sys.argv[1:]))


def forge_append(move_head: bool = True, **fields) -> dict:
    """What a writer of the tracking store can do without the workspace signing key: append a
    correctly chained audit record through MLflow's API and move the registry's head tag."""
    from registry.trail import audit

    c = store.client()
    exp = c.get_experiment_by_name(audit.EXPERIMENT).experiment_id
    head = json.loads(c.get_experiment(exp).tags["head"])
    record = {"seq": head["count"] + 1, "at": audit.now(), "actor": "bob", "action": "approve", "tenant": "acme",
              "from": None, "to": "9", "reason": "forged", "details": {}, "prev_hash": head["hash"], **fields}
    record["hash"] = audit.record_hash(record)
    tags = audit._tags_of(record)
    if record.get("phase") == "intent":
        tags["open"] = "no"  # as a commit closes it
    run = c.create_run(exp, tags=tags)
    c.set_terminated(run.info.run_id, "FINISHED")
    if move_head:
        c.set_experiment_tag(exp, "head", json.dumps({"count": record["seq"], "hash": record["hash"]}))
    return record



def share_signing_key(src_root, clone) -> None:
    """What a teammate does before `tailor init` in a clone: copy the team's audit signing key (kept
    out of git; the clone's audit-signing.pub pins it)."""
    import shutil
    from pathlib import Path

    key = Path(src_root) / ".tailor" / "audit-signing.key"
    (Path(clone) / ".tailor").mkdir(parents=True, exist_ok=True)
    shutil.copy2(key, Path(clone) / ".tailor" / "audit-signing.key")


def approve_base_cli(root, version: str = "1", who: str = "base-reviewer") -> None:
    """What a second person does after `tailor meta-train` (bases are reviewed, four eyes): approve
    the base through the CLI, so `tailor adapt` starts from it."""
    import os

    from tailor import cli

    before = os.environ.get("TAILOR_USER")
    os.environ["TAILOR_USER"] = who
    try:
        assert cli.main(["-w", str(root), "review", "approve", "--base-version", version,
                         "--reason", "held-out evidence read"]) == 0
    finally:
        if before is None:
            os.environ.pop("TAILOR_USER", None)
        else:
            os.environ["TAILOR_USER"] = before
