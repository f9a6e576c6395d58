"""`tailor init`: a workspace folder with params.yaml, dvc.yaml, git + DVC, and the embedded stores' folders."""
from __future__ import annotations

from pathlib import Path

from workspace import pipeline, signing, versioning
from workspace.paths import Workspace
from workspace.settings import Settings, default_params_yaml, load_settings


def init_workspace(root: str | Path, settings: Settings | None = None) -> Workspace:
    """Idempotent: an existing params.yaml is kept (and validated), missing parts are created, and
    dvc.yaml is brought up to date with the tenants' data."""
    ws = Workspace.find(root)
    ws.root.mkdir(parents=True, exist_ok=True)
    ws.ensure()
    if not ws.params_file.exists():
        ws.params_file.write_text(default_params_yaml(settings), encoding="utf-8")
    current = load_settings(ws.params_file)
    pipeline.sync(ws, current)
    signing.ensure_key(ws, current.stores.signing_key)  # 0600, outside the MLflow store; its public half pinned
    versioning.init_repo(ws, current.stores)
    return ws
