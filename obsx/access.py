"""Database roles on PostgreSQL: a writer for the pipeline, a read-only analyst.

The analyst sees only the ``analytics`` schema (documented views with small cells suppressed);
raw tables, and so the record-level data, stay out of reach. Idempotent: run it after every
upgrade. Passwords are the DBA's business (``ALTER ROLE … PASSWORD``), never this code's.
"""

import re

import sqlalchemy as sa

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def _role(conn: sa.Connection, name: str) -> str:
    if not ROLE_NAME.match(name):
        raise ValueError(f"role name {name!r}: use lowercase letters, digits and '_'")
    exists = conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name})
    quoted = conn.dialect.identifier_preparer.quote(name)
    if not exists:
        conn.exec_driver_sql(f"CREATE ROLE {quoted} LOGIN")
    return quoted


def grant_roles(
    engine: sa.Engine, writer: str = "obsx_writer", analyst: str = "obsx_analyst"
) -> None:
    """Create the two roles when missing and (re)grant what each may do in this database."""
    if engine.dialect.name != "postgresql":
        raise ValueError("roles exist on PostgreSQL only; a SQLite warehouse is a file")
    with engine.begin() as conn:
        database = conn.dialect.identifier_preparer.quote(
            conn.scalar(sa.text("SELECT current_database()"))
        )
        w, a = _role(conn, writer), _role(conn, analyst)
        for statement in (
            f"GRANT CONNECT ON DATABASE {database} TO {w}, {a}",
            f"GRANT USAGE, CREATE ON SCHEMA public, analytics TO {w}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {w}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {w}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {w}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {w}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {w}",
            f"GRANT USAGE ON SCHEMA analytics TO {a}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {a}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO {a}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {a}",
        ):
            conn.exec_driver_sql(statement)
