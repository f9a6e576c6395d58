"""Read a tenant's file safely: every mistake a user can make becomes one clear line, never a traceback."""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path

import pandas as pd

from workspace.errors import UserError
from workspace.settings import ValidationSettings

SUFFIXES = (".csv", ".jsonl")
MAX_BYTES = 200 * 1024 * 1024  # a tenant's few-shot file is kilobytes; 200 MB is surely a wrong file
COLUMNS = ("text", "label")
_BOM = b"\xef\xbb\xbf"  # Excel writes it in front of "UTF-8 CSV"; it is not part of the header


def read_tenant_file(path: Path, settings: ValidationSettings | None = None) -> pd.DataFrame:
    """The file's ``text`` and ``label`` columns as stripped strings; other columns are dropped.

    ``settings`` is accepted so callers pass the validation settings they hold; the content rules
    themselves (counts, lengths, duplicates) are checked by ``data_checks.expectations``.

    Raises:
        UserError: the file is missing, a folder, too large, empty, not UTF-8, of another type,
            not parseable, or lacks a ``text`` or ``label`` column.
    """
    path = Path(path)
    text = _read_text(path)
    if path.suffix.lower() == ".csv":
        frame = _parse_csv(path, text)
    else:
        frame = _parse_jsonl(path, text)
    frame = _keep_contract_columns(path, frame)
    if frame.empty:
        raise UserError(f"{path} has a header but no rows: add one row per labelled example")
    return frame


def read_texts(path: Path) -> list[str]:
    """Texts to classify from a .csv/.jsonl with a ``text`` column (a ``label`` column is optional)."""
    path = Path(path)
    text = _read_text(path)
    frame = _parse_csv(path, text) if path.suffix.lower() == ".csv" else _parse_jsonl(path, text)
    columns = {str(c).strip().lower(): c for c in frame.columns}
    if "text" not in columns:
        raise UserError(f"{path} lacks a text column (found: {', '.join(map(str, frame.columns)) or 'none'})")
    texts = [str(t) for t in frame[columns["text"]].tolist()]
    if not texts:
        raise UserError(f"{path} has a header but no rows")
    return texts


def _read_text(path: Path) -> str:
    if not path.exists():
        raise UserError(f"no such file: {path}")
    if path.is_dir():
        raise UserError(f"{path} is a folder: pass a .csv or .jsonl file")
    if path.suffix.lower() not in SUFFIXES:
        raise UserError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                        "save it as a UTF-8 .csv or .jsonl with columns text,label")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise UserError(f"{path} is {size / 2**20:.1f} MB, over the {MAX_BYTES / 2**20:g} MB limit: "
                        "pass only the tenant's labelled examples")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    skipped = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[skipped:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = exc.start + skipped
        line = data[:offset].count(b"\n") + 1
        raise UserError(f"{path} is not UTF-8 (byte {data[offset]:#04x} at byte offset {offset}, "
                        f"line {line}): re-save it with UTF-8 encoding") from None
    if not text.strip():
        raise UserError(f"{path} is empty: it needs columns text,label and one row per example")
    return text


def _parse_csv(path: Path, text: str) -> pd.DataFrame:
    _check_row_widths(path, text)
    try:
        with warnings.catch_warnings():
            # rows with extra *empty* fields (trailing commas) were allowed above; drop them quietly
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            # dtype=str, keep_default_na=False: a label "1" stays "1" and a text "NA" stays "NA";
            # index_col=False: a wide row must never turn the first column into an index
            return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, index_col=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        detail = " ".join(str(exc).split())
        raise UserError(f"{path} is not a valid CSV ({detail}): check quoting and commas") from None


def _check_row_widths(path: Path, text: str) -> None:
    """A row wider than the header is almost always a text with an unquoted comma."""
    try:
        reader = csv.reader(io.StringIO(text))
        width = len(next((row for row in reader if row), []))  # pandas skips blank lines too
        for row in reader:
            if len(row) > width and any(field.strip() for field in row[width:]):
                raise UserError(f"{path} line {reader.line_num} has {len(row)} fields but the header has "
                                f"{width}: put texts that contain commas in double quotes")
    except csv.Error:
        return  # pandas reports quoting errors with its own wording below


def _parse_jsonl(path: Path, text: str) -> pd.DataFrame:
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue  # blank lines (often a trailing one) carry no example
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"{path} line {number} is not valid JSON ({exc.msg}): "
                            "write one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number} is not a JSON object: "
                            'write one {"text": ..., "label": ...} object per line')
        rows.append(row)
    frame = pd.DataFrame.from_records(rows)
    # JSON numbers and nulls become strings, as in a CSV: labels are names, never numbers
    return frame.apply(lambda col: col.map(lambda v: "" if v is None or v != v else str(v)))


def _keep_contract_columns(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    found = [str(c) for c in frame.columns]
    # "Text " and "LABEL" are the same column to a person filling a spreadsheet
    renames = {c: str(c).strip().lower() for c in frame.columns}
    normalised = list(renames.values())
    for name in COLUMNS:
        if normalised.count(name) > 1:
            raise UserError(f"{path} has {normalised.count(name)} columns named {name!r}: keep one")
    missing = [name for name in COLUMNS if name not in normalised]
    if missing:
        shown = ", ".join(found) if found else "none"
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (found: {shown}): "
                        "the file needs columns text,label")
    frame = frame.rename(columns=renames)[list(COLUMNS)]
    return pd.DataFrame({name: frame[name].astype(str).str.strip() for name in COLUMNS})
