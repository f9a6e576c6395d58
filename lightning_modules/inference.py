"""Serve a tenant: base + delta on top of the frozen encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_modules.delta import load_base, load_delta
from lightning_modules.encoder import frozen_layer_count, load_encoder
from lightning_modules.features import lower_features
from lightning_modules.model import top_model
from workspace.settings import EncoderSettings
from workspace.errors import UserError


class TenantPredictor:
    """Labels for texts; construction checks the delta against its base before any tensor is used."""

    def __init__(self, base_dir: Path, delta_dir: Path, tenant: str | None = None):
        base, info = load_base(base_dir)
        delta, self.manifest = load_delta(delta_dir, tenant=tenant, base_digest=info["digest"])
        self.settings = EncoderSettings(**info["encoder_settings"])
        self.encoder = load_encoder(self.settings)
        if self.encoder.digest != info["encoder"]["digest"]:
            raise UserError("the installed encoder differs from the one the base was trained on")
        self.top = top_model(self.encoder, self.settings.adapted_layers, self.settings.lora_rank)
        self.frozen = frozen_layer_count(self.encoder, self.settings.adapted_layers)
        self.params = delta
        self.labels: list[str] = list(self.manifest["labels"])

    @torch.no_grad()
    def predict_proba(self, texts: list[str]) -> tuple[list[str], np.ndarray]:
        if not texts:
            return self.labels, np.zeros((0, len(self.labels)))
        feats = lower_features(self.encoder, list(texts), self.frozen)
        logits = self.top.logits(self.params, feats.states, feats.mask)
        return self.labels, torch.softmax(logits, 1).numpy()

    def predict(self, texts: list[str]) -> list[str]:
        labels, proba = self.predict_proba(texts)
        return [labels[i] for i in proba.argmax(1)]


def load_predictor(base_dir: Path, delta_dir: Path, tenant: str | None = None) -> TenantPredictor:
    return TenantPredictor(Path(base_dir), Path(delta_dir), tenant)
