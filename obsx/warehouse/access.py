"""Database roles on PostgreSQL: a writer for the pipeline, a read-only analyst.

The analyst sees only the ``analytics`` schema (documented views with small cells suppressed);
raw tables, and so the record-level data, stay out of reach. Idempotent: run it after every
upgrade. Passwords are the DBA's business (``ALTER ROLE … PASSWORD``), never this code's.

Least privilege also means taking back what PostgreSQL gives every role (``PUBLIC``) by default
in a new database: CONNECT and TEMPORARY on the database, and before PostgreSQL 15 CREATE on
schema ``public``. Those are revoked here, and given back explicitly to the writer, who needs
CONNECT and TEMPORARY (merges stage rows in temporary tables, indicators build theirs) and CREATE
in its schemas. The analyst gets CONNECT and reads the views; it can create nothing, not even a
temporary table or a large object.

Left as PostgreSQL has them: EXECUTE on functions and USAGE on types and languages for PUBLIC
(the views call built-in functions as the querying role, and nothing here can be created with
them), and PUBLIC's CONNECT on the server's other databases, which only their owners can revoke
(``revoke_connect``, or ``pg_hba.conf``: see docs/deploy.md).
"""

import re
from collections.abc import Sequence

import sqlalchemy as sa

ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# The functions that create a large object: an object outside any schema that every role may
# create by default (the only thing left to the analyst once TEMPORARY and CREATE are revoked).
LARGE_OBJECT_CREATORS = ("lo_creat(integer)", "lo_create(oid)", "lo_from_bytea(oid, bytea)")


class AccessError(ValueError):
    """``obsx db roles`` cannot do what it was asked with the account it runs as."""


def _role(conn: sa.Connection, name: str) -> str:
    if not ROLE_NAME.match(name):
        raise AccessError(f"role name {name!r}: use lowercase letters, digits and '_'")
    exists = conn.scalar(sa.text("SELECT 1 FROM pg_roles WHERE rolname = :name"), {"name": name})
    quoted = conn.dialect.identifier_preparer.quote(name)
    if not exists:
        conn.exec_driver_sql(f"CREATE ROLE {quoted} LOGIN")
    return quoted


def _can_administer(conn: sa.Connection, database: str) -> bool:
    """Whether this session may revoke on ``database``: its owner (or a role inheriting from it) or a superuser.
    (A REVOKE by anyone else only warns, and revokes nothing.)"""
    return bool(
        conn.scalar(
            sa.text(
                "SELECT r.rolsuper OR pg_has_role(current_user, d.datdba, 'USAGE')"
                " FROM pg_database d, pg_roles r"
                " WHERE d.datname = :db AND r.rolname = current_user"
            ),
            {"db": database},
        )
    )


def grant_roles(
    engine: sa.Engine,
    writer: str = "obsx_writer",
    analyst: str = "obsx_analyst",
    revoke_connect: Sequence[str] = (),
) -> list[str]:
    """Create the two roles when missing, take back PUBLIC's defaults on this database and
    (re)grant what each role may do in it.

    ``revoke_connect`` names other databases of the server whose CONNECT is revoked from PUBLIC
    too (their owners and superusers keep it; any other role that connected through PUBLIC
    loses it: the DBA's explicit decision). Returns what the analyst can still do that it should
    not (see ``analyst_loopholes``): empty when nothing is left."""
    if engine.dialect.name != "postgresql":
        raise AccessError("roles exist on PostgreSQL only; a SQLite warehouse is a file")
    with engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        name = conn.scalar(sa.text("SELECT current_database()"))
        for other in revoke_connect:
            exists = conn.scalar(
                sa.text("SELECT 1 FROM pg_database WHERE datname = :db"), {"db": other}
            )
            if not exists:
                raise AccessError(f"--revoke-connect {other}: no such database on this server")
            if not _can_administer(conn, other):
                raise AccessError(
                    f"--revoke-connect {other}: only its owner or a superuser can revoke"
                    " CONNECT on it"
                )
        if not _can_administer(conn, name):
            raise AccessError(
                f"database {name}: run `obsx db roles` as its owner or a superuser"
                " (WAREHOUSE_URL names the account)"
            )
        database = quote(name)
        w, a = _role(conn, writer), _role(conn, analyst)
        superuser = conn.scalar(
            sa.text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
        )
        for statement in (
            # PUBLIC's defaults: CONNECT and TEMPORARY on a new database, USAGE (and before
            # PostgreSQL 15 CREATE) on schema public. Owner and superusers keep theirs.
            f"REVOKE ALL ON DATABASE {database} FROM PUBLIC",
            "REVOKE ALL ON SCHEMA public FROM PUBLIC",
            # The writer: connect, temporary tables (COPY staging, indicator cubes), its schemas.
            f"GRANT CONNECT, TEMPORARY ON DATABASE {database} TO {w}",
            f"GRANT USAGE, CREATE ON SCHEMA public, analytics TO {w}",
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {w}",
            f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {w}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {w}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {w}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {w}",
            # The analyst: connect and read the views; no TEMPORARY, no CREATE anywhere, no raw
            # table (also taking back whatever an earlier grant or a DBA gave it directly).
            f"GRANT CONNECT ON DATABASE {database} TO {a}",
            f"REVOKE CREATE, TEMPORARY ON DATABASE {database} FROM {a}",
            f"REVOKE ALL ON SCHEMA public FROM {a}",
            f"REVOKE CREATE ON SCHEMA analytics FROM {a}",
            f"GRANT USAGE ON SCHEMA analytics TO {a}",
            f"GRANT SELECT ON ALL TABLES IN SCHEMA analytics TO {a}",
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA analytics GRANT SELECT ON TABLES TO {a}",
            f"REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {a}",
            f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {a}",
        ):
            conn.exec_driver_sql(statement)
        if superuser:  # pg_catalog's functions belong to the bootstrap superuser
            for function in LARGE_OBJECT_CREATORS:  # in this database only
                conn.exec_driver_sql(f"REVOKE EXECUTE ON FUNCTION {function} FROM PUBLIC")
        for other in revoke_connect:
            if other != name:
                conn.exec_driver_sql(f"REVOKE CONNECT ON DATABASE {quote(other)} FROM PUBLIC")
        return analyst_loopholes(conn, analyst)


def analyst_loopholes(conn: sa.Connection, analyst: str = "obsx_analyst") -> list[str]:
    """What ``analyst`` can still do beyond reading the analytics views, checked against
    PostgreSQL's own privilege functions (so direct grants, PUBLIC and role memberships all
    count). One sentence each."""
    found = []
    role = conn.execute(
        sa.text(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolbypassrls FROM pg_roles"
            " WHERE rolname = :r"
        ),
        {"r": analyst},
    ).one()
    attributes = [
        label
        for label, held in zip(
            ("SUPERUSER", "CREATEDB", "CREATEROLE", "BYPASSRLS"), role, strict=True
        )
        if held
    ]
    if attributes:
        found.append(f"{analyst} has the attributes {', '.join(attributes)} (ALTER ROLE … NO…)")
    database = conn.scalar(sa.text("SELECT current_database()"))
    for privilege in ("CREATE", "TEMPORARY"):
        if conn.scalar(
            sa.text("SELECT has_database_privilege(:r, :db, :p)"),
            {"r": analyst, "db": database, "p": privilege},
        ):
            found.append(f"{analyst} has {privilege} on database {database}")
    schemas = conn.scalars(
        sa.text(
            "SELECT nspname FROM pg_namespace WHERE has_schema_privilege(:r, oid, 'CREATE')"
            " AND nspname !~ '^pg_(toast_)?temp_'"  # sessions' temporary schemas: TEMPORARY
            " ORDER BY nspname"
        ),
        {"r": analyst},
    ).all()
    if schemas:
        found.append(f"{analyst} can create objects in schema {', '.join(schemas)}")
    tables = conn.scalars(
        sa.text(
            "SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
            " AND relkind IN ('r', 'p', 'v', 'm') AND has_table_privilege(:r, oid,"
            " 'SELECT, INSERT, UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER') ORDER BY relname"
        ),
        {"r": analyst},
    ).all()
    if tables:
        found.append(f"{analyst} can read or write raw tables: {', '.join(tables)}")
    creators = [
        f
        for f in LARGE_OBJECT_CREATORS
        if conn.scalar(
            sa.text("SELECT has_function_privilege(:r, :f, 'EXECUTE')"), {"r": analyst, "f": f}
        )
    ]
    if creators:
        found.append(
            f"{analyst} can create large objects ({', '.join(creators)}); a superuser running"
            " `obsx db roles` revokes them"
        )
    return found


def other_databases(conn: sa.Connection, analyst: str = "obsx_analyst") -> list[str]:
    """The server's other databases ``analyst`` holds CONNECT on (usually through PUBLIC).
    ``pg_hba.conf`` may still refuse it there: privileges cannot tell."""
    return conn.scalars(
        sa.text(
            "SELECT datname FROM pg_database WHERE datallowconn"
            " AND datname <> current_database() AND has_database_privilege(:r, oid, 'CONNECT')"
            " ORDER BY datname"
        ),
        {"r": analyst},
    ).all()
