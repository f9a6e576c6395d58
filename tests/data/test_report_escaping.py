"""Reports escape what they show: a tenant's text or label can neither inject HTML into Data Docs
nor break or drive the terminal in the one line a user sees."""
import pandas as pd

from data_checks.expectations import validate_frame
from tailor.cli import _fail
from tailor.output import one_line, printable, table
from workspace.errors import UserError
from workspace.settings import ValidationSettings

NASTY = ["<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "\x1b[2J\x1b[31mred", "two\nlines"]


def test_data_docs_never_contain_raw_html_from_the_data(tmp_path):
    frame = pd.DataFrame({"text": [*NASTY, "x" * 6000], "label": [*NASTY, "a"]})
    report = validate_frame("acme", frame, ValidationSettings(), docs_dir=tmp_path)
    assert not report.passed and report.data_docs
    pages = [p.read_text() for p in tmp_path.rglob("*.html")]
    assert pages and not any(raw in page for page in pages for raw in NASTY[:2])


def test_terminal_output_escapes_control_characters():
    assert printable("a\x1b[31mb") == "a\\x1b[31mb" and printable("café") == "café"
    assert one_line("first\nsecond\r\nthird") == "first second third"
    assert "\x1b" not in table([{"text": NASTY[2]}], ["text"]) and "\n" not in table([{"t": "a\nb"}], ["t"])[-4:]


def test_a_user_error_with_control_characters_is_one_escaped_line(capsys):
    assert _fail(["x"], UserError("label 'two\nlines' \x1b[2J is wrong"), debug=False) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\x1b" not in err and "\\x1b[2J" in err
