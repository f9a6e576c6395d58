"""Frozen lower-layer outputs, computed once and cached by encoder digest + text hash."""
from __future__ import annotations

import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from lightning_modules.encoder import Encoder


@dataclass
class FeatureTable:
    """Token states of the last frozen layer for a list of texts."""

    states: torch.Tensor  # [N, T, H] float16
    mask: torch.Tensor    # [N, T] bool

    def __len__(self) -> int:
        return self.states.shape[0]

    def rows(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.states[idx], self.mask[idx]

    def to(self, device) -> "FeatureTable":
        return FeatureTable(self.states.to(device), self.mask.to(device))

    @staticmethod
    def concat(tables: list["FeatureTable"]) -> "FeatureTable":
        width = max(t.states.shape[1] for t in tables)
        states = [torch.nn.functional.pad(t.states, (0, 0, 0, width - t.states.shape[1])) for t in tables]
        masks = [torch.nn.functional.pad(t.mask, (0, width - t.mask.shape[1])) for t in tables]
        return FeatureTable(torch.cat(states), torch.cat(masks))


def cache_key(encoder: Encoder, frozen_layers: int, texts: list[str]) -> str:
    h = hashlib.sha256(f"{encoder.digest}|{frozen_layers}|{encoder.max_length}".encode())
    for text in texts:
        h.update(hashlib.sha256(text.encode("utf-8")).digest())
    return h.hexdigest()


CHUNK = 512   # texts per cache entry: an interrupted caching keeps what it finished


class BudgetSpent(Exception):
    """The time budget ran out before the work was done (what was finished is kept): ``done`` of
    ``total`` texts encoded or found cached."""

    def __init__(self, done: int, total: int):
        super().__init__(f"{done} of {total} texts encoded" + ("; a rerun reuses them" if done else ""))
        self.done, self.total = done, total


def lower_features(encoder: Encoder, texts: list[str], frozen_layers: int,
                   cache_dir: Path | None = None, deadline: float | None = None) -> FeatureTable:
    """Token states after ``frozen_layers`` layers; read from / written to ``cache_dir`` if given,
    ``CHUNK`` texts per entry. Past ``deadline`` (``time.monotonic()``) no new chunk is started:
    ``BudgetSpent`` says how far it got, and the chunks already cached are reused next time."""
    if len(texts) <= CHUNK:
        return _chunk(encoder, texts, frozen_layers, cache_dir, deadline, 0, len(texts))
    return FeatureTable.concat([_chunk(encoder, texts[i:i + CHUNK], frozen_layers, cache_dir, deadline, i, len(texts))
                                for i in range(0, len(texts), CHUNK)])


def _chunk(encoder: Encoder, texts: list[str], frozen_layers: int, cache_dir, deadline, done: int,
           total: int) -> FeatureTable:
    path = Path(cache_dir) / f"{cache_key(encoder, frozen_layers, texts)}.safetensors" if cache_dir else None
    if path is not None and path.exists():
        loaded = load_file(str(path))
        return FeatureTable(loaded["states"], loaded["mask"])
    if deadline is not None and time.monotonic() > deadline:
        raise BudgetSpent(done, total)
    states, mask = encoder.lower_states(texts, frozen_layers)
    table = FeatureTable(states.contiguous(), mask.contiguous())
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        os.close(fd)
        save_file({"states": table.states, "mask": table.mask}, tmp)
        os.replace(tmp, path)  # atomic: a crash never leaves a half-written cache entry
    return table
