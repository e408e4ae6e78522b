"""Great Expectations suites from the contracts, and the volume check."""

import datetime as dt

from obsx.indicators.expectations import expectations_for, run_suite, unusual_volumes
from obsx.intake.contract import load_contract
from obsx.warehouse.tables import submission
from tests.conftest import typed_rows

CONTRACT = load_contract("incidents")


def merged_frame():
    rows = typed_rows("P1,2025-01-03,0804,0101,M,25,FIREARM", "P2,2025-01-04,0804,0401,F,30,NONE")
    return rows.assign(observatory_code="pa_panama").reset_index(drop=True)


def test_suite_has_an_expectation_for_each_checkable_rule():
    kinds = {(e.expectation_type, getattr(e, "column", None)) for e in expectations_for(CONTRACT)}
    assert ("expect_column_values_to_not_be_null", "occurred_on") in kinds
    assert ("expect_column_values_to_be_in_set", "crime_code") in kinds
    assert ("expect_column_values_to_be_between", "victim_age") in kinds
    assert ("expect_column_values_to_match_regex", "district_code") in kinds
    assert ("expect_compound_columns_to_be_unique", None) in kinds


def test_suite_passes_merged_rows_and_writes_data_docs(tmp_path):
    outcome = run_suite(tmp_path, CONTRACT, merged_frame())

    assert (outcome.success, outcome.evaluated_rows, outcome.failures) == (True, 2, [])
    assert outcome.data_docs and outcome.data_docs.endswith("index.html")


def test_suite_catches_what_slipped_past_the_door(tmp_path):
    frame = merged_frame()
    frame.loc[1, "crime_code"] = "9999"  # as if written to the warehouse by another path
    frame.loc[1, "victim_age"] = 300

    outcome = run_suite(tmp_path, CONTRACT, frame)

    assert not outcome.success
    assert {(f["expectation"], f["column"], f["unexpected"]) for f in outcome.failures} == {
        ("expect_column_values_to_be_in_set", "crime_code", 1),
        ("expect_column_values_to_be_between", "victim_age", 1),
    }


def test_a_file_far_larger_than_usual_is_flagged(engine):
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sizes = [100, 110, 90, 1000, 105]
    with engine.begin() as conn:
        for n, rows in enumerate(sizes):
            conn.execute(
                submission.insert().values(
                    submission_id=f"s{n}",
                    partition_key=f"pa_colon__{n:016x}",
                    observatory_code="pa_colon",
                    dataset="incidents",
                    file_name=f"f{n}.csv",
                    archive_path="a",
                    size_bytes=1,
                    status="accepted",
                    rows_read=rows,
                    received_at=start,
                    merged_at=start + dt.timedelta(days=n),
                )
            )
    with engine.connect() as conn:
        flagged = unusual_volumes(conn, [f"s{n}" for n in range(len(sizes))])
    assert [(f["file"], f["usual_rows"]) for f in flagged] == [("f3.csv", 100)]
