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


def test_only_a_bounded_prefix_is_kept_and_the_whole_file_is_hashed(tmp_path):
    import hashlib

    from workspace.settings import LimitSettings

    ws = Workspace(tmp_path / "ws").ensure()
    src = tmp_path / "huge.csv"
    src.write_bytes(b"text,label\n" + b"x" * (3 << 20))
    kept = quarantine(ws, "acme", src, "too big", LimitSettings(quarantine_kb=4))
    assert kept.stat().st_size == 4096 and kept.read_bytes() == src.read_bytes()[:4096]
    record = json.loads(kept.with_name(kept.name + ".report.json").read_text())
    assert record["n_bytes"] == src.stat().st_size and record["truncated"] is True
    assert record["sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()


def test_a_symlink_is_reported_but_its_target_is_never_copied(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    secret = tmp_path / "secret.txt"
    secret.write_text("root password")
    link = tmp_path / "link.csv"
    link.symlink_to(secret)
    kept = quarantine(ws, "acme", link, "symlink refused")
    assert not kept.exists()
    report = kept.with_name(kept.name + ".report.json").read_text()
    assert "root password" not in report and json.loads(report)["kept_bytes"] == 0
    assert all("root password" not in p.read_text() for p in ws.quarantine_dir("acme").iterdir())


def test_report_escapes_what_it_shows_and_the_name_is_made_safe(tmp_path):
    ws = Workspace(tmp_path / "ws").ensure()
    src = tmp_path / "a\nb\x1b[31m;rm -rf.csv"
    src.write_text("text,label\n")
    kept = quarantine(ws, "acme", src, "label '\x1b[2J<script>' has 1 example(s)")
    assert kept.parent == ws.quarantine_dir("acme") and "\n" not in kept.name and "\x1b" not in kept.name
    text = kept.with_name(kept.name + ".report.json").read_text()
    assert "\x1b" not in text and "\\u001b" in text
