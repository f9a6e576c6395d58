"""The data contract, run by real Great Expectations: good data passes, each broken rule fails on its
own with a line a person can act on, and nothing is printed on the user's screen."""
import json
from pathlib import Path

import pandas as pd
import pytest

from data_checks.expectations import build_index, docs_page, validate_frame
from workspace.settings import ValidationSettings

S = ValidationSettings(min_labels=2, max_labels=3, min_examples_per_label=4, max_text_chars=50,
                       max_duplicate_fraction=0.2)


def good_frame() -> pd.DataFrame:
    labels = ["1"] * 4 + ["Billing"] * 4 + ["SSO login"] * 4
    return pd.DataFrame({"text": [f"ticket number {i}" for i in range(12)], "label": labels})


def test_good_frame_passes_with_stats_and_labels_as_strings(capfd):
    report = validate_frame("acme", good_frame(), S)
    assert report.passed and report.failures == []
    assert report.stats["label_counts"] == {"1": 4, "Billing": 4, "SSO login": 4}
    assert report.stats["n_rows"] == 12 and report.stats["n_labels"] == 3
    assert report.stats["duplicate_fraction"] == 0.0
    assert report.suite == "tailor-acme" and report.gx_version.startswith("1.")
    json.dumps(report.to_dict())  # the report travels between flow tasks and into quarantine
    out, err = capfd.readouterr()
    assert out == "" and err == "", "GX must keep its progress bars and logs off the user's screen"


def test_integer_labels_are_checked_as_names():
    frame = pd.DataFrame({"text": [f"t {i}" for i in range(8)], "label": [1] * 4 + [2] * 4})
    report = validate_frame("acme", frame, S)
    assert report.passed and report.stats["label_counts"] == {"1": 4, "2": 4}


def broken(kind: str) -> pd.DataFrame:
    frame = good_frame()
    if kind == "few examples":
        frame.loc[[8, 9], "label"] = "Billing"  # SSO login keeps 2, Billing gets 6
    elif kind == "blank text":
        frame.loc[[0, 5], "text"] = ["", "   "]
    elif kind == "missing label":
        frame = pd.concat([frame, pd.DataFrame({"text": ["orphan"], "label": [None]})], ignore_index=True)
    elif kind == "long text":
        frame.loc[2, "text"] = "x" * 51
    elif kind == "one label":
        frame["label"] = "only"
    elif kind == "too many labels":
        frame = pd.concat([frame, pd.DataFrame({"text": [f"new {i}" for i in range(4)], "label": ["Other"] * 4})],
                          ignore_index=True)
    elif kind == "duplicates":
        frame.loc[[0, 1, 2, 4], "text"] = "same text"
    elif kind == "no label column":
        frame = frame[["text"]]
    return frame


@pytest.mark.parametrize("kind, expected", [
    ("few examples", ["label 'SSO login' has 2 example(s), needs >= 4"]),
    ("blank text", ["text is blank in 2 row(s) (rows 1, 6)"]),
    ("missing label", ["label is missing in 1 row(s) (row 13)"]),
    ("long text", ["1 text(s) are longer than 50 characters (row 3): shorten them or raise validation.max_text_chars"]),
    ("one label", ["1 distinct label(s), needs between 2 and 3"]),
    ("too many labels", ["4 distinct label(s), needs between 2 and 3"]),
    ("duplicates", ["duplicate texts are 25% of rows, at most 20% allowed: remove repeated examples"]),
    ("no label column", ["column 'label' is missing (found: text): the file needs columns text,label"]),
])
def test_each_rule_fails_alone_with_a_readable_line(kind, expected):
    report = validate_frame("acme", broken(kind), S)
    assert not report.passed
    assert report.failures == expected


def test_empty_frame_says_only_that_it_has_no_rows():
    report = validate_frame("acme", good_frame().iloc[:0], S)
    assert not report.passed
    assert report.failures == ["the file has no rows: add one row per labelled example"]


def test_data_docs_keep_every_validation_in_one_file_backed_context(tmp_path):
    site = tmp_path / "data_docs"
    first = validate_frame("acme", broken("few examples"), S, docs_dir=site, run_name="aaa111")
    second = validate_frame("acme", good_frame(), S, docs_dir=site, run_name="bbb222")
    other = validate_frame("globex", good_frame(), S, docs_dir=site, run_name="ccc333")
    pages = sorted(p.relative_to(site).parts[:3] for p in (site / "validations").rglob("*.html"))
    assert pages == [("validations", "tailor-acme", "aaa111"), ("validations", "tailor-acme", "bbb222"),
                     ("validations", "tailor-globex", "ccc333")]  # the failed run's page survives
    assert first.data_docs.endswith(".html") and "aaa111" in first.data_docs and "bbb222" in second.data_docs
    assert docs_page(site, "acme", "aaa111") == first.data_docs
    # a single validation leaves the index alone (it lists the fleet's history); bulk ingest rebuilds it
    assert not (site / "index.html").exists() and other.data_docs_index is None
    assert build_index(site) == site / "index.html"
    index = (site / "index.html").read_text(encoding="utf-8")
    assert "aaa111" in index and "bbb222" in index and "ccc333" in index  # one index over the history
    # one data asset for every tenant: GX's project config, parsed on every open, does not grow per tenant
    config = (tmp_path / "gx" / "great_expectations.yml").read_text(encoding="utf-8")
    assert "tenant-file" in config and "acme" not in config and "globex" not in config
    assert (tmp_path / "gx" / "expectations").is_dir()  # suites are saved in the workspace's context
    page = Path(first.data_docs.removeprefix("file://")).read_text(encoding="utf-8")
    assert "examples_of_this_label" in page


def test_leakage_checks_run_as_part_of_validation():
    frame = good_frame()
    texts = frame["text"].tolist()
    mixed_up = validate_frame("acme", frame, S, others={"globex": texts[:-1], "initech": ["unrelated"]})
    assert not mixed_up.passed and mixed_up.leakage["cross_tenant"] == {"globex": len(texts) - 1}
    assert any(f.startswith("cross-tenant") and "globex" in f for f in mixed_up.failures)
    few = validate_frame("acme", frame, S, others={"globex": texts[:1]})
    assert few.passed and few.warnings and few.leakage["cross_tenant"] == {"globex": 1}
    dup = pd.concat([frame, frame.iloc[:1]], ignore_index=True)
    split = ([0, 1, 2], [len(dup) - 1])
    leaky = validate_frame("acme", dup, S, split=split)
    assert leaky.leakage["support_query"] == 1 and any("support/query" in w for w in leaky.warnings)
