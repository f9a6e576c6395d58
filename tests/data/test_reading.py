"""A tenant's file is read as text,label strings, and every mistake a user can make is one clear line."""
import pytest

from data_checks.reading import read_tenant_file
from workspace.errors import UserError
from workspace.settings import ValidationSettings

S = ValidationSettings()


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


def test_csv_keeps_only_text_and_label_as_stripped_strings(tmp_path):
    path = write(tmp_path, "t.csv", "id,Text , label,notes\n7,  reset my password ,1,x\n8,NA,Billing,\n")
    frame = read_tenant_file(path, S)
    assert list(frame.columns) == ["text", "label"]
    # a label "1" stays the string "1"; the text "NA" is not lost as a missing value
    assert frame.to_dict("records") == [{"text": "reset my password", "label": "1"},
                                        {"text": "NA", "label": "Billing"}]


def test_jsonl_objects_become_rows_with_string_labels(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"text": "hi", "label": 1, "extra": true}\n\n{"text": "yo", "label": "b"}\n')
    frame = read_tenant_file(path, S)
    assert frame.to_dict("records") == [{"text": "hi", "label": "1"}, {"text": "yo", "label": "b"}]


def test_quoted_commas_stay_inside_the_text(tmp_path):
    frame = read_tenant_file(write(tmp_path, "t.csv", 'text,label\n"a, b",c\n'), S)
    assert frame.loc[0, "text"] == "a, b"


def test_utf8_bom_from_excel_is_not_part_of_the_header(tmp_path):
    frame = read_tenant_file(write(tmp_path, "t.csv", b"\xef\xbb\xbftext,label\ncaf\xc3\xa9,x\n"), S)
    assert frame.loc[0, "text"] == "café"


@pytest.mark.parametrize("name, content, expected", [
    ("latin1.csv", b"text,label\ncaf\xe9,x\n", "not UTF-8 (byte 0xe9 at byte offset 14, line 2)"),
    ("cols.csv", "body,category\nhi,a\n", "lacks column(s) text, label (found: body, category)"),
    ("nolabel.jsonl", '{"text": "hi"}\n', "lacks column(s) label (found: text)"),
    ("empty.csv", "", "is empty"),
    ("blank.jsonl", "\n \n", "is empty"),
    ("header.csv", "text,label\n", "has a header but no rows"),
    ("data.xlsx", "text,label\nhi,a\n", "unsupported file type '.xlsx'"),
    ("quote.csv", 'text,label\n"unclosed,a\n', "is not a valid CSV"),
    ("wide.csv", "text,label\nhello, world,a\n", "line 2 has 3 fields but the header has 2"),
    ("list.jsonl", '{"text": "a", "label": "b"}\n[1, 2]\n', "line 2 is not a JSON object"),
    ("broken.jsonl", '{"text": "a", "label": \n', "line 1 is not valid JSON"),
])
def test_each_mistake_is_one_line_saying_what_is_wrong(tmp_path, name, content, expected):
    path = write(tmp_path, name, content)
    with pytest.raises(UserError) as err:
        read_tenant_file(path, S)
    message = str(err.value)
    assert expected in message and str(path) in message
    assert "\n" not in message


def test_missing_file_and_folder_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        read_tenant_file(tmp_path / "nope.csv", S)
    with pytest.raises(UserError, match="is a folder"):
        read_tenant_file(tmp_path, S)


def test_oversized_file_is_refused_before_reading(tmp_path, monkeypatch):
    import data_checks.reading as reading

    monkeypatch.setattr(reading, "MAX_BYTES", 10)
    with pytest.raises(UserError, match="MB limit"):
        read_tenant_file(write(tmp_path, "big.csv", "text,label\nhello,a\n"), S)
