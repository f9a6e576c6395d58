"""Meta-training keeps its best validated weights and resumes; adaptation measures on texts it did not
adapt on, never ships worse than a baseline without meta-learning, and yields a small delta."""
import math

import pytest
import torch
from safetensors.torch import save_file

from lightning_modules import adaptation
from lightning_modules.adaptation import AdaptationRejected, adapt_tenant
from lightning_modules.delta import load_base, save_delta
from lightning_modules.encoder import load_encoder
from lightning_modules.inference import load_predictor
from lightning_modules.training import meta_train, validation_score

from tests.conftest import synthetic_tenant, tiny_settings

TRAIN = [["animal", "food", "tool"], ["music", "sport", "car"], ["animal", "music", "sport"], ["law", "weather", "car"]]


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    from pytorch_lightning.loggers import MLFlowLogger

    s = tiny_settings()
    train = {f"t{i}": synthetic_tenant(c, 12, seed=i) for i, c in enumerate(TRAIN)}
    val = {"v": synthetic_tenant(["car", "food", "tool"], 12, seed=9)}
    out = tmp_path_factory.mktemp("base")
    logger = MLFlowLogger(experiment_name="curves", tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    result = meta_train(load_encoder(s.encoder), s, train, val, out / "base", out / "cache", say=lambda m: None,
                        logger=logger)
    result.logger = logger
    return s, result, val, out / "cache"


def test_the_base_is_the_best_validated_weights_rescored_independently(base):
    s, result, val, cache = base
    enc = load_encoder(s.encoder)
    # the returned weights, scored again from scratch, give the accuracy the run reports ...
    assert validation_score(enc, s, val, result.meta, cache) == pytest.approx(result.metrics["val_accuracy"], abs=1e-6)
    # ... which is no worse than the start without meta-learning, and is the best point of the curve
    assert result.metrics["val_accuracy"] >= result.metrics["val_accuracy_start"]
    curve = [h["val_acc"] for h in result.history if "val_acc" in h]
    assert len(curve) >= 2 and max(curve) == pytest.approx(result.metrics["val_accuracy"], abs=1e-6)
    meta, info = load_base(result.base_dir)
    assert info["encoder"]["name"] == "tiny" and all(torch.equal(meta[k], result.meta[k]) for k in meta)


def test_an_interrupted_meta_training_resumes_from_its_last_checkpoint(tmp_path):
    s = tiny_settings(meta_steps=3, val_every=3, algorithm="fomaml")
    train = {f"t{i}": synthetic_tenant(c, 12, seed=i) for i, c in enumerate(TRAIN)}
    val = {"v": synthetic_tenant(["car", "food", "tool"], 12, seed=9)}
    enc, ckpt = load_encoder(s.encoder), tmp_path / "ckpt"
    first = meta_train(enc, s, train, val, tmp_path / "b1", tmp_path / "cache", say=lambda m: None, checkpoint_dir=ckpt)
    assert (ckpt / "last.ckpt").is_file() and first.metrics["steps_run"] == 3
    said = []
    longer = s.replace("meta_train", meta_steps=6)   # the same run, allowed to go on (as after a kill at step 3)
    second = meta_train(enc, longer, train, val, tmp_path / "b2", tmp_path / "cache", say=said.append, checkpoint_dir=ckpt)
    assert any("resuming" in m for m in said)
    assert second.metrics["steps_run"] == 6
    trained = [h["step"] for h in second.history if "train_loss" in h]
    assert len(trained) == 6 and len(set(trained)) == 6, "no step ran twice"
    assert second.history[:len(first.history)] == first.history, "the curve goes on from where it stopped"


def test_meta_training_logs_its_curves_to_mlflow_through_lightning(base):
    from mlflow.tracking import MlflowClient

    s, result, _, _ = base
    logger = result.logger
    client = MlflowClient(logger._tracking_uri)
    validations = [h for h in result.history if "val_acc" in h and h["step"] > 0]
    logged = client.get_metric_history(logger.run_id, "val_acc")
    cfg = s.meta_train
    assert cfg.algorithm == "pooled", "the fixture trains the product's default base"
    assert len(logged) == len(validations) == cfg.pooled_steps // cfg.pooled_val_every
    assert sorted(m.value for m in logged) == pytest.approx(sorted(h["val_acc"] for h in validations))
    assert len(client.get_metric_history(logger.run_id, "train_loss")) == result.metrics["steps_run"]


def _encoder_bytes(enc) -> int:
    return sum(p.numel() * p.element_size() for p in enc.model.parameters())


def test_the_delta_is_small_next_to_the_encoder_and_serves_texts_it_never_saw(base, tmp_path):
    s, result, _, _ = base
    enc = load_encoder(s.encoder)
    texts, labels = synthetic_tenant(["weather", "law", "animal"], 20, seed=5)
    out = adapt_tenant(enc, s, result.meta, "acme", texts, labels)
    m = out.metrics
    assert m["n_query"] == 60 and out.labels == ["Animal", "Law", "Weather"]
    _, info = load_base(result.base_dir)
    path = save_delta(tmp_path / "delta", out.delta, {"tenant": "acme", "labels": out.labels,
                                                       "base": {"digest": info["digest"]}})
    assert (path / "delta.safetensors").stat().st_size <= 0.02 * _encoder_bytes(enc)
    predictor = load_predictor(result.base_dir, path, "acme")
    fresh, truth = synthetic_tenant(["weather", "law", "animal"], 20, seed=77)   # other word draws
    fresh = [t.replace("note", "memo") for t in fresh]                          # and another suffix
    pred = predictor.predict(fresh)
    assert set(pred) == set(out.labels), "a constant predictor would not pass"
    assert sum(p == t for p, t in zip(pred, truth)) / len(fresh) >= 0.7


def _rigged(monkeypatch, hit_rates: dict):
    """Each method's cross-validated predictions correct on the first share ``hit_rates[method]``
    of every fold's examples (wrong on the rest): what the choice sees, without real models."""
    real = adaptation._fit

    def tagged_fit(method, *args, **kwargs):
        params, losses = real(method, *args, **kwargs)
        return {**params, "__method": method}, losses

    def rigged_predict(method, t, params, rows):
        good = round(hit_rates[method] * len(rows))
        truth = t.y[torch.tensor(rows)]
        return torch.where(torch.arange(len(rows)) < good, truth, (truth + 1) % t.n_way)

    monkeypatch.setattr(adaptation, "_fit", tagged_fit)
    monkeypatch.setattr(adaptation, "_predict", rigged_predict)


def test_the_candidate_keeps_the_default_unless_another_method_wins_beyond_the_margin_and_noise(base, monkeypatch):
    s, result, _, _ = base
    enc = load_encoder(s.encoder)
    texts, labels = synthetic_tenant(["weather", "law", "animal", "tool"], 10, seed=3)
    # 40 examples, 5 folds of 8: rates in eighths
    rates = {"base": 0.5, "no-meta": 0.625, "logreg-names-frozen": 0.875, "logreg-frozen": 1.0,
             "prototypes-frozen": 0.625}
    _rigged(monkeypatch, rates)
    out = adapt_tenant(enc, s, result.meta, "acme", texts, labels)
    m = out.metrics
    assert out.adaptation["head"] == "logreg-names-frozen" and m["query_accuracy"] == 0.875, \
        "a clear winner among the candidates is taken (plain logistic regression is measured, not chosen)"
    assert m["baseline_method"] == "logreg-frozen" and m["baseline_accuracy"] == 1.0
    assert m["n_query"] == 40 and m["cv_folds"] == 5, "every example is scored once"
    lo, hi = m["query_accuracy_ci95"]
    assert lo < 0.875 < hi and hi - lo > 0.1, "an accuracy comes with its interval"
    assert set(k for k in out.delta if k != "__method") == {"head.weight", "head.bias"}, "a head alone: frozen encoder"
    # the default (the base's adaptation) is kept when nothing beats it by the margin ...
    rates.update({"base": 1.0, "logreg-frozen": 0.875})
    out = adapt_tenant(enc, s, result.meta, "acme", texts, labels)
    assert out.adaptation["head"] == "base" and out.metrics["baseline_accuracy"] == 0.875
    assert out.adaptation["default_method"] == "base"
    # ... and when another is ahead by less than the margin (a noisy maximum would pick it: this does not)
    rates.update({"base": 0.75, "logreg-names-frozen": 0.875})
    wide = s.replace("adapt", choice_margin=0.15)
    out = adapt_tenant(enc, wide, result.meta, "acme", texts, labels)
    assert out.adaptation["head"] == "base"
    assert adapt_tenant(enc, s, result.meta, "acme", texts, labels).adaptation["head"] == "logreg-names-frozen"
    assert out.metrics["baseline_method"] in adaptation.BASELINES


def test_the_choice_needs_a_gain_beyond_its_noise():
    default = [True] * 20 + [False] * 20
    noisy = [False] * 3 + [True] * 17 + [True] * 5 + [False] * 15   # +2 net over 40 texts, 8 discordant
    chosen, gains = adaptation.choose({"base": default, "other": noisy}, "base", 0.02)
    assert gains["other"]["gain"] == pytest.approx(0.05) and chosen == "base", "5 points on 40 texts is noise here"
    clear = [True] * 40
    chosen, _ = adaptation.choose({"base": default, "other": clear}, "base", 0.02)
    assert chosen == "other"


def test_cross_validation_folds_are_stratified_seeded_and_cover_every_example():
    labels = ["a"] * 10 + ["b"] * 4
    folds = adaptation.cv_folds(labels, 5, seed=0)
    assert sorted(set(folds)) == [0, 1, 2, 3], "no more folds than the rarest label has examples"
    for k in set(folds):
        assert {labels[i] for i, f in enumerate(folds) if f == k} == {"a", "b"}, "every fold scores every label"
    assert adaptation.cv_folds(labels, 5, seed=0) == folds
    with pytest.raises(AdaptationRejected):
        adaptation.cv_folds(["a", "a", "b"], 5, 0)


def test_the_names_baseline_learns_from_the_label_names(base):
    """logreg-names-frozen is a head fitted on the examples and the names: with one example per label
    and the names as the only other evidence, changing the names changes its head."""
    s, result, _, _ = base
    enc = load_encoder(s.encoder)
    texts, labels = synthetic_tenant(["weather", "law", "animal"], 4, seed=9)
    rows = list(range(len(texts)))

    def head(names):
        renamed = [dict(zip(["Animal", "Law", "Weather"], names))[label] for label in labels]
        t, _ = adaptation._prepare(enc, s, result.meta, texts, renamed, None, None)
        return adaptation._fit("logreg-names-frozen", t, rows, s.adapt, s.meta_train)[0], t

    (a, t), (b, _) = head(["animal", "law", "weather"]), head(["zebra", "court", "rain"])
    assert not torch.allclose(a["head.weight"], b["head.weight"])
    plain = adaptation._fit("logreg-frozen", t, rows, s.adapt, s.meta_train)[0]
    assert not torch.allclose(a["head.weight"], plain["head.weight"])


def test_a_frozen_head_in_a_delta_predicts_exactly_like_its_baseline(base, tmp_path):
    s, result, _, _ = base
    enc = load_encoder(s.encoder)
    texts, labels = synthetic_tenant(["weather", "law", "animal"], 20, seed=5)
    from lightning_modules import baselines
    from lightning_modules.features import lower_features
    from lightning_modules.model import init_meta_params, top_model
    from lightning_modules.tasks import logreg_head, predictions
    from sklearn.linear_model import LogisticRegression

    top = top_model(enc, 1, s.encoder.lora_rank)
    feats = lower_features(enc, texts, enc.num_layers - 1)
    z = baselines.frozen_embeddings(top, init_meta_params(top, 0.1), feats)
    y = torch.tensor([sorted(set(labels)).index(label) for label in labels])
    head = logreg_head(z, y, 3)
    sk = LogisticRegression(max_iter=1000, C=10.0).fit(z.double().numpy(), y.numpy()).predict(z.double().numpy())
    assert predictions(top, head, (feats.states, feats.mask)).tolist() == sk.tolist()
    two = y < 2   # the binary case: scikit-learn keeps one row, the head needs two
    head2 = logreg_head(z[two], y[two], 2)
    sk2 = LogisticRegression(max_iter=1000, C=10.0).fit(z[two].double().numpy(), y[two].numpy()).predict(z[two].double().numpy())
    assert predictions(top, head2, (feats.states[two], feats.mask[two])).tolist() == sk2.tolist()


def test_diverging_adaptation_is_rejected_with_a_reason(base):
    s, result, _, _ = base
    s = s.replace("adapt", max_loss=1e-6)
    texts, labels = synthetic_tenant(["weather", "law"], 6)
    with pytest.raises(AdaptationRejected, match="diverged"):
        adapt_tenant(load_encoder(s.encoder), s, result.meta, "acme", texts, labels)
