"""Where a deployment's state lives. Nothing is created at import; ``Workspace.ensure`` creates."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from workspace.tenants import check_tenant_id


@dataclass(frozen=True)
class Workspace:
    """One folder holding params.yaml, tenant data and the embedded stores under ``.tailor/``."""

    root: Path

    @classmethod
    def find(cls, root: str | os.PathLike | None = None) -> "Workspace":
        """``root``, else ``$TAILOR_HOME``, else the current directory."""
        chosen = root or os.environ.get("TAILOR_HOME") or os.getcwd()
        return cls(Path(chosen).expanduser().resolve())

    @property
    def params_file(self) -> Path:
        return self.root / "params.yaml"

    @property
    def data_dir(self) -> Path:
        return self.root / "data" / "tenants"

    def tenant_dir(self, tenant: str) -> Path:
        return self.data_dir / check_tenant_id(tenant)

    @property
    def state_dir(self) -> Path:
        return self.root / ".tailor"

    @property
    def mlflow_db(self) -> Path:
        return self.state_dir / "mlflow.db"

    @property
    def artifacts_dir(self) -> Path:
        return self.state_dir / "mlartifacts"

    @property
    def dvc_remote_dir(self) -> Path:
        return self.state_dir / "dvc-remote"

    @property
    def audit_log(self) -> Path:
        return self.state_dir / "audit.jsonl"

    @property
    def data_docs_dir(self) -> Path:
        return self.state_dir / "data_docs"

    def quarantine_dir(self, tenant: str) -> Path:
        return self.state_dir / "quarantine" / check_tenant_id(tenant)

    @property
    def cache_dir(self) -> Path:
        return self.state_dir / "cache"

    @property
    def validation_records(self) -> Path:
        """Great Expectations' recorded suite outcomes (``data_checks/recorded.py``)."""
        return self.cache_dir / "validation"

    @property
    def prefect_home(self) -> Path:
        return self.state_dir / "prefect"

    @property
    def runs_dir(self) -> Path:
        """Scratch space for training and adaptation outputs before they are logged."""
        return self.state_dir / "runs"

    def is_initialised(self) -> bool:
        return self.params_file.exists() and self.state_dir.is_dir()

    def ensure(self) -> "Workspace":
        """Create the folders a command writes into (idempotent)."""
        for path in (self.data_dir, self.state_dir, self.artifacts_dir, self.dvc_remote_dir,
                     self.cache_dir, self.prefect_home, self.runs_dir):
            path.mkdir(parents=True, exist_ok=True)
        return self
