"""A read-only view of the embedded MLflow store (sqlite) for commands that only look
(``tailor review list``, ``lineage``, ``audit verify``, ``predict``).

Importing MLflow's client and opening its sqlalchemy store (alembic, pandas, the genai entities)
takes 2-4 s on a 2-core machine before the first query; reading the same tables with ``sqlite3``
in read-only mode answers in a fraction of that. It implements exactly the registry and tracking
calls those paths make, with MLflow's results (``tests/unit/test_reader.py`` compares the two
on one store) in MLflow's default workspace, and nothing else: writes, and every store that is
not sqlite, go through MLflow's own client (``registry.storage.store``).
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

WORKSPACE = "default"  # MLflow's default workspace (its tables carry a workspace column)
DELETED_STAGE = "Deleted_Internal"  # MLflow keeps deleted versions as rows with this stage
_NAME = re.compile(r"^\s*name\s*(=|LIKE)\s*'((?:[^'\\]|\\.)*)'\s*$", re.IGNORECASE)
_TAG = re.compile(r"^\s*tags\.(\w+)\s*=\s*'([^'\\]*)'\s*$")


class ReadError(Exception):
    """Not found (``error_code`` as MLflow says it) or a query this view does not support."""

    def __init__(self, message: str, error_code: str = "RESOURCE_DOES_NOT_EXIST"):
        super().__init__(message)
        self.error_code = error_code


class Page(list):
    """A page of results with MLflow's ``token`` for the next one (None: the last page)."""

    token: str | None = None


@dataclass
class RegisteredModel:
    name: str
    description: str | None
    tags: dict
    aliases: dict = field(default_factory=dict)  # alias -> version (int, as MLflow's sqlite store gives it)


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
    start_time: int | None
    end_time: int | None
    lifecycle_stage: str


@dataclass
class RunData:
    tags: dict


@dataclass
class Run:
    info: RunInfo
    data: RunData


@dataclass
class ModelVersion:
    name: str
    version: int
    creation_timestamp: int
    last_updated_timestamp: int
    description: str | None
    source: str
    run_id: str | None
    status: str
    tags: dict
    aliases: list


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, or None for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):].split("?", 1)[0])


class SqliteReader:
    """The registry calls of ``MlflowClient`` the read path uses, over a read-only connection."""

    def __init__(self, path: Path) -> None:
        if not Path(path).is_file():
            raise ReadError(f"no MLflow store at {path}")
        self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)

    def _all(self, sql: str, args=()) -> list[tuple]:
        return self.db.execute(sql, args).fetchall()

    def search_registered_models(self, filter_string: str = "", max_results: int = 1000,
                                 page_token: str | None = None) -> Page:
        return _page(self._models(*_name_filter(filter_string)), max_results, page_token)

    def _models(self, clause: str, args: tuple) -> list[RegisteredModel]:
        rows = self._all(f"SELECT name, description FROM registered_models WHERE workspace = ? AND {clause}",
                         (WORKSPACE, *args))
        names = [r[0] for r in rows]
        tags = self._by_name("registered_model_tags", "key, value", names)
        aliases = self._by_name("registered_model_aliases", "alias, version", names)
        found = [RegisteredModel(n, d, dict(tags.get(n, [])), {a: int(v) for a, v in aliases.get(n, [])})
                 for n, d in rows]
        return sorted(found, key=lambda m: m.name)

    def search_model_versions(self, filter_string: str = "", max_results: int = 1000,
                              page_token: str | None = None) -> Page:
        """As MLflow's search: aliases not filled, newest update first."""
        clause, args = _name_filter(filter_string)
        rows = self._all("SELECT name, version, creation_time, last_updated_time, description, source, run_id, "
                         f"status FROM model_versions WHERE workspace = ? AND current_stage != ? AND {clause}",
                         (WORKSPACE, DELETED_STAGE, *args))
        tags: dict[tuple, dict] = {}
        names = sorted({r[0] for r in rows})
        for name, version, key, value in self._in("SELECT name, version, key, value FROM model_version_tags "
                                                  "WHERE workspace = ? AND name", names, (WORKSPACE,)):
            tags.setdefault((name, int(version)), {})[key] = value
        found = [ModelVersion(n, int(v), c, u, d, s, r, st, tags.get((n, int(v)), {}), [])
                 for n, v, c, u, d, s, r, st in rows]
        found.sort(key=lambda mv: (-mv.last_updated_timestamp, mv.name, -mv.version))
        return _page(found, max_results, page_token)

    def get_registered_model(self, name: str) -> RegisteredModel:
        found = self._models("name = ?", (name,))
        if not found:
            raise ReadError(f"Registered Model with name={name} not found")
        return found[0]

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        if not str(version).isdigit():
            raise ReadError(f"Model version must be an integer, got {version!r}", "INVALID_PARAMETER_VALUE")
        rows = self._all("SELECT name, version, creation_time, last_updated_time, description, source, run_id, "
                         "status FROM model_versions WHERE workspace = ? AND current_stage != ? AND name = ? "
                         "AND version = ?", (WORKSPACE, DELETED_STAGE, name, int(version)))
        if not rows:
            raise ReadError(f"Model Version (name={name}, version={version}) not found")
        n, v, c, u, d, src, run, st = rows[0]
        tags = dict(self._all("SELECT key, value FROM model_version_tags WHERE workspace = ? AND name = ? "
                              "AND version = ?", (WORKSPACE, name, v)))
        aliases = [a for (a,) in self._all("SELECT alias FROM registered_model_aliases WHERE workspace = ? "
                                           "AND name = ? AND version = ? ORDER BY alias", (WORKSPACE, name, v))]
        return ModelVersion(n, int(v), c, u, d, src, run, st, tags, aliases)

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
        i, n, where, stage = rows[0]
        tags = dict(self._all("SELECT key, value FROM experiment_tags WHERE experiment_id = ?", (i,)))
        return Experiment(str(i), n, where, stage, tags)

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None,
                    max_results: int = 1000, page_token: str | None = None) -> Page:
        """Active runs whose tags equal the filter's (``tags.a = 'x' AND tags.b = 'y'``), ordered by
        one ``tags.KEY ASC|DESC`` (runs without it last, as MLflow's sqlite store does)."""
        where, args = ["r.lifecycle_stage = 'active'",
                       f"r.experiment_id IN ({','.join('?' * len(experiment_ids))})"], list(experiment_ids)
        for part in [p for p in re.split(r"\s+AND\s+", filter_string or "", flags=re.IGNORECASE) if p.strip()]:
            m = _TAG.match(part)
            if not m:
                raise ReadError(f"filter {filter_string!r} is not supported here", "INVALID_PARAMETER_VALUE")
            where.append("EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ? AND t.value = ?)")
            args += [m.group(1), m.group(2)]
        order = "r.start_time DESC, r.run_uuid"
        if order_by:
            m = re.match(r"^tags\.(\w+)\s+(ASC|DESC)$", order_by[0].strip(), re.IGNORECASE)
            if not m or len(order_by) > 1:
                raise ReadError(f"order {order_by!r} is not supported here", "INVALID_PARAMETER_VALUE")
            order = (f"(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) IS NULL, "
                     f"(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = ?) {m.group(2)}, "
                     "r.start_time DESC, r.run_uuid")
            args += [m.group(1)] * 2
        rows = self._all("SELECT r.run_uuid, r.experiment_id, r.status, r.start_time, r.end_time, r.lifecycle_stage "
                         f"FROM runs r WHERE {' AND '.join(where)} ORDER BY {order}", args)
        start = int(page_token or 0)
        chosen = rows[start:start + max_results]
        tags: dict[str, dict] = {}
        ids = [r[0] for r in chosen]
        for run_id, key, value in self._in("SELECT run_uuid, key, value FROM tags WHERE run_uuid", ids):
            tags.setdefault(run_id, {})[key] = value
        page = Page(Run(RunInfo(r[0], str(r[1]), r[2], r[3], r[4], r[5]), RunData(tags.get(r[0], {})))
                    for r in chosen)
        page.token = str(start + max_results) if start + max_results < len(rows) else None
        return page

    def _in(self, sql: str, keys: list, args: tuple = ()) -> list[tuple]:
        """Rows of ``sql`` + `` IN (keys)``, asked 500 keys at a time (sqlite's bound on parameters)."""
        rows = []
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            rows += self._all(f"{sql} IN ({','.join('?' * len(chunk))})", (*args, *chunk))
        return rows

    def _by_name(self, table: str, columns: str, names: list[str]) -> dict[str, list]:
        out: dict[str, list] = {}
        for row in self._in(f"SELECT name, {columns} FROM {table} WHERE workspace = ? AND name", names, (WORKSPACE,)):
            out.setdefault(row[0], []).append(row[1:])
        return out

    def __getattr__(self, name: str):
        raise ReadError(f"{name} is not part of the read-only registry view", "INVALID_PARAMETER_VALUE")


def _name_filter(text: str) -> tuple[str, tuple]:
    if not (text or "").strip():
        return "1 = 1", ()
    m = _NAME.match(text)
    if not m:
        raise ReadError(f"filter {text!r} is not supported here", "INVALID_PARAMETER_VALUE")
    return ("name = ?" if m.group(1) == "=" else "name LIKE ?"), (m.group(2),)


def _page(items: list, max_results: int, page_token: str | None) -> Page:
    start = int(page_token or 0)
    page = Page(items[start:start + max_results])
    page.token = str(start + max_results) if start + max_results < len(items) else None
    return page
