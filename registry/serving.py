"""Predict for a tenant with its approved champion (base + delta), loaded once per process."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from registry.approval import champion

_loaded: dict[tuple[str, str], object] = {}


def predictor(tenant: str) -> tuple[str, object]:
    """(champion version, its predictor); a new champion is picked up on the next call."""
    from lightning_modules.inference import load_predictor

    version, folder = champion(tenant)
    key = (tenant, str(folder))
    if key not in _loaded:
        _loaded[key] = load_predictor(Path(folder) / "base", Path(folder) / "delta", tenant)
    return version, _loaded[key]


def predict(tenant: str, texts: list[str], batch_size: int = 64) -> list[dict]:
    """One row per text: ``{"text", "label", "score"}`` from the tenant's champion."""
    return [row for rows in predict_batches(tenant, texts, batch_size) for row in rows]


def predict_batches(tenant: str, texts: Iterable[str], batch_size: int = 64) -> Iterator[list[dict]]:
    """Rows for ``texts`` (any iterable, read lazily), a few batches at a time, so a file of any
    length is classified in bounded memory. A blank text gets an explicit empty result
    (``label`` and ``score`` None), never a guess."""
    _, model = predictor(tenant)
    window = batch_size * 8  # sorted by length within a window: less padding, still streaming
    for chunk in _chunks(texts, window):
        todo = [i for i, t in enumerate(chunk) if t.strip()]
        rows = [{"text": t, "label": None, "score": None} for t in chunk]
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
