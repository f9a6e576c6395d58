"""The shared meta-learned base as versions of ``tailor-base``; ``@current`` is what new adaptations use.

A new base registers as a pending candidate (``@candidate``) with its evidence, like a tenant's
candidate; only an approval by someone other than who trained it (``registry.review.bases``)
makes it ``@current``. A tenant's registered version carries its own copy of the base it was
adapted from, so moving ``@current`` (an approval, or ``tailor rollback --base-version``) never
changes what an approved champion serves; it only changes what the next adaptation starts from.
A base trained on data that was later erased is marked (``erased_data``) and never adapted from.
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
from registry.storage.names import APPROVED, CANDIDATE, PENDING
from registry.trail import transitions
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.safe_io import sha256_file
from workspace.tenants import BASE_MODEL_NAME

EXPERIMENT = "tailor-meta-train"
CURRENT = "current"
ERASED = "erased_data"   # version tag: the erased tenants whose data this base was trained on
EVIDENCE = "evidence"    # version tag prefix: the held-out evidence's summary (evidence.json has it whole)
MAX_TAG = 5000


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
    """Summary tags of a base's held-out evidence, read generically (whatever accuracies and paired
    differences it holds): ``evidence.accuracy.<name>``, ``evidence.paired.<name>`` ("mean ci95 n"),
    ``evidence.n_tenants``, ``evidence.n_queries``, ``evidence.held_out_tenants``."""
    if not evidence:
        return {}
    out = {"evidence_sha256": hashlib.sha256(json.dumps(evidence, sort_keys=True, default=str).encode()).hexdigest()}
    for name, value in sorted((evidence.get("accuracy") or {}).items()):
        if isinstance(value, (int, float)):
            out[f"{EVIDENCE}.accuracy.{name}"] = f"{value:.6f}"
        elif isinstance(value, dict):   # lightning_modules.evidence: mean, ci95, n
            out[f"{EVIDENCE}.accuracy.{name}"] = " ".join(str(value.get(k, "")) for k in ("mean", "ci95", "n"))
    for name, d in sorted((evidence.get("paired") or {}).items()):
        if isinstance(d, dict):
            out[f"{EVIDENCE}.paired.{name}"] = " ".join(str(d.get(k, "")) for k in ("mean", "ci95", "n"))
    for key in ("n_tenants", "n_splits", "n_queries"):
        if evidence.get(key) is not None:
            out[f"{EVIDENCE}.{key}"] = str(evidence[key])
    if evidence.get("held_out_tenants"):
        out[f"{EVIDENCE}.held_out_tenants"] = ",".join(map(str, evidence["held_out_tenants"]))[:MAX_TAG]
    return out


def _short_json(value) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= MAX_TAG else text[:MAX_TAG - 3] + "..."


def register_base(base_dir: Path, *, params: dict, metrics: dict, history: list[dict] | None = None,
                  tags: dict | None = None, actor: str = "service:meta-train",
                  data_versions: dict[str, str] | None = None, evidence: dict | None = None,
                  left_out: dict[str, str] | None = None, consent: dict[str, str] | None = None) -> BaseRef:
    """Log ``base_dir`` in one run of "tailor-meta-train" and register it as a pending candidate.

    ``actor`` is who trained it: four-eyes keeps them from approving it. ``data_versions`` (tenant ->
    md5 of the data it was meta-trained on), ``consent`` (tenant -> why its data could be used) and
    ``left_out`` (tenant -> why not) go into ``inputs.json`` beside the weights, and the data
    versions and who was left out into the version's tags, so an auditor can follow a tenant's
    lineage down to those files. ``evidence`` (accuracy on held-out tenants against the current
    base and the frozen baseline, paired differences with n and interval) is logged as
    ``evidence.json`` and summarised in tags. Registering the same base (same digest, same inputs)
    again returns the existing version: a retried flow task never creates a duplicate, while the
    same weights from other data are a new version with their own lineage. ``@current`` does not
    move: an approval (``registry.review.bases``) does that.
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
        tags = {**{k: str(v) for k, v in (tags or {}).items()}, **inputs, **evidence_tags(evidence),
                "status": PENDING, "requested_by": actor}
        if left_out:
            tags["left_out"] = _short_json(left_out)
        if data_versions is not None:
            record = {"data_versions": data_versions, "consent": consent or {}, "left_out": left_out or {}}
            (base_dir / "inputs.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
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
            if evidence:
                c.log_dict(run_id, evidence, "evidence.json")
            c.log_artifacts(run_id, str(base_dir), artifact_path="base")
        except BaseException:
            c.set_terminated(run_id, "FAILED")
            raise
        c.set_terminated(run_id, "FINISHED")
        create = {"source": f"{run.info.artifact_uri}/base", "run_id": run_id, "model_id": None,
                  "tags": {**tags, "digest": digest}, "description": f"meta-learned base {digest[:19]}, pending review"}

    def make():
        found = [mv for mv in store.versions(BASE_MODEL_NAME) if same(mv)]
        if found:
            raise _NoChange(str(found[-1].version))
        if create is None:
            raise UserError(f"{BASE_MODEL_NAME}: the version with digest {digest[:19]} disappeared; meta-train again")
        previous = store.alias_version(BASE_MODEL_NAME, CANDIDATE)
        gone = erased_inputs(data_versions or {})  # an erasure that began while it trained: marked now
        spec = create if not gone else {**create, "tags": {**create["tags"], ERASED: ",".join(gone)}}
        return transitions.Plan(
            action="register-base", model=BASE_MODEL_NAME, tenant=None, actor=actor,
            reason="meta-trained base registered for review",
            frm=None if previous is None else str(previous.version), to=transitions.NEW,
            create=spec, aliases=[(CANDIDATE, transitions.NEW, None)],
            details={"digest": digest, "run_id": create["run_id"], "train_data_versions": data_versions or {},
                     "left_out": left_out or {}, "evidence_sha256": create["tags"].get("evidence_sha256")})

    try:
        _, commit = transitions.execute(ws, None, make)
        version = str(commit["to"])
    except _NoChange as done:
        version = done.version
    return _ref(store.model_version(BASE_MODEL_NAME, version, BASE_MODEL_NAME))


def erased_inputs(data_versions: dict[str, str]) -> list[str]:
    """The tenants among ``data_versions`` whose erasure is under way, or erased that very data
    version (their model's ``erasure`` tag, which ``registry.review.erasure`` sets before it marks
    the bases under the same lock this registration holds)."""
    if not data_versions:
        return []
    out = []
    for rm in store.registered_models("tailor-tenant-%"):
        tenant = rm.name.removeprefix("tailor-tenant-")
        if tenant not in data_versions or not rm.tags.get("erasure"):
            continue
        try:
            s = json.loads(rm.tags["erasure"])
        except ValueError:
            continue
        if s.get("state") != "done" or data_versions[tenant] in (s.get("data_versions") or []):
            out.append(tenant)
    return sorted(out)


class _NoChange(Exception):
    """The base is already registered: nothing to record."""

    def __init__(self, version: str):
        self.version = version


def get_base(version: str | None = None) -> BaseRef:
    """Version ``version`` of tailor-base, or the ``@current`` one when None."""
    if version is None:
        mv = store.alias_version(BASE_MODEL_NAME, CURRENT)
        if mv is None:
            raise UserError("no base model: run `tailor meta-train` first")
        return _ref(mv)
    return _ref(store.model_version(BASE_MODEL_NAME, version, BASE_MODEL_NAME))


def base_problem(mv) -> str | None:
    """Why base version ``mv`` may not be adapted from (or made current), or None. A base from
    before bases were reviewed has no status and stays usable."""
    if mv.tags.get(ERASED):
        return (f"contains data of erased tenant(s) {mv.tags[ERASED]}; meta-train a base without it and have "
                "it approved")
    status = mv.tags.get("status")
    if status and status != APPROVED:
        return f"is {status}, not approved" + (
            f" (`tailor review approve --base-version {mv.version}` by someone other than "
            f"{mv.tags.get('requested_by') or 'who trained it'})" if status == PENDING else "")
    return None


def usable_base() -> BaseRef:
    """What ``adapt`` starts from: ``@current``, refused when it contains erased data or was never
    approved (so a base without approval is never adapted from)."""
    mv = store.alias_version(BASE_MODEL_NAME, CURRENT)
    if mv is None:
        waiting = store.alias_version(BASE_MODEL_NAME, CANDIDATE)
        if waiting is not None:
            raise UserError(f"no approved base model yet: {BASE_MODEL_NAME} v{waiting.version} waits for review "
                            f"(`tailor review approve --base-version {waiting.version}` by someone other than "
                            f"{waiting.tags.get('requested_by') or 'who trained it'})")
        raise UserError("no base model: run `tailor meta-train` first")
    problem = base_problem(mv)
    if problem:
        raise UserError(f"{BASE_MODEL_NAME} v{mv.version} (@current) {problem}")
    return _ref(mv)


def set_current_base(ws: Workspace, version: str, *, actor: str, reason: str = "") -> BaseRef:
    """Point ``@current`` at ``version`` (``tailor rollback --base-version``), through a transition.
    Only an approved base without erased data may become current again."""
    from registry.trail import identity

    actor = identity.require_person(actor, "roll back the base")

    def make():
        mv = store.model_version(BASE_MODEL_NAME, version, BASE_MODEL_NAME)
        problem = base_problem(mv)
        if problem:
            raise UserError(f"{BASE_MODEL_NAME} v{mv.version} cannot become current: it {problem}")
        ref = _ref(mv)
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
