"""A tenant's file is read as text,label strings, and every mistake a user can make is one clear line."""
import hashlib
import os

import pytest

from data_checks.reading import check_input, iter_texts, load_tenant_file, read_tenant_file
from workspace.errors import UserError
from workspace.settings import LimitSettings, ValidationSettings

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
    ("cols.csv", "body,category\nhi,a\n", "lacks column(s) text, label (found: 'body', 'category')"),
    ("nolabel.jsonl", '{"text": "hi"}\n', "lacks column(s) label (found: 'text')"),
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


def test_oversized_file_is_refused_before_reading(tmp_path):
    limits = LimitSettings(max_file_mb=1 / 1024)  # 1 KB
    with pytest.raises(UserError, match=r"over the 0.0009765\d* MB limit \(limits.max_file_mb"):
        read_tenant_file(write(tmp_path, "big.csv", "text,label\n" + "hello,a\n" * 200), S, limits)


def test_size_limit_holds_while_reading_when_the_size_lies(tmp_path, monkeypatch):
    """A file whose stat size is wrong (it grows, or is a /proc file) is still cut off at the limit."""
    import workspace.safe_io as safe_io

    path = write(tmp_path, "grow.csv", "text,label\n" + "hello,a\n" * 400)
    real_fstat = safe_io.os.fstat
    monkeypatch.setattr(safe_io.os, "fstat", lambda fd: _Small(real_fstat(fd)))
    with pytest.raises(UserError, match="MB limit"):
        read_tenant_file(path, S, LimitSettings(max_file_mb=1 / 1024))


class _Small:
    def __init__(self, st):
        self.st_mode, self.st_size = st.st_mode, 0


def test_row_limit_is_counted_while_parsing(tmp_path):
    limits = LimitSettings(max_rows=3)
    ok = write(tmp_path, "ok.csv", "text,label\na,x\nb,x\nc,y\n")
    assert len(read_tenant_file(ok, S, limits)) == 3
    for name, body in [("many.csv", "text,label\n" + "a,x\n" * 4),
                       ("many.jsonl", '{"text": "a", "label": "x"}\n' * 4)]:
        with pytest.raises(UserError, match="more than 3 rows \\(limits.max_rows"):
            read_tenant_file(write(tmp_path, name, body), S, limits)


def test_symlink_is_refused_and_its_target_never_read(tmp_path):
    secret = write(tmp_path, "secret.csv", "text,label\nroot password,x\n")
    link = tmp_path / "link.csv"
    link.symlink_to(secret)
    with pytest.raises(UserError) as err:
        read_tenant_file(link, S)
    assert "symbolic link" in str(err.value) and "root password" not in str(err.value)
    with pytest.raises(UserError, match="symbolic link"):
        check_input(link)


def test_pipes_and_devices_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)  # opening a FIFO for reading would block forever without O_NONBLOCK
    with pytest.raises(UserError, match="not a regular file"):
        read_tenant_file(fifo, S)
    dev = tmp_path / "zero.csv"
    dev.symlink_to("/dev/zero")
    with pytest.raises(UserError, match="symbolic link"):
        read_tenant_file(dev, S)


def test_binary_file_is_refused_by_its_nul_bytes(tmp_path):
    path = write(tmp_path, "image.csv", b"text,label\n\x89PNG\x00\x00,x\n")
    with pytest.raises(UserError, match="contains NUL bytes .* binary file"):
        read_tenant_file(path, S)


@pytest.mark.parametrize("value, kind", [
    ("[0, \"list\", \"text\"]", "a list"), ("{\"a\": 1}", "an object"), ("true", "true/false"),
    ("1.5", "a decimal number"),
])
def test_jsonl_text_and_label_must_be_strings(tmp_path, value, kind):
    path = write(tmp_path, "t.jsonl", f'{{"text": {value}, "label": "b"}}\n')
    with pytest.raises(UserError, match=f"line 1: text is {kind}, not a string"):
        read_tenant_file(path, S)
    path = write(tmp_path, "u.jsonl", f'{{"text": "fine", "label": {value}}}\n')
    with pytest.raises(UserError, match=f"line 1: label is {kind}, not a string"):
        read_tenant_file(path, S)


def test_jsonl_nan_is_not_json(tmp_path):
    with pytest.raises(UserError, match="line 1 is not valid JSON"):
        read_tenant_file(write(tmp_path, "n.jsonl", '{"text": NaN, "label": "b"}\n'), S)


def test_other_jsonl_keys_may_hold_anything(tmp_path):
    path = write(tmp_path, "t.jsonl", '{"text": "hi", "label": "a", "meta": {"x": [1, true]}}\n')
    assert read_tenant_file(path, S).to_dict("records") == [{"text": "hi", "label": "a"}]


def test_md5_is_of_exactly_the_bytes_read(tmp_path):
    path = write(tmp_path, "t.csv", "text,label\nhi,a\n")
    assert load_tenant_file(path).md5 == hashlib.md5(path.read_bytes()).hexdigest()


def test_texts_stream_from_csv_and_jsonl(tmp_path):
    csv_path = write(tmp_path, "p.csv", "id,Text\n1,hello\n\n2,\"a, b\"\n")
    assert list(iter_texts(csv_path)) == ["hello", "a, b"]
    jsonl = write(tmp_path, "p.jsonl", '{"text": "x"}\n\n{"text": "y", "label": 3}\n')
    assert list(iter_texts(jsonl)) == ["x", "y"]


@pytest.mark.parametrize("name, content, expected", [
    ("none.csv", "", "is empty"),
    ("header.csv", "text\n", "has no rows"),
    ("cols.csv", "body\nhi\n", "lacks a text column"),
    ("latin1.csv", b"text\ncaf\xe9\n", "is not UTF-8"),
    ("list.jsonl", '{"text": ["a"]}\n', "text is a list"),
])
def test_bad_prediction_files_are_one_line(tmp_path, name, content, expected):
    with pytest.raises(UserError, match=expected) as err:
        list(iter_texts(write(tmp_path, name, content)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("header", ["text,label,label", "text,Label,label ", "text,text,label"])
def test_a_column_named_twice_is_refused_not_stored(tmp_path, header):
    path = write(tmp_path, "t.csv", header + "\nhello,a,b\n")
    with pytest.raises(UserError, match="2 columns named"):
        load_tenant_file(path)


def test_texts_to_classify_under_two_text_columns_are_refused(tmp_path):
    path = write(tmp_path, "p.csv", "text,text\nfirst,second\n")
    with pytest.raises(UserError, match="2 columns named 'text'"):
        list(iter_texts(path))


@pytest.mark.parametrize("separator", ["\u2028", "\u2029", "\u0085", "\r"])
def test_jsonl_lines_end_at_newline_alone(tmp_path, separator):
    """Valid JSON Lines whose text holds U+2028 or U+0085 (JSON allows them raw in a string; a
    "\\r" between tokens is JSON whitespace) are data, not line ends: issue 31, finding 9."""
    raw = ('{"text": "first' + separator + 'half", "label": "a"}\n' if separator != "\r"
           else '{"text": "first half",' + separator + ' "label": "a"}\n')
    path = write(tmp_path, "t.jsonl", raw + '{"text": "second", "label": "b"}\n')
    frame = read_tenant_file(path, S)
    assert len(frame) == 2 and frame["label"].tolist() == ["a", "b"]
    assert frame["text"].tolist()[0] in ("first" + separator + "half", "first half")
    assert [t for t in iter_texts(path)] == frame["text"].tolist()
