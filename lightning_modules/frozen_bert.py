"""The frozen lower layers of the BERT encoder in plain torch, for serving.

Importing transformers to build a ``BertModel`` costs about 3 s of every ``tailor predict``
process (it pulls in torch's compiler and distributed packages), more than classifying a text.
Serving only runs the frozen layers forward, so it reads the same weights (``model.safetensors``)
and tokenizer (``tokenizer.json``, through the ``tokenizers`` library transformers itself uses) and
runs the same operations as transformers' BERT with SDPA attention: embeddings, then per layer
query/key/value, scaled dot-product attention, output and feed-forward with their LayerNorms.
``tests/unit/test_frozen_bert.py`` checks token ids and states against transformers' model.
Training keeps transformers' model (``encoder.load_encoder``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F


@dataclass
class FrozenBert:
    """What serving asks of ``encoder.Encoder``: its identity, shapes, frozen weights and lower states."""

    name: str
    digest: str
    tokenizer: object  # tokenizers.Tokenizer
    weights: dict[str, torch.Tensor]
    config: dict
    max_length: int

    @property
    def hidden_size(self) -> int:
        return self.config["hidden_size"]

    @property
    def num_heads(self) -> int:
        return self.config["num_attention_heads"]

    @property
    def num_layers(self) -> int:
        return self.config["num_hidden_layers"]

    @property
    def layer_norm_eps(self) -> float:
        return self.config["layer_norm_eps"]

    def layer_weights(self, first: int) -> dict[str, torch.Tensor]:
        """Frozen weights of layers ``first..`` keyed ``L<i>.<name>`` (as ``Encoder.layer_weights``)."""
        out = {}
        for i in range(first, self.num_layers):
            prefix = f"encoder.layer.{i}."
            for key, value in self.weights.items():
                if key.startswith(prefix):
                    out[f"L{i - first}.{key[len(prefix):]}"] = value
        return out

    def tokenize(self, texts: list[str]) -> dict[str, torch.Tensor]:
        """``input_ids`` and ``attention_mask`` [N, T], padded to the longest text, truncated at max_length."""
        encoded = self.tokenizer.encode_batch(list(texts))
        return {"input_ids": torch.tensor([e.ids for e in encoded], dtype=torch.long),
                "attention_mask": torch.tensor([e.attention_mask for e in encoded], dtype=torch.long)}

    def _norm(self, x, name: str):
        return F.layer_norm(x, (self.hidden_size,), self.weights[f"{name}.weight"], self.weights[f"{name}.bias"],
                            self.layer_norm_eps)

    def _linear(self, x, name: str):
        return F.linear(x, self.weights[f"{name}.weight"], self.weights[f"{name}.bias"])

    def _layer(self, h, mask, i: int):
        p = f"encoder.layer.{i}."
        batch, width, _ = h.shape
        split = lambda t: t.view(batch, width, -1, self.hidden_size // self.num_heads).transpose(1, 2)
        q, k, v = (split(self._linear(h, p + f"attention.self.{m}")) for m in ("query", "key", "value"))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=(self.hidden_size // self.num_heads) ** -0.5)
        ctx = ctx.transpose(1, 2).reshape(batch, width, -1).contiguous()
        h = self._norm(self._linear(ctx, p + "attention.output.dense") + h, p + "attention.output.LayerNorm")
        inner = F.gelu(self._linear(h, p + "intermediate.dense"))
        return self._norm(self._linear(inner, p + "output.dense") + h, p + "output.LayerNorm")

    @torch.no_grad()
    def hidden(self, ids: torch.Tensor, attention: torch.Tensor, layers: int) -> torch.Tensor:
        """Token states [N, T, H] (float32) after the first ``layers`` layers."""
        width = ids.shape[1]
        x = (F.embedding(ids, self.weights["embeddings.word_embeddings.weight"])
             + self.weights["embeddings.token_type_embeddings.weight"][0]
             + self.weights["embeddings.position_embeddings.weight"][:width])
        h = self._norm(x, "embeddings.LayerNorm")
        # as transformers: no mask when nothing is padded, else a boolean [N, 1, T, T] one
        mask = None if bool(attention.all()) else attention.bool()[:, None, None, :].expand(-1, 1, width, width)
        for i in range(layers):
            h = self._layer(h, mask, i)
        return h

    def lower_states(self, texts: list[str], frozen_layers: int, batch_size: int = 128):
        """As ``Encoder.lower_states``: ``(states [N, T, H] float16, mask [N, T] bool)``."""
        return batched_states(texts, batch_size, self.hidden_size, self.tokenize,
                              lambda enc: self.hidden(enc["input_ids"], enc["attention_mask"], frozen_layers))


@torch.no_grad()
def batched_states(texts: list[str], batch_size: int, hidden_size: int, tokenize, states_of):
    """``(states [N, T, H] float16, mask [N, T] bool)`` of ``texts``, ``batch_size`` at a time:
    ``tokenize(texts)`` gives ``input_ids``/``attention_mask``, ``states_of(encoded)`` the token
    states; batches are padded to the longest text of all (T). Serves both encoders."""
    chunks, masks = [], []
    for start in range(0, len(texts), batch_size):
        enc = tokenize(texts[start:start + batch_size])
        chunks.append(states_of(enc).to(torch.float16))
        masks.append(enc["attention_mask"].bool())
    if not chunks:
        return torch.zeros(0, 1, hidden_size, dtype=torch.float16), torch.zeros(0, 1, dtype=torch.bool)
    width = max(c.shape[1] for c in chunks)
    states = torch.cat([F.pad(c, (0, 0, 0, width - c.shape[1])) for c in chunks])
    return states, torch.cat([F.pad(m, (0, width - m.shape[1]), value=False) for m in masks])


def load_frozen_bert(path: Path, name: str, digest: str, max_length: int,
                     weights: dict | None = None, config: dict | None = None) -> FrozenBert:
    """The packaged encoder at ``path`` (``model.safetensors``, ``config.json``, ``tokenizer.json``);
    ``weights`` and ``config``: use these instead of the files' (the tests' tiny encoder)."""
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    config = config or json.loads((path / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") != "bert" or config.get("hidden_act") != "gelu" \
            or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{path}: not a BERT encoder this module runs")
    tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    tokenizer.enable_truncation(max_length)
    tokenizer.enable_padding(pad_id=config.get("pad_token_id", 0), pad_token="[PAD]")
    if weights is None:
        weights = {k.removeprefix("bert."): v for k, v in load_file(str(path / "model.safetensors")).items()}
    return FrozenBert(name=name, digest=digest, tokenizer=tokenizer, weights=weights, config=config,
                      max_length=max_length)
