"""Validating read tables against the incidents contract: typing, rules, row numbers, status."""

import datetime as dt

import pandas as pd
import pytest

from obsx.intake.contract import load_contract
from obsx.intake.reading import read_submission
from obsx.intake.validation import Observatory, ValidationResult, validate
from obsx.warehouse.deployment import current_deployment

TODAY = dt.date(2026, 11, 23)
PANAMA = Observatory("pa_panama", "Ciudad de Panamá", ("0804",))
HEADERS = {
    "id": "Código incidente",
    "fecha": "Fecha",
    "hora": "Hora",
    "distrito": "Distrito",
    "delito": "Delito (ICCS)",
    "sexo": "Sexo",
    "edad": "Edad",
    "arma": "Arma",
}
GOOD = {
    "id": "A1",
    "fecha": "2025-01-05",
    "hora": "10:30",
    "distrito": "0804",
    "delito": "0101",
    "sexo": "F",
    "edad": "30",
    "arma": "arma blanca",
}


def row(**changes) -> dict:
    return GOOD | changes


def check(*rows: dict, headers: dict = HEADERS) -> ValidationResult:
    """Validate a CSV with ``headers`` (key -> header as written) and ``rows`` (key -> cell)."""
    lines = [",".join(headers.values())]
    lines += [",".join(r[key] for key in headers) for r in rows]
    table = read_submission(("\n".join(lines) + "\n").encode(), "incidentes.csv")
    return validate(table, load_contract("incidents"), PANAMA, today=TODAY)


def on_row(result: ValidationResult, number: int) -> set[tuple]:
    return {(p.code, p.column, p.value) for p in result.problems if p.row == number}


def test_clean_file_is_accepted_with_typed_canonical_columns():
    result = check(
        row(),
        row(
            id="A2",
            fecha="05/02/2025",
            hora="7:05",
            distrito="804",
            delito="101",
            sexo="Masculino",
            edad="",
            arma="arma de fuego",
        ),
    )
    assert (result.status, result.problems, result.rejected_rows) == ("accepted", [], set())
    accepted = result.accepted
    assert list(accepted.index) == [2, 3]
    assert str(accepted["occurred_on"].dtype).startswith("datetime64")
    assert str(accepted["victim_age"].dtype) == "Int64"
    assert list(accepted["occurred_on"]) == [dt.datetime(2025, 1, 5), dt.datetime(2025, 2, 5)]
    assert accepted.loc[2, "victim_age"] == 30
    assert accepted["victim_age"].isna().tolist() == [False, True]
    codes = ["incident_id", "occurred_at", "district_code", "crime_code", "victim_sex", "weapon"]
    assert accepted.loc[2, codes].tolist() == ["A1", "10:30", "0804", "0101", "F", "SHARP"]
    assert accepted.loc[3, codes].tolist() == ["A2", "07:05", "0804", "0101", "M", "FIREARM"]


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"id": ""}, {("required", "Código incidente", "")}),
        ({"fecha": "2025-13-01"}, {("type-date", "Fecha", "2025-13-01")}),
        ({"fecha": "31/02/2025"}, {("type-date", "Fecha", "31/02/2025")}),
        ({"fecha": ""}, {("required", "Fecha", "")}),
        ({"edad": "abc"}, {("type-integer", "Edad", "abc")}),
        ({"edad": "12.5"}, {("type-integer", "Edad", "12.5")}),
        ({"hora": "25:00"}, {("type-time", "Hora", "25:00")}),
        ({"sexo": "X"}, {("codelist", "Sexo", "X")}),
        ({"delito": "0999"}, {("codelist", "Delito (ICCS)", "0999")}),
        ({"arma": "láser"}, {("codelist", "Arma", "láser")}),
        ({"distrito": "08A4"}, {("geography-not-owned", "Distrito", "08A4")}),
        ({"edad": "-1"}, {("min", "Edad", "-1")}),
        ({"edad": "200"}, {("max", "Edad", "200")}),
        ({"fecha": "2026-11-24"}, {("future-date", "Fecha", "2026-11-24")}),
        ({"fecha": "1999-12-31"}, {("min", "Fecha", "1999-12-31")}),
        ({"distrito": "0805"}, {("geography-not-owned", "Distrito", "0805")}),
        ({"id": "X" * 65}, {("max-length", "Código incidente", "X" * 65)}),
    ],
)
def test_each_rule_reports_its_code_row_and_header_and_rejects_only_that_row(changes, expected):
    result = check(row(), row(id="B2") | changes)
    assert on_row(result, 3) == expected
    assert result.rejected_rows == {3}
    assert list(result.accepted.index) == [2]
    assert result.status == "partly_accepted"
    for p in result.problems:
        assert p.severity == "error"
        assert p.message("es") and p.message("en")


def test_boundary_values_are_accepted():
    result = check(
        row(fecha="2026-11-23", edad="0"),
        row(id="A2", fecha="2000-01-01", edad="120", hora="23:59"),
        row(id="X" * 64, distrito="804"),
    )
    assert (result.status, result.problems) == ("accepted", [])
    assert result.accepted.loc[4, "district_code"] == "0804"


def test_duplicate_id_rejects_the_second_occurrence_and_keeps_the_first():
    result = check(row(), row(id="A2"), row(fecha="2025-03-01"))
    assert on_row(result, 4) == {("duplicate-key", "Código incidente", "A1")}
    assert result.rejected_rows == {4}
    assert list(result.accepted.index) == [2, 3]


def test_unknown_column_is_a_warning_and_is_dropped_without_rejecting_rows():
    headers = HEADERS | {"nombre": "Nombre víctima"}
    result = check(row(nombre="Juan Pérez"), row(id="A2", nombre="Ana"), headers=headers)
    assert result.status == "accepted"
    [warning] = result.problems
    assert (warning.code, warning.severity, warning.row, warning.column) == (
        "unknown-column",
        "warning",
        None,
        "Nombre víctima",
    )
    assert "Nombre víctima" not in result.accepted.columns
    assert list(result.accepted.columns) == list(load_contract("incidents").record_fields)
    assert list(result.accepted.index) == [2, 3]


def test_missing_required_column_rejects_the_whole_file():
    headers = {k: v for k, v in HEADERS.items() if k != "fecha"}
    result = check(row(), row(id="A2"), headers=headers)
    assert result.status == "rejected"
    [missing] = result.problems
    assert (missing.code, missing.row) == ("missing-column", None)
    assert "Fecha del hecho" in missing.message("es")
    assert "Date of occurrence" in missing.message("en")
    assert result.rejected_rows == {2, 3}
    assert len(result.accepted) == 0


def test_missing_optional_column_is_not_a_problem():
    headers = {k: v for k, v in HEADERS.items() if k not in ("hora", "arma")}
    result = check(row(), headers=headers)
    assert (result.status, result.problems) == ("accepted", [])
    assert result.accepted["weapon"].isna().all()


def test_every_problem_on_one_row_is_reported():
    bad = row(id="B2", fecha="2025-13-01", hora="25:00", sexo="X", edad="abc", distrito="0805")
    result = check(row(), bad)
    assert {p.code for p in result.problems if p.row == 3} == {
        "type-date",
        "type-time",
        "codelist",
        "type-integer",
        "geography-not-owned",
    }
    assert result.rejected_rows == {3}


def test_file_where_every_row_fails_is_rejected():
    result = check(row(edad="200"), row(id="A2", sexo="X"))
    assert result.status == "rejected"
    assert result.rejected_rows == {2, 3}
    assert len(result.accepted) == 0


def test_extra_cells_from_reading_reject_that_row():
    text = "Código incidente,Fecha,Distrito,Delito\nA1,2025-01-05,0804,0101\nA2,2025-01-05,0804,0101,x\n"
    table = read_submission(text.encode(), "incidentes.csv")
    result = validate(table, load_contract("incidents"), PANAMA, today=TODAY)
    assert [(p.code, p.row) for p in result.problems] == [("extra-cells", 3)]
    assert list(result.accepted.index) == [2]


def test_huge_age_is_reported_on_its_row_instead_of_aborting():
    result = check(row(), row(id="A2", edad="99999999999999999999"))
    assert {code for code, *_ in on_row(result, 3)} == {"type-integer"}
    assert list(result.accepted.index) == [2]


def test_date_with_a_utc_offset_is_reported_on_its_row_instead_of_aborting():
    result = check(row(), row(id="A2", fecha="2025-01-05T10:00+05:00"))
    assert list(result.accepted.index) == [2]
    assert {code for code, *_ in on_row(result, 3)} == {"type-date"}


@pytest.mark.parametrize("partial", ["2025", "2025-03"])
def test_partial_date_is_not_a_valid_date(partial):
    result = check(row(fecha=partial))
    assert on_row(result, 2) == {("type-date", "Fecha", partial)}


def test_a_unit_not_owned_is_named_as_written_and_as_read_with_a_short_hint():
    result = check(row(), row(id="B2") | {"distrito": "805"})
    (p,) = [p for p in result.problems if p.code == "geography-not-owned"]
    assert p.message("es") == (
        "La unidad territorial «805» (leída como 0805) no es de este contribuyente"
        " (puede reportar: 0804)."
    )


def test_a_national_contributor_is_told_how_many_units_not_all_of_them():
    level = current_deployment().units_level
    police = Observatory(
        "police", "Policía", tuple(f"{i:04d}" for i in range(1, 341)), None, {}, level
    )
    lines = [",".join(HEADERS.values()), ",".join(row(distrito="9999").values())]
    table = read_submission(("\n".join(lines) + "\n").encode(), "nacional.csv")
    result = validate(table, load_contract("incidents"), police, today=TODAY)
    (p,) = [p for p in result.problems if p.code == "geography-not-owned"]
    assert p.message("en") == (
        "Territorial unit '9999' (read as 9999) is not this contributor's"
        " (it may report 340 units of level district)."
    )


def test_thousands_of_unknown_columns_make_a_short_feedback():
    headers = HEADERS | {f"x{i}": f"Columna extra {i}" for i in range(120)}
    result = check(row() | {f"x{i}": "1" for i in range(120)}, headers=headers)
    codes = [p.code for p in result.problems]
    assert codes.count("unknown-column") == 50 and codes.count("more-unknown-columns") == 1
    (more,) = [p for p in result.problems if p.code == "more-unknown-columns"]
    assert more.message("es") == (
        "Otras 70 columnas no forman parte del contrato de datos y se descartaron."
    )
    assert result.status == "accepted"


@pytest.mark.parametrize(
    ("ages", "typed", "refused"),
    [
        # Every cell a plain whole number: typed in one cast.
        (["30", "007", "-0", ""], [30, 7, 0, None], set()),
        # One cell written otherwise: the forgiving path types the file, and names what fails.
        (["30", "12.0", "+4", "1e1"], [30, 12, 4, 10], set()),
        (["30", "12.5", "doce", "9999999999999999"], [30], {3, 4, 5}),
    ],
)
def test_whole_numbers_are_typed_the_same_whichever_path(ages, typed, refused):
    rows = [row(id=f"A{i}", edad=age) for i, age in enumerate(ages)]
    result = check(*rows)
    assert {p.row for p in result.problems if p.code == "type-integer"} == refused
    got = result.accepted["victim_age"]
    assert str(got.dtype) == "Int64"
    assert [None if v is pd.NA else int(v) for v in got] == typed


def test_columns_the_file_lacks_are_typed_as_blank_cells():
    headers = {k: v for k, v in HEADERS.items() if k not in ("hora", "edad")}
    result = check(row(), row(id="A2"), headers=headers)
    assert result.status == "accepted"
    assert result.accepted["victim_age"].isna().all()
    assert str(result.accepted["victim_age"].dtype) == "Int64"
    assert result.accepted["occurred_at"].isna().all()
    assert result.accepted["victim_count"].tolist() == [1, 1]  # the contract's default


def test_every_problem_has_a_label_a_clerk_reads_in_both_languages():
    from obsx.intake.contract import load_contract
    from obsx.intake.problems import CATALOGUE, LABELS, label

    for dataset in ("incidents", "arrests", "survey_responses", "prevention_activities"):
        load_contract(dataset)  # registers the contracts' own rules, each with its label
    assert sorted(set(CATALOGUE) - set(LABELS)) == []
    for code in CATALOGUE:
        es, en = label(code, "es"), label(code, "en")
        assert es and en and es != code and en != code, code
