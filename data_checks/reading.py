"""Read files that come from outside safely: regular files only (never a symlink, folder, pipe or
device), size and row limits enforced while reading, hashes taken on the way, and every mistake a
user can make turned into one clear line instead of a traceback."""
from __future__ import annotations

import csv
import io
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from workspace.errors import UserError
from workspace.safe_io import open_regular, read_limited
from workspace.settings import LimitSettings, ValidationSettings

if TYPE_CHECKING:
    import pandas as pd  # imported where a file is parsed: check_input and iter_texts need no pandas (~1 s)

SUFFIXES = (".csv", ".jsonl")
COLUMNS = ("text", "label")
_BOM = b"\xef\xbb\xbf"  # Excel writes it in front of "UTF-8 CSV"; it is not part of the header
_FIELD_LIMIT = 1 << 20  # one CSV field of a megabyte is surely not one labelled example


@dataclass(frozen=True)
class TenantFile:
    """A tenant file's contract columns, and the digests of exactly the bytes they came from."""

    frame: pd.DataFrame
    md5: str  # hex, as DVC records it
    n_bytes: int


def check_input(path: Path) -> None:
    """Refuse, before any work starts, what can never be read: a missing file, a folder, a symlink,
    a pipe or device, or another file type."""
    path = Path(path)
    _check_suffix(path)
    with open_regular(path):
        pass


def load_tenant_file(path: Path, limits: LimitSettings | None = None) -> TenantFile:
    """The file's ``text`` and ``label`` columns as stripped strings (other columns are dropped),
    with the md5 of the bytes read.

    Raises:
        UserError: the file is missing, a folder, a symlink, a pipe or device, over
            ``limits.max_file_mb`` or ``limits.max_rows``, empty, binary, not UTF-8, of another
            type, not parseable, has non-string JSON values, or lacks a ``text`` or ``label``
            column.
    """
    limits = limits or LimitSettings()
    path = Path(path)
    _check_suffix(path)
    data, md5 = read_limited(path, limits.max_bytes)
    text = _decode(path, data)
    if path.suffix.lower() == ".csv":
        frame = _parse_csv(path, text, limits.max_rows)
    else:
        frame = _parse_jsonl(path, text, limits.max_rows)
    frame = _keep_contract_columns(path, frame)
    if frame.empty:
        raise UserError(f"{path} has a header but no rows: add one row per labelled example")
    return TenantFile(frame, md5, len(data))


def read_tenant_file(path: Path, settings: ValidationSettings | None = None,
                     limits: LimitSettings | None = None) -> pd.DataFrame:
    """``load_tenant_file(...).frame``; ``settings`` is accepted for callers that hold them (the
    content rules themselves are checked by ``data_checks.expectations``)."""
    return load_tenant_file(path, limits).frame


def iter_texts(path: Path) -> Iterator[str]:
    """Texts to classify, streamed row by row from a .csv/.jsonl with a ``text`` column (other
    columns, a label too, are ignored): memory stays flat however long the file is.

    Raises:
        UserError: as for tenant files; also for a file with no rows, raised before the first text.
    """
    path = Path(path)
    _check_suffix(path)
    with open_regular(path) as fd, open(fd, "rb", closefd=False) as raw:
        head = raw.read(len(_BOM))
        if head != _BOM:
            raw.seek(0)
        is_csv = path.suffix.lower() == ".csv"
        # JSON Lines end at "\n" alone: U+2028, U+0085 or a "\r" inside a line are its data
        stream = io.TextIOWrapper(raw, encoding="utf-8", errors="strict", newline="" if is_csv else "\n")
        rows = _csv_texts(path, stream) if is_csv else _jsonl_texts(path, stream)
        try:
            first = next(rows, None)
            if first is None:
                raise UserError(f"{path} has no rows: give one text per row under a 'text' header")
            yield first
            yield from rows
        except UnicodeDecodeError as exc:
            raise UserError(f"{path} is not UTF-8 ({exc.reason}): re-save it with UTF-8 encoding") from None


# --- opening and reading -----------------------------------------------------------------------

def _check_suffix(path: Path) -> None:
    if path.suffix.lower() not in SUFFIXES:
        if path.is_dir() and not path.is_symlink():
            raise UserError(f"{path} is a folder: pass a .csv or .jsonl file")
        raise UserError(f"{path}: unsupported file type {path.suffix or '(none)'!r}; "
                        "save it as a UTF-8 .csv or .jsonl with columns text,label")


def _decode(path: Path, data: bytes) -> str:
    skipped = len(_BOM) if data.startswith(_BOM) else 0
    if b"\x00" in data:
        offset = data.index(b"\x00")
        raise UserError(f"{path} contains NUL bytes (first at byte offset {offset}): it is a binary file, "
                        "not a text CSV/JSONL")
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


# --- parsing -----------------------------------------------------------------------------------

def _parse_csv(path: Path, text: str, max_rows: int) -> pd.DataFrame:
    import pandas as pd

    _check_rows(path, text, max_rows)
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


def _check_rows(path: Path, text: str, max_rows: int) -> None:
    """Count rows (stopping past ``max_rows``) and catch a row wider than the header, which is
    almost always a text with an unquoted comma."""
    csv.field_size_limit(_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(text))
    try:
        header = next((row for row in reader if row), [])  # pandas skips blank lines too
        _check_header(path, header)
        width = len(header)
        rows = 0
        for row in reader:
            rows += 1
            if rows > max_rows:
                raise UserError(f"{path} has more than {max_rows} rows (limits.max_rows in params.yaml): "
                                "pass only the tenant's labelled examples")
            if len(row) > width and any(field.strip() for field in row[width:]):
                raise UserError(f"{path} line {reader.line_num} has {len(row)} fields but the header has "
                                f"{width}: put texts that contain commas in double quotes")
    except csv.Error as exc:
        raise UserError(f"{path} is not a valid CSV (line {reader.line_num}: {exc}): "
                        "check quoting and commas") from None


def _json_value(path: Path, number: int, key: str, value):
    """Text and label are JSON strings (a whole number is read as its digits); anything else
    would be stored as Python's rendering of it, so it is refused."""
    if value is None or isinstance(value, str):
        return "" if value is None else value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    kind = {bool: "true/false", list: "a list", dict: "an object", float: "a decimal number"}.get(
        type(value), type(value).__name__)
    raise UserError(f"{path} line {number}: {key} is {kind}, not a string: "
                    'write "text" and "label" as JSON strings')


def _no_constants(name: str):
    raise ValueError(f"{name} is not JSON")


def _parse_jsonl(path: Path, text: str, max_rows: int) -> pd.DataFrame:
    import pandas as pd

    rows, seen = [], {}
    # JSON Lines end at "\n" alone (str.splitlines would also end them at U+2028, U+0085, "\r"...)
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue  # blank lines (often a trailing one) carry no example
        if len(rows) >= max_rows:
            raise UserError(f"{path} has more than {max_rows} rows (limits.max_rows in params.yaml): "
                            "pass only the tenant's labelled examples")
        try:
            row = json.loads(line, parse_constant=_no_constants)
        except (json.JSONDecodeError, ValueError, RecursionError) as exc:
            reason = getattr(exc, "msg", None) or str(exc).split(":")[0]
            raise UserError(f"{path} line {number} is not valid JSON ({reason}): "
                            "write one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number} is not a JSON object: "
                            'write one {"text": ..., "label": ...} object per line')
        kept = {}
        for key, value in row.items():
            seen.setdefault(key, None)
            if key.strip().lower() in COLUMNS:
                kept[key] = _json_value(path, number, key.strip().lower(), value)
        rows.append(kept)
    frame = pd.DataFrame.from_records(rows, columns=list(seen))
    return frame.astype(object).where(frame.notna(), "")


def _check_header(path: Path, header: list[str]) -> None:
    """A column named twice ("text,label,label"; "Label" and "label ") is ambiguous: which one is
    the label? Refused on the raw header, before pandas renames the second to "label.1"."""
    normalised = [str(h).strip().lower() for h in header]
    for name in COLUMNS:
        if normalised.count(name) > 1:
            raise UserError(f"{path} has {normalised.count(name)} columns named {name!r}: keep one")


def _keep_contract_columns(path: Path, frame: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    found = [str(c) for c in frame.columns]
    # "Text " and "LABEL" are the same column to a person filling a spreadsheet
    renames = {c: str(c).strip().lower() for c in frame.columns}
    normalised = list(renames.values())
    for name in COLUMNS:
        if normalised.count(name) > 1:
            raise UserError(f"{path} has {normalised.count(name)} columns named {name!r}: keep one")
    missing = [name for name in COLUMNS if name not in normalised]
    if missing:
        shown = ", ".join(repr(c) for c in found[:10]) if found else "none"
        raise UserError(f"{path} lacks column(s) {', '.join(missing)} (found: {shown}): "
                        "the file needs columns text,label")
    frame = frame.rename(columns=renames)[list(COLUMNS)]
    return pd.DataFrame({name: frame[name].astype(str).str.strip() for name in COLUMNS})


# --- streaming texts for predict ---------------------------------------------------------------

def _csv_texts(path: Path, stream) -> Iterator[str]:
    csv.field_size_limit(_FIELD_LIMIT)
    reader = csv.reader(stream)
    try:
        header = next((row for row in reader if row), None)
        if header is None:
            raise UserError(f"{path} is empty: give a 'text' header and one text per row")
        names = [h.strip().lower() for h in header]
        if names.count("text") > 1:
            raise UserError(f"{path} has {names.count('text')} columns named 'text': keep one")
        if "text" not in names:
            shown = ", ".join(repr(h) for h in header[:10])
            raise UserError(f"{path} lacks a text column (found: {shown}): put the texts under a 'text' header")
        col = names.index("text")
        for row in reader:
            if not row:
                continue
            if "\x00" in "".join(row):
                raise UserError(f"{path} line {reader.line_num} contains NUL bytes: it is a binary file")
            yield row[col] if col < len(row) else ""
    except csv.Error as exc:
        raise UserError(f"{path} is not a valid CSV (line {reader.line_num}: {exc}): "
                        "check quoting and commas") from None


def _jsonl_texts(path: Path, stream) -> Iterator[str]:
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_constant=_no_constants)
        except (json.JSONDecodeError, ValueError, RecursionError):
            raise UserError(f"{path} line {number} is not valid JSON: write one JSON object per line") from None
        if not isinstance(row, dict):
            raise UserError(f"{path} line {number} is not a JSON object: write one {{\"text\": ...}} per line")
        keys = [k for k in row if k.strip().lower() == "text"]
        if not keys:
            raise UserError(f"{path} line {number} has no \"text\" key")
        yield _json_value(path, number, "text", row[keys[0]])
