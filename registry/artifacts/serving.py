"""Serve a tenant's approved champion (base + delta), checked on every load.

Before a version's files are used they are compared with what its registration recorded
(``checks.verify_artifacts``), and the local copy is cached under its *content* digests, so a
store restored after tampering is never shadowed by a stale copy and an edited cache is noticed.
A ``@champion`` that no approval record backs (moved outside Tailor) is refused.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse
from urllib.request import url2pathname

from registry.artifacts import checks
from registry.storage import store
from registry.storage.names import CHAMPION
from registry.trail import audit, drift, transitions
from workspace.errors import UserError
from workspace.tenants import check_tenant_id, tenant_model_name

_loaded: dict[str, object] = {}
_FOLDERS = ("data/artifacts", "artifacts")  # where a version keeps delta/ and base/: now, and before the loader module


def _cache_root() -> Path:
    ws = store.workspace()
    root = (ws.cache_dir if ws is not None else Path(tempfile.gettempdir()) / "tailor-cache") / "models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _download(mv, dst: Path) -> None:
    """``delta/`` and ``base/`` of ``mv`` into ``dst``: copied from a local (``file:``) artifact
    store, through MLflow's client from any other (tracking server, S3)."""
    uri = store.client().get_model_version_download_uri(mv.name, str(mv.version)).rstrip("/")
    if uri.startswith("file:"):
        root = Path(url2pathname(urlparse(uri).path))
        src = next((root / f for f in _FOLDERS if (root / f / "delta").is_dir()), root / _FOLDERS[0])
        for part in ("delta", "base"):
            if not (src / part).is_dir():
                raise UserError(f"{mv.name} v{mv.version}: its files are missing from {src / part}")
            shutil.copytree(src / part, dst / part)
        return
    store.writable()
    import mlflow

    for folder in _FOLDERS:
        try:
            for part in ("delta", "base"):
                mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{folder}/{part}", dst_path=str(dst))
            return
        except Exception:  # noqa: BLE001 - not in this layout: try the older one; the last error is the user's
            shutil.rmtree(dst / "delta", ignore_errors=True)
            if folder == _FOLDERS[-1]:
                raise


def fetch_version(mv) -> Path:
    """A local folder with ``delta/`` and ``base/`` of ``mv``, verified against its registration."""
    t = mv.tags
    what = f"{t.get('tenant') or mv.name} v{mv.version}"
    if not t.get("delta_sha256") or not t.get("base_digest"):
        raise UserError(f"{what}: no registered digests to check its files against; refusing to load it")
    key = f"{t['delta_sha256'][:32]}-{t['base_digest'].removeprefix('sha256:')[:32]}"
    folder = _cache_root() / key
    if folder.is_dir():
        if not checks.verify_artifacts(t, folder):
            return folder
        shutil.rmtree(folder, ignore_errors=True)  # edited on disk: fetch the registered files again
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".download-"))
    try:
        _download(mv, tmp)
        problems = checks.verify_artifacts(t, tmp)
        if problems:
            raise UserError(f"{what} refused: {'; '.join(problems)}")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process put the same content in place meanwhile
            if checks.verify_artifacts(t, folder):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def champion_version(tenant: str):
    """The tenant's ``@champion`` after finishing any interrupted transition, refused with one line
    when no approval record backs it."""
    check_tenant_id(tenant)
    name = tenant_model_name(tenant)
    ws = store.workspace()
    if ws is not None and audit.open_intents(tenant):
        store.writable()  # finishing the interrupted transition writes
        transitions.repair(ws, [tenant])
    mv = store.alias_version(name, CHAMPION)
    if mv is None and not store.has_model(name):
        prefix = name.removesuffix(tenant)
        known = [rm.name.removeprefix(prefix) for rm in store.registered_models(f"{prefix}%")]
        listed = ", ".join(known[:8]) + (f" (and {len(known) - 8} more)" if len(known) > 8 else "")
        raise UserError(f"no tenant {tenant} in this registry: nothing was ever adapted for it "
                        f"(tenants: {listed or 'none yet'})")
    if mv is None:
        raise UserError(f"tenant {tenant} has no approved champion: run `tailor review approve "
                        f"{tenant} VERSION --reason TEXT`")
    problem = drift.champion_problem(tenant, mv)
    if problem:
        raise UserError(f"refusing to serve {tenant}: {problem}; run `tailor audit verify`")
    return mv


def champion(tenant: str) -> tuple[str, Path]:
    """(version, local folder holding ``delta/`` and ``base/``) of the tenant's champion."""
    mv = champion_version(tenant)
    return str(mv.version), fetch_version(mv)


def predictor(tenant: str) -> tuple[str, object]:
    """(champion version, its predictor), keyed by content: a new champion is picked up at once."""
    mv = champion_version(tenant)
    return str(mv.version), _load(tenant, mv)


def _load(tenant: str, mv) -> object:
    from lightning_modules.inference import load_predictor

    folder = fetch_version(mv)
    key = str(folder)
    if key not in _loaded:
        _loaded[key] = load_predictor(folder / "base", folder / "delta", tenant)
    return _loaded[key]


def predict(tenant: str, texts: list[str], batch_size: int = 64) -> list[dict]:
    """One row per text: ``{"text", "label", "score", "version", "data_version"}`` from the tenant's
    champion."""
    return [row for rows in predict_batches(tenant, texts, batch_size) for row in rows]


def predict_batches(tenant: str, texts: Iterable[str], batch_size: int = 64) -> Iterator[list[dict]]:
    """Rows for ``texts`` (any iterable, read lazily), a few batches at a time, so a file of any
    length is classified in bounded memory. A blank text gets an explicit empty result
    (``label`` and ``score`` None), never a guess. Every row names what answered it: the champion's
    model ``version`` and the DVC ``data_version`` it was adapted on, as the registry records them."""
    mv = champion_version(tenant)
    model = _load(tenant, mv)
    served = {"version": str(mv.version), "data_version": str(mv.tags.get("data_version", ""))}
    window = batch_size * 8  # sorted by length within a window: less padding, still streaming
    for chunk in _chunks(texts, window):
        todo = [i for i, t in enumerate(chunk) if t.strip()]
        rows = [{"text": t, "label": None, "score": None, **served} for t in chunk]
        if todo:
            labels, proba = model.predict_proba([chunk[i] for i in todo], batch_size)
            for i, p in zip(todo, proba):
                best = int(p.argmax())
                rows[i].update(label=labels[best], score=round(float(p[best]), 4))
        yield rows


def labels(tenant: str) -> list[str]:
    """The champion's labels (for column widths and checks)."""
    return list(predictor(tenant)[1].labels)


def _chunks(items: Iterable[str], size: int) -> Iterator[list[str]]:
    chunk: list[str] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def verify_stored(mv) -> list[str]:
    """Download (content-cached) and check a version's stored delta and base: [] when intact."""
    try:
        fetch_version(mv)
    except UserError as exc:
        return [str(exc).split(": ", 1)[-1]]
    return []
