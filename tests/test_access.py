"""The analyst role reads the analytics views and nothing else (it creates nothing, not even a
temporary table, and connects nowhere else once told); small cells are suppressed. The writer
still does the pipeline's work, temporary tables included."""

import datetime as dt
import typing
import uuid

import pytest
import sqlalchemy as sa

from obsx import cli
from obsx.indicators.engine import compute_indicators, indicator_values_as_of
from obsx.warehouse.access import AccessError, analyst_loopholes, grant_roles, other_databases
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import get_engine, merge_records
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


@pytest.fixture(scope="module")
def roles(pg_engine):
    """A writer and an analyst of this test's own (roles are server-wide), granted once; the
    tests log in as them (trust authentication), as the pipeline and an analyst would."""
    suffix = uuid.uuid4().hex[:8]
    writer, analyst = f"obsx_writer_{suffix}", f"obsx_analyst_{suffix}"
    loopholes = grant_roles(pg_engine, writer=writer, analyst=analyst)
    yield Roles(writer, analyst, loopholes)
    for engine in _logins.values():
        engine.dispose()
    _logins.clear()
    drop_roles(pg_engine, writer, analyst)


def drop_roles(engine, *roles):
    with engine.begin() as conn:
        for role in roles:
            conn.exec_driver_sql(f"DROP OWNED BY {role}")
            conn.exec_driver_sql(f"DROP ROLE {role}")


class Roles(typing.NamedTuple):
    writer: str
    analyst: str
    loopholes: list[str]


_logins: dict[tuple[str, str], sa.Engine] = {}


def login(engine: sa.Engine, role: str, database: str | None = None) -> sa.Engine:
    """An engine that connects as ``role`` (to ``database``, default the warehouse)."""
    url = engine.url.set(username=role, database=database or engine.url.database)
    key = (role, url.database)
    if key not in _logins:
        _logins[key] = get_engine(url.render_as_string(hide_password=False))
    return _logins[key]


def as_role(engine, role, sql):
    with login(engine, role).connect() as conn:
        try:
            return conn.execute(sa.text(sql)).all()
        finally:
            conn.rollback()


def test_analyst_reads_analytics_views(pg_engine, roles):
    analyst = roles.analyst
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
    analyst = roles.analyst
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
        "SELECT * FROM public.incidents",
        "SELECT * FROM public.incidents_revision",
        "SELECT * FROM public.quarantine",
        "UPDATE analytics.population SET population = 0",
        "DELETE FROM public.indicator_value",
        "SELECT * FROM public.indicator_value",
    ],
)
def test_analyst_cannot_write_or_read_raw_tables(pg_engine, roles, sql):
    analyst = roles.analyst
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
        as_role(pg_engine, analyst, sql)


def test_writer_can_write_raw_tables(pg_engine, roles):
    writer = roles.writer
    assert as_role(pg_engine, writer, "DELETE FROM quarantine RETURNING 1") == []


# A CREATE without a schema finds none the analyst may use: no schema has been selected.
PERMISSION_DENIED = "permission denied|no schema has been selected to create in"


def test_public_defaults_are_revoked(pg_engine, roles):
    """No privilege of PUBLIC (grantee 0) is left on the warehouse database or schema public,
    and the analyst holds nothing it should not (PostgreSQL's own privilege functions say)."""
    assert roles.loopholes == []
    with pg_engine.connect() as conn:
        public = conn.execute(
            sa.text(
                "SELECT 'database', privilege_type FROM pg_database, aclexplode(datacl)"
                " WHERE datname = current_database() AND grantee = 0"
                " UNION ALL SELECT 'schema public', privilege_type FROM pg_namespace,"
                " aclexplode(nspacl) WHERE nspname = 'public' AND grantee = 0"
            )
        ).all()
        assert public == []
        assert analyst_loopholes(conn, roles.analyst) == []


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP TABLE scratch (a int)",
        "CREATE TEMPORARY VIEW scratch AS SELECT 1 AS a",
        "CREATE TABLE scratch (a int)",
        "CREATE TABLE public.scratch (a int)",
        "CREATE TABLE analytics.scratch (a int)",
        "CREATE VIEW analytics.scratch AS SELECT 1 AS a",
        "CREATE FUNCTION pg_temp.scratch() RETURNS int LANGUAGE sql AS 'SELECT 1'",
        "CREATE SCHEMA scratch",
        "SELECT lo_create(0)",
        "SELECT lo_from_bytea(0, 'x')",
    ],
)
def test_analyst_creates_nothing(pg_engine, roles, sql):
    with pytest.raises(sa.exc.DBAPIError, match=PERMISSION_DENIED):
        as_role(pg_engine, roles.analyst, sql)


def test_analyst_cannot_create_temporary_tables(pg_engine, roles):
    with pytest.raises(sa.exc.ProgrammingError, match="permission denied to create temporary"):
        as_role(pg_engine, roles.analyst, "CREATE TEMP TABLE scratch (a int)")


def test_analyst_connects_to_the_warehouse_only_once_told(pg_engine, roles):
    """PUBLIC's CONNECT on another database is its owner's to revoke: ``obsx db roles
    --revoke-connect`` does it when asked, and the analyst is refused there; the warehouse still
    lets it in."""
    with postgres_database() as other_url:
        other = sa.make_url(other_url).database
        with login(pg_engine, roles.analyst, other).connect() as conn:  # PostgreSQL's default
            assert conn.scalar(sa.text("SELECT current_user")) == roles.analyst
        with pg_engine.connect() as conn:
            assert other in other_databases(conn, roles.analyst)
        login(pg_engine, roles.analyst, other).dispose()
        again = grant_roles(
            pg_engine, writer=roles.writer, analyst=roles.analyst, revoke_connect=[other]
        )
        assert again == []  # idempotent, and nothing left open
        refused = pytest.raises(sa.exc.OperationalError, match="permission denied for database")
        with refused, login(pg_engine, roles.analyst, other).connect():
            pass
        with pg_engine.connect() as conn:
            assert other not in other_databases(conn, roles.analyst)
        login(pg_engine, roles.analyst, other).dispose()
    assert as_role(pg_engine, roles.analyst, "SELECT current_user") == [(roles.analyst,)]


def test_revoke_connect_names_a_database_that_exists(pg_engine, roles):
    with pytest.raises(AccessError, match="no such database"):
        grant_roles(
            pg_engine, writer=roles.writer, analyst=roles.analyst, revoke_connect=["obsx_nowhere"]
        )


def test_writer_does_the_pipelines_temporary_table_work(pg_engine, roles):
    """Logged in as the writer: a merge stages its rows in a temporary table (COPY), the
    indicators build theirs, and both write the warehouse."""
    writer = login(pg_engine, roles.writer)
    rows = typed_rows("W1,2025-03-04,0804,0101,F,25,SHARP")
    with writer.connect() as conn:
        merged = merge_records(conn, "incidents", "pa_panama", "w1", rows, dt.datetime.now(dt.UTC))
        assert merged["rows_inserted"] == 1
        conn.rollback()  # the module's warehouse stays as the other tests read it
    assert compute_indicators(writer) > 0
    assert len(indicator_values_as_of(writer, dt.datetime.now(dt.UTC))) > 0


def test_analyst_loopholes_are_found_and_closed(pg_engine, roles):
    """What a DBA (or an older release) granted the analyst directly is reported, and taken back
    by the next ``obsx db roles``."""
    with pg_engine.begin() as conn:
        database = conn.scalar(sa.text("SELECT current_database()"))
        conn.exec_driver_sql(f'GRANT TEMPORARY ON DATABASE "{database}" TO {roles.analyst}')
        conn.exec_driver_sql(f"GRANT CREATE ON SCHEMA analytics TO {roles.analyst}")
        conn.exec_driver_sql(f"GRANT SELECT ON public.quarantine TO {roles.analyst}")
        found = analyst_loopholes(conn, roles.analyst)
    assert found == [
        f"{roles.analyst} has TEMPORARY on database {database}",
        f"{roles.analyst} can create objects in schema analytics",
        f"{roles.analyst} can read or write raw tables: quarantine",
    ]
    assert grant_roles(pg_engine, writer=roles.writer, analyst=roles.analyst) == []


def test_db_roles_command(pg_engine, tmp_path, monkeypatch, capsys):
    """``obsx db roles`` grants, names the other databases PUBLIC may still connect to, and a
    mistake in its arguments is one line and exit status 2, before any role is created."""
    monkeypatch.setenv("WAREHOUSE_URL", pg_engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("OBSX_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "var" / "dagster"))
    suffix = uuid.uuid4().hex[:8]
    writer, analyst = f"obsx_writer_{suffix}", f"obsx_analyst_{suffix}"
    argv = ["db", "roles", "--writer", writer, "--analyst", analyst]
    assert cli.main([*argv, "--revoke-connect", "obsx_nowhere"]) == cli.USAGE
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "obsx_nowhere: no such database" in err
    with pg_engine.connect() as conn:
        assert not conn.scalar(
            sa.text("SELECT count(*) FROM pg_roles WHERE rolname IN (:w, :a)"),
            {"w": writer, "a": analyst},
        )
    try:
        assert cli.main(argv) == cli.OK
        out = capsys.readouterr().out
        assert f"roles ready: {writer}" in out and "NEEDS ATTENTION" not in out
        with pg_engine.connect() as conn:
            elsewhere = other_databases(conn, analyst)
        assert ("PUBLIC may still connect to" in out) == bool(elsewhere)
    finally:
        drop_roles(pg_engine, writer, analyst)


def test_run_by_the_databases_owner_without_superuser(pg_engine):
    """The production set-up (docs/deploy.md): the writer owns the warehouse database, migrates
    it and runs ``obsx db roles`` itself. It can revoke PUBLIC's defaults on its own database;
    only the large-object functions (pg_catalog's) need a superuser once, and it says so."""
    suffix = uuid.uuid4().hex[:8]
    writer, analyst = f"obsx_writer_{suffix}", f"obsx_analyst_{suffix}"
    with pg_engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE ROLE {writer} LOGIN")
        conn.exec_driver_sql(f"CREATE ROLE {analyst} LOGIN")  # the writer may not create roles
    try:
        with postgres_database() as url:
            admin = get_engine(url)
            with admin.begin() as conn:
                conn.exec_driver_sql(f'ALTER DATABASE "{admin.url.database}" OWNER TO {writer}')
            as_writer = login(admin, writer)
            upgrade(as_writer)
            left = grant_roles(as_writer, writer=writer, analyst=analyst)
            assert len(left) == 1 and "can create large objects" in left[0], left
            with login(admin, analyst).connect() as conn:
                for sql in ("CREATE TEMP TABLE scratch (a int)", "CREATE TABLE public.s (a int)"):
                    with pytest.raises(sa.exc.ProgrammingError, match="permission denied"):
                        conn.exec_driver_sql(sql)
                    conn.rollback()
            assert grant_roles(admin, writer=writer, analyst=analyst) == []  # a superuser, once
            assert grant_roles(as_writer, writer=writer, analyst=analyst) == []  # then for good
            for role in (writer, analyst):
                _logins.pop((role, admin.url.database)).dispose()
    finally:
        with pg_engine.begin() as conn:
            conn.exec_driver_sql(f"DROP ROLE {writer}")
            conn.exec_driver_sql(f"DROP ROLE {analyst}")
