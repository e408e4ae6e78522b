"""Read an uploaded file into a table of strings, each row numbered as a spreadsheet shows it.

No interpretation happens here: headers are kept as written (trimmed), cells as text. A file that
cannot be read raises :class:`UnreadableFile` with a problem the observatory can understand.
"""

import csv
import datetime as dt
import io
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from obsx.problems import Problem, problem

CSV_EXTENSIONS = {".csv", ".txt", ".tsv"}
EXCEL_EXTENSIONS = {".xlsx", ".xlsm"}
DELIMITERS = ",;\t|"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls and other MS Office binaries


class UnreadableFile(Exception):
    def __init__(self, problem: Problem):
        super().__init__(problem.message("en"))
        self.problem = problem


@dataclass
class RawTable:
    """Cells as text; ``frame.index`` holds the source row numbers (the header row counts)."""

    frame: pd.DataFrame
    file_format: str
    header_row: int
    encoding: str | None = None
    encoding_guessed: bool = False
    delimiter: str | None = None
    problems: list[Problem] = field(default_factory=list)


def decode(data: bytes) -> tuple[str, str, bool]:
    """Decode text bytes: UTF-8 (with or without BOM), else cp1252, else latin-1.

    Returns ``(text, encoding, guessed)``; guessed is true when no marker or strict decode proved it.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict"), "utf-8-sig", False
    try:
        return data.decode("utf-8"), "utf-8", False
    except UnicodeDecodeError:
        pass
    try:
        return data.decode("cp1252"), "cp1252", True
    except UnicodeDecodeError:
        return data.decode("latin-1"), "latin-1", True


def sniff_delimiter(text: str) -> str:
    """The delimiter of a CSV text among comma, semicolon, tab and pipe."""
    sample = text[: 64 * 1024]
    try:
        return csv.Sniffer().sniff(sample, delimiters=DELIMITERS).delimiter
    except csv.Error:
        first_line = next((line for line in sample.splitlines() if line.strip()), "")
        return max(DELIMITERS, key=first_line.count)


def _cell_text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.datetime):
        if value.time() == dt.time(0, 0):
            return value.date().isoformat()
        return value.isoformat(sep=" ", timespec="minutes")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dt.time):
        return value.strftime("%H:%M")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


def _table(rows: list[list[str]], **info) -> RawTable:
    """Turn numbered rows into a RawTable: first non-blank row is the header, blank rows dropped."""
    numbered = [(n, [c.strip() for c in row]) for n, row in enumerate(rows, start=1)]
    numbered = [(n, row) for n, row in numbered if any(row)]
    if not numbered:
        raise UnreadableFile(problem("empty-file"))
    header_row, header = numbered[0]
    while header and not header[-1]:
        header.pop()
    columns, seen = [], {}
    for i, name in enumerate(header, start=1):
        name = name or f"(columna {i})"
        seen[name] = seen.get(name, 0) + 1
        columns.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    width = len(columns)
    problems, index, records = [], [], []
    for n, row in numbered[1:]:
        if any(row[width:]):
            problems.append(problem("extra-cells", row=n))
        index.append(n)
        records.append((row + [""] * width)[:width])
    if not records:
        raise UnreadableFile(problem("empty-file"))
    frame = pd.DataFrame(records, columns=columns, index=pd.Index(index, name="source_row"))
    return RawTable(frame=frame, header_row=header_row, problems=problems, **info)


def read_csv_bytes(data: bytes) -> RawTable:
    if b"\x00" in data[:8192]:
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es="contiene datos binarios, no texto",
                reason_en="it holds binary data, not text",
            )
        )
    text, encoding, guessed = decode(data)
    delimiter = sniff_delimiter(text)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    except csv.Error as exc:
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es=f"CSV mal formado ({exc})",
                reason_en=f"malformed CSV ({exc})",
            )
        ) from exc
    table = _table(
        rows, file_format="csv", encoding=encoding, encoding_guessed=guessed, delimiter=delimiter
    )
    if guessed:
        table.problems.insert(0, problem("encoding-guessed", encoding=encoding))
    return table


def read_xlsx_bytes(data: bytes) -> RawTable:
    import openpyxl

    try:
        workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except (zipfile.BadZipFile, KeyError, ValueError, OSError) as exc:
        kind = type(exc).__name__
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es=f"el libro de Excel está dañado o incompleto ({kind})",
                reason_en=f"the Excel workbook is damaged or incomplete ({kind})",
            )
        ) from exc
    try:
        sheet = workbook.worksheets[0]
        sheet.reset_dimensions()  # some exporters declare a wrong sheet size; read what is there
        rows = [
            [_cell_text(v) for v in row] for row in sheet.iter_rows(min_row=1, values_only=True)
        ]
    finally:
        workbook.close()
    return _table(rows, file_format="xlsx")


def read_submission(data: bytes, file_name: str) -> RawTable:
    """Read an uploaded file's bytes; the format comes from its content, then its extension."""
    suffix = Path(file_name).suffix.lower()
    if data.startswith(ZIP_MAGIC):
        if suffix in CSV_EXTENSIONS:
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es="tiene extensión CSV pero es un archivo comprimido",
                    reason_en="it has a CSV name but is a compressed file",
                )
            )
        return read_xlsx_bytes(data)
    if data.startswith(OLE_MAGIC):
        raise UnreadableFile(problem("unsupported-format", detail="Excel 97-2003 (.xls)"))
    if suffix in EXCEL_EXTENSIONS:
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es="tiene extensión de Excel pero no es un libro .xlsx",
                reason_en="it has an Excel name but is not an .xlsx workbook",
            )
        )
    if suffix and suffix not in CSV_EXTENSIONS:
        raise UnreadableFile(problem("unsupported-format", detail=suffix))
    return read_csv_bytes(data)
