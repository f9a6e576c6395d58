"""A read-only view of MLflow's database store (sqlite or PostgreSQL) for commands that only look
(``tailor review list``, ``lineage``, ``audit verify``, ``predict``).

Importing MLflow's client and opening its sqlalchemy store (alembic, pandas, the genai entities)
takes 2-4 s on a 2-core machine before the first query, and so does importing MLflow's own ORM
models (they import the ``mlflow`` package); reading MLflow's tables, as MLflow created them, with
one SQL text through ``sqlite3`` (the embedded store) or SQLAlchemy (PostgreSQL) answers in a
fraction of that. It implements exactly the registry
and tracking calls those paths make, with MLflow's results (``tests/unit/test_reader.py`` and
``tests/e2e/test_postgres.py`` compare the two on a sqlite and on a PostgreSQL store) in MLflow's
default workspace, and nothing else: writes, and tracking servers, go through MLflow's own client
(``registry.storage.store``). The connection is read-only on both backends.
"""
from __future__ import annotations

import re
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


def is_database(uri: str) -> bool:
    """A database MLflow opens itself and this view can read (sqlite, PostgreSQL)."""
    return uri.startswith(("sqlite:///", "postgresql://", "postgresql+"))


def readable(uri: str) -> bool:
    """Whether ``uri`` is a database that MLflow has already set up (its registry table exists):
    a store MLflow never opened is left to MLflow, which creates and migrates it."""
    if not is_database(uri):
        return False
    path = sqlite_path(uri)
    if path is not None:
        return path.is_file()
    try:
        from sqlalchemy import inspect

        engine = _Connection(uri).engine
        try:
            return inspect(engine).has_table("registered_models")
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - unreachable or no driver: MLflow's client reports it properly
        return False


class _Connection:
    """One SQL text (named ``:parameters``), two drivers: Python's ``sqlite3`` for the embedded
    store (importing SQLAlchemy costs a cold ``predict`` 0.2-0.8 s), SQLAlchemy (psycopg) for
    PostgreSQL. Read-only on both: sqlite's ``mode=ro``, PostgreSQL's read-only transactions."""

    def __init__(self, uri: str) -> None:
        path = sqlite_path(uri)
        self.engine = self.db = None
        if path is not None:
            import sqlite3

            self.db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, check_same_thread=False)
            return
        from sqlalchemy import create_engine

        self.engine = create_engine(uri, connect_args={"options": "-c default_transaction_read_only=on"},
                                    pool_pre_ping=True, pool_size=2, max_overflow=4)

    def rows(self, sql: str, args: dict) -> list[tuple]:
        if self.db is not None:
            return self.db.execute(sql, args).fetchall()
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return [tuple(row) for row in connection.execute(text(sql), args)]

    def close(self) -> None:
        if self.db is not None:
            self.db.close()
        if self.engine is not None:
            self.engine.dispose()


class StoreReader:
    """The registry calls of ``MlflowClient`` the read path uses, over a read-only connection."""

    def __init__(self, uri: str | Path) -> None:
        uri = str(uri) if is_database(str(uri)) else f"sqlite:///{uri}"
        path = sqlite_path(uri)
        if path is not None and not path.is_file():
            raise ReadError(f"no MLflow store at {path}")
        self.uri = uri
        self.connection = _Connection(uri)

    def _all(self, sql: str, **args) -> list[tuple]:
        """Rows of ``sql`` (named ``:parameters``; a list value ``:x`` in ``IN :x`` is expanded)."""
        for name in [n for n, v in args.items() if isinstance(v, (list, tuple))]:
            values = list(args.pop(name))
            names = [f"{name}_{i}" for i in range(len(values))]
            sql = re.sub(rf":{name}\b", "(" + (", ".join(f":{n}" for n in names) or "NULL") + ")", sql)
            args.update(zip(names, values))
        return self.connection.rows(sql, args)

    def search_registered_models(self, filter_string: str = "", max_results: int = 1000,
                                 page_token: str | None = None) -> Page:
        return _page(self._models(*_name_filter(filter_string)), max_results, page_token)

    def _models(self, clause: str, args: dict) -> list[RegisteredModel]:
        rows = self._all(f"SELECT name, description FROM registered_models WHERE workspace = :ws AND {clause}",
                         ws=WORKSPACE, **args)
        names = [r[0] for r in rows]
        tags = self._by_name("registered_model_tags", "key, value", names)
        aliases = self._by_name("registered_model_aliases", "alias, version", names)
        found = [RegisteredModel(n, d, dict(tags.get(n, [])), {a: int(v) for a, v in aliases.get(n, [])})
                 for n, d in rows]
        return sorted(found, key=lambda m: m.name)

    def search_model_versions(self, filter_string: str = "", max_results: int = 1000,
                              page_token: str | None = None) -> Page:
        """As MLflow's search (a name clause and ``tags.KEY = 'value'`` clauses joined by AND):
        aliases not filled, newest update first."""
        parts = [p for p in re.split(r"\s+AND\s+", filter_string or "", flags=re.IGNORECASE) if p.strip()]
        names = [p for p in parts if not _TAG.match(p)]
        if len(names) > 1:
            raise ReadError(f"filter {filter_string!r} is not supported here", "INVALID_PARAMETER_VALUE")
        clause, args = _name_filter(names[0] if names else "")
        for i, part in enumerate(p for p in parts if _TAG.match(p)):
            m = _TAG.match(part)
            clause += (f" AND EXISTS (SELECT 1 FROM model_version_tags t WHERE t.workspace = model_versions.workspace "
                       f"AND t.name = model_versions.name AND t.version = model_versions.version "
                       f"AND t.key = :tk{i} AND t.value = :tv{i})")
            args.update({f"tk{i}": m.group(1), f"tv{i}": m.group(2)})
        rows = self._all("SELECT name, version, creation_time, last_updated_time, description, source, run_id, "
                         "status FROM model_versions WHERE workspace = :ws AND current_stage != :deleted "
                         f"AND {clause}", ws=WORKSPACE, deleted=DELETED_STAGE, **args)
        tags: dict[tuple, dict] = {}
        names = sorted({r[0] for r in rows})
        for name, version, key, value in self._in("SELECT name, version, key, value FROM model_version_tags "
                                                  "WHERE workspace = :ws AND name", names, ws=WORKSPACE):
            tags.setdefault((name, int(version)), {})[key] = value
        found = [ModelVersion(n, int(v), c, u, d, s, r, st, tags.get((n, int(v)), {}), [])
                 for n, v, c, u, d, s, r, st in rows]
        found.sort(key=lambda mv: (-mv.last_updated_timestamp, mv.name, -mv.version))
        return _page(found, max_results, page_token)

    def get_registered_model(self, name: str) -> RegisteredModel:
        found = self._models("name = :name", {"name": name})
        if not found:
            raise ReadError(f"Registered Model with name={name} not found")
        return found[0]

    def get_model_version(self, name: str, version: str | int) -> ModelVersion:
        if not str(version).isdigit():
            raise ReadError(f"Model version must be an integer, got {version!r}", "INVALID_PARAMETER_VALUE")
        key = {"ws": WORKSPACE, "name": name, "version": int(version)}
        rows = self._all("SELECT name, version, creation_time, last_updated_time, description, source, run_id, "
                         "status FROM model_versions WHERE workspace = :ws AND current_stage != :deleted "
                         "AND name = :name AND version = :version", deleted=DELETED_STAGE, **key)
        if not rows:
            raise ReadError(f"Model Version (name={name}, version={version}) not found")
        n, v, c, u, d, src, run, st = rows[0]
        tags = dict(self._all("SELECT key, value FROM model_version_tags WHERE workspace = :ws AND name = :name "
                              "AND version = :version", **key))
        aliases = [a for (a,) in self._all("SELECT alias FROM registered_model_aliases WHERE workspace = :ws "
                                           "AND name = :name AND version = :version ORDER BY alias", **key)]
        return ModelVersion(n, int(v), c, u, d, src, run, st, tags, aliases)

    def get_model_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        self.get_registered_model(name)
        rows = self._all("SELECT version FROM registered_model_aliases WHERE workspace = :ws AND name = :name "
                         "AND alias = :alias", ws=WORKSPACE, name=name, alias=alias)
        if not rows:
            raise ReadError(f"Registered model alias {alias} not found.", "INVALID_PARAMETER_VALUE")
        return self.get_model_version(name, rows[0][0])

    def get_model_version_download_uri(self, name: str, version: str | int) -> str:
        """Where the version's files are: as MLflow's database store, its storage location (MLflow 3:
        the logged model's artifacts) or else its source."""
        mv = self.get_model_version(name, version)
        (location,), = self._all("SELECT storage_location FROM model_versions WHERE workspace = :ws "
                                 "AND name = :name AND version = :version", ws=WORKSPACE, name=name,
                                 version=mv.version)
        return location or mv.source

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        rows = self._all("SELECT experiment_id FROM experiments WHERE workspace = :ws AND name = :name",
                         ws=WORKSPACE, name=name)
        return self.get_experiment(str(rows[0][0])) if rows else None

    def get_experiment(self, experiment_id: str) -> Experiment:
        if not str(experiment_id).isdigit():
            raise ReadError(f"No Experiment with id={experiment_id} exists")
        rows = self._all("SELECT experiment_id, name, artifact_location, lifecycle_stage FROM experiments "
                         "WHERE workspace = :ws AND experiment_id = :id", ws=WORKSPACE, id=int(experiment_id))
        if not rows:
            raise ReadError(f"No Experiment with id={experiment_id} exists")
        i, n, where, stage = rows[0]
        tags = dict(self._all("SELECT key, value FROM experiment_tags WHERE experiment_id = :id", id=i))
        return Experiment(str(i), n, where, stage, tags)

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", order_by: list[str] | None = None,
                    max_results: int = 1000, page_token: str | None = None) -> Page:
        """Active runs whose tags equal the filter's (``tags.a = 'x' AND tags.b = 'y'``), ordered by
        one ``tags.KEY ASC|DESC`` (runs without it last, as MLflow's database store does)."""
        where = ["r.lifecycle_stage = 'active'", "r.experiment_id IN :experiments"]
        args: dict = {"experiments": [int(e) for e in experiment_ids]}
        for i, part in enumerate(p for p in re.split(r"\s+AND\s+", filter_string or "", flags=re.IGNORECASE)
                                 if p.strip()):
            m = _TAG.match(part)
            if not m:
                raise ReadError(f"filter {filter_string!r} is not supported here", "INVALID_PARAMETER_VALUE")
            where.append(f"EXISTS (SELECT 1 FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = :k{i} "
                         f"AND t.value = :v{i})")
            args.update({f"k{i}": m.group(1), f"v{i}": m.group(2)})
        order = "r.start_time DESC, r.run_uuid"
        if order_by:
            m = re.match(r"^tags\.(\w+)\s+(ASC|DESC)$", order_by[0].strip(), re.IGNORECASE)
            if not m or len(order_by) > 1:
                raise ReadError(f"order {order_by!r} is not supported here", "INVALID_PARAMETER_VALUE")
            value = "(SELECT value FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = :order_key)"
            order = f"{value} IS NULL, {value} {m.group(2).upper()}, r.start_time DESC, r.run_uuid"
            args["order_key"] = m.group(1)
        if not experiment_ids:
            return _page([], max_results, page_token)
        start = int(page_token or 0)
        rows = self._all("SELECT r.run_uuid, r.experiment_id, r.status, r.start_time, r.end_time, r.lifecycle_stage "
                         f"FROM runs r WHERE {' AND '.join(where)} ORDER BY {order} "
                         "LIMIT :limit OFFSET :offset", limit=max_results + 1, offset=start, **args)
        chosen = rows[:max_results]
        tags: dict[str, dict] = {}
        for run_id, key, value in self._in("SELECT run_uuid, key, value FROM tags WHERE run_uuid",
                                           [r[0] for r in chosen]):
            tags.setdefault(run_id, {})[key] = value
        page = Page(Run(RunInfo(r[0], str(r[1]), r[2], r[3], r[4], r[5]), RunData(tags.get(r[0], {})))
                    for r in chosen)
        page.token = str(start + max_results) if len(rows) > max_results else None
        return page

    def _in(self, sql: str, keys: list, **args) -> list[tuple]:
        """Rows of ``sql`` + `` IN (keys)``, asked 500 keys at a time (sqlite's bound on parameters)."""
        rows = []
        for i in range(0, len(keys), 500):
            rows += self._all(f"{sql} IN :keys", keys=list(keys[i:i + 500]), **args)
        return rows

    def _by_name(self, table: str, columns: str, names: list[str]) -> dict[str, list]:
        out: dict[str, list] = {}
        for row in self._in(f"SELECT name, {columns} FROM {table} WHERE workspace = :ws AND name", names,
                            ws=WORKSPACE):
            out.setdefault(row[0], []).append(row[1:])
        return out

    def close(self) -> None:
        self.connection.close()

    def __getattr__(self, name: str):
        raise ReadError(f"{name} is not part of the read-only registry view", "INVALID_PARAMETER_VALUE")


SqliteReader = StoreReader  # its name before it read PostgreSQL too


def _name_filter(text: str) -> tuple[str, dict]:
    if not (text or "").strip():
        return "1 = 1", {}
    m = _NAME.match(text)
    if not m:
        raise ReadError(f"filter {text!r} is not supported here", "INVALID_PARAMETER_VALUE")
    return ("name = :pattern" if m.group(1) == "=" else "name LIKE :pattern"), {"pattern": m.group(2)}


def _page(items: list, max_results: int, page_token: str | None) -> Page:
    start = int(page_token or 0)
    page = Page(items[start:start + max_results])
    page.token = str(start + max_results) if start + max_results < len(items) else None
    return page
