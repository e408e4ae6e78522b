"""The migrations are the schema: from an empty database, and from the previous release."""

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from obsx.migrations import current_revision, head_revision, upgrade
from obsx.warehouse import get_engine, metadata

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

    upgrade(engine)

    assert differences(engine) == []
    with engine.connect() as conn:
        assert conn.scalar(sa.text("SELECT name FROM observatory")) == "Colón"
