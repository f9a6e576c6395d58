"""The adapted part of the model as pure functions over parameter dicts.

Above the frozen, cached lower layers sit ``adapted_layers`` BERT layers whose weights stay frozen
but carry low-rank adapters (LoRA, Hu et al. 2021) on query, value and both output projections,
then mean pooling, L2 normalisation and a linear head initialised from the support set's class
prototypes (Proto-MAML, Triantafillou et al. 2020). A tenant's label names are texts too: each
joins the support set as one more example of its class, weighted by a learned weight (the
class names carry what five examples may not). What is meta-learned: the adapters'
initialisation, the head's scale, the label names' weight, and one inner learning rate per tensor
(Meta-SGD, Li et al. 2017).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

ADAPTED = ("attention.self.query", "attention.self.value", "attention.output.dense", "output.dense")
HEAD = ("head.weight", "head.bias")
TOKEN = ("tok.lora_A", "tok.lora_B", "tok.score")   # the token adapter and its pooling scores
LORA_ALPHA = 8.0


BUCKETS, BUCKET_ROWS = 8, 6   # length groups per forward pass, and the fewest rows worth a group of their own


@dataclass
class TopModel:
    """Frozen weights of the adapted layers plus the shapes needed to run them."""

    frozen: dict[str, torch.Tensor]
    n_layers: int
    n_heads: int
    hidden: int
    rank: int
    eps: float = 1e-12
    token_rank: int = 0   # rank of the token adapter on the top states (0: none)

    def to(self, device) -> "TopModel":
        self.frozen = {k: v.to(device) for k, v in self.frozen.items()}
        return self

    def lora_names(self) -> list[str]:
        return [f"L{i}.{m}.lora_{ab}" for i in range(self.n_layers) for m in ADAPTED for ab in "AB"]

    def token_names(self) -> list[str]:
        return list(TOKEN) if self.token_rank else []

    def _token_adapter(self, h, keep, params):
        """A residual low-rank MLP on every top token state, then attention pooling whose scores
        start at zero (plain mean pooling): cheap enough to meta-train on a CPU (no attention or
        feed-forward of a transformer layer), and able to re-weight and reshape the tokens before
        they are pooled, which a map of the pooled embedding cannot (mean pooling is linear)."""
        a = params.get(TOKEN[0])
        if a is not None:
            h = h + F.linear(F.gelu(F.linear(h, a)), params[TOKEN[1]]) * (LORA_ALPHA / max(self.token_rank, 1))
        weights = keep.unsqueeze(-1).float()
        score = params.get(TOKEN[2])
        if score is not None:
            logits = (h @ score).masked_fill(~keep, float("-inf"))
            weights = torch.softmax(logits, dim=1).nan_to_num(0.0).unsqueeze(-1)
            return (h * weights).sum(1)
        return (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)

    def _linear(self, x, params, layer: int, name: str):
        w = self.frozen[f"L{layer}.{name}.weight"]
        y = F.linear(x, w, self.frozen[f"L{layer}.{name}.bias"])
        a = params.get(f"L{layer}.{name}.lora_A")
        if a is not None:
            b = params[f"L{layer}.{name}.lora_B"]
            y = y + F.linear(F.linear(x, a), b) * (LORA_ALPHA / self.rank)
        return y

    def _norm(self, x, layer: int, name: str):
        return F.layer_norm(x, (self.hidden,), self.frozen[f"L{layer}.{name}.weight"],
                            self.frozen[f"L{layer}.{name}.bias"], self.eps)

    def _layer(self, h, keep, params, i: int):
        batch, width, _ = h.shape
        split = lambda t: t.view(batch, width, self.n_heads, -1).transpose(1, 2)
        q = split(self._linear(h, params, i, "attention.self.query"))
        k = split(F.linear(h, self.frozen[f"L{i}.attention.self.key.weight"],
                           self.frozen[f"L{i}.attention.self.key.bias"]))
        v = split(self._linear(h, params, i, "attention.self.value"))
        ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=keep[:, None, None, :])
        ctx = ctx.transpose(1, 2).reshape(batch, width, self.hidden)
        h = self._norm(self._linear(ctx, params, i, "attention.output.dense") + h, i, "attention.output.LayerNorm")
        inner = F.gelu(F.linear(h, self.frozen[f"L{i}.intermediate.dense.weight"],
                                self.frozen[f"L{i}.intermediate.dense.bias"]))
        return self._norm(self._linear(inner, params, i, "output.dense") + h, i, "output.LayerNorm")

    def embed(self, params: dict, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Sentence embeddings [N, H], unit length, from cached lower states [N, T, H].

        Rows are run in up to BUCKETS groups of similar length, each trimmed to its own longest
        row: a batch padded to its longest text spends most of its time on padding (a 50-text
        WordNet tenant: 607 real tokens in a 50 x 57 window). Padding is masked out of attention
        and pooling, so the grouping changes no result beyond float rounding."""
        n = len(states)
        if n < 2 * BUCKET_ROWS:
            return self._embed_block(params, states, mask)
        order = torch.argsort(mask.sum(1), stable=True)
        groups = torch.tensor_split(order, min(BUCKETS, n // BUCKET_ROWS))
        pooled = torch.cat([self._embed_block(params, states[g], mask[g]) for g in groups])
        return pooled[torch.argsort(order)]

    def _embed_block(self, params: dict, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        width = int(mask.sum(1).max().item()) if mask.numel() else 1
        h, keep = states[:, :width].float(), mask[:, :width]
        for i in range(self.n_layers):
            h = self._layer(h, keep, params, i)
        return F.normalize(self._token_adapter(h, keep, params), dim=-1)

    def logits(self, params: dict, states, mask) -> torch.Tensor:
        z = self.embed(params, states, mask)
        return F.linear(z, params["head.weight"], params["head.bias"])


def top_model(encoder, adapted_layers: int, rank: int, token_rank: int = 0) -> TopModel:
    first = encoder.num_layers - adapted_layers
    return TopModel(frozen=encoder.layer_weights(first), n_layers=adapted_layers, n_heads=encoder.num_heads,
                    hidden=encoder.hidden_size, rank=rank, eps=encoder.layer_norm_eps, token_rank=token_rank)


def layout(params: dict) -> tuple[int, int, int]:
    """(adapted transformer layers, their LoRA rank, token-adapter rank) of a base's meta-parameters
    or a delta: read from the tensors, so a base or delta says itself what it needs."""
    layers = {k.split(".", 1)[0] for k in params if k.startswith("L") and ".lora_A" in k}
    rank = next((v.shape[0] for k, v in params.items() if k.startswith("L") and k.endswith(".lora_A")), 0)
    token = params[TOKEN[0]].shape[0] if TOKEN[0] in params else 0
    return len(layers), rank, token


def is_adapter(name: str) -> bool:
    """Whether a fast weight belongs to the adapted encoder part (not the head): what a delta carries
    besides its head."""
    return name.startswith("L") or name in TOKEN


NAME_WEIGHT = "log_name_weight"


def init_meta_params(top: TopModel, inner_lr: float, seed: int = 0, head_lr: float | None = None,
                     name_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The no-meta-learning start: adapters whose product is zero (the frozen encoder exactly),
    a head scale of 10 on unit-length embeddings, label names weighing ``name_weight`` examples
    each, and one log inner learning rate per fast tensor (``inner_lr`` for the adapters,
    ``head_lr`` for the head)."""
    gen = torch.Generator().manual_seed(seed)
    params: dict[str, torch.Tensor] = {"log_scale": torch.tensor(math.log(10.0)),
                                       NAME_WEIGHT: torch.tensor(math.log(max(name_weight, 1e-6)))}
    r = top.rank
    for name in top.lora_names():
        if name.endswith("lora_A"):
            out_in = (r, top.frozen[name.replace(".lora_A", ".weight")].shape[1])
            params[name] = torch.randn(out_in, generator=gen) / math.sqrt(out_in[1])
        else:
            out = top.frozen[name.replace(".lora_B", ".weight")].shape[0]
            params[name] = torch.zeros(out, r)
    if top.token_rank:
        params[TOKEN[0]] = torch.randn(top.token_rank, top.hidden, generator=gen) / math.sqrt(top.hidden)
        params[TOKEN[1]] = torch.zeros(top.hidden, top.token_rank)
        params[TOKEN[2]] = torch.zeros(top.hidden)
    for name in top.lora_names() + top.token_names():
        params[f"log_lr.{name}"] = torch.tensor(math.log(inner_lr))
    for name in HEAD:
        params[f"log_lr.{name}"] = torch.tensor(math.log(head_lr if head_lr is not None else inner_lr))
    return params


def split_meta(meta: dict) -> tuple[dict, dict]:
    """(initial fast weights shared by every task, per-tensor inner learning rates)."""
    fast = {k: v for k, v in meta.items() if not k.startswith("log_lr.") and k not in ("log_scale", NAME_WEIGHT)}
    lrs = {k[len("log_lr."):]: v.exp() for k, v in meta.items() if k.startswith("log_lr.")}
    return fast, lrs


def example_weights(meta: dict, is_name: torch.Tensor | None, n: int, device=None) -> torch.Tensor:
    """Weight of each support row: 1 for an example, the learned name weight for a label name."""
    ones = torch.ones(n, device=device)
    if is_name is None or NAME_WEIGHT not in meta:
        return ones
    return torch.where(is_name, meta[NAME_WEIGHT].exp().to(ones.dtype), ones)


def prototype_head(z: torch.Tensor, y: torch.Tensor, n_way: int, log_scale: torch.Tensor,
                   weight: torch.Tensor | None = None):
    """Linear head equal to scaled negative squared distance to each class's (weighted) mean
    (Proto-MAML)."""
    w = torch.ones(len(y), dtype=z.dtype, device=z.device) if weight is None else weight.to(z.dtype)
    protos = torch.zeros(n_way, z.shape[1], dtype=z.dtype, device=z.device).index_add(0, y, z * w[:, None])
    total = torch.zeros(n_way, dtype=z.dtype, device=z.device).index_add(0, y, w)
    protos = protos / total.clamp_min(1e-6).unsqueeze(1)
    scale = log_scale.exp()
    return {"head.weight": 2 * scale * protos, "head.bias": -scale * (protos ** 2).sum(1)}


def task_init(top: TopModel, meta: dict, states, mask, y, n_way: int,
              is_name: torch.Tensor | None = None) -> tuple[dict, dict, torch.Tensor]:
    """Initial fast weights for one task (adapters from ``meta``, head from the support prototypes,
    label names included with their weight), differentiable with respect to ``meta``; the inner
    learning rates; and each support row's weight."""
    fast, lrs = split_meta(meta)
    weight = example_weights(meta, is_name, len(y), y.device)
    z = top.embed(fast, states, mask)
    fast = {**fast, **prototype_head(z, y, n_way, meta["log_scale"], weight)}
    return fast, lrs, weight
