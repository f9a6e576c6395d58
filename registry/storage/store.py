"""Where MLflow keeps Tailor's runs and models: set explicitly by ``configure``, never at import."""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import Settings

# MLflow reads these when it is imported or first used: no progress bars, no telemetry calls.
_QUIET_ENV = {
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",  # "View run at http://..." after each run on a server
}
_QUIET_LOGGERS = ("mlflow", "alembic", "sqlalchemy", "urllib3", "git")

_state: dict = {"uri": None, "workspace": None, "artifact_root": None, "client": None}


def _quiet(debug: bool) -> None:
    os.environ.update(_QUIET_ENV)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING if debug else logging.ERROR)
    if not debug:
        warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")


def configure(ws: Workspace, settings: Settings, debug: bool = False, read_only: bool = False) -> str:
    """Point MLflow tracking and registry at the workspace's stores; return the tracking URI.

    Idempotent: every command and flow task calls it before its first registry call. MLflow's own
    logs and warnings stay off the user's screen unless ``debug``. ``read_only`` (a command that
    only reads: review list, lineage, audit verify, predict): on a database MLflow has already set up
    (sqlite or PostgreSQL), ``client()`` is ``registry.storage.reader``'s view and MLflow is not
    imported at all; the next plain ``configure`` (any later command in the same process) goes back
    to MLflow's client.
    """
    uri, root = locations(ws, settings)
    _refuse_lost_database(ws, uri)
    if read_only:
        from registry.storage.reader import readable

        if readable(uri):
            _state.update(uri=uri, workspace=ws, artifact_root=None, lock=settings.stores.lock, client=None,
                          read_only=True, settings=settings, debug=debug, signing_key=settings.stores.signing_key)
            return uri
    _quiet(debug)
    import mlflow  # imported here so that importing ``registry`` costs nothing

    _quiet(debug)  # mlflow's import installs its own handlers and levels: set ours again
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    if uri != _state["uri"] or _state.get("read_only"):
        _state["client"] = None
    _state.update(uri=uri, workspace=ws, artifact_root=root.rstrip("/") if root else None,
                  lock=settings.stores.lock, read_only=False, signing_key=settings.stores.signing_key)
    return uri


def _refuse_lost_database(ws: Workspace, uri: str) -> None:
    """A sqlite tracking database that is gone while the workspace shows it had one (an audit
    anchor, registered artifacts) is refused: creating an empty one would hide every version,
    approval and audit record ("no pending candidates")."""
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri[len("sqlite:///"):])
    if db.exists():
        return
    try:  # the workspace's audit anchor names the store it anchors
        anchored = json.loads((ws.state_dir / "audit-head.json").read_text(encoding="utf-8")).get("store", uri) == uri
    except (OSError, ValueError, AttributeError):
        anchored = (ws.state_dir / "audit-head.json").exists()
    artifacts = db == ws.mlflow_db and ws.artifacts_dir.is_dir() and any(ws.artifacts_dir.iterdir())
    if anchored or artifacts:
        had = "an audit anchor of it" if anchored else "registered artifacts"
        raise UserError(f"the tracking database {db} is missing, but this workspace has {had}: restore "
                        "the database from a backup (Tailor does not create an empty one over a history)")


def writable() -> None:
    """After ``configure(read_only=True)``: MLflow's own client on the same store, for a read
    path that finds work to finish (an interrupted transition)."""
    if _state.get("read_only"):
        configure(_state["workspace"], _state["settings"], _state.get("debug", False))


def locations(ws: Workspace, settings: Settings) -> tuple[str, str | None]:
    """(tracking URI, artifact root for new experiments) of the workspace's store: the settings',
    else the embedded sqlite database and the workspace's artifact folder; a tracking server
    chooses its own root (None)."""
    uri = settings.stores.tracking_uri or f"sqlite:///{ws.mlflow_db}"
    root = settings.stores.artifact_location
    if not root and not is_server(uri):
        root = Path(ws.artifacts_dir).resolve().as_uri()
    return uri, root


def is_server(uri: str) -> bool:
    """A tracking server (``http(s)://``, ``databricks``) rather than a database or folder that
    MLflow opens itself (sqlite, postgresql, ...: artifacts then need a root of their own)."""
    return uri.startswith(("http://", "https://", "databricks"))


def _check_shared_artifacts(experiment) -> None:
    """On a tracking server, refuse an artifact root that is a path on one machine's disk:
    versions registered there could not be loaded from any other clone."""
    where = experiment.artifact_location or ""
    if is_server(_state["uri"]) and (where.startswith("file:") or "://" not in where and ":" not in where[:20]):
        raise UserError(f"MLflow experiment {experiment.name!r} on {_state['uri']} keeps artifacts at "
                        f"{where!r}, a local path other machines cannot read: start the server with "
                        "`mlflow server --serve-artifacts`, or set stores.artifact_location (e.g. s3://...)")


def _require() -> None:
    if _state["uri"] is None:
        raise RuntimeError("registry.storage.store.configure(ws, settings) must be called before any registry call")


def lock_kind() -> str:
    """"file" or "registry": ``stores.lock``, where "auto" means the registry's database for a
    tracking server or a shared database such as PostgreSQL (machines share no folder) and a file
    lock for the embedded sqlite store."""
    _require()
    kind = _state.get("lock") or "auto"
    if kind == "auto":  # a file lock serialises one machine's processes; a shared database has many machines
        return "file" if str(_state["uri"]).startswith(("sqlite:", "file:")) or "://" not in str(_state["uri"]) \
            else "registry"
    return kind


def signing_key_setting() -> str:
    """``stores.signing_key`` as ``configure`` was given it ("" = the default place)."""
    return _state.get("signing_key") or ""


def set_signing_key_setting(value: str) -> None:
    """After ``tailor audit rotate-key`` moved the key: the new ``stores.signing_key``."""
    _state["signing_key"] = value


def tracking_uri() -> str:
    _require()
    return _state["uri"]


def workspace() -> Workspace | None:
    """The workspace ``configure`` was called with (caches, locks, the audit anchor); None when
    only a URI was configured (a pyfunc loaded by ``mlflow models serve``)."""
    _require()
    return _state["workspace"]


def configure_uri(uri: str) -> None:
    """Point at a tracking/registry URI without a workspace (read-only checks in a pyfunc)."""
    _quiet(False)
    if uri != _state["uri"] or _state.get("read_only"):
        _state.update(client=None, uri=uri, workspace=None, artifact_root=None, read_only=False)


def client():
    """An ``MlflowClient`` on the configured tracking and registry stores (the read-only database
    view after ``configure(read_only=True)``)."""
    _require()
    if _state["client"] is None and _state.get("read_only"):
        from registry.storage.reader import StoreReader

        _state["client"] = StoreReader(_state["uri"])
    if _state["client"] is None:
        from mlflow import MlflowClient

        _state["client"] = MlflowClient(tracking_uri=_state["uri"], registry_uri=_state["uri"])
        if _state["workspace"] is not None:   # a Tailor command, not a pyfunc loaded by a server
            from registry.storage import owners

            owners.fail_dead_runs_once(_state["client"], _state["uri"])
    return _state["client"]


def errors() -> type[Exception]:
    """The exception ``client()`` raises (it carries MLflow's ``error_code``): MLflow's, or the
    read-only view's, so that looking at the store never imports MLflow for its exception class."""
    if _state.get("read_only"):
        from registry.storage.reader import ReadError

        return ReadError
    from mlflow.exceptions import MlflowException

    return MlflowException


def experiment_id(name: str) -> str | None:
    """The id of experiment ``name``, created under the configured artifact root if new (read-only:
    None when it does not exist yet)."""
    c = client()
    found = c.get_experiment_by_name(name)
    if _state.get("read_only"):
        return None if found is None or found.lifecycle_stage == "deleted" else found.experiment_id
    from mlflow.exceptions import MlflowException

    if found is None:
        # no root configured on a tracking server: the server's own (mlflow-artifacts: when it
        # serves artifacts), so every clone reads the same artifacts through it
        root = _state["artifact_root"]
        try:
            c.create_experiment(name, artifact_location=f"{root}/{name}" if root else None)
        except MlflowException:  # created meanwhile by another process
            pass
        found = c.get_experiment_by_name(name)
    if found.lifecycle_stage == "deleted":
        c.restore_experiment(found.experiment_id)
    _check_shared_artifacts(found)
    return found.experiment_id


def json_tag(tags: dict, key: str) -> dict:
    """A tag holding a JSON object, parsed; {} when it is missing or not one (a version from before
    the tag, or one edited outside Tailor: what reads it decides what that means)."""
    try:
        value = json.loads(tags.get(key) or "{}")
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def ensure_registered_model(name: str, description: str = "") -> None:
    from mlflow.exceptions import MlflowException

    c = client()
    try:
        c.get_registered_model(name)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        try:
            c.create_registered_model(name, description=description or None)
        except MlflowException as again:
            if again.error_code != "RESOURCE_ALREADY_EXISTS":
                raise


def model_version(name: str, version: str | int, what: str):
    """A model version, or ``UserError`` naming ``what`` (e.g. "tenant acme") if it is unknown."""
    failed = errors()
    version = str(version).lstrip("v")
    if not version.isdigit():
        raise UserError(f"{version!r} is not a version number: use e.g. 3")
    try:
        return client().get_model_version(name, version)
    except failed as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            raise UserError(f"{what} has no version {version}: see `tailor review list --status all`") from None
        raise


def alias_version(name: str, alias: str):
    """The version ``alias`` points to, or None (also when the model does not exist)."""
    failed = errors()
    try:
        return client().get_model_version_by_alias(name, alias)
    except failed as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE"):
            return None
        raise


def has_model(name: str) -> bool:
    failed = errors()
    try:
        client().get_registered_model(name)
        return True
    except failed as exc:
        if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
            return False
        raise


def versions(name: str, like: bool = False, tags: dict[str, str] | None = None) -> list:
    """Every version of registered model ``name`` (or of every model matching the SQL LIKE
    pattern ``name`` when ``like``) whose tags equal ``tags``, by model name then version."""
    query = f"name LIKE '{name}'" if like else f"name = '{name}'"
    for key, value in (tags or {}).items():  # Tailor's own tag names and values (no quotes in them)
        if not key.isidentifier() or "'" in value or "\\" in value:
            raise ValueError(f"tag filter {key}={value!r}")
        query += f" AND tags.{key} = '{value}'"
    out, token = [], None
    while True:
        page = client().search_model_versions(query, max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return sorted(out, key=lambda mv: (mv.name, int(mv.version)))


def registered_models(pattern: str) -> list:
    """Registered models whose name matches the SQL LIKE ``pattern`` (with their aliases)."""
    out, token = [], None
    while True:
        page = client().search_registered_models(f"name LIKE '{pattern}'", max_results=1000, page_token=token)
        out.extend(page)
        token = page.token
        if not token:
            return out


def aliases(name: str) -> dict[str, list[str]]:
    """version -> its aliases (search results do not carry aliases on every backend)."""
    out: dict[str, list[str]] = {}
    for alias, version in client().get_registered_model(name).aliases.items():
        out.setdefault(str(version), []).append(alias)
    return out


def flatten(prefix: str, value, out: dict | None = None) -> dict:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``: MLflow params and metrics are flat."""
    out = {} if out is None else out
    if isinstance(value, dict):
        for key, item in value.items():
            flatten(f"{prefix}.{key}" if prefix else str(key), item, out)
    elif isinstance(value, (list, tuple)):
        out[prefix] = json.dumps(value)
    else:
        out[prefix] = value
    return out


def numeric(values: dict) -> dict[str, float]:
    """The finite numbers among ``values`` (bools excluded): what MLflow can log as metrics."""
    return {k: float(v) for k, v in values.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and float(v) == float(v)
            and abs(float(v)) != float("inf")}
