"""The shared meta-learned base as versions of ``tailor-base``; ``@current`` is what new adaptations use.

A tenant's registered version carries its own copy of the base it was adapted from, so moving
``@current`` (a new meta-training, or ``tailor rollback --base-version``) never changes what an
approved champion serves; it only changes what the next adaptation starts from.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from registry.artifacts.checks import BaseRef
from registry.storage import owners, store
from registry.trail import transitions
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.safe_io import sha256_file
from workspace.tenants import BASE_MODEL_NAME

EXPERIMENT = "tailor-meta-train"
CURRENT = "current"


def _ref(mv) -> BaseRef:
    return BaseRef(mv.name, str(mv.version), mv.tags.get("digest", ""), mv.run_id or "")


def read_digest(base_dir: Path) -> str:
    try:
        info = json.loads((Path(base_dir) / "base.json").read_text(encoding="utf-8"))
        digest = info["digest"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UserError(f"{base_dir} is not a Tailor base model (no readable base.json with a digest)") from None
    return digest


def _metrics(c, run_id: str, metrics: dict, history: list[dict] | None) -> None:
    from mlflow.entities import Metric

    stamp = int(time.time() * 1000)
    rows = [Metric(k, v, stamp, 0) for k, v in store.numeric(store.flatten("", metrics)).items()]
    for i, point in enumerate(history or []):
        step = int(point.get("step", i))
        rows += [Metric(f"history.{k}", v, stamp, step)
                 for k, v in store.numeric(point).items() if k != "step"]
    for start in range(0, len(rows), 1000):  # MLflow's batch limit
        c.log_batch(run_id, metrics=rows[start:start + 1000])


def training_logger(run_name: str):
    """Lightning's MLflow logger for meta-training curves, in the base models' experiment of this
    workspace's tracking store (``register_base`` links the base's run to it)."""
    from pytorch_lightning.loggers import MLFlowLogger

    store.experiment_id(EXPERIMENT)   # created with the workspace's artifact root if it is new
    return MLFlowLogger(experiment_name=EXPERIMENT, run_name=run_name, tracking_uri=store.tracking_uri(),
                        tags={"kind": "meta-training curves", **owners.owner_tags()})


def input_tags(data_versions: dict[str, str] | None) -> dict[str, str]:
    """Tags naming the data version of every tenant a base was meta-trained on, and their digest."""
    if data_versions is None:
        return {}
    digest = hashlib.sha256(json.dumps(data_versions, sort_keys=True).encode()).hexdigest()
    return {"inputs_sha256": digest, **{f"data_version.{t}": v for t, v in sorted(data_versions.items())}}


def evidence_tags(evidence: dict | None) -> dict[str, str]:
    """``evidence.<a>-<b>``: "+1.2 ± 0.8 pts (n=12)" for each paired difference, and the counts."""
    if not evidence:
        return {}
    out = {"evidence.held_out_tenants": ",".join(evidence.get("held_out_tenants", []))[:5000],
           "evidence.n_splits": str(evidence.get("n_splits", 0))}
    for pair, d in sorted((evidence.get("paired") or {}).items()):
        ci = "" if d.get("ci95") is None else f" ± {100 * d['ci95']:.1f}"
        out[f"evidence.{pair}"] = f"{100 * d['mean']:+.1f}{ci} pts (n={d['n']})"
    return out


def register_base(base_dir: Path, *, params: dict, metrics: dict, history: list[dict] | None = None,
                  tags: dict | None = None, actor: str = "service:meta-train",
                  data_versions: dict[str, str] | None = None, evidence: dict | None = None) -> BaseRef:
    """Log ``base_dir`` in one run of "tailor-meta-train", register it and make it ``@current``.

    ``data_versions`` (tenant -> md5 of the data it was meta-trained on) go into the version's
    and run's tags and into ``inputs.json`` beside the weights, so an auditor can follow a tenant's
    lineage down to those files. ``evidence`` (``lightning_modules.evidence.summarise``: accuracy on
    tenants held out of training, paired against the current base and the frozen head with names)
    goes into ``evidence.json`` beside the weights and, in short, into ``evidence.*`` tags, so
    lineage and the review page show it. Registering the same base (same digest, same inputs) again returns
    the existing version: a retried flow task never creates a duplicate, while the same weights
    from other data are a new version with their own lineage.
    """
    from mlflow.entities import Param, RunTag

    base_dir = Path(base_dir)
    digest = read_digest(base_dir)
    c = store.client()
    ws = store.workspace()
    store.ensure_registered_model(BASE_MODEL_NAME, "Tailor's meta-learned base (shared by every tenant)")
    inputs = input_tags(data_versions)
    same = lambda mv: mv.tags.get("digest") == digest and mv.tags.get("inputs_sha256") == inputs.get("inputs_sha256")  # noqa: E731
    existing = [mv for mv in store.versions(BASE_MODEL_NAME) if same(mv)]
    create = None
    if not existing:
        tags = {**{k: str(v) for k, v in (tags or {}).items()}, **inputs, **evidence_tags(evidence)}
        if evidence is not None:
            (base_dir / "evidence.json").write_text(json.dumps(evidence, indent=2, sort_keys=True) + "\n",
                                                    encoding="utf-8")
        if data_versions is not None:
            (base_dir / "inputs.json").write_text(json.dumps({"data_versions": data_versions}, indent=2,
                                                             sort_keys=True) + "\n", encoding="utf-8")
        run = c.create_run(store.experiment_id(EXPERIMENT), run_name=f"base-{digest[7:19]}",
                           tags={**tags, "digest": digest, **owners.owner_tags()})
        run_id = run.info.run_id
        try:
            flat = {k: str(v)[:6000] for k, v in store.flatten("", params).items()}
            rows = [Param(k, v) for k, v in sorted(flat.items())]
            for start in range(0, len(rows), 100):
                c.log_batch(run_id, params=rows[start:start + 100])
            _metrics(c, run_id, metrics, history)
            c.log_batch(run_id, tags=[RunTag("mlflow.note.content", "Tailor base model")])
            if data_versions:
                c.log_dict(run_id, data_versions, "lineage/train_data_versions.json")
            c.log_artifacts(run_id, str(base_dir), artifact_path="base")
        except BaseException:
            c.set_terminated(run_id, "FAILED")
            raise
        c.set_terminated(run_id, "FINISHED")
        create = {"source": f"{run.info.artifact_uri}/base", "run_id": run_id, "model_id": None,
                  "tags": {**tags, "digest": digest}, "description": f"meta-learned base {digest[:19]}"}

    def make():
        previous = store.alias_version(BASE_MODEL_NAME, CURRENT)
        found = [mv for mv in store.versions(BASE_MODEL_NAME) if same(mv)]
        if found and previous is not None and str(previous.version) == str(found[-1].version):
            raise _NoChange()
        target = str(found[-1].version) if found else transitions.NEW
        if not found and create is None:
            raise UserError(f"{BASE_MODEL_NAME}: the version with digest {digest[:19]} disappeared; meta-train again")
        return transitions.Plan(
            action="register-base", model=BASE_MODEL_NAME, tenant=None, actor=actor,
            reason="meta-trained base registered as @current",
            frm=None if previous is None else str(previous.version), to=target,
            create=None if found else create, aliases=[(CURRENT, target, None)],
            details={"digest": digest, "run_id": (create or {}).get("run_id") or found[-1].run_id,
                     "train_data_versions": data_versions or {}})

    try:
        transitions.execute(ws, None, make)
    except _NoChange:
        pass
    return _ref(store.alias_version(BASE_MODEL_NAME, CURRENT))


class _NoChange(Exception):
    """The base is already registered and current: nothing to record."""


def get_base(version: str | None = None) -> BaseRef:
    """Version ``version`` of tailor-base, or the ``@current`` one when None."""
    if version is None:
        mv = store.alias_version(BASE_MODEL_NAME, CURRENT)
        if mv is None:
            raise UserError("no base model: run `tailor meta-train` first")
        return _ref(mv)
    return _ref(store.model_version(BASE_MODEL_NAME, version, BASE_MODEL_NAME))


def set_current_base(ws: Workspace, version: str, *, actor: str, reason: str = "") -> BaseRef:
    """Point ``@current`` at ``version`` (``tailor rollback --base-version``), through a transition."""
    from registry.trail import identity

    actor = identity.require_person(actor, "roll back the base")

    def make():
        ref = get_base(version)
        previous = store.alias_version(BASE_MODEL_NAME, CURRENT)
        return transitions.Plan(
            action="set-base", model=BASE_MODEL_NAME, tenant=None, actor=actor,
            reason=reason or f"base @current set to version {ref.version}",
            frm=None if previous is None else str(previous.version), to=ref.version,
            aliases=[(CURRENT, ref.version, None)], details={"digest": ref.digest})

    transitions.execute(ws, None, make)
    return get_base()


def download_base(ref: BaseRef, dst: Path | None = None) -> Path:
    """A local folder with base.safetensors and base.json, cached under ``dst`` by digest.

    A cached copy is reused when its base.json names the same digest; a fresh download is
    checked against the digest before it is put in place (atomically).
    """
    root = Path(dst) if dst is not None else store.workspace().cache_dir / "bases"
    folder = root / ref.digest.replace("sha256:", "")
    if (folder / "base.safetensors").is_file() and _cached_digest(folder) == ref.digest:
        return folder
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".download-"))
    try:
        import mlflow

        local = Path(mlflow.artifacts.download_artifacts(
            artifact_uri=f"models:/{ref.name}/{ref.version}", dst_path=str(tmp / "base")))
        if f"sha256:{sha256_file(local / 'base.safetensors')}" != ref.digest:
            raise UserError(f"{ref.name} v{ref.version}: stored base.safetensors does not match its "
                            "digest; refusing to use it")
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(local, folder)
        except OSError:  # another process put the same digest in place meanwhile
            if _cached_digest(folder) != ref.digest:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _cached_digest(folder: Path) -> str | None:
    try:
        return read_digest(folder)
    except UserError:
        return None
