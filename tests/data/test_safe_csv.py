"""Every CSV Tailor writes: formula cells neutralised, the file whole or not at all."""
import csv

import pytest

from data_checks.safe_csv import csv_writer, neutralise


@pytest.mark.parametrize("cell, shown", [
    ("=cmd|' /C calc'!A0", "'=cmd|' /C calc'!A0"), ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
    ("+1", "'+1"), ("-2+3", "'-2+3"), ("@SUM(A1)", "'@SUM(A1)"), ("\t=1", "'\t=1"), ("＝1", "'＝1"),
    ("plain text", "plain text"), ("a=b", "a=b"), (None, ""), (0.75, "0.75"),
])
def test_formula_cells_are_neutralised(cell, shown):
    assert neutralise(cell) == shown


def test_rows_are_written_neutralised_and_atomically(tmp_path):
    out = tmp_path / "p.csv"
    out.write_text("old content\n")
    with pytest.raises(RuntimeError):
        with csv_writer(out, ["text", "label"]) as write:
            write([{"text": "=1+1", "label": "@x"}])
            raise RuntimeError("killed halfway")
    assert out.read_text() == "old content\n" and list(tmp_path.iterdir()) == [out]
    with csv_writer(out, ["text", "label"]) as write:
        write([{"text": "=1+1", "label": "@x", "extra": "ignored"}])
    with open(out, newline="") as f:
        assert list(csv.DictReader(f)) == [{"text": "'=1+1", "label": "'@x"}]
