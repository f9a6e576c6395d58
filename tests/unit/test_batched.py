"""Batched adaptation is the per-tenant adaptation, only vectorised: same weights, same predictions."""
import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lightning_modules.algorithms import AdaptationDiverged
from lightning_modules.batched import adapt_many
from lightning_modules.encoder import frozen_layer_count, load_encoder
from lightning_modules.features import lower_features
from lightning_modules.model import init_meta_params, top_model
from lightning_modules.tasks import TaskData, accuracy, adapt_task

from tests.conftest import synthetic_tenant, tiny_settings

# (classes, support rows per class, query rows per class): different label counts and support sizes,
# one tenant with unbalanced classes
TENANTS = [(["animal", "food"], [3, 3], 4),
           (["tool", "music", "sport", "car"], [5, 5, 5, 5], 3),
           (["weather", "law", "animal"], [2, 4, 3], 5)]


def _tenant_task(enc, classes, shots, n_query, seed) -> TaskData:
    texts, labels = synthetic_tenant(classes, 12, seed=seed)
    feats = lower_features(enc, texts, frozen_layer_count(enc, 1))
    names = sorted(set(labels))
    y = torch.tensor([names.index(label) for label in labels])
    support, query = [], []
    for c, k in enumerate(shots):
        rows = (y == c).nonzero().flatten().tolist()
        support += rows[:k]
        query += rows[k:k + n_query]
    s, q = torch.tensor(support), torch.tensor(query)
    return TaskData(feats.rows(s), y[s], feats.rows(q), y[q], len(names))


@pytest.fixture(scope="module")
def setup():
    enc = load_encoder(tiny_settings().encoder)
    top = top_model(enc, 1, rank=2)
    meta = init_meta_params(top, 0.1, seed=0)
    gen = torch.Generator().manual_seed(1)
    for k in meta:  # a meta-learned-looking start: live adapters, a different inner rate per tensor
        if k.endswith("lora_B"):
            meta[k] = 0.1 * torch.randn(meta[k].shape, generator=gen)
        if k.startswith("log_lr."):
            meta[k] = meta[k] + 0.5 * torch.randn((), generator=gen)
    tasks = [_tenant_task(enc, *spec, seed=i) for i, spec in enumerate(TENANTS)]
    return top, meta, tasks


def _assert_same(got, want, atol=1e-4):
    # Padding changes the order of float sums (extra masked tokens, rows) and the fused attention
    # kernel rounds differently from the math one: a few 1e-5 after 5 steps, hence 1e-4.
    assert set(got) == set(want)
    for k in want:
        torch.testing.assert_close(got[k].cpu(), want[k].cpu(), atol=atol, rtol=1e-4)


@pytest.mark.parametrize("chunk", [256, 2])
def test_adapt_many_equals_adapting_each_tenant_alone(setup, chunk):
    top, meta, tasks = setup
    want = [adapt_task(top, meta, t, steps=5)[0] for t in tasks]
    got = adapt_many(top, meta, tasks, steps=5, chunk=chunk)
    for g, w, t in zip(got, want, tasks):
        _assert_same(g, w)
        assert g["head.weight"].shape[0] == t.n_way
        assert accuracy(top, g, t.query, t.query_y) == accuracy(top, w, t.query, t.query_y)
        assert torch.equal(top.logits(g, *t.query).argmax(1), top.logits(w, *t.query).argmax(1))


def test_without_padding_and_with_the_same_attention_kernel_the_numbers_agree_to_rounding(setup):
    top, meta, tasks = setup
    with sdpa_kernel(SDPBackend.MATH):
        want = [adapt_task(top, meta, t, steps=5)[0] for t in tasks]
    for g, w in zip(adapt_many(top, meta, tasks, steps=5, chunk=1), want):
        _assert_same(g, w, atol=1e-6)


def test_adaptation_moves_the_weights_so_the_comparison_means_something(setup):
    top, meta, tasks = setup
    start, adapted = adapt_many(top, meta, tasks, steps=0), adapt_many(top, meta, tasks, steps=5)
    for s, a in zip(start, adapted):
        assert (a["head.weight"] - s["head.weight"]).abs().max() > 1e-3
        assert (a["L0.output.dense.lora_A"] - s["L0.output.dense.lora_A"]).abs().max() > 1e-5


def test_a_diverging_tenant_is_named(setup):
    top, meta, tasks = setup
    with pytest.raises(AdaptationDiverged, match="tenant 0: inner loss"):
        adapt_many(top, meta, tasks, steps=2, max_loss=1e-6)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_adapt_many_on_cuda_matches_cpu(setup):
    top, meta, tasks = setup
    want = [adapt_task(top, meta, t, steps=5)[0] for t in tasks]
    cuda_top = top_model(load_encoder(tiny_settings().encoder), 1, rank=2).to("cuda")
    cuda_meta = {k: v.to("cuda") for k, v in meta.items()}
    got = adapt_many(cuda_top, cuda_meta, tasks, steps=5)
    for g, w, t in zip(got, want, tasks):
        assert g["head.weight"].device.type == "cuda"
        _assert_same(g, w, atol=2e-4)
        assert accuracy(cuda_top, g, tuple(x.cuda() for x in t.query), t.query_y.cuda()) == \
            accuracy(top, w, t.query, t.query_y)


def test_with_label_names_adam_and_a_logistic_regression_head_batched_equals_alone(setup):
    top, meta, tasks = setup
    enc = load_encoder(tiny_settings().encoder)
    named = []
    for t, (classes, _, _) in zip(tasks, TENANTS):
        names = lower_features(enc, [c.title() for c in classes], frozen_layer_count(enc, 1))
        named.append(t.with_names((names.states, names.mask)))
    weighted = {**meta, "log_name_weight": torch.tensor(0.7)}
    want = [adapt_task(top, weighted, t, steps=4, optimizer="adam", head="logreg")[0] for t in named]
    got = adapt_many(top, weighted, named, steps=4, optimizer="adam", head="logreg")
    for g, w, t in zip(got, want, named):
        # Adam divides by sqrt(v): where a gradient is ~0 its rounding is amplified, so 1e-3 (vs steps of 0.1)
        _assert_same({k: v for k, v in g.items() if not k.startswith("head.")},
                     {k: v for k, v in w.items() if not k.startswith("head.")}, atol=1e-3)
        assert torch.equal(top.logits(g, *t.query).argmax(1), top.logits(w, *t.query).argmax(1))
    # the names matter: without them the adapted weights differ
    plain = adapt_many(top, weighted, tasks, steps=4, optimizer="adam", head="logreg")
    assert any((p["L0.output.dense.lora_B"] - g["L0.output.dense.lora_B"]).abs().max() > 1e-6
               for p, g in zip(plain, got))
