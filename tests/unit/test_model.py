"""The functional top layers reproduce the encoder; heads, episodes and deltas behave."""
import json

import pytest
import torch

from lightning_modules.delta import load_delta, save_delta, save_base, load_base
from lightning_modules.encoder import frozen_layer_count, load_encoder
from lightning_modules.episodes import EpisodeSampler, pools_from_labels
from lightning_modules.features import lower_features
from lightning_modules.model import init_meta_params, prototype_head, split_meta, top_model
from workspace.errors import UserError

from tests.conftest import synthetic_tenant

TEXTS = ["a toothed wheel", "the court issued a verdict on the appeal", "snow"]


@pytest.mark.parametrize("adapted", [0, 1, 2])
def test_zero_adapters_reproduce_the_frozen_encoder(settings, adapted):
    enc = load_encoder(settings.encoder)
    top = top_model(enc, adapted, rank=2)
    fast, _ = split_meta(init_meta_params(top, 0.01))
    feats = lower_features(enc, TEXTS, frozen_layer_count(enc, adapted))
    ours = top.embed(fast, feats.states, feats.mask)
    tok = enc.tokenize(TEXTS)
    with torch.no_grad():
        hidden = enc.model(**tok).last_hidden_state
    m = tok["attention_mask"].unsqueeze(-1).float()
    want = torch.nn.functional.normalize((hidden * m).sum(1) / m.sum(1), dim=-1)
    torch.testing.assert_close(ours, want, atol=2e-3, rtol=1e-3)  # float16 cache


def test_length_groups_give_each_row_its_own_embedding(settings):
    """A batch long enough to be split into length groups embeds every row as if it ran alone,
    with nonzero adapters (a wrong re-ordering would hand rows each other's embeddings)."""
    enc = load_encoder(settings.encoder)
    top = top_model(enc, 1, rank=2)
    fast, _ = split_meta(init_meta_params(top, 0.01))
    fast = {k: (torch.randn_like(v) * 0.1 if "lora" in k else v) for k, v in fast.items()}
    texts = [" ".join(["word"] * (1 + (7 * i) % 23)) + f" number {i}" for i in range(40)]
    feats = lower_features(enc, texts, frozen_layer_count(enc, 1))
    together = top.embed(fast, feats.states, feats.mask)
    alone = torch.cat([top.embed(fast, feats.states[i:i + 1], feats.mask[i:i + 1]) for i in range(len(texts))])
    torch.testing.assert_close(together, alone, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(together[0], together[1], atol=1e-3)


def test_prototype_head_predicts_the_nearest_class_mean():
    z = torch.nn.functional.normalize(torch.randn(12, 5), dim=1)
    y = torch.arange(3).repeat(4)
    head = prototype_head(z, y, 3, torch.tensor(2.0))
    logits = z @ head["head.weight"].T + head["head.bias"]
    protos = torch.stack([z[y == c].mean(0) for c in range(3)])
    assert torch.equal(logits.argmax(1), torch.cdist(z, protos).argmin(1))


def test_episodes_are_balanced_permuted_and_disjoint():
    pools = [pools_from_labels("a", synthetic_tenant(["animal", "food", "tool", "music"], 10)[1]),
             pools_from_labels("b", synthetic_tenant(["car", "law"], 10)[1], offset=40)]
    sampler = EpisodeSampler(pools, ways=(2, 4), shots=3, query=2, seed=1)
    tasks = sampler.fixed(200)
    assert {t.tenant for t in tasks} == {"a", "b"}
    assert 70 < sum(t.tenant == "b" for t in tasks) < 130, "tenants are drawn evenly"
    assert all(2 <= t.n_way <= 4 for t in tasks)
    assert len({t.classes for t in tasks if t.tenant == "a"}) > 10, "label order is permuted"
    for t in tasks:
        assert not set(t.support.tolist()) & set(t.query.tolist())
        assert torch.bincount(t.support_y).tolist() == [3] * t.n_way


def _delta(tmp_path, tenant="acme", digest="sha256:abc"):
    tensors = {"head.weight": torch.randn(2, 4), "head.bias": torch.zeros(2)}
    return save_delta(tmp_path / "d", tensors, {"tenant": tenant, "labels": ["A", "B"],
                                                "base": {"name": "tailor-base", "version": "1", "digest": digest}})


def test_delta_round_trip_checks_tenant_base_and_checksum(tmp_path):
    path = _delta(tmp_path)
    tensors, manifest = load_delta(path, tenant="acme", base_digest="sha256:abc")
    assert manifest["format"] == "tailor-delta/1" and manifest["tensors"]["head.weight"] == [2, 4]
    with pytest.raises(UserError, match="belongs to tenant"):
        load_delta(path, tenant="globex")
    with pytest.raises(UserError, match="another base"):
        load_delta(path, base_digest="sha256:other")
    (path / "delta.safetensors").write_bytes((path / "delta.safetensors").read_bytes()[:-4] + b"\0\0\0\0")
    with pytest.raises(UserError, match="checksum"):
        load_delta(path)


def test_base_with_edited_manifest_digest_is_refused(tmp_path):
    path = save_base(tmp_path / "b", {"x": torch.ones(3)}, {"encoder": {}})
    load_base(path)
    info = json.loads((path / "base.json").read_text())
    (path / "base.json").write_text(json.dumps({**info, "digest": "sha256:0"}))
    with pytest.raises(UserError, match="digest"):
        load_base(path)
