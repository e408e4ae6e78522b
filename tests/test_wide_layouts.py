"""Wide layouts: one column per month, unpivoted by the profile; blank is "not reported"."""

import datetime as dt

import pytest

from obsx.intake.contract import load_contract
from obsx.intake.profiles import ProfileError, parse_profile
from obsx.intake.reading import read_submission
from obsx.intake.validation import validate
from obsx.warehouse.reference import observatories

CONTRACT = load_contract("incidents")
WIDE = parse_profile(
    {
        "columns": {"Delito": "crime_code", "Sexo": "victim_sex"},
        "codes": {"crime_code": {"Homicidio": "0101", "Robo": "0401"}},
        "unpivot": {
            "months": {"Ene": 1, "Feb": 2, "Mar": 3, "Abr": 4},
            "year": 2025,
            "date_field": "occurred_on",
            "value_field": "victim_count",
            "id_from": ["Delito", "Sexo"],
        },
    },
    CONTRACT,
)
TABLE = (
    "Distrito;Delito;Sexo;Ene;Feb;Mar;Abr\n"
    "1304;Homicidio;M;2;0;;1\n"  # March not reported yet: blank
    "1304;Robo;F;5;x;3;\n"  # 'x' in February: an error on that cell only
)


def check():
    table = read_submission(TABLE.encode(), "mensual.csv", WIDE.layout(CONTRACT))
    return validate(table, CONTRACT, observatories()["pa_la_chorrera"], dt.date(2026, 11, 23), WIDE)


def test_each_reported_month_becomes_a_record_and_blank_is_not_zero():
    accepted = check().accepted

    records = {(r.incident_id, r.occurred_on.month, r.victim_count) for r in accepted.itertuples()}
    assert records == {
        ("Homicidio-M-202501", 1, 2),
        ("Homicidio-M-202502", 2, 0),  # a reported zero
        ("Homicidio-M-202504", 4, 1),
        ("Robo-F-202501", 1, 5),
        ("Robo-F-202503", 3, 3),
    }  # no March record for homicides: that cell was blank
    assert not any(
        r.month == 3 for r in accepted[accepted.incident_id.str.startswith("Hom")].occurred_on
    )


def test_a_bad_cell_is_reported_at_its_row_and_month_column():
    result = check()

    [bad] = [p for p in result.problems if p.severity == "error"]
    assert (bad.row, bad.column, bad.value, bad.code) == (3, "Feb", "x", "type-integer")
    assert result.rows_rejected == 1
    assert sorted(set(result.accepted.index)) == [2, 3]  # rows as the spreadsheet shows them


def test_an_unpivot_without_a_year_is_refused():
    with pytest.raises(ProfileError, match="year"):
        parse_profile(
            {
                "unpivot": {
                    "months": {"Ene": 1},
                    "date_field": "occurred_on",
                    "value_field": "victim_count",
                }
            },
            CONTRACT,
        )
