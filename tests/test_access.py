"""The analyst role reads the analytics views and nothing else; small cells are suppressed."""

import datetime as dt
import uuid

import pytest
import sqlalchemy as sa

from obsx.access import grant_roles
from obsx.indicators import compute_indicators
from obsx.migrations import upgrade
from obsx.warehouse import get_engine, merge_records
from tests.conftest import load_reference, postgres_database, typed_rows

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def pg_engine():
    """One warehouse for the module: the tests read it, and write only in rolled-back
    transactions."""
    with postgres_database() as url:
        yield _filled(get_engine(url))


def _filled(engine):
    upgrade(engine)
    load_reference(engine)
    rows = typed_rows(
        *[f"P{n},2025-01-0{1 + n % 9},0804,0101,M,30,FIREARM" for n in range(7)],
        "R1,2025-02-03,0804,0401,F,40,NONE",  # one robbery in February: a small cell
    )
    with engine.begin() as conn:
        merge_records(conn, "incidents", "pa_panama", "s1", rows, dt.datetime.now(dt.UTC))
    compute_indicators(engine)
    return engine


@pytest.fixture
def roles(pg_engine):
    suffix = uuid.uuid4().hex[:8]
    writer, analyst = f"obsx_writer_{suffix}", f"obsx_analyst_{suffix}"
    grant_roles(pg_engine, writer=writer, analyst=analyst)
    yield writer, analyst
    with pg_engine.begin() as conn:
        for role in (writer, analyst):
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


def as_role(engine, role, sql):
    with engine.connect() as conn:
        conn.exec_driver_sql(f"SET ROLE {role}")
        try:
            return conn.execute(sa.text(sql)).all()
        finally:
            conn.rollback()


def test_analyst_reads_analytics_views(pg_engine, roles):
    _, analyst = roles
    sql = (
        "SELECT indicator_code, geo_code, period, disaggregation, numerator, value, conf_status,"
        " quality_flag FROM {table} WHERE period_type = 'year'"
    )
    with pg_engine.connect() as conn:
        raw = {tuple(r[:4]): r for r in conn.execute(sa.text(sql.format(table="indicator_value")))}
    seen = as_role(pg_engine, analyst, sql.format(table="analytics.indicator_value"))
    assert len(seen) == len(raw) > 0
    for row in seen:
        truth = raw[tuple(row[:4])]
        if row.conf_status == "F":
            assert (row.numerator, row.value) == (truth.numerator, truth.value)
        else:  # withheld, primary (C) or secondary (D): no count, no rate
            assert (row.numerator, row.value) == (None, None) and truth.numerator is not None
    assert {r.conf_status for r in seen} >= {"F", "C"}
    unstable = [r for r in seen if r.indicator_code == "SDG_16_1_1" and r.conf_status == "F"]
    assert all(r.quality_flag == "unstable" for r in unstable)  # fewer than 20 events


def test_small_counts_are_suppressed_for_analysts(pg_engine, roles):
    _, analyst = roles
    row = as_role(
        pg_engine,
        analyst,
        "SELECT numerator, value, conf_status FROM analytics.indicator_value"
        " WHERE indicator_code = 'INCIDENT_COUNT' AND geo_level = 'district' AND period = '2025-Q1'"
        " AND disaggregation = 'iccs_section=04'",
    )[0]
    assert (row.numerator, row.value, row.conf_status) == (None, None, "C")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM incidents",
        "SELECT * FROM incidents_revision",
        "SELECT * FROM quarantine",
        "UPDATE analytics.population SET population = 0",
        "DELETE FROM indicator_value",
    ],
)
def test_analyst_cannot_write_or_read_raw_tables(pg_engine, roles, sql):
    _, analyst = roles
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        as_role(pg_engine, analyst, sql)


def test_writer_can_write_raw_tables(pg_engine, roles):
    writer, _ = roles
    assert as_role(pg_engine, writer, "DELETE FROM quarantine RETURNING 1") == []
