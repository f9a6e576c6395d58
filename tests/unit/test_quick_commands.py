"""What makes the quick commands quick, checked by behaviour: a re-ingest of an unchanged file says
so without starting Prefect or Great Expectations, the modules a quick command needs import no heavy
library they do not use, and a recorded Great Expectations outcome answers for the same rows and
rules (and only for them)."""
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from data_checks.expectations import validate_frame
from tests.conftest import synthetic_tenant, tiny_settings
from workspace.settings import ValidationSettings

REPO = Path(__file__).resolve().parents[2]


def run_python(code: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TAILOR_USER": "tester"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, cwd=REPO)


def test_reingesting_an_unchanged_file_says_so_without_prefect_or_great_expectations(tmp_path):
    from workspace import versioning
    from workspace.create import init_workspace

    ws = init_workspace(tmp_path / "ws", tiny_settings())
    texts, labels = synthetic_tenant(["animal", "food"], 6)
    src = tmp_path / "acme.csv"
    src.write_text("text,label\n" + "".join(f"{t},{lb}\n" for t, lb in zip(texts, labels)), encoding="utf-8")
    version = versioning.track(ws, "acme", src)  # as a first `tailor ingest` leaves it
    done = run_python("import sys; from tailor.cli import main; code = main(sys.argv[1:]); "
                      "heavy = {'prefect', 'great_expectations', 'torch', 'mlflow'} & set(sys.modules); "
                      "print('imported:', sorted(heavy)); sys.exit(code)",
                      "-w", str(ws.root), "ingest", "acme", str(src))
    assert done.returncode == 0, done.stderr
    assert f"is unchanged: data version {version.md5}" in done.stdout
    assert "imported: []" in done.stdout


def test_the_modules_quick_commands_read_import_no_heavy_library():
    # flows.common gives `tailor validate` its checked data; data_checks.reading checks input files
    done = run_python("import sys, flows.common; "
                      "print(sorted({'prefect', 'torch', 'mlflow', 'great_expectations'} & set(sys.modules)))")
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    done = run_python("import sys, data_checks.reading; print('pandas' in sys.modules)")
    assert done.returncode == 0 and done.stdout.strip() == "False", "checking an input file imports pandas"


def test_a_command_that_showed_progress_ends_with_its_elapsed_time_on_stderr(capsys):
    from tailor import progress

    since = progress.started()
    with progress.working("a long step", enabled=True):
        print('{"json": true}')
    progress.elapsed(since)
    out, err = capsys.readouterr()
    assert out == '{"json": true}\n' and re.search(r"^done in \d+\.\d s$", err, re.M), (out, err)
    progress.elapsed(progress.started())  # a quick command (no progress shown) ends without it
    assert capsys.readouterr().err == ""


def frame(n=6, extra=None) -> pd.DataFrame:
    texts, labels = synthetic_tenant(["animal", "food"], n)
    if extra:
        texts, labels = texts + [extra[0]], labels + [extra[1]]
    return pd.DataFrame({"text": texts, "label": labels})


def test_a_recorded_outcome_answers_only_for_the_same_rows_and_rules(tmp_path):
    rules = ValidationSettings(min_examples_per_label=4)
    first = validate_frame("acme", frame(), rules, recorded=tmp_path)
    assert first.passed and not first.recorded and first.gx_checked_at == first.checked_at
    again = validate_frame("acme", frame(), rules, recorded=tmp_path)
    assert again.recorded and again.gx_checked_at == first.gx_checked_at
    assert (again.passed, again.failures, again.stats) == (first.passed, first.failures, first.stats)
    stricter = validate_frame("acme", frame(), ValidationSettings(min_examples_per_label=8), recorded=tmp_path)
    assert not stricter.recorded and not stricter.passed  # other rules: GX runs again
    lone = validate_frame("acme", frame(extra=("a lone example", "Tool")), rules, recorded=tmp_path)
    assert not lone.recorded and not lone.passed  # other rows: GX runs again
    assert validate_frame("acme", frame(extra=("a lone example", "Tool")), rules, recorded=tmp_path).failures \
        == lone.failures
