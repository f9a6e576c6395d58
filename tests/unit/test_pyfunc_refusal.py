"""The pyfunc's refusal, as `mlflow models serve` shows it: one printable line, logged at ERROR
through `logging` (so it lands in whatever log the server keeps), and inside MLflow's scoring
server an exit with 2 instead of a traceback of ours. No server is started here: the test of a
real `mlflow models serve` is in test_drift_isolation."""
import json
import logging

import mlflow
import pytest

from registry.artifacts import pyfunc
from tests.unit.test_drift_isolation import gov, reg, stored_folder  # noqa: F401 - fixture

FORGED = "forged\nINFO all good"  # a tenant in the stored manifest, edited to write a log line of its own


def _refusal(caplog, uri: str) -> tuple[BaseException, list[logging.LogRecord]]:
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="tailor.pyfunc"), pytest.raises(BaseException) as caught:
        mlflow.pyfunc.load_model(uri)
    return caught.value, [r for r in caplog.records if r.name == "tailor.pyfunc"]


def test_a_tampered_version_is_refused_in_one_logged_line(gov, caplog, monkeypatch):
    version = reg(gov, "refuse")
    manifest = stored_folder("refuse", version) / "delta" / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "tenant": FORGED}))
    uri = f"models:/tailor-tenant-refuse/{version}"

    error, records = _refusal(caplog, uri)
    assert isinstance(error, pyfunc.RefusedToLoad)
    message = str(error)
    assert "\n" not in message and message.startswith("tenant refuse: its files are not the ones registered as ")
    assert "manifest names tenant 'forged\\nINFO all good'" in message  # the edited value, escaped
    assert [(r.levelno, r.getMessage()) for r in records] == [(logging.ERROR, f"tailor: {message}")]

    monkeypatch.setenv("__pyfunc_model_path__", uri)  # as MLflow's scoring server runs it
    error, records = _refusal(caplog, uri)
    assert isinstance(error, SystemExit) and error.code == 2
    assert error.__cause__ is None and error.__suppress_context__  # nothing chained for Python to print
    assert [r.getMessage() for r in records] == [f"tailor: {message}"]
