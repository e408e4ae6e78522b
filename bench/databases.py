"""Where a benchmark measures: a SQLite file, or a database of its own on a PostgreSQL server."""

import contextlib
import uuid
from pathlib import Path

import sqlalchemy as sa


@contextlib.contextmanager
def database(server: str | None, folder: Path):
    """Yield a warehouse URL: SQLite in ``folder``, or a new database on ``server`` (a
    PostgreSQL URL; the database is dropped afterwards)."""
    if not server:
        yield f"sqlite:///{folder / 'warehouse.db'}"
        return
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"obsx_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()
