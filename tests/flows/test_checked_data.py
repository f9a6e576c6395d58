"""What adaptation reads: the exact bytes of the recorded data version (issue 11), checked for
support/query leakage on the very split adaptation measures on (issue 10; its first cross-validation fold), also when a large
tenant is sampled down to ``limits.max_adapt_rows``; each such validation gets its own offline page."""
import re
from pathlib import Path
from urllib.parse import urlparse

import pandas as pd
import pytest

from flows.common import checked_version, measuring_split, sampled
from lightning_modules import adaptation
from tests.conftest import synthetic_tenant, tiny_settings
from workspace import versioning
from workspace.create import init_workspace
from workspace.errors import UserError


def test_the_leakage_split_is_the_split_adaptation_measures_on_after_sampling():
    texts, labels = synthetic_tenant(["animal", "food", "tool"], 40, seed=1)
    frame = pd.DataFrame({"text": texts, "label": labels})
    settings = tiny_settings().replace("limits", max_adapt_rows=30)
    support, query = measuring_split(frame, settings)
    used, info = sampled(frame, settings)
    assert info is not None and len(used) == 30
    s, q = adaptation.measuring_split(used["label"].tolist(), settings.adapt.cv_folds, settings.adapt.seed)
    assert [texts[i] for i in support] == [used["text"][i] for i in s]
    assert [texts[i] for i in query] == [used["text"][i] for i in q]


def test_a_duplicate_across_the_measuring_split_is_reported_with_the_version_read(tmp_path):
    settings = tiny_settings()
    ws = init_workspace(tmp_path / "ws", settings)
    texts, labels = synthetic_tenant(["animal", "food"], 8, seed=2)
    frame = pd.DataFrame({"text": texts, "label": labels})
    support, query = measuring_split(frame, settings)
    frame.loc[support[0], "text"] = frame.loc[query[0], "text"]  # one held-out text also in support
    src = tmp_path / "leaky.csv"
    frame.to_csv(src, index=False)
    version = versioning.track(ws, "leaky", src)
    _, report, read = checked_version(ws, settings, "leaky")
    assert read == version
    assert report.leakage["checked_split"] and report.leakage["support_query"] == 1
    # this validation has its own page (what a candidate links), readable offline: nothing from a CDN
    assert report.data_docs, "this validation has no page"
    page = Path(urlparse(report.data_docs).path)
    assert page.is_file() and page.is_relative_to(ws.data_docs_dir.resolve())
    html = page.read_text(encoding="utf-8")
    assert version.md5.removeprefix("md5:") in str(page) and "support/query leakage" in html
    index = (ws.data_docs_dir / "tailor" / "index.html").read_text(encoding="utf-8")
    assert page.relative_to(ws.data_docs_dir.resolve() / "tailor").as_posix() in index
    for text in (html, index):
        assert not re.search(r"(?:https?:)?//[a-z]", text), "the page loads something from elsewhere"
    (ws.root / version.path).write_text(src.read_text() + "edited,Animal\n")
    with pytest.raises(UserError, match="changed outside Tailor"):
        checked_version(ws, settings, "leaky")
