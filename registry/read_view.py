"""The read-only sqlite view (``registry.reader``) plus the calls ``tailor predict`` makes: the
``@champion`` version with its tags and artifact location, and the tenant's audit records
(experiment by name, runs by tag), so serving one text never imports MLflow.

Kept apart from ``reader.py`` until the lead's read-only reader gains the same calls; each has
the name, arguments and results of ``MlflowClient``'s call (``tests/unit/test_read_view.py``
compares them on one store), so switching to that reader is an import change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from registry.reader import DELETED_STAGE, WORKSPACE, ModelVersion, Page, ReadError, RegisteredModel, SqliteReader

_TAG = re.compile(r"^\s*tags\.(\w+)\s*=\s*'([^'\\]*)'\s*$")
_ORDER = re.compile(r"^\s*tags\.(\w+)\s+(ASC|DESC)\s*$", re.IGNORECASE)
_VERSION = ("SELECT name, version, creation_time, last_updated_time, description, source, run_id, status "
            "FROM model_versions WHERE workspace = ? AND current_stage != ? AND name = ? AND version = ?")


@dataclass
class Experiment:
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: str
    tags: dict


@dataclass
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    lifecycle_stage: str


@dataclass
class RunData:
    tags: dict


@dataclass
class Run:
    info: RunInfo
    data: RunData


class ReadView(SqliteReader):
    """``SqliteReader`` with the registry and tracking reads of the serving path."""

    def get_registered_model(self, name: str) -> RegisteredModel:
        rows = self._all("SELECT name, description FROM registered_models WHERE workspace = ? AND name = ?",
                         (WORKSPACE, name))
        if not rows:
            raise ReadError(f"Registered Model with name={name} not found")
        tags = dict(self._all("SELECT key, value FROM registered_model_tags WHERE workspace = ? AND name = ?",
                              (WORKSPACE, name)))
        aliases = {a: int(v) for a, v in self._all("SELECT alias, version FROM registered_model_aliases "
                                                   "WHERE workspace = ? AND name = ?", (WORKSPACE, name))}
        return RegisteredModel(rows[0][0], rows[0][1], tags, aliases)

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        if not str(version).isdigit():
            raise ReadError(f"Model version must be an integer, got {version!r}", "INVALID_PARAMETER_VALUE")
        rows = self._all(_VERSION, (WORKSPACE, DELETED_STAGE, name, int(version)))
        if not rows:
            raise ReadError(f"Model Version (name={name}, version={version}) not found")
        n, v, created, updated, description, source, run_id, status = rows[0]
        tags = dict(self._all("SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? "
                              "AND version = ?", (WORKSPACE, name, v)))
        aliases = [a for (a,) in self._all("SELECT alias FROM registered_model_aliases WHERE workspace = ? "
                                           "AND name = ? AND version = ? ORDER BY alias", (WORKSPACE, name, v))]
        return ModelVersion(n, int(v), created, updated, description, source, run_id, status, tags, aliases)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        self.get_registered_model(name)
        rows = self._all("SELECT version FROM registered_model_aliases WHERE workspace = ? AND name = ? "
                         "AND alias = ?", (WORKSPACE, name, alias))
        if not rows:
            raise ReadError(f"Registered model alias {alias} not found.", "INVALID_PARAMETER_VALUE")
        return self.get_model_version(name, rows[0][0])

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        """Where the version's files are: as MLflow's sqlite store, its storage location (MLflow 3:
        the logged model's artifacts) or else its source."""
        mv = self.get_model_version(name, version)
        (location,), = self._all("SELECT storage_location FROM model_versions WHERE workspace = ? AND name = ? "
                                 "AND version = ?", (WORKSPACE, name, mv.version))
        return location or mv.source

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        rows = self._all("SELECT experiment_id FROM experiments WHERE workspace = ? AND name = ?", (WORKSPACE, name))
        return self.get_experiment(str(rows[0][0])) if rows else None

    def get_experiment(self, experiment_id: str) -> Experiment:
        rows = self._all("SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments "
                         "WHERE workspace = ? AND experiment_id = ?", (WORKSPACE, experiment_id))
        if not rows:
            raise ReadError(f"No Experiment with id={experiment_id} exists")
        i, name, where, stage = rows[0]
        tags = dict(self._all("SELECT key, value FROM experiment_tags WHERE experiment_id = ?", (i,)))
        return Experiment(str(i), name, where, stage, tags)

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None,
                    max_results: int = 1000, page_token: str | None = None) -> Page:
        """Active runs whose tags equal the filter's (``tags.a = 'x' AND tags.b = 'y'``), ordered by at
        most one ``tags.KEY ASC|DESC`` (runs without that tag last), else newest first."""
        ids = [str(i) for i in experiment_ids if i is not None]
        where, args = [f"r.lifecycle_stage = 'active' AND r.experiment_id IN ({','.join('?' * len(ids))})"], ids
        for part in [p for p in re.split(r"\s+AND\s+", filter_string or "", flags=re.IGNORECASE) if p.strip()]:
            m = _TAG.match(part)
            if not m:
                raise ReadError(f"filter {filter_string!r} is not supported here", "INVALID_PARAMETER_VALUE")
            where.append("EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?)")
            args += [m.group(1), m.group(2)]
        order, order_args = "r.start_time DESC, r.run_uuid", []
        if order_by:
            m = _ORDER.match(order_by[0]) if len(order_by) == 1 else None
            if not m:
                raise ReadError(f"order {order_by!r} is not supported here", "INVALID_PARAMETER_VALUE")
            value = "(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?)"
            order = f"{value} IS NULL, {value} {m.group(2).upper()}, r.start_time DESC, r.run_uuid"
            order_args = [m.group(1)] * 2
        rows = self._all("SELECT r.run_uuid, r.experiment_id, r.status, r.lifecycle_stage FROM runs r "
                         f"WHERE {' AND '.join(where)} ORDER BY {order}", (*args, *order_args)) if ids else []
        start = int(page_token or 0)
        chosen = rows[start:start + max_results]
        tags: dict[str, dict] = {}
        for i in range(0, len(chosen), 500):
            chunk = [r[0] for r in chosen[i:i + 500]]
            for run_id, key, value in self._all("SELECT run_uuid, key, value FROM tags WHERE run_uuid IN "
                                                f"({','.join('?' * len(chunk))})", chunk):
                tags.setdefault(run_id, {})[key] = value
        page = Page(Run(RunInfo(r[0], str(r[1]), r[2], r[3]), RunData(tags.get(r[0], {}))) for r in chosen)
        page.token = str(start + max_results) if start + max_results < len(rows) else None
        return page
