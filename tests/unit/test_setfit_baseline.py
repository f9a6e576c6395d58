"""The benchmark's SetFit anchor runs the real setfit package offline: it learns, it trains on the
pairs it reports, and it neither prints nor writes files (setfit's defaults would open an MLflow
store in the working directory and draw progress bars)."""
import tempfile

import numpy as np
import pytest

from benchmarks.setfit_baseline import fit_predict
from tests.conftest import synthetic_tenant

pytestmark = pytest.mark.slow   # fine-tunes the packaged encoder: needs `make bench`'s extra, ~10 s


def _split(classes, shots=5, n=15):
    texts, labels = synthetic_tenant(classes, n, seed=7)
    ids = {name: i for i, name in enumerate(dict.fromkeys(labels))}
    y = [ids[label] for label in labels]
    support = [k for k in range(len(texts)) if k % n < shots]
    query = [k for k in range(len(texts)) if k % n >= shots]
    return ([texts[k] for k in support], [y[k] for k in support],
            [texts[k] for k in query], np.array([y[k] for k in query]))


def test_setfit_separates_two_easy_classes_on_its_own_pair_count():
    support, support_y, query, query_y = _split(["animal", "food"])
    pred, seconds, pairs = fit_predict(support, support_y, query)
    assert np.mean(pred == query_y) >= 0.95
    # setfit's "oversampling" over 10 texts: 30 same-class and 25 cross-class pairs (i <= j), both sides cycled
    # to 30, so 60 pairs, one epoch
    assert pairs == 60 and seconds > 0


def test_a_pair_cap_is_honoured_quietly_and_nothing_is_written(tmp_path, monkeypatch, capfd):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))   # where setfit's output_dir goes
    (tmp_path / "tmp").mkdir()
    support, support_y, query, query_y = _split(["tool", "weather"])
    pred, _, pairs = fit_predict(support, support_y, query, max_pairs=32)
    out, err = capfd.readouterr()
    assert pairs == 32 and pred.shape == query_y.shape
    assert out == "" and err == "", (out + err)[-2000:]
    assert [p.name for p in tmp_path.iterdir()] == ["tmp"] and not any((tmp_path / "tmp").iterdir())
