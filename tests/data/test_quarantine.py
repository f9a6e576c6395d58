"""A rejected file is kept with its reason, and the tenant's current data is never touched."""
import json

import pandas as pd
import pytest

from data_checks.expectations import validate_frame
from data_checks.quarantine import quarantine
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import ValidationSettings


def test_rejected_file_is_copied_with_its_report_and_tenant_data_untouched(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    current = ws.tenant_dir("acme") / "data.csv"
    current.parent.mkdir(parents=True)
    current.write_text("text,label\ngood,a\n")
    src = tmp_path / "upload.csv"
    src.write_text("text,label\nbad,a\n")
    frame = pd.DataFrame({"text": ["bad"], "label": ["a"]})
    report = validate_frame("acme", frame, ValidationSettings())

    kept = quarantine(ws, "acme", src, report)

    assert kept.parent == ws.quarantine_dir("acme") and kept.name.endswith("-upload.csv")
    assert kept.read_bytes() == src.read_bytes()
    record = json.loads(kept.with_name(kept.name + ".report.json").read_text())
    assert record["tenant"] == "acme" and record["report"]["passed"] is False
    assert record["report"]["failures"] == report.failures
    assert current.read_text() == "text,label\ngood,a\n"
    assert sorted(p.name for p in ws.tenant_dir("acme").iterdir()) == ["data.csv"]


def test_two_rejections_of_the_same_file_are_both_kept(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    src = tmp_path / "upload.jsonl"
    src.write_text('{"text": "x", "label": "y"}\n')
    first = quarantine(ws, "acme", src, "not UTF-8")
    second = quarantine(ws, "acme", src, {"passed": False, "failures": ["too few labels"]})
    assert first != second and first.exists() and second.exists()
    assert json.loads(first.with_name(first.name + ".report.json").read_text())["report"] == {"reason": "not UTF-8"}


def test_bad_tenant_id_is_refused_before_any_path_is_built(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    src = tmp_path / "f.csv"
    src.write_text("text,label\n")
    with pytest.raises(UserError, match="invalid tenant id"):
        quarantine(ws, "../etc", src, "x")
    assert not (ws.state_dir / "quarantine").exists()
