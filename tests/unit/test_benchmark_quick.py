"""The meta-learning benchmark scores what the product does, and its command writes a complete report."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.methods import adapted_scores
from benchmarks.stats import estimate, paired
from lightning_modules.encoder import load_encoder
from lightning_modules.episodes import EpisodeSampler, pools_from_labels
from lightning_modules.features import lower_features
from lightning_modules.model import init_meta_params, top_model
from lightning_modules.tasks import TaskData, evaluate_task
from tests.conftest import synthetic_tenant, tiny_settings

ROOT = Path(__file__).resolve().parents[2]
METHOD_ROWS = ("Prototypes on the frozen encoder", "Logistic regression on frozen embeddings", "SetFit recipe",
               "Same adaptation, no meta-learning", "Second-order MAML", "FOMAML", "Reptile")


def test_scores_along_the_inner_loop_equal_the_products_evaluation():
    s = tiny_settings()
    enc = load_encoder(s.encoder)
    texts, labels = synthetic_tenant(["animal", "food", "tool", "music"], 8, seed=3)
    feats = lower_features(enc, texts, enc.num_layers - 1)
    top = top_model(enc, 1, 2)
    meta = init_meta_params(top, 0.5, 0)
    task = EpisodeSampler([pools_from_labels("t", labels)], (4, 4), 3, 4, seed=1).sample()
    scores, seconds, diverged = adapted_scores(top, meta, feats, task, (1, 2, 4, 8), 8, None)
    assert not diverged and seconds > 0 and set(scores) == {1, 2, 4, 8}
    assert scores[8] == evaluate_task(top, meta, TaskData.from_task(feats, task), 8)
    assert scores[1] == evaluate_task(top, meta, TaskData.from_task(feats, task), 1)


def test_confidence_intervals_are_paired_on_common_episodes():
    assert estimate([0.5, 0.7]).mean == pytest.approx(0.6) and estimate([0.5, 0.7]).half > 0.1
    diff = paired({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.8, 1: 0.7, 3: 0.0})
    assert diff.n == 2 and diff.mean == pytest.approx(0.1) and diff.half == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_report(tmp_path):
    out = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "benchmarks.meta_learning", "--quick", "--out", str(out),
                          "--cache", str(tmp_path / "cache")], cwd=ROOT, capture_output=True, text=True,
                         timeout=1200)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = (out / "meta_learning.md").read_text(encoding="utf-8")
    for row in METHOD_ROWS:
        assert f"| {row}" in report, row
    assert "python -m benchmarks.meta_learning --quick" in report and "## Targets" in report
    assert not any(bad in report.lower().split() for bad in ("nan", "inf", "nan%"))
    for png in ("accuracy_vs_shots", "accuracy_vs_inner_steps", "meta_training_curve"):
        assert (out / f"{png}.png").stat().st_size > 10_000
    results = json.loads((out / "meta_learning.json").read_text())
    methods = {r["method"] for r in results["records"]}
    assert {"prototypes", "logreg", "setfit", "no-meta", "fomaml", "reptile"} <= methods
    assert all(0.0 <= r["acc"] <= 1.0 for r in results["records"])
    costs = [m["step_s"] for m in results["cost"]["meta_step"]] + [m["peak_mb"] for m in results["cost"]["meta_step"]]
    timing = [v for row in results["cost"]["adaptation"]["timing"] for k, v in row.items() if k.endswith("_s")]
    assert {m["algorithm"] for m in results["cost"]["meta_step"]} == {"maml", "fomaml", "reptile"}
    assert all(math.isfinite(v) and v >= 0 for v in costs + timing)
