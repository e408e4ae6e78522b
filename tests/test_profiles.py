"""Real export layouts read through their observatory's profile alone (tests/fixtures/)."""

import datetime as dt
from pathlib import Path

import pytest

from obsx.intake.contract import load_contract
from obsx.intake.profiles import ProfileError, load_profile, parse_profile
from obsx.intake.submission import check_file
from obsx.warehouse.reference import observatories

FIXTURES = Path(__file__).parent / "fixtures" / "incidents"
TODAY = dt.date(2026, 11, 23)
CONTRACT = load_contract("incidents")


def check(name: str, observatory: str):
    data = (FIXTURES / name).read_bytes()
    return check_file(data, name, observatories()[observatory], "incidents", TODAY)


def problems(result, *codes):
    return sorted((p.row, p.code) for p in result.problems if p.code in codes)


def test_colon_workbook_with_titles_crime_names_and_a_total_row():
    result, info = check("colon_enero.xlsx", "pa_colon")

    assert (
        info["header_row"] == "3"
        and info["profile"] == "deployments/pa/profiles/pa_colon/incidents.yaml"
    )
    accepted = result.accepted
    assert list(accepted.index) == [4, 5, 7]
    assert accepted.loc[4, ["crime_code", "weapon", "district_code"]].tolist() == [
        "0101",
        "FIREARM",
        "0301",
    ]
    assert accepted.loc[7, "weapon"] == "SHARP"
    assert problems(result, "row-dropped") == [(8, "row-dropped"), (10, "row-dropped")]
    [unknown] = [p for p in result.problems if p.code == "codelist"]
    assert (unknown.row, unknown.value) == (6, "Estafa")
    assert "deployments/pa/profiles/pa_colon/incidents.yaml" in unknown.message("es")
    assert "codes.crime_code" in unknown.message("es")


def test_la_chorrera_legacy_xls_from_its_data_sheet():
    result, info = check("la_chorrera_febrero.xls", "pa_la_chorrera")

    assert (info["format"], info["header_row"]) == ("xls", "3")
    assert list(result.accepted.index) == [4, 5]
    assert result.accepted.loc[4, "occurred_on"] == dt.datetime(2025, 2, 3)
    assert result.accepted.loc[5, ["victim_age", "weapon"]].tolist() == [19, "FIREARM"]
    assert problems(result, "geography-not-owned") == [(6, "geography-not-owned")]
    assert not [p for p in result.problems if p.code == "unknown-column"]  # ignored by profile


def test_arraijan_aggregated_counts_with_a_reported_zero():
    result, _ = check("arraijan_marzo.csv", "pa_arraijan")

    assert result.accepted["victim_count"].tolist() == [2, 5, 0]
    assert result.accepted["crime_code"].tolist() == ["0101", "0502", "0101"]
    assert problems(result, "min") == [(5, "min")]


def test_spss_file_with_value_labels():
    result, info = check("panama_abril.sav", "pa_panama")

    assert info["format"] == "sav"
    assert result.status == "accepted"
    assert result.accepted["victim_sex"].tolist() == ["M", "F", "NE"]
    assert list(result.accepted.index) == [1, 2, 3]  # SPSS numbers cases from 1


def test_san_miguelito_profile_reads_dash_dates_in_cp1252():
    text = "id_incidente;fecha_hecho;cod_distrito;codigo_delito;sexo\nS1;05-11-2025;0805;0101;Masculino\n"
    data = text.encode("cp1252")
    result, info = check_file(
        data, "s.csv", observatories()["pa_san_miguelito"], "incidents", TODAY
    )

    assert info["encoding"] == "cp1252"
    assert result.accepted.loc[2, "occurred_on"] == dt.datetime(2025, 11, 5)


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ({"colums": {}}, "unknown key"),
        ({"columns": {"Fecha": "fecha"}}, "names no field"),
        ({"codes": {"weapon": {"lanza": "SPEAR"}}}, "is not a code"),
        ({"codes": {"incident_id": {"x": "y"}}}, "is not a coded field"),
        ({"header_row": 0}, "header_row"),
        ({"drop_rows": [{"column": "x", "matches": "("}]}, "drop_rows"),
        ({"language": "fr"}, "language"),
    ],
)
def test_a_broken_profile_is_refused_with_its_key(spec, complaint):
    with pytest.raises(ProfileError, match=complaint):
        parse_profile(spec, CONTRACT)


def test_every_committed_profile_loads():
    for code in observatories():
        profile = load_profile(code, CONTRACT)
        assert profile.observatory in ("", code)
