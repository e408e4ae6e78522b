"""Rules across fields and against reference data: observatory age, boundary history."""

import datetime as dt

from obsx.intake.contract import load_contract
from obsx.intake.reading import read_submission
from obsx.intake.validation import validate
from obsx.warehouse.reference import observatories

TODAY = dt.date(2026, 11, 23)


def check(observatory: str, *lines: str):
    text = "\n".join(["id,fecha,distrito,delito", *lines]).encode()
    table = read_submission(text, "t.csv")
    return validate(table, load_contract("incidents"), observatories()[observatory], TODAY)


def test_a_date_before_the_observatory_existed_is_rejected():
    result = check("pa_arraijan", "A1,2015-08-31,1301,0101", "A2,2015-09-01,1301,0101")

    assert [(p.row, p.code) for p in result.problems] == [(2, "before-observatory")]
    assert "2015-09-01" in result.problems[0].message("es")
    assert list(result.accepted.index) == [3]


def test_a_district_is_only_valid_on_dates_it_existed(tmp_path):
    registry = observatories()
    arraijan = registry["pa_arraijan"]
    assert arraijan.district_validity["1301"][0] == dt.date(2014, 1, 1)  # Panamá Oeste, 2014
    # An observatory whose own opening would not stop the row, to isolate the boundary rule.
    older = type(arraijan)(
        arraijan.code, arraijan.name, arraijan.districts, None, arraijan.district_validity
    )
    text = b"id,fecha,distrito,delito\nA1,2013-12-31,1301,0101\nA2,2014-01-01,1301,0101\n"
    result = validate(read_submission(text, "t.csv"), load_contract("incidents"), older, TODAY)

    assert [(p.row, p.code, p.value) for p in result.problems] == [
        (2, "geography-not-valid-on-date", "1301")
    ]
    assert list(result.accepted.index) == [3]
