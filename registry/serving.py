"""Predict for a tenant with its approved champion (base + delta), loaded once per process."""
from __future__ import annotations

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


def predict(tenant: str, texts: list[str]) -> list[dict]:
    """One row per text: ``{"text", "label", "score"}`` from the tenant's champion."""
    _, model = predictor(tenant)
    labels, proba = model.predict_proba(list(texts))
    rows = []
    for text, p in zip(texts, proba):
        best = int(p.argmax())
        rows.append({"text": text, "label": labels[best], "score": round(float(p[best]), 4)})
    return rows
