"""Indicator arithmetic, checked against figures computed by hand from the reference files."""

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

from obsx.indicators.engine import (
    compute_indicators,
    indicator_values_as_of,
    unbalanced_aggregates,
    units_without_population,
)
from obsx.intake.validation import Observatory
from obsx.warehouse import reference
from obsx.warehouse.tables import indicator_value, merge_records, population, population_revision
from tests.conftest import PANAMA, typed_rows

COLON = Observatory("pa_colon", "Colón", ("0301",))
CHORRERA = Observatory("pa_la_chorrera", "La Chorrera", ("1304",))
NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)

POP = reference.read_population().query("year == 2025")


def pop(*codes, sex=None):
    rows = POP[POP["geo_code"].isin(codes)]
    if sex:
        rows = rows[rows["sex"] == sex]
    return int(rows["population"].sum())


@pytest.fixture
def warehouse(loaded_engine):
    """Panamá: 3 homicides (2 men in January, 1 woman in February) and 1 robbery in January;
    Colón: 1 homicide (a man) in January; La Chorrera: 1 theft in March (reported, no homicide)."""
    batches = [
        (
            PANAMA,
            [
                "P1,2025-01-03,0804,0101,M,25,FIREARM",
                "P2,2025-01-20,0804,0101,M,19,SHARP",
                "P3,2025-02-11,0804,0101,F,33,FIREARM",
                "P4,2025-01-25,0804,0401,F,40,NONE",
            ],
        ),
        (COLON, ["C1,2025-01-09,0301,0101,M,22,FIREARM"]),
        (CHORRERA, ["L1,2025-03-02,1304,0502,F,50,NONE"]),
    ]
    with loaded_engine.begin() as conn:
        for observatory, lines in batches:
            rows = typed_rows(*lines, observatory=observatory)
            merge_records(conn, "incidents", observatory.code, f"s-{observatory.code}", rows, NOW)
    compute_indicators(loaded_engine, NOW)
    return loaded_engine


def value(engine, code, level, geo, period, disaggregation=""):
    v = indicator_value.c
    with engine.connect() as conn:
        return conn.execute(
            sa.select(v.numerator, v.denominator, v.value).where(
                v.indicator_code == code,
                v.geo_level == level,
                v.geo_code == geo,
                v.period == period,
                v.disaggregation == disaggregation,
            )
        ).one_or_none()


def test_district_homicide_rate_is_victims_per_100000_of_its_population(warehouse):
    row = value(warehouse, "SDG_16_1_1", "district", "0804", "2025")

    assert (row.numerator, row.denominator) == (3, pop("0804"))
    assert row.value == pytest.approx(3 * 100_000 / pop("0804"))


def test_national_rate_counts_only_the_population_of_reporting_districts(warehouse):
    row = value(warehouse, "SDG_16_1_1", "national", "PA", "2025")

    assert row.numerator == 4
    assert row.denominator == pop("0804", "0301", "1304")
    assert row.value == pytest.approx(4 * 100_000 / pop("0804", "0301", "1304"))


def test_monthly_rate_is_not_annualized_and_uses_that_months_reporters(warehouse):
    january = value(warehouse, "SDG_16_1_1", "national", "PA", "2025-01")
    february = value(warehouse, "SDG_16_1_1", "national", "PA", "2025-02")

    assert (january.numerator, january.denominator) == (3, pop("0804", "0301"))
    assert january.value == pytest.approx(3 * 100_000 / pop("0804", "0301"))
    assert (february.numerator, february.denominator) == (1, pop("0804"))


def test_sex_disaggregation_uses_the_population_of_that_sex(warehouse):
    women = value(warehouse, "SDG_16_1_1", "national", "PA", "2025", "sex=F")
    men = value(warehouse, "SDG_16_1_1", "province", "08", "2025", "sex=M")

    assert (women.numerator, women.denominator) == (1, pop("0804", "0301", "1304", sex="F"))
    assert (men.numerator, men.denominator) == (2, pop("0804", sex="M"))


def test_reporting_district_without_homicides_is_zero_and_silent_district_has_no_value(warehouse):
    chorrera = value(warehouse, "SDG_16_1_1", "district", "1304", "2025")

    assert (chorrera.numerator, chorrera.value) == (0, 0)
    assert value(warehouse, "SDG_16_1_1", "district", "0805", "2025") is None


def test_incident_counts_by_iccs_section(warehouse):
    assert value(warehouse, "INCIDENT_COUNT", "national", "PA", "2025").value == 6
    assert (
        value(warehouse, "INCIDENT_COUNT", "national", "PA", "2025", "iccs_section=01").value == 4
    )
    assert (
        value(warehouse, "INCIDENT_COUNT", "province", "08", "2025-Q1", "iccs_section=04").value
        == 1
    )
    # months are published in total only (disaggregated_periods: quarter, year)
    assert (
        value(warehouse, "INCIDENT_COUNT", "province", "08", "2025-01", "iccs_section=04") is None
    )
    assert value(warehouse, "INCIDENT_COUNT", "province", "08", "2025-01").value == 3


def test_reporting_coverage_is_the_share_of_population_in_reporting_districts(warehouse):
    row = value(warehouse, "REPORTING_COVERAGE", "national", "PA", "2025")

    assert row.numerator == pop("0804", "0301", "1304")
    assert row.denominator == int(POP["population"].sum())


def test_district_numerators_add_up_to_province_and_national(warehouse):
    with warehouse.connect() as conn:
        assert unbalanced_aggregates(conn) == []
        # A tampered province figure is caught: against its districts and against the nation.
        v = indicator_value.c
        conn.execute(
            indicator_value.update()
            .where(
                v.indicator_code == "SDG_16_1_1",
                v.geo_code == "08",
                v.period == "2025",
                v.disaggregation == "",
            )
            .values(numerator=99)
        )
        flagged = {
            (u["geo_level"], u["geo_code"], u["period"]) for u in unbalanced_aggregates(conn)
        }
        assert flagged == {("province", "08", "2025"), ("national", "PA", "2025")}


def test_a_unit_without_population_is_left_out_of_rates_and_named_not_a_null_nation(warehouse):
    before = value(warehouse, "SDG_16_1_1", "national", "PA", "2025")
    colon = value(warehouse, "SDG_16_1_1", "district", "0301", "2025")
    with warehouse.begin() as conn:
        conn.execute(population.delete().where(population.c.geo_code == "0301"))
    compute_indicators(warehouse, NOW)

    national = value(warehouse, "SDG_16_1_1", "national", "PA", "2025")
    assert national.numerator == before.numerator - colon.numerator
    assert national.denominator == before.denominator - colon.denominator
    assert national.value == pytest.approx(national.numerator * 1e5 / national.denominator)
    assert value(warehouse, "SDG_16_1_1", "district", "0301", "2025") is None
    assert value(warehouse, "INCIDENT_COUNT", "district", "0301", "2025").numerator > 0
    with warehouse.connect() as conn:
        assert [u["unit_code"] for u in units_without_population(conn)] == ["0301"]


def test_indicators_as_of_a_past_date_use_the_versions_valid_then(warehouse):
    later = NOW + dt.timedelta(days=30)
    with warehouse.begin() as conn:
        corrected = typed_rows("P1,2025-01-03,0804,0401,M,25,FIREARM")  # was a homicide
        merge_records(conn, "incidents", "pa_panama", "s-correction", corrected, later)
    compute_indicators(warehouse, later)

    def national(frame):
        row = frame.query(
            "indicator_code == 'SDG_16_1_1' and geo_level == 'national' and period == '2025'"
            " and disaggregation == ''"
        )
        return row["numerator"].item()

    before = indicator_values_as_of(warehouse, NOW + dt.timedelta(days=1))
    after = indicator_values_as_of(warehouse, later + dt.timedelta(seconds=1))
    assert (national(before), national(after)) == (4, 3)
    assert indicator_values_as_of(warehouse, NOW - dt.timedelta(days=1)).empty
    with warehouse.connect() as conn:
        current = pd.read_sql(sa.select(indicator_value), conn)
    # completeness and timeliness follow the calendar, not record versions: not reproduced
    current = current[~current["indicator_code"].isin(["COMPLETENESS", "TIMELINESS"])]
    current = current[current["indicator_code"] != "PLAN_REPORTING_COMPLETENESS"]
    key = ["indicator_code", "geo_level", "geo_code", "period_type", "period", "disaggregation"]
    columns = [*key, "numerator", "denominator", "value"]
    pd.testing.assert_frame_equal(
        after[columns].sort_values(key).reset_index(drop=True),
        current[columns].sort_values(key).reset_index(drop=True),
    )


def test_withdrawn_records_count_nowhere_but_stay_in_the_past(warehouse):
    later = NOW + dt.timedelta(days=30)
    with warehouse.begin() as conn:
        merge_records(
            conn, "incidents", "pa_panama", "s-baja", typed_rows("P1,,,,,,,Eliminar"), later
        )
    compute_indicators(warehouse, later)

    assert value(warehouse, "SDG_16_1_1", "national", "PA", "2025").numerator == 3
    before = indicator_values_as_of(warehouse, NOW + dt.timedelta(days=1))
    national = before.query(
        "indicator_code == 'SDG_16_1_1' and geo_level == 'national' and period == '2025'"
        " and disaggregation == ''"
    )
    assert national["numerator"].item() == 4


def test_a_corrected_population_is_a_version_and_as_of_uses_the_one_known_then(warehouse):
    before = value(warehouse, "SDG_16_1_1", "national", "PA", "2025")
    corrected = reference.read_population()
    corrected.loc[corrected["geo_code"] == "0804", "population"] *= 2
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    reference.load_population(warehouse, corrected, now=later)
    compute_indicators(warehouse, later)
    now_value = value(warehouse, "SDG_16_1_1", "national", "PA", "2025")
    assert now_value.denominator > before.denominator

    def national(frame):
        row = frame.query(
            "indicator_code == 'SDG_16_1_1' and geo_level == 'national' and period == '2025'"
            " and disaggregation == ''"
        )
        return row["denominator"].item()

    assert national(indicator_values_as_of(warehouse, later - dt.timedelta(hours=1))) == (
        before.denominator
    )
    assert national(indicator_values_as_of(warehouse, later + dt.timedelta(hours=1))) == (
        now_value.denominator
    )
    reference.load_population(warehouse, corrected, now=later + dt.timedelta(days=1))
    with warehouse.connect() as conn:  # the same figures again make no new version
        versions = conn.scalar(
            sa.select(sa.func.count(sa.distinct(population_revision.c.loaded_at)))
        )
    assert versions == 2


def test_each_period_rolls_up_on_the_hierarchy_valid_then(loaded_engine):
    """District 0899 belonged to province 08 until 2019 and to 13 since: its 2018 homicide stays
    in 08's 2018 figures, its 2019 homicide goes to 13; nothing moves when the boundary changes."""
    geography = reference.read_geography()
    moved = pd.DataFrame(
        [
            (
                "0899",
                "district",
                "Distrito que cambió",
                "08",
                dt.date(1990, 1, 1),
                dt.date(2019, 1, 1),
            ),
            ("0899", "district", "Distrito que cambió", "13", dt.date(2019, 1, 1), None),
        ],
        columns=["geo_code", "geo_level", "name", "parent_code", "valid_from", "valid_to"],
    ).assign(source="test")
    reference.load_geography(loaded_engine, pd.concat([geography, moved], ignore_index=True))
    mover = Observatory("pa_panama", "Panamá", ("0899",))
    with loaded_engine.begin() as conn:
        rows = typed_rows(
            "A1,2018-06-01,0899,0101,M,30,FIREARM",
            "A2,2019-06-01,0899,0101,F,30,FIREARM",
            observatory=mover,
        )
        merge_records(conn, "incidents", "pa_panama", "s-moved", rows, NOW)
    compute_indicators(loaded_engine, NOW)

    def count(province, year):
        found = value(loaded_engine, "INCIDENT_COUNT", "province", province, year)
        return None if found is None else found.numerator

    assert (count("08", "2018"), count("13", "2018")) == (1, None)
    assert (count("08", "2019"), count("13", "2019")) == (None, 1)
    assert value(loaded_engine, "INCIDENT_COUNT", "national", "PA", "2018").numerator == 1
    with loaded_engine.connect() as conn:
        assert unbalanced_aggregates(conn) == []
