"""The base-training benchmark scores what the product does, keeps evaluation texts out of training in
every protocol, judges its targets from the numbers, and its command writes a complete report."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import data as bdata
from benchmarks import protocols
from benchmarks.stats import estimate, paired, stratified

ROOT = Path(__file__).resolve().parents[2]


def test_a_text_in_two_classes_or_two_sources_is_dropped():
    raw = {s: {f"{s}:{c}": [f"{s} {c} text {i}" for i in range(12)] for c in "ab"} for s in bdata.SOURCES}
    lex, topic = bdata.SOURCES[:2]
    raw[lex][f"{lex}:a"].append("shared across sources")
    raw[topic][f"{topic}:a"].append("shared across sources")
    raw[lex][f"{lex}:b"] += ["in two classes", "in two classes"]
    raw[lex][f"{lex}:a"].append("in two classes")
    pools = bdata.clean_pools(raw, 40, 0)
    every = [t for s in pools.values() for ts in s.values() for t in ts]
    assert "shared across sources" not in every and "in two classes" not in every
    assert len(every) == len(set(every)) == 12 * 2 * len(bdata.SOURCES)
    assert bdata.clean_pools(raw, 5, 0, min_texts=5)[lex][f"{lex}:a"] != []


def test_each_fold_leaves_its_source_out_of_meta_training_and_validation():
    from corpora.catalog import class_pools

    pools = bdata.clean_pools(class_pools(seed=0, sources=bdata.SOURCES), 12, 0)
    tenants = bdata.all_tenants(pools, 0)
    plan = bdata.folds()
    assert sorted(f.test for f in plan) == sorted(bdata.SOURCES) and all(f.val != f.test for f in plan)
    for fold in plan:
        train, val = bdata.fold_data(tenants, fold)
        seen = {t for ts, _ in [*train.values(), *val.values()] for t in ts}
        held = {t for ts, _ in tenants[fold.test].values() for t in ts}
        assert held and not held & seen, fold.test
        assert not any(t.startswith(fold.test) for t in [*train, *val])
        assert set(val) == set(tenants[fold.val]) and not set(val) & set(train)
        for texts, labels in tenants[fold.test].values():   # tenants carry human label names, unique per tenant
            assert len(texts) == len(labels) and not any(":" in label for label in labels)


def test_confidence_intervals_are_paired_and_sources_weigh_the_same():
    assert estimate([0.5, 0.7]).mean == pytest.approx(0.6) and estimate([0.5, 0.7]).half > 0.1
    diff = paired({0: 0.9, 1: 0.8, 2: 0.7}, {0: 0.8, 1: 0.7, 3: 0.0})
    assert diff.n == 2 and diff.mean == pytest.approx(0.1) and diff.half == pytest.approx(0.0, abs=1e-9)
    both = stratified([[1.0, 1.0, 1.0, 1.0], [0.0, 0.0]])
    assert both.mean == pytest.approx(0.5) and both.half == 0.0 and both.n == 6
    one = stratified([[0.1, 0.3, 0.2]])
    assert (one.mean, one.half) == pytest.approx((estimate([0.1, 0.3, 0.2]).mean, estimate([0.1, 0.3, 0.2]).half))
    wide = stratified([[0.0, 0.2], [0.5, 0.9]])
    assert wide.half > stratified([[0.0, 0.2, 0.0, 0.2], [0.5, 0.9, 0.5, 0.9]]).half


def _split(leak: bool = False):
    """A small in-domain split of a made-up source: 12 classes, a renamed and a merged regrouping."""
    from corpora.regrouping import Regrouping

    pools = {f"src:c{i}": [f"class {i} text {j}" for j in range(40)] for i in range(12)}
    regroupings = [Regrouping(f"other name {i}", "renamed", (f"src:c{i}",), None, "test") for i in range(12)]
    regroupings.append(Regrouping("both", "merged", ("src:c0", "src:c1"), None, "test"))
    split = protocols.in_domain("src", pools, regroupings, lambda k: k.split(":")[1].upper(), 0)
    if leak:   # one evaluation text also given to a training tenant
        tenant = next(iter(split.train))
        texts, labels = split.train[tenant]
        split.train[tenant] = (texts + [split.recurring[0].texts[0]], labels + [labels[0]])
    return split


def test_in_domain_protocols_are_text_disjoint_from_training_and_the_check_can_fail():
    split = _split()
    protocols.check_disjoint(split)
    seen = {t for data in (split.train, split.val) for ts, _ in data.values() for t in ts}
    assert split.recurring and split.new
    for cat in split.recurring + split.new:
        assert cat.texts and not set(cat.texts) & seen, cat.name
    trained = {lab for _, labs in split.train.values() for lab in labs}
    for cat in split.recurring:   # a recurring category's classes are in training, under their own name
        assert {m.split(":")[1].upper() for m in cat.members} <= trained and cat.name.lower() not in {
            t.lower() for t in trained}
    for cat in split.new:         # a new category's class is in no training or validation tenant
        assert cat.name not in trained and cat.name not in {lab for _, labs in split.val.values() for lab in labs}
    with pytest.raises(ValueError, match="also in a training or validation tenant"):
        protocols.check_disjoint(_split(leak=True))


def test_episodes_are_paired_and_never_put_overlapping_categories_together():
    split = _split()
    first = protocols.episodes(split, "recurring", 5, 8, seed=3)
    assert first == protocols.episodes(split, "recurring", 5, 8, seed=3), "the same episodes for every method"
    assert protocols.episodes(split, "recurring", 5, 4, seed=3) == first[:4]
    for ep in first:
        assert len(ep.names) == protocols.WAYS and len(set(ep.names)) == protocols.WAYS
        assert not ("both" in ep.names and {"other name 0", "other name 1"} & set(ep.names)), ep.names
        texts = [t for t, _ in ep.support + ep.query]
        assert len(texts) == len(set(texts)) and len(ep.support) == 5 * protocols.WAYS


def _results(rec_gain: float, with_pooled: bool = True) -> dict:
    """A run's records: on every protocol and source, tailor and the pooled base beat logistic regression
    with names by ``rec_gain`` on protocol 1 and by 0.5 points elsewhere; FOMAML ties pooled."""
    records, runs = [], {p: ["bible", "foldoc"] for p in protocols.PROTOCOLS}
    for p in protocols.PROTOCOLS:
        for s in runs[p]:
            for i in range(6):
                noise = 0.02 * (i % 3)
                gain = rec_gain if p == "recurring" else 0.005
                base = {"protocol": p, "source": s, "shots": 5, "episode": i}
                methods = {"logreg+names": 0.6 + noise, "logreg": 0.58 + noise, "prototypes": 0.55,
                           "no-meta": 0.6 + noise, "tailor": 0.6 + noise + gain, "fomaml": 0.6 + noise + gain,
                           "reptile": 0.59, "pooled-fomaml": 0.6 + noise + gain}
                if with_pooled:
                    methods["pooled"] = 0.6 + noise + gain
                records += [{**base, "method": m, "acc": a, **({"chosen": "base"} if m == "tailor" else {})}
                            for m, a in methods.items()]
    timing = [{"source": "bible", "threads": 1, "adapt_tenant_s": 0.5, "pooled_s": 0.1}]
    info = {"settings": {"meta_train": {"algorithm": "pooled", "max_minutes": 1.0, "pooled_lr": 0.001,
                                        "pooled_batch": 64, "pooled_val_every": 25, "meta_batch": 4,
                                        "inner_steps": 8, "meta_lr": 0.001, "val_every": 25, "val_tasks": 16},
                         "adapt": {"cv_folds": 5, "choice_margin": 0.02}},
            "runs": runs, "profile": "full", "runtime_s": 60.0, "load_start": [1.0], "load_end": [1.0],
            "command": "python -m benchmarks.meta_learning", "started": "now", "nproc": 2, "cpu": "cpu",
            "python": "3.11", "torch": "2.13", "profile_plan": {"episodes": {5: 6}, "setfit_episodes": 0},
            "in_counts": {}, "folds": [], "algorithms": ["pooled", "fomaml", "reptile", "pooled-fomaml"]}
    return {"info": info, "records": records, "training": {},
            "cost": {"meta_step": [], "adaptation": {"timing": timing, "bytes": {"product": 10, "encoder": 1000}}}}


@pytest.mark.parametrize("gain,met", [(0.06, True), (0.03, False)])
def test_the_recurring_target_is_judged_from_the_paired_mean_over_sources(gain, met):
    from benchmarks.tables import Results
    from benchmarks.targets import targets

    found = targets(Results(_results(gain)))
    row = next(t for t in found if t.text.startswith("protocol 1 (recurring categories)"))
    assert row.met is met and f"+{100 * gain:.1f} ± 0.0 pts" in row.measured, row
    anchor = next(t for t in found if "best meta-learned base training >= pooled + 1 pt" in t.text)
    assert anchor.met is False and "default: pooled" in anchor.measured, "FOMAML ties pooled: no gain to claim"


def test_the_report_has_the_pooled_anchor_and_fails_without_it(tmp_path):
    from benchmarks.report import render

    text = render(_results(0.06), tmp_path)
    assert "Pooled base" in text and "pooled - frozen+names" in text
    assert "best meta-learned base training >= pooled + 1 pt" in text and "pooled, as measured" in text
    for section in ("## Targets", "## Summary, 5-shot", "## Accuracy per source", "## Paired differences",
                    "## The per-tenant choice", "## Cost"):
        assert section in text, section
    without = render(_results(0.06, with_pooled=False), tmp_path)
    assert "Pooled base" not in without.split("## Accuracy per source")[1].split("## Paired")[0]


@pytest.mark.slow
def test_quick_benchmark_writes_a_complete_report(tmp_path):
    out = tmp_path / "results"
    run = subprocess.run([sys.executable, "-m", "benchmarks.meta_learning", "--quick", "--out", str(out),
                          "--cache", str(ROOT / "benchmarks" / "cache")], cwd=ROOT, capture_output=True, text=True,
                         timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = (out / "meta_learning.md").read_text(encoding="utf-8")
    for section in ("## Targets", "## Summary, 5-shot", "## Accuracy per source", "## Paired differences",
                    "## The per-tenant choice", "## Base training per training set", "## Cost", "#### 10-shot"):
        assert section in report, section
    assert "python -m benchmarks.meta_learning --quick" in report and "**mean over sources**" in report
    assert not any(bad in report.lower().split() for bad in ("nan", "inf", "nan%"))
    for png in ("accuracy_vs_shots", "base_training_curves"):
        assert (out / f"{png}.png").stat().st_size > 10_000
    results = json.loads((out / "meta_learning.json").read_text())
    methods = {r["method"] for r in results["records"]}
    assert {"logreg+names", "setfit", "no-meta", "pooled", "fomaml", "reptile", "pooled-fomaml", "tailor"} <= methods
    assert {r["protocol"] for r in results["records"]} == set(protocols.PROTOCOLS)
    assert all(0.0 <= r["acc"] <= 1.0 for r in results["records"] if "acc" in r)
    costs = [m["step_s"] for m in results["cost"]["meta_step"]]
    timing = [v for row in results["cost"]["adaptation"]["timing"] for k, v in row.items() if k.endswith("_s")]
    assert all(math.isfinite(v) and v >= 0 for v in costs + timing)
