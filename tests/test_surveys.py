"""Victimization-survey microdata: three deliveries through their profiles, weighted shares."""

import datetime as dt
import shutil
from pathlib import Path

import pytest
import sqlalchemy as sa

from obsx.indicators.engine import compute_indicators
from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
from obsx.intake.submission import check_file, detect_dataset, process_submission
from obsx.warehouse.reference import observatories
from obsx.warehouse.tables import indicator_value, merge_records
from tests.conftest import TODAY, load_reference

FIXTURES = Path(__file__).parent / "fixtures" / "survey_responses"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SHAPES = [
    ("panama_encuesta.sav", "pa_panama"),  # SPSS, short names, numeric answers with labels
    ("san_miguelito_encuesta.csv", "pa_san_miguelito"),  # cp1252, decimal comma in weights
    ("colon_encuesta.xlsx", "pa_colon"),  # a title row above the headers
]


@pytest.mark.parametrize(("name", "observatory"), SHAPES)
def test_each_delivery_is_read_through_its_profile(name, observatory):
    data = (FIXTURES / name).read_bytes()
    registry = observatories()
    assert detect_dataset(data, name, registry[observatory]) == "survey_responses"

    result, _ = check_file(data, name, registry[observatory], "survey_responses", TODAY)

    assert [(p.code, p.value) for p in result.problems if p.severity == "error"] == [("min", "12")]
    accepted = result.accepted
    assert accepted["weight"].tolist() == [100.0, 300.0, 200.0, 400.0, 50.0]
    assert accepted["sex"].tolist() == ["F", "F", "M", "M", "F"]
    assert accepted["victimized_12m"].tolist() == ["YES", "NO", "YES", "NO", "DK"]
    assert accepted["feels_safe_night"].tolist() == ["NO", "YES", "YES", "NO", "DK"]


def test_weighted_shares_leave_out_dont_know_answers(tmp_path, engine):
    load_reference(engine)
    zone = Dropzone(tmp_path, observatories())
    zone.ensure_folders()
    name = "panama_encuesta.sav"
    shutil.copy(FIXTURES / name, zone.inbox("pa_panama") / name)
    key = partition_key("pa_panama", file_sha256(zone.inbox("pa_panama") / name))
    process_submission(key, zone, engine, observatories(), TODAY)
    compute_indicators(engine, dt.datetime(2026, 1, 1, tzinfo=dt.UTC))

    v = indicator_value.c
    with engine.connect() as conn:
        values = {
            (code, split): value
            for code, split, value in conn.execute(
                sa.select(v.indicator_code, v.disaggregation, v.value).where(
                    v.geo_level == "national", v.period == "2025"
                )
            )
        }
    # weights: F yes 100, F no 300, M yes 200, M no 400, F don't know 50 (left out)
    assert values[("VICTIMIZATION_PREVALENCE", "")] == pytest.approx(100 * 300 / 1000)
    assert values[("VICTIMIZATION_PREVALENCE", "sex=F")] == pytest.approx(100 * 100 / 400)
    assert values[("SDG_16_1_4", "")] == pytest.approx(100 * 500 / 1000)
    assert values[("CRIME_REPORTING_RATE", "")] == pytest.approx(100 * 100 / 300)


def test_weights_keep_their_decimals_in_the_warehouse(engine):
    text = (
        "respondent_id,survey_code,interview_date,district_code,stratum,psu,weight,sex,age,"
        "victimized_12m\nR1,ENV-2025,2025-09-02,0804,URB-1,S001,152.347,F,30,No\n"
        "R2,ENV-2025,2025-09-02,0804,URB-1,S001,0.0035,M,40,Sí\n"
    ).encode()
    result, _ = check_file(text, "e.csv", observatories()["pa_panama"], "survey_responses", TODAY)
    with engine.begin() as conn:
        merge_records(conn, "survey_responses", "pa_panama", "s1", result.accepted, NOW)
        weights = conn.scalars(
            sa.text("SELECT weight FROM survey_responses ORDER BY respondent_id")
        )
        assert [float(w) for w in weights] == pytest.approx([152.347, 0.0035])
