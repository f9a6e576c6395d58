"""Meta-training produces a loadable base; adaptation measures honestly and yields a small delta."""
import pytest

from lightning_modules.adaptation import AdaptationRejected, adapt_tenant, stratified_split
from lightning_modules.delta import load_base, save_delta
from lightning_modules.encoder import load_encoder
from lightning_modules.inference import load_predictor
from lightning_modules.training import meta_train

from tests.conftest import synthetic_tenant, tiny_settings


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    s = tiny_settings()
    train = {f"t{i}": synthetic_tenant(c, 12, seed=i) for i, c in
             enumerate([["animal", "food", "tool"], ["music", "sport", "car"], ["animal", "music", "sport"]])}
    val = {"v": synthetic_tenant(["car", "food", "tool"], 12, seed=9)}
    out = tmp_path_factory.mktemp("base")
    return s, meta_train(load_encoder(s.encoder), s, train, val, out / "base", out / "cache", say=lambda m: None)


def test_meta_training_keeps_the_best_held_out_weights(base):
    s, result = base
    steps = [h for h in result.history if "val_acc" in h]
    assert steps[0]["step"] == 0 and len(steps) >= 2
    assert result.metrics["val_accuracy"] == max(h["val_acc"] for h in steps)
    meta, info = load_base(result.base_dir)
    assert info["encoder"]["name"] == "tiny" and set(meta) == set(result.meta)


def test_split_is_stratified_disjoint_and_seeded():
    labels = ["a"] * 10 + ["b"] * 4
    s1, q1 = stratified_split(labels, 0.3, seed=0)
    assert not set(s1) & set(q1) and len(s1) + len(q1) == 14
    assert sorted(labels[i] for i in q1) == ["a"] * 3 + ["b"]
    assert stratified_split(labels, 0.3, seed=0) == (s1, q1)
    with pytest.raises(AdaptationRejected):
        stratified_split(["a", "a", "b"], 0.3, 0)


def test_adaptation_records_baselines_and_a_small_delta_that_serves(base, tmp_path):
    s, result = base
    texts, labels = synthetic_tenant(["weather", "law", "animal"], 10, seed=5)
    out = adapt_tenant(load_encoder(s.encoder), s, result.meta, "acme", texts, labels)
    m = out.metrics
    assert {"query_accuracy", "no_meta_accuracy", "prototype_accuracy", "logreg_accuracy"} <= set(m)
    assert m["baseline_accuracy"] == m["no_meta_accuracy"]
    assert m["n_support"] + m["n_query"] == 30 and out.labels == ["Animal", "Law", "Weather"]
    delta_bytes = sum(v.numel() * v.element_size() for v in out.delta.values())
    base_bytes = sum(v.numel() * v.element_size() for v in result.meta.values())
    assert delta_bytes < 4 * base_bytes  # adapters + one head, nothing of the encoder
    _, info = load_base(result.base_dir)
    path = save_delta(tmp_path / "delta", out.delta, {"tenant": "acme", "labels": out.labels,
                                                       "base": {"digest": info["digest"]}})
    predictor = load_predictor(result.base_dir, path, "acme")
    assert set(predictor.predict(texts)) <= set(out.labels)
    assert sum(p == t for p, t in zip(predictor.predict(texts), labels)) / len(texts) >= 0.6


def test_diverging_adaptation_is_rejected_with_a_reason(base):
    s, result = base
    s = s.replace("adapt", max_loss=1e-6)
    texts, labels = synthetic_tenant(["weather", "law"], 6)
    with pytest.raises(AdaptationRejected, match="diverged"):
        adapt_tenant(load_encoder(s.encoder), s, result.meta, "acme", texts, labels)
