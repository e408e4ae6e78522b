"""Reading uploaded bytes into numbered tables of text, and refusing what cannot be read."""

import datetime as dt
import io
import re
import zipfile

import openpyxl
import pytest

from obsx.intake.problems import Problem
from obsx.intake.reading import UnreadableFile, read_submission


def xlsx_bytes(rows: dict[int, list]) -> bytes:
    """A workbook whose first sheet holds ``rows`` (sheet row number -> cell values)."""
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    for row_number, values in rows.items():
        for column, value in enumerate(values, start=1):
            sheet.cell(row=row_number, column=column, value=value)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def assert_messages_render(p: Problem) -> None:
    """Both messages render, and each language only carries its own parameters."""
    spanish, english = p.message("es"), p.message("en")
    assert spanish and english
    for key, value in p.params:
        if key.endswith("_es"):
            assert value in spanish
            assert value not in english
        elif key.endswith("_en"):
            assert value in english


def unreadable(data: bytes, name: str) -> Problem:
    with pytest.raises(UnreadableFile) as info:
        read_submission(data, name)
    assert_messages_render(info.value.problem)
    return info.value.problem


def test_utf8_file_is_read_without_guessing():
    table = read_submission("id,lugar\n1,Colón\n".encode(), "a.csv")
    assert (table.file_format, table.encoding, table.encoding_guessed) == ("csv", "utf-8", False)
    assert table.frame.loc[2, "lugar"] == "Colón"
    assert table.problems == []


def test_utf8_bom_is_stripped_from_the_first_header():
    table = read_submission("\ufeffid,lugar\n1,Colón\n".encode(), "a.csv")
    assert table.encoding == "utf-8-sig"
    assert not table.encoding_guessed
    assert list(table.frame.columns) == ["id", "lugar"]


def test_cp1252_file_is_read_and_reported_as_guessed():
    table = read_submission("id,lugar\n1,Colón – centro\n".encode("cp1252"), "a.csv")
    assert (table.encoding, table.encoding_guessed) == ("cp1252", True)
    assert table.frame.loc[2, "lugar"] == "Colón – centro"
    [warning] = table.problems
    assert (warning.code, warning.severity, warning.row) == ("encoding-guessed", "warning", None)
    assert "cp1252" in warning.message("es") and "cp1252" in warning.message("en")
    assert_messages_render(warning)


def test_bytes_invalid_in_cp1252_fall_back_to_latin1():
    table = read_submission(b"id,lugar\n1,a\x81b\xf3\n", "a.csv")
    assert (table.encoding, table.encoding_guessed) == ("latin-1", True)
    assert table.frame.loc[2, "lugar"] == "a\x81bó"
    assert [p.code for p in table.problems] == ["encoding-guessed"]


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiter_is_detected(delimiter):
    text = delimiter.join(["id", "lugar", "edad"]) + "\n" + delimiter.join(["1", "Colón", "3"])
    table = read_submission(text.encode(), "a.csv")
    assert table.delimiter == delimiter
    assert list(table.frame.columns) == ["id", "lugar", "edad"]
    assert table.frame.loc[2, "edad"] == "3"


def test_semicolon_file_with_commas_inside_cells_is_split_on_semicolons():
    table = read_submission("id;lugar;monto\n1;Colón, centro;1,5\n".encode(), "a.csv")
    assert table.delimiter == ";"
    assert table.frame.loc[2].to_dict() == {"id": "1", "lugar": "Colón, centro", "monto": "1,5"}


def test_quoted_newline_keeps_spreadsheet_row_numbers():
    table = read_submission(b'id,nota\n1,"linea uno\nlinea dos"\n2,b\n', "a.csv")
    assert table.header_row == 1
    assert list(table.frame.index) == [2, 3]
    assert table.frame.loc[2, "nota"] == "linea uno\nlinea dos"
    assert table.frame.loc[3, "id"] == "2"


def test_blank_lines_are_dropped_but_later_rows_keep_their_numbers():
    table = read_submission(b"id,nota\n\n1,a\n ,  \n2,b\n", "a.csv")
    assert list(table.frame.index) == [3, 5]
    assert list(table.frame["id"]) == ["1", "2"]


def test_leading_blank_lines_shift_the_header_row():
    table = read_submission(b"\n\nid,nota\n1,a\n", "a.csv")
    assert table.header_row == 3
    assert list(table.frame.index) == [4]


def test_row_with_more_cells_than_headers_is_reported_with_its_row_number():
    table = read_submission(b"id,nota\n1,a\n2,b,sobra\n3,c,\n", "a.csv")
    [extra] = table.problems
    assert (extra.code, extra.row, extra.severity) == ("extra-cells", 3, "error")
    assert list(table.frame.index) == [2, 3, 4]
    assert_messages_render(extra)


def test_duplicate_and_blank_headers_get_distinct_names():
    table = read_submission(b"id,,id\n1,2,3\n", "a.csv")
    assert list(table.frame.columns) == ["id", "(columna 2)", "id (2)"]


def test_xlsx_cells_become_text_with_sheet_row_numbers():
    data = xlsx_bytes(
        {
            2: ["id", "fecha", "hora", "edad", "distrito"],
            3: ["A1", dt.datetime(2025, 1, 5), dt.time(7, 5), 30.0, 804],
            5: ["A2", dt.date(2025, 2, 1), None, 31.5, "0804"],
            6: ["A3", dt.datetime(2025, 3, 9, 10, 30)],
        }
    )
    table = read_submission(data, "incidentes.xlsx")
    assert (table.file_format, table.header_row) == ("xlsx", 2)
    assert list(table.frame.index) == [3, 5, 6]
    assert table.frame.loc[3].to_dict() == {
        "id": "A1",
        "fecha": "2025-01-05",
        "hora": "07:05",
        "edad": "30",
        "distrito": "804",
    }
    assert table.frame.loc[5, "fecha"] == "2025-02-01"
    assert table.frame.loc[5, "edad"] == "31.5"
    assert table.frame.loc[6, "fecha"] == "2025-03-09 10:30"
    assert table.frame.loc[6, "hora"] == ""


def test_xlsx_content_is_recognised_whatever_the_name():
    data = xlsx_bytes({1: ["id"], 2: ["A1"]})
    assert read_submission(data, "upload").file_format == "xlsx"


def with_sheet_dimension(data: bytes, ref: bytes) -> bytes:
    source, output = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(output, "w") as target:
        for item in source.infolist():
            content = source.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                content = re.sub(
                    rb'<dimension ref="[^"]*"\s*/>', b'<dimension ref="' + ref + b'"/>', content
                )
            target.writestr(item, content)
    return output.getvalue()


def test_xlsx_with_a_wrong_dimension_record_is_still_read_in_full():
    data = with_sheet_dimension(xlsx_bytes({1: ["id", "fecha"], 2: ["A1", "2025-01-05"]}), b"A1")
    table = read_submission(data, "incidentes.xlsx")
    assert table.frame.loc[2].to_dict() == {"id": "A1", "fecha": "2025-01-05"}


def test_truncated_xlsx_is_unreadable():
    data = xlsx_bytes({1: ["id"], 2: ["A1"]})
    assert unreadable(data[: len(data) // 2], "incidentes.xlsx").code == "unreadable-file"


@pytest.mark.parametrize(
    ("data", "name", "code"),
    [
        (b"id,nota\n1,\x00\x01\x02", "a.csv", "unreadable-file"),
        (  # an OLE header with nothing behind it: a damaged .xls
            b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512),
            "viejo.xls",
            "unreadable-file",
        ),
        (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(512), "renombrado.csv", "unreadable-file"),
        (b"%PDF-1.4\nid,nota\n", "informe.pdf", "unsupported-format"),
        (b"id,nota\n1,a\n", "falso.xlsx", "unreadable-file"),
        (b"PK\x03\x04zipped", "comprimido.csv", "unreadable-file"),
        (b"", "vacio.csv", "empty-file"),
        (b"\n \n", "blancos.csv", "empty-file"),
        (b"id,nota\n", "solo_encabezado.csv", "empty-file"),
        (b"id,nota\n,\n\n", "filas_vacias.csv", "empty-file"),
    ],
)
def test_unreadable_input_raises_with_a_problem_code(data, name, code):
    p = unreadable(data, name)
    assert (p.code, p.row, p.severity) == (code, None, "error")


@pytest.mark.parametrize("rows", [{}, {1: ["id", "fecha"]}], ids=["empty-workbook", "header-only"])
def test_xlsx_without_data_rows_is_an_empty_file(rows):
    assert unreadable(xlsx_bytes(rows), "a.xlsx").code == "empty-file"


def test_unreadable_file_exception_message_is_the_english_message():
    with pytest.raises(UnreadableFile) as info:
        read_submission(b"\x00binary", "a.csv")
    p = info.value.problem
    assert str(info.value) == p.message("en")
    assert "datos binarios" in p.message("es")
    assert "binary data" in p.message("en")


# -- hostile input: limits, and arbitrary bytes (hypothesis) ----------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from obsx.intake.limits import LimitExceeded, bounded, current_limits  # noqa: E402
from obsx.intake.reading import read_cells  # noqa: E402

MAGIC = [
    b"",
    b"PK\x03\x04",
    b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1",
    b"$FL2",
    b"\xef\xbb\xbf",
    b"\xff\xfe",
]
NAMES = ["a.csv", "a.xlsx", "a.xls", "a.sav", "a.txt", "a", "a.pdf"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(MAGIC), st.binary(max_size=4096), st.sampled_from(NAMES))
def test_reading_arbitrary_bytes_raises_only_our_reported_errors(magic, data, name):
    try:
        read_submission(magic + data, name)
    except (UnreadableFile, LimitExceeded) as exc:
        problem = exc.problem if isinstance(exc, UnreadableFile) else exc.problem()
        assert problem.message("es") and problem.message("en")


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.lists(st.text(alphabet=st.characters(codec="utf-8"), max_size=20), max_size=8),
        max_size=20,
    ),
    st.sampled_from([",", ";", "\t", "|"]),
)
def test_any_text_table_reads_or_is_refused_in_words(cells, delimiter):
    text = "\n".join(delimiter.join(row) for row in cells)
    try:
        read_submission(text.encode("utf-8"), "t.csv")
    except UnreadableFile as exc:
        assert exc.problem.code in {"empty-file", "unreadable-file"}


def test_limits_come_from_one_place_and_the_environment(monkeypatch):
    monkeypatch.setenv("OBSX_LIMIT_MAX_CSV_ROWS", "1000")  # a CSV's own: it is read in chunks
    assert current_limits().max_csv_rows == 1000
    data = ("id,fecha\n" + "P,2025-01-01\n" * 1001).encode()
    with pytest.raises(LimitExceeded) as refused:
        read_cells(data, "a.csv")
    assert refused.value.problem().code == "over-limit"
    assert "número de filas de un CSV: 1,000" in refused.value.problem().message("es")
    monkeypatch.setenv("OBSX_LIMIT_MAX_ROWS", "10")  # tables read whole; a CSV is not one
    assert len(read_submission(data[:200], "a.csv").frame) > 10
    monkeypatch.setenv("OBSX_LIMIT_MAX_ROWS", "mil")
    with pytest.raises(ValueError, match="OBSX_LIMIT_MAX_ROWS"):
        current_limits()


def test_a_read_over_its_time_is_stopped(monkeypatch):
    limits = current_limits()
    from dataclasses import replace

    data = ("id,fecha\n" + "P,2025-01-01\n" * 30_000).encode()
    with bounded(replace(limits, max_seconds=1e-9)), pytest.raises(LimitExceeded) as refused:
        read_cells(data, "a.csv")
    assert refused.value.name == "max_seconds"


def test_a_zip_bomb_is_refused_in_a_second_without_inflating_it():
    import time

    from tests.hostile.generate import large_files

    files = large_files()
    for name in ("bomb_1gb.xlsx", "bomb_lying.xlsx", "ratio_bomb.xlsx", "columns_100k.csv"):
        started = time.perf_counter()
        with pytest.raises((LimitExceeded, UnreadableFile)):
            read_cells(files[name], name)
        assert time.perf_counter() - started < 5, name
