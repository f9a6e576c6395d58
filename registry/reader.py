"""A read-only view of the embedded MLflow model registry (sqlite) for commands that only look
(``tailor review list``).

Importing MLflow's client and opening its sqlalchemy store (alembic, pandas, the genai entities)
takes 2-4 s on a 2-core machine before the first query; reading the same tables with ``sqlite3``
in read-only mode answers in a fraction of that. It implements exactly the registry calls that
path makes, with MLflow's results (``tests/flows/test_fleet.py`` compares the two on one
store) in MLflow's default workspace, and nothing else: writes, and every store that is not
sqlite, go through MLflow's own client (``registry.store``).
"""
from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path

WORKSPACE = "default"  # MLflow's default workspace (its tables carry a workspace column)
DELETED_STAGE = "Deleted_Internal"  # MLflow keeps deleted versions as rows with this stage
_NAME = re.compile(r"^\s*name\s*(=|LIKE)\s*'((?:[^'\\]|\\.)*)'\s*$", re.IGNORECASE)


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
        clause, args = _name_filter(filter_string)
        rows = self._all(f"SELECT name, description FROM registered_models WHERE workspace = ? AND {clause}",
                         (WORKSPACE, *args))
        names = [r[0] for r in rows]
        tags = self._by_name("registered_model_tags", "key, value", names)
        aliases = self._by_name("registered_model_aliases", "alias, version", names)
        found = [RegisteredModel(n, d, dict(tags.get(n, [])), {a: int(v) for a, v in aliases.get(n, [])})
                 for n, d in rows]
        return _page(sorted(found, key=lambda m: m.name), max_results, page_token)

    def search_model_versions(self, filter_string: str = "", max_results: int = 1000,
                              page_token: str | None = None) -> Page:
        """As MLflow's search: aliases not filled, newest update first."""
        clause, args = _name_filter(filter_string)
        rows = self._all("SELECT name, version, creation_time, last_updated_time, description, source, run_id, "
                         f"status FROM model_versions WHERE workspace = ? AND current_stage != ? AND {clause}",
                         (WORKSPACE, DELETED_STAGE, *args))
        tags: dict[tuple, dict] = {}
        names = sorted({r[0] for r in rows})
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            for name, version, key, value in self._all(
                    f"SELECT name, version, key, value FROM model_version_tags WHERE workspace = ? AND name IN "
                    f"({','.join('?' * len(chunk))})", (WORKSPACE, *chunk)):
                tags.setdefault((name, int(version)), {})[key] = value
        found = [ModelVersion(n, int(v), c, u, d, s, r, st, tags.get((n, int(v)), {}), [])
                 for n, v, c, u, d, s, r, st in rows]
        found.sort(key=lambda mv: (-mv.last_updated_timestamp, mv.name, -mv.version))
        return _page(found, max_results, page_token)

    def _by_name(self, table: str, columns: str, names: list[str]) -> dict[str, list]:
        out: dict[str, list] = {}
        for i in range(0, len(names), 500):
            chunk = names[i:i + 500]
            for row in self._all(f"SELECT name, {columns} FROM {table} WHERE workspace = ? AND name IN "
                                 f"({','.join('?' * len(chunk))})", (WORKSPACE, *chunk)):
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
