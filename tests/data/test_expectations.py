"""The data contract, run by real Great Expectations: good data passes, each broken rule fails on its
own with a line a person can act on, and nothing is printed on the user's screen."""
import json

import pandas as pd
import pytest

from data_checks.expectations import validate_frame
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


def test_data_docs_are_built_per_tenant(tmp_path):
    report = validate_frame("acme", broken("few examples"), S, docs_dir=tmp_path)
    index = tmp_path / "acme" / "index.html"
    assert report.data_docs == str(index) and index.is_file()
    pages = list((tmp_path / "acme" / "validations").rglob("*.html"))
    assert pages and "examples_of_this_label" in pages[0].read_text(encoding="utf-8")
