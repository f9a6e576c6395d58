"""Property-based: whatever tenant id or file content arrives, Tailor answers with a result or with
one line (exit 2), and the previous data version stays current."""
import csv
import io
import json
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from data_checks.expectations import validate_frame
from data_checks.reading import load_tenant_file
from tailor import cli
from workspace import versioning
from workspace.create import init_workspace
from workspace.errors import UserError
from workspace.paths import Workspace
from workspace.settings import LimitSettings, ValidationSettings
from workspace.tenants import check_tenant_id

QUICK = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                       HealthCheck.too_slow])
CELLS = st.text(alphabet=st.sampled_from(list(string.printable) + ["é", "\x00", "\u2028", "=", "\x1b", "€"]),
                max_size=12)
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | CELLS,
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(CELLS, inner, max_size=3),
                           max_leaves=6)


def csv_text(rows) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


FILES = st.one_of(
    st.tuples(st.just(".csv"), st.binary(max_size=200)),
    st.tuples(st.just(".csv"), st.lists(st.lists(CELLS, min_size=0, max_size=4), max_size=8).map(
        lambda rows: csv_text([["text", "label"], *rows]).encode())),
    st.tuples(st.just(".csv"), st.text(max_size=200).map(lambda t: ("text,label\n" + t).encode("utf-8",
                                                                                             "surrogatepass"))),
    st.tuples(st.just(".jsonl"), st.lists(st.dictionaries(st.sampled_from(["text", "label", "Text", "x"]),
                                                          JSON_VALUES, max_size=3), max_size=6).map(
        lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode())),
    st.tuples(st.just(".jsonl"), st.lists(JSON_VALUES, max_size=4).map(
        lambda rows: "".join(json.dumps(r) + "\n" for r in rows).encode())),
)

LIKELY_VALID = st.tuples(st.just(".csv"), st.lists(
    st.tuples(st.text(alphabet=string.ascii_letters + " ,\"=-+@é", min_size=1, max_size=10),
              st.sampled_from(["a", "b"])), min_size=4, max_size=12, unique_by=lambda r: r[0]).map(
    lambda rows: csv_text([["text", "label"], *rows]).encode()))


@given(st.text(max_size=70))
def test_any_tenant_id_is_accepted_safely_or_refused_in_one_line(tmp_path_factory, tenant):
    ws = Workspace(tmp_path_factory.getbasetemp() / "ids")
    try:
        assert check_tenant_id(tenant) == tenant
    except UserError as exc:
        assert "\n" not in str(exc) and str(exc).startswith("invalid tenant id")
        return
    assert ws.tenant_dir(tenant).parent == ws.data_dir  # never a path outside the data folder


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    root = tmp_path_factory.mktemp("prop") / "ws"
    return init_workspace(root)


@settings(QUICK, max_examples=40)
@given(tenant=st.text(max_size=20))
def test_data_show_of_any_id_is_a_result_or_one_line(ws, capsys, tenant):
    capsys.readouterr()
    code = cli.main(["--workspace", str(ws.root), "data", "show", tenant])
    out = capsys.readouterr()
    assert code in (0, 2)
    if code == 2:
        assert out.out == "" and len(out.err.splitlines()) == 1 and "Traceback" not in out.err


@settings(QUICK, max_examples=150)
@given(FILES)
def test_any_file_content_is_read_as_strings_or_refused_in_one_line(tmp_path_factory, file):
    suffix, data = file
    path = tmp_path_factory.getbasetemp() / f"any{suffix}"
    path.write_bytes(data)
    try:
        loaded = load_tenant_file(path, LimitSettings(max_rows=50))
    except UserError as exc:
        assert "\n" not in str(exc) and "\r" not in str(exc)
        return
    frame = loaded.frame
    assert list(frame.columns) == ["text", "label"] and len(frame) >= 1
    assert all(isinstance(v, str) for v in frame["text"]) and all(isinstance(v, str) for v in frame["label"])


@settings(QUICK, max_examples=12)
@given(st.one_of(FILES, LIKELY_VALID, LIKELY_VALID))
def test_any_ingested_content_leaves_the_previous_version_current_or_becomes_it(ws, tmp_path_factory, file):
    """The ingest path in-process (read, Great Expectations, DVC): a refusal changes nothing."""
    suffix, data = file
    good = tmp_path_factory.getbasetemp() / "good.csv"
    if versioning.current_version(ws, "prop") is None:
        good.write_text("text,label\n" + "".join(f"t{i},{'ab'[i % 2]}\n" for i in range(8)))
        versioning.track(ws, "prop", good)
    before = versioning.current_version(ws, "prop")
    path = tmp_path_factory.getbasetemp() / f"in{suffix}"
    path.write_bytes(data)
    try:
        loaded = load_tenant_file(path)
        report = validate_frame("prop", loaded.frame, ValidationSettings(min_examples_per_label=2))
    except UserError as exc:
        assert "\n" not in str(exc)
        report = None
    if report is not None and report.passed:
        after = versioning.track(ws, "prop", path, expected_md5=loaded.md5)
        assert after.md5 == f"md5:{loaded.md5}" == versioning.current_version(ws, "prop").md5
    else:
        assert versioning.current_version(ws, "prop") == before
