"""Read an uploaded file into a table of strings, each row numbered as a spreadsheet shows it.

No interpretation happens here: headers are kept as written (trimmed), cells as text. A file that
cannot be read raises :class:`UnreadableFile` with a problem the observatory can understand.
"""

import csv
import datetime as dt
import io
import itertools
import re
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from obsx.intake.limits import LimitExceeded, active
from obsx.intake.problems import Problem, problem

CSV_EXTENSIONS = {".csv", ".txt", ".tsv"}
EXCEL_EXTENSIONS = {".xlsx", ".xlsm"}
DELIMITERS = ",;\t|"
ZIP_MAGIC = b"PK\x03\x04"
OLE_MAGIC = b"\xd0\xcf\x11\xe0"  # legacy .xls and other MS Office binaries
SPSS_MAGIC = (b"$FL2", b"$FL3")
HEADER_SEARCH_ROWS = 30  # how far down a header is looked for (title rows above it)
SNIFF_CHARS = 8 * 1024  # csv.Sniffer is quadratic on some lines: 64 KB of one took 5 s
CHECK_EVERY_ROWS = 10_000  # how often a long read looks at the clock


@dataclass(frozen=True)
class Layout:
    """What a profile may say about where the table is; everything optional."""

    sheet: str | int | None = None  # a sheet name, or its number (1 = first)
    header_row: int | None = None  # as the spreadsheet shows it; None: find it
    encoding: str | None = None
    delimiter: str | None = None
    is_header: Callable[[list[str]], bool] | None = None  # how to recognise the header row
    value_labels: bool = True  # SPSS: cells as their value labels (False: the codes)


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


@dataclass
class Cells:
    """A file's cells as text, before its header row is found: what a reader produces once and
    every candidate profile (one per dataset) then looks at.

    Workbooks and SPSS files are held whole (``rows``; their size is bounded by obsx.intake.limits); a
    CSV is parsed again from its bytes each time its rows are walked (``stream``), so that its
    rows are never all in memory at once."""

    rows: list[list[str]] | None
    file_format: str
    first_row: int = 1  # the number of the first row (SPSS numbers cases from 0: the header)
    info: dict = field(default_factory=dict)  # encoding, encoding_guessed, delimiter
    stream: Callable[[], Iterator[list[str]]] | None = None

    def walk(self) -> Iterator[list[str]]:
        """The rows, from the first, as lists of cells."""
        return self.stream() if self.stream is not None else iter(self.rows)

    def _layout(self, layout: Layout) -> Layout:
        """SPSS: the variable names are the header, whatever the profile says."""
        return Layout(header_row=0) if self.file_format == "sav" else layout

    def headers(self, layout: Layout) -> list[str]:
        """The header row's cells under ``layout``, looking at the first rows only."""
        layout = self._layout(layout)
        numbered = _rows_to_header(_nonblank(self.walk(), self.first_row), layout)
        if not numbered:
            raise UnreadableFile(problem("empty-file"))
        return [c for c in numbered[_find_header(numbered, layout)][1] if c]

    def source(self, layout: Layout) -> "Source":
        """The table under ``layout``'s header rules, to be read whole or in chunks (SPSS: the
        variable names are the header, always). Raises UnreadableFile when the header is not
        there or no row follows it."""
        layout = self._layout(layout)
        found = Source(self, layout, header_row=0)
        first = next(found.chunks(cells=1))  # finds the header, and one row after it
        found.header_row = first.header_row
        return found

    def table(self, layout: Layout) -> RawTable:
        """The whole table under ``layout``'s header rules (see source)."""
        return self.source(layout).whole()


@dataclass
class Source:
    """A file's table under a layout, its header found: read whole, or chunk by chunk with the
    same columns and the source row numbers a whole read gives."""

    cells: Cells
    layout: Layout
    header_row: int

    @property
    def file_format(self) -> str:
        return self.cells.file_format

    @property
    def encoding(self) -> str | None:
        return self.cells.info.get("encoding")

    @property
    def delimiter(self) -> str | None:
        return self.cells.info.get("delimiter")

    def chunks(self, cells: int | None = None) -> Iterator[RawTable]:
        """The table in pieces of as many rows as hold ``cells`` cells (at least one row; None:
        one piece). File-level problems (a guessed encoding) come with the first piece only."""
        info = self.cells.info
        tables = _tables(
            self.cells.walk(),
            self.layout,
            cells,
            first_row=self.cells.first_row,
            file_format=self.cells.file_format,
            **info,
        )
        for n, table in enumerate(tables):
            if n == 0 and info.get("encoding_guessed"):
                table.problems.insert(0, problem("encoding-guessed", encoding=info["encoding"]))
            yield table

    def whole(self) -> RawTable:
        return next(self.chunks())


def decode(data: bytes) -> tuple[str, str, bool]:
    """Decode text bytes: UTF-8 (with or without BOM), else cp1252, else latin-1.

    Returns ``(text, encoding, guessed)``; guessed is true when no marker or strict decode proved it.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        try:
            return data[3:].decode("utf-8", errors="strict"), "utf-8-sig", False
        except UnicodeDecodeError:  # a UTF-8 mark on other bytes (found by hypothesis)
            data = data[3:]
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
    sample = text[:SNIFF_CHARS]
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


def _find_header(numbered: list[tuple[int, list[str]]], layout: Layout) -> int:
    """Position in ``numbered`` of the header: the profile's row, else the first row that looks
    like one (title rows above it are skipped), else the first non-blank row."""
    if layout.header_row is not None:
        for i, (n, _) in enumerate(numbered):
            if n == layout.header_row:
                return i
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es=f"la fila de encabezados {layout.header_row} del perfil está vacía o no existe",
                reason_en=f"the profile's header row {layout.header_row} is empty or missing",
            )
        )
    if layout.is_header:
        for i, (_, row) in enumerate(numbered[:HEADER_SEARCH_ROWS]):
            if layout.is_header(row):
                return i
    return 0


def _nonblank(rows: Iterable[list[str]], first_row: int):
    """``(row number, trimmed cells)`` of every row that is not blank, lazily."""
    for n, row in enumerate(rows, start=first_row):
        cells = [c.strip() for c in row]
        if any(cells):
            yield n, cells


def _rows_to_header(numbered: Iterator, layout: Layout) -> list[tuple[int, list[str]]]:
    """The first numbered rows, as far as the header can be (the profile's row, else the first
    HEADER_SEARCH_ROWS non-blank rows); the rest stay in ``numbered``."""
    ahead = []
    for n, cells in numbered:
        ahead.append((n, cells))
        wanted = layout.header_row
        if (wanted is not None and n >= wanted) or (
            wanted is None and len(ahead) >= HEADER_SEARCH_ROWS
        ):
            break
    return ahead


def _tables(
    rows: Iterable[list[str]], layout: Layout, chunk_cells: int | None, first_row: int = 1, **info
) -> Iterator[RawTable]:
    """Turn numbered rows into RawTables of about ``chunk_cells`` cells each (None: one table):
    header found, rows above it and blank rows dropped; every piece has the header's columns."""
    numbered = _nonblank(rows, first_row)
    ahead = _rows_to_header(numbered, layout)
    if not ahead:
        raise UnreadableFile(problem("empty-file"))
    position = _find_header(ahead, layout)
    header_row, header = ahead[position]
    while header and not header[-1]:
        header.pop()
    columns, seen = [], {}
    for i, name in enumerate(header, start=1):
        name = name or f"(columna {i})"
        seen[name] = seen.get(name, 0) + 1
        columns.append(name if seen[name] == 1 else f"{name} ({seen[name]})")
    width = len(columns)
    chunk_rows = None if chunk_cells is None else max(1, chunk_cells // max(width, 1))

    def piece(batch: list[tuple[int, list[str]]]) -> RawTable:
        problems, index, records = [], [], []
        for n, row in batch:
            if any(row[width:]):
                problems.append(problem("extra-cells", row=n))
            index.append(n)
            records.append((row + [""] * width)[:width])
        frame = pd.DataFrame(records, columns=columns, index=pd.Index(index, name="source_row"))
        return RawTable(frame=frame, header_row=header_row, problems=problems, **info)

    batch, pieces = [], 0
    for pair in itertools.chain(ahead[position + 1 :], numbered):
        batch.append(pair)
        if chunk_rows is not None and len(batch) >= chunk_rows:
            yield piece(batch)
            batch, pieces = [], pieces + 1
    if batch:
        yield piece(batch)
    elif not pieces:
        raise UnreadableFile(problem("empty-file"))


def read_csv_bytes(data: bytes, layout: Layout = Layout()) -> RawTable:
    return _csv_cells(data, layout).table(layout)


UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # Excel's "Unicode text" export


def _csv_cells(data: bytes, layout: Layout) -> Cells:
    utf16 = data.startswith(UTF16_BOMS) and not layout.encoding
    if utf16:
        try:
            text, encoding, guessed = data.decode("utf-16"), "utf-16", False
        except UnicodeDecodeError as exc:
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es="empieza como UTF-16 pero no lo es",
                    reason_en="it starts as UTF-16 but is not",
                )
            ) from exc
    elif b"\x00" in data:  # anywhere: no database text may hold it (PostgreSQL refuses)
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es="contiene datos binarios, no texto",
                reason_en="it holds binary data, not text",
            )
        )
    if utf16:
        if "\x00" in text:
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es="contiene datos binarios, no texto",
                    reason_en="it holds binary data, not text",
                )
            )
    elif layout.encoding:
        try:
            text, encoding, guessed = data.decode(layout.encoding), layout.encoding, False
        except (UnicodeDecodeError, LookupError) as exc:
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es=f"no está en la codificación {layout.encoding} que indica el perfil",
                    reason_en=f"it is not in the encoding {layout.encoding} the profile names",
                )
            ) from exc
    else:
        text, encoding, guessed = decode(data)
    sample = text[:SNIFF_CHARS]
    del text  # held only to prove the encoding: the rows are decoded again as they are read
    # A UTF-8 mark on bytes that are not UTF-8 is dropped by decode(): skip it too (a real one
    # is dropped by the utf-8-sig codec).
    skip = 3 if guessed and data.startswith(b"\xef\xbb\xbf") else 0
    delimiter = layout.delimiter or sniff_delimiter(sample)

    def rows() -> Iterator[list[str]]:
        """The CSV's rows, parsed from its bytes as they are walked, within the limits."""
        limits, deadline = active()
        # csv's own limit on a field is process-wide; ours is one more than allowed, so that a
        # longer cell is told apart from a malformed file.
        csv.field_size_limit(limits.max_cell_chars + 1)
        buffer = io.BytesIO(data)  # shares the bytes: no copy
        buffer.seek(skip)
        lines = io.TextIOWrapper(buffer, encoding=encoding, newline="")
        count = 0
        try:
            for row in csv.reader(lines, delimiter=delimiter):
                count += 1
                if len(row) > limits.max_columns:
                    raise LimitExceeded("max_columns", limits.max_columns, len(row))
                if count > limits.max_csv_rows:
                    raise LimitExceeded("max_csv_rows", limits.max_csv_rows)
                if count % CHECK_EVERY_ROWS == 0:
                    deadline.check()
                yield row
        except csv.Error as exc:
            if "field larger than field limit" in str(exc):
                raise LimitExceeded("max_cell_chars", limits.max_cell_chars) from exc
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es=f"CSV mal formado ({exc})",
                    reason_en=f"malformed CSV ({exc})",
                )
            ) from exc

    # One pass over the whole file first, keeping nothing: a malformed or oversized CSV is
    # refused here, before any of it is validated or staged.
    for _ in rows():
        pass
    info = {"encoding": encoding, "encoding_guessed": guessed, "delimiter": delimiter}
    return Cells(None, "csv", info=info, stream=rows)


def _check_size(rows: int, columns: int, cells: int, limits) -> None:
    """Raise LimitExceeded when a table read whole is over a limit on its shape."""
    if columns > limits.max_columns:
        raise LimitExceeded("max_columns", limits.max_columns, columns)
    if rows > limits.max_rows:
        raise LimitExceeded("max_rows", limits.max_rows)
    if cells > limits.max_cells:
        raise LimitExceeded("max_cells", limits.max_cells)


def _check_cell(text: str, limits) -> None:
    if len(text) > limits.max_cell_chars:
        raise LimitExceeded("max_cell_chars", limits.max_cell_chars, len(text))


UNSAFE_XML = re.compile(rb"<!(?:DOCTYPE|ENTITY)", re.IGNORECASE)
# Literal prefixes keep these fast; an attribute that merely ends in "r" only overestimates.
CELL_COLUMN = re.compile(rb'r="([A-Z]{1,3})[0-9]')  # the letters of every cell reference
ROW_TAGS = (re.compile(rb"<row[\s>/]"), re.compile(rb":row[\s>/]"))
CHUNK = 1 << 20


def _column_number(letters: bytes) -> int:
    n = 0
    for ch in letters:
        n = n * 26 + ch - 64
    return n


def inspect_workbook(data: bytes) -> None:
    """Look inside an .xlsx before any workbook library opens it: its zip directory, then every
    part inflated as a stream (so memory stays at a chunk), with the limits on inflated size and
    ratio; no part may declare XML entities (billion laughs); no sheet may reach beyond the
    limits on rows, columns and cells (one cell at XFD1048576 makes calamine ask for 512 GB).

    Raises LimitExceeded, or UnreadableFile for a damaged or unsafe file."""
    limits, deadline = active()
    if len(data) > limits.max_file_bytes:
        raise LimitExceeded("max_file_bytes", limits.max_file_bytes, len(data))
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise _damaged_workbook(exc) from exc
    declared = sum(m.file_size for m in members)
    if declared > limits.max_uncompressed_bytes:
        raise LimitExceeded("max_uncompressed_bytes", limits.max_uncompressed_bytes, declared)
    inflated = 0
    for member in members:
        if member.is_dir():
            continue
        ratio = member.file_size / max(member.compress_size, 1)
        if member.file_size > CHUNK and ratio > limits.max_compression_ratio:
            raise LimitExceeded("max_compression_ratio", limits.max_compression_ratio, ratio)
        is_xml = member.filename.lower().endswith((".xml", ".rels", ".vml"))
        is_sheet = is_xml and member.filename.startswith("xl/worksheets/")
        rows = columns = row_tags = 0
        tail = b""
        try:
            with archive.open(member) as part:
                while block := part.read(CHUNK):
                    inflated += len(block)
                    if inflated > limits.max_uncompressed_bytes:
                        raise LimitExceeded("max_uncompressed_bytes", limits.max_uncompressed_bytes)
                    if is_xml:
                        window = tail + block
                        if UNSAFE_XML.search(window):
                            raise UnreadableFile(
                                problem(
                                    "unsafe-file",
                                    reason_es="declaraciones XML (DOCTYPE o ENTITY)",
                                    reason_en="XML declarations (DOCTYPE or ENTITY)",
                                )
                            )
                        if is_sheet:
                            # a reference cut by the block's end is read whole in the next window
                            cut = window.rfind(b"<")
                            whole, tail = window[:cut], window[cut:]
                            rows, columns, row_tags = _sheet_extent(
                                whole, rows, columns, row_tags, limits
                            )
                            if len(tail) > 4096:  # no tag is that long: not a reference
                                tail = tail[-64:]
                        else:
                            tail = block[-16:]
                    deadline.check()
        except (LimitExceeded, UnreadableFile):
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError, RuntimeError) as exc:
            raise _damaged_workbook(exc) from exc  # truncated, wrong CRC, encrypted, ...
        if is_sheet:
            rows, columns, row_tags = _sheet_extent(tail, rows, columns, row_tags, limits)
            rows = max(rows, row_tags)
            _check_size(rows, columns, rows * columns, limits)


def _sheet_extent(xml: bytes, rows: int, columns: int, row_tags: int, limits):
    """The furthest row and column that sheet XML refers to, and its rows counted; fast (a
    46 MB sheet in about 0.2 s): only references long enough to pass the row limit are read."""
    row_tags += sum(len(tag.findall(xml)) for tag in ROW_TAGS)
    letters = set(CELL_COLUMN.findall(xml))
    if letters:
        columns = max(columns, max(_column_number(c) for c in letters))
    digits = len(str(limits.max_rows))
    long_refs = re.findall(rb'r="[A-Z]{0,3}([0-9]{%d,})"' % digits, xml)
    if long_refs:
        rows = max(rows, max(int(n) for n in long_refs))
    return rows, columns, row_tags


def _damaged_workbook(exc: Exception) -> "UnreadableFile":
    kind = type(exc).__name__
    return UnreadableFile(
        problem(
            "unreadable-file",
            reason_es=f"el libro de Excel está dañado o incompleto ({kind})",
            reason_en=f"the Excel workbook is damaged or incomplete ({kind})",
        )
    )


def _missing_sheet(sheet, available: list[str]) -> UnreadableFile:
    names = ", ".join(available)
    return UnreadableFile(
        problem(
            "unreadable-file",
            reason_es=f"no tiene la hoja «{sheet}» que indica el perfil (hojas: {names})",
            reason_en=f"it has no sheet '{sheet}' as the profile says (sheets: {names})",
        )
    )


def read_xlsx_bytes(data: bytes, layout: Layout = Layout()) -> RawTable:
    return _xlsx_cells(data, layout).table(layout)


def _xlsx_cells(data: bytes, layout: Layout) -> Cells:
    """Excel workbooks through calamine (Rust): a 45,000-row export reads in about 0.6 s, where
    openpyxl took 6 s. Cells are the values Excel last computed, never formulas."""
    from python_calamine import CalamineWorkbook

    inspect_workbook(data)
    limits, deadline = active()
    try:
        workbook = CalamineWorkbook.from_filelike(io.BytesIO(data))
        names = workbook.sheet_names
    except Exception as exc:  # calamine raises several kinds for damaged or truncated files
        raise _damaged_workbook(exc) from exc
    if isinstance(layout.sheet, str):
        if layout.sheet not in names:
            raise _missing_sheet(layout.sheet, names)
        name = layout.sheet
    else:
        index = (layout.sheet or 1) - 1
        if not 0 <= index < len(names):
            raise _missing_sheet(layout.sheet, names)
        name = names[index]
    try:
        # Some exporters declare a wrong sheet size: calamine reads the cells that are there.
        sheet = workbook.get_sheet_by_name(name)
        if isinstance(sheet.height, int) and isinstance(sheet.width, int):
            _check_size(sheet.height, sheet.width, sheet.height * sheet.width, limits)
        cells = sheet.to_python(skip_empty_area=False)
    except LimitExceeded:
        raise
    except Exception as exc:
        kind = type(exc).__name__
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es=f"la hoja «{name}» está dañada ({kind})",
                reason_en=f"sheet '{name}' is damaged ({kind})",
            )
        ) from exc
    return Cells(_texts(cells, limits, deadline), "xlsx")


def _texts(rows, limits, deadline) -> list[list[str]]:
    """Cells as text, row by row, within the limits on a cell's length and on time."""
    out = []
    for n, row in enumerate(rows, start=1):
        texts = [_cell_text(v) for v in row]
        for text in texts:
            _check_cell(text, limits)
        out.append(texts)
        if n % CHECK_EVERY_ROWS == 0:
            deadline.check()
    return out


def read_xls_bytes(data: bytes, layout: Layout = Layout()) -> RawTable:
    return _xls_cells(data, layout).table(layout)


def _xls_cells(data: bytes, layout: Layout) -> Cells:
    """Legacy Excel 97-2003 workbooks (xlrd); date cells become ISO text like in .xlsx."""
    import xlrd

    try:
        book = xlrd.open_workbook(file_contents=data, on_demand=True)
    except Exception as exc:  # xlrd raises many kinds for damaged files
        kind = type(exc).__name__
        raise UnreadableFile(
            problem(
                "unreadable-file",
                reason_es=f"el libro de Excel 97-2003 está dañado ({kind})",
                reason_en=f"the Excel 97-2003 workbook is damaged ({kind})",
            )
        ) from exc
    names = book.sheet_names()
    limits, deadline = active()
    try:
        if isinstance(layout.sheet, str):
            sheet = book.sheet_by_name(layout.sheet)
        else:
            sheet = book.sheet_by_index((layout.sheet or 1) - 1)
    except (xlrd.XLRDError, IndexError) as exc:
        raise _missing_sheet(layout.sheet, names) from exc

    def cell(c):
        if c.ctype == xlrd.XL_CELL_DATE:
            return _cell_text(xlrd.xldate_as_datetime(c.value, book.datemode))
        if c.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK, xlrd.XL_CELL_ERROR):
            return ""
        return _cell_text(c.value)

    _check_size(sheet.nrows, sheet.ncols, sheet.nrows * sheet.ncols, limits)
    rows = ([cell(c) for c in sheet.row(r)] for r in range(sheet.nrows))
    return Cells(_texts(rows, limits, deadline), "xls")


def read_sav_bytes(data: bytes, layout: Layout = Layout()) -> RawTable:
    return _sav_cells(data, layout).table(layout)


def _sav_cells(data: bytes, layout: Layout) -> Cells:
    """SPSS .sav microdata: variable names as headers, value labels as cell text.

    Rows are numbered as SPSS's Data View numbers cases (1 = first case).
    """
    import pyreadstat

    limits, deadline = active()
    with tempfile.NamedTemporaryFile(suffix=".sav") as handle:
        handle.write(data)
        handle.flush()
        try:
            # The header says how many cases and variables there are (cases may be unknown:
            # then at most one case more than allowed is read, to know it is over).
            _, meta = pyreadstat.read_sav(handle.name, metadataonly=True)
            columns, cases = meta.number_columns or 0, meta.number_rows
            _check_size(max(cases or 0, 0), columns, max(cases or 0, 0) * columns, limits)
            frame, _ = pyreadstat.read_sav(
                handle.name,
                apply_value_formats=layout.value_labels,
                # read at most one row more than either limit allows, to know it is over
                row_limit=min(limits.max_rows, limits.max_cells // max(columns, 1)) + 1,
            )
            _check_size(len(frame), frame.shape[1], frame.size, limits)
        except LimitExceeded:
            raise
        except Exception as exc:  # pyreadstat.ReadstatError and friends
            kind = type(exc).__name__
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es=f"el archivo SPSS está dañado ({kind})",
                    reason_en=f"the SPSS file is damaged ({kind})",
                )
            ) from exc
    records = (
        [_cell_text(None if pd.isna(v) else v) for v in record]
        for record in frame.itertuples(index=False)
    )
    return Cells([list(frame.columns), *_texts(records, limits, deadline)], "sav", first_row=0)


def read_submission(data: bytes, file_name: str, layout: Layout = Layout()) -> RawTable:
    """Read an uploaded file's bytes; the format comes from its content, then its extension."""
    return read_cells(data, file_name, layout).table(layout)


def read_cells(data: bytes, file_name: str, layout: Layout = Layout()) -> Cells:
    """A file's cells, before any header is looked for (see Cells.table). Only the layout's
    sheet, encoding, delimiter and value_labels matter here.

    Raises UnreadableFile, or LimitExceeded for a file over one of obsx.intake.limits."""
    limits, _ = active()
    if len(data) > limits.max_file_bytes:
        raise LimitExceeded("max_file_bytes", limits.max_file_bytes, len(data))
    suffix = Path(file_name).suffix.lower()
    if data.startswith(SPSS_MAGIC):
        return _sav_cells(data, layout)
    if data.startswith(ZIP_MAGIC):
        if suffix in CSV_EXTENSIONS:
            raise UnreadableFile(
                problem(
                    "unreadable-file",
                    reason_es="tiene extensión CSV pero es un archivo comprimido",
                    reason_en="it has a CSV name but is a compressed file",
                )
            )
        return _xlsx_cells(data, layout)
    if data.startswith(OLE_MAGIC):
        return _xls_cells(data, layout)
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
    return _csv_cells(data, layout)
