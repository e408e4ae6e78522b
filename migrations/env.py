"""Alembic environment: the warehouse's models are obsx.warehouse.tables.metadata.

Run through ``obsx db upgrade`` (or any code calling obsx.warehouse.migrations.upgrade), which hands over a
connection; ``alembic -c migrations/alembic.ini`` with ``-x url=...`` works too.
"""

import sqlalchemy as sa
from alembic import context

from obsx.config import warehouse_url
from obsx.warehouse.tables import metadata

config = context.config


def run_migrations(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters by copying tables
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    run_migrations(connection)
else:
    url = context.get_x_argument(as_dictionary=True).get("url") or warehouse_url()
    with sa.create_engine(url).connect() as conn:
        run_migrations(conn)
