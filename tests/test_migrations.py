"""The migrations are the schema: from an empty database, and from the previous release."""

import datetime as dt

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from obsx.warehouse.migrations import current_revision, head_revision, upgrade
from obsx.warehouse.tables import get_engine, metadata

FIRST_RELEASE = "0001"


def differences(engine: sa.Engine) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(context, metadata)


def test_migrating_an_empty_database_gives_exactly_the_models(warehouse_url):
    engine = get_engine(warehouse_url)

    upgrade(engine)

    assert current_revision(engine) == head_revision()
    assert differences(engine) == []


def test_upgrading_from_the_first_release_keeps_data_and_ends_in_the_same_schema(warehouse_url):
    engine = get_engine(warehouse_url)
    upgrade(engine, FIRST_RELEASE)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO observatory (observatory_code, name, country_code)"
                " VALUES ('pa_colon', 'Colón', 'PA')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO incidents_revision (observatory_code, incident_id, occurred_on,"
                " district_code, crime_code, revision, row_hash, submission_id, valid_from)"
                " VALUES ('pa_colon', 'C1', :day, '0301', '0101', 1, 'h', 's1', :at)"
            ),
            {"day": dt.date(2025, 3, 9), "at": dt.datetime(2025, 4, 1, tzinfo=dt.UTC)},
        )

    upgrade(engine)

    assert differences(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT name FROM observatory")) == "Colón"
        periods = conn.execute(sa.text("SELECT period_month, period_year FROM incidents_revision"))
        assert tuple(periods.one()) == ("2025-03", "2025")
