"""Serve a tenant: base + delta on top of the frozen encoder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from lightning_modules.delta import load_base, load_delta
from lightning_modules.encoder import frozen_layer_count, load_serving_encoder
from lightning_modules.features import lower_features
from lightning_modules.model import layout, top_model
from workspace.settings import EncoderSettings
from workspace.errors import UserError


class TenantPredictor:
    """Labels for texts; construction checks the delta against its base before any tensor is used."""

    def __init__(self, base_dir: Path, delta_dir: Path, tenant: str | None = None):
        base, info = load_base(base_dir)
        delta, self.manifest = load_delta(delta_dir, tenant=tenant, base_digest=info["digest"])
        self.settings = EncoderSettings(**info["encoder_settings"])
        self.encoder = load_serving_encoder(self.settings)
        if self.encoder.digest != info["encoder"]["digest"]:
            raise UserError("the installed encoder differs from the one the base was trained on")
        layers, rank, token_rank = layout(base)
        self.top = top_model(self.encoder, layers, rank or self.settings.lora_rank, token_rank)
        self.frozen = frozen_layer_count(self.encoder, layers)
        self.params = delta
        self.labels: list[str] = list(self.manifest["labels"])

    @torch.no_grad()
    def predict_proba(self, texts: list[str], batch_size: int = 64) -> tuple[list[str], np.ndarray]:
        """Label probabilities, computed ``batch_size`` texts at a time so memory stays bounded
        however many texts arrive; texts of similar length share a batch (less padding)."""
        texts = list(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            feats = lower_features(self.encoder, [texts[i] for i in rows], self.frozen)
            logits = self.top.logits(self.params, feats.states, feats.mask)
            out[rows] = torch.softmax(logits.float(), 1).numpy()
        return self.labels, out

    def predict(self, texts: list[str]) -> list[str]:
        labels, proba = self.predict_proba(texts)
        return [labels[i] for i in proba.argmax(1)]


def load_predictor(base_dir: Path, delta_dir: Path, tenant: str | None = None) -> TenantPredictor:
    return TenantPredictor(Path(base_dir), Path(delta_dir), tenant)
