"""Prevention activities: three export shapes through their profiles, rules, indicators."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import check_file, detect_dataset, process_submission
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator_value
from tests.conftest import TODAY, load_reference

FIXTURES = Path(__file__).parent / "fixtures" / "prevention_activities"
YOUTH_OVER_TOTAL = [("youth-within-total", "6")]
SHAPES = [
    # cp1252, its own activity names, decimal comma
    ("san_miguelito_plan.csv", "pa_san_miguelito", YOUTH_OVER_TOTAL),
    # a title row, Sí/No for executed, a Total row; it does not export youth
    ("colon_plan.xlsx", "pa_colon", []),
    # the national template's headers, no profile
    ("panama_plantilla.xlsx", "pa_panama", YOUTH_OVER_TOTAL),
]


@pytest.mark.parametrize(("name", "observatory", "errors"), SHAPES)
def test_each_shape_is_read_through_its_profile_and_rules_apply(name, observatory, errors):
    data = (FIXTURES / name).read_bytes()
    registry = observatories()
    assert detect_dataset(data, name, registry[observatory]) == "prevention_activities"

    result, _ = check_file(data, name, registry[observatory], "prevention_activities", TODAY)

    accepted = result.accepted
    assert [(p.code, p.value) for p in result.problems if p.severity == "error"] == errors
    assert (len(accepted), result.rows_rejected) == (5 - len(errors), len(errors))
    statuses = ["EXECUTED", "EXECUTED", "EXECUTED", "PLANNED", "CANCELLED"]
    if errors:  # the second activity (youth above total) is the rejected one
        del statuses[1]
    assert accepted["activity_status"].tolist() == statuses
    first = accepted.iloc[0]
    assert (first["participants_female"], first["participants_male"]) == (10, 5)
    assert first["participants_total"] == 15
    [over] = [p for p in result.problems if p.code == "budget-over-plan"]
    assert over.severity == "warning" and over.value == "1000"
    assert accepted.loc[over.row, "budget_executed"] == pytest.approx(1250.5)


def test_prevention_file_flows_end_to_end_into_plan_execution(tmp_path, engine):
    load_reference(engine)
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    name = "san_miguelito_plan.csv"
    shutil.copy(FIXTURES / name, zone.inbox("pa_san_miguelito") / name)
    key = partition_key("pa_san_miguelito", file_sha256(zone.inbox("pa_san_miguelito") / name))

    outcome = process_submission(key, zone, engine, observatories(), TODAY)
    compute_indicators(engine, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    assert (outcome.dataset, outcome.status, outcome.counts["rows_inserted"]) == (
        "prevention_activities",
        "partly_accepted",
        4,
    )
    v = indicator_value.c
    with engine.connect() as conn:
        rows = dict(
            conn.execute(
                sa.select(v.indicator_code, v.value).where(
                    v.geo_level == "district",
                    v.geo_code == "0805",
                    v.period == "2025",
                    v.disaggregation == "",
                )
            ).all()
        )
    assert rows["PLAN_EXECUTION"] == pytest.approx(100 * 2 / 4)  # 2 executed of 4 accepted
    assert rows["PREVENTION_PARTICIPANTS"] == 15 + 2  # executed activities only
    planned = (
        check_file(
            (FIXTURES / name).read_bytes(),
            name,
            observatories()["pa_san_miguelito"],
            "prevention_activities",
            TODAY,
        )[0]
        .accepted["budget_planned"]
        .sum()
    )  # planned, executed and cancelled activities alike
    assert rows["BUDGET_EXECUTION"] == pytest.approx(100 * (1800 + 1250.5) / planned)
