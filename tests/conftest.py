"""Shared fixtures: a real SQLite warehouse file and a real PostgreSQL database.

PostgreSQL tests use ``WAREHOUSE_TEST_URL`` (a server URL; each test gets a database of its own).
Outside CI they skip with a reason when it is unset or unreachable; under ``CI=true`` they fail.
"""

import contextlib
import datetime as dt
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as obsx.cli: small matrices, no contention
import uuid

import pytest
import sqlalchemy as sa

from obsx.intake.contract import load_contract
from obsx.intake.reading import read_submission
from obsx.intake.validation import Observatory, validate
from obsx.warehouse import reference
from obsx.warehouse.migrations import upgrade
from obsx.warehouse.tables import get_engine

TODAY = dt.date(2026, 11, 23)
PANAMA = Observatory("pa_panama", "Observatorio de Panamá", ("0804",))


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL tests must run under CI=true: {reason}")
    pytest.skip(f"PostgreSQL tests skipped: {reason}")


def _postgres_server() -> sa.Engine:
    url = os.environ.get("WAREHOUSE_TEST_URL")
    if not url:
        _unavailable(
            "set WAREHOUSE_TEST_URL, e.g. postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
        )
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect():
            pass
    except sa.exc.OperationalError as exc:
        _unavailable(f"cannot reach {sa.make_url(url).render_as_string()}: {exc.orig}")
    return admin


@contextlib.contextmanager
def postgres_database():
    """A new, empty PostgreSQL database for one test; dropped afterwards."""
    admin = _postgres_server()
    name = f"obsx_test_{uuid.uuid4().hex[:12]}"
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = admin.url.set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        get_engine(url).dispose()
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    """A fresh, empty warehouse URL: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'warehouse.db'}"
    else:
        with postgres_database() as url:
            yield url


@pytest.fixture
def postgres_url():
    """For what only PostgreSQL has (schemas, roles, COPY)."""
    with postgres_database() as url:
        yield url


@pytest.fixture
def engine(warehouse_url) -> sa.Engine:
    engine = get_engine(warehouse_url)
    upgrade(engine)
    return engine


@pytest.fixture
def loaded_engine(engine) -> sa.Engine:
    """A warehouse holding the repository's reference data."""
    return load_reference(engine)


def load_reference(engine: sa.Engine) -> sa.Engine:
    reference.load_geography(engine, reference.read_geography())
    reference.load_population(engine, reference.read_population())
    reference.load_observatories(engine)
    return engine


HEADER = "id,fecha,distrito,delito,sexo,edad,arma,accion"


def typed_rows(*lines: str, observatory: Observatory = PANAMA):
    """Typed, validated rows from CSV lines (the header above is added)."""
    data = "\n".join([HEADER, *lines]).encode()
    result = validate(
        read_submission(data, "t.csv"), load_contract("incidents"), observatory, TODAY
    )
    assert not result.rejected_rows, [p.message("en") for p in result.problems]
    return result.accepted


def sqlite_warehouse(root) -> sa.Engine:
    """A migrated SQLite warehouse file under ``root`` holding the reference data."""
    engine = get_engine(f"sqlite:///{root / 'warehouse.db'}")
    upgrade(engine)
    return load_reference(engine)


def process_inboxes(root, engine: sa.Engine, codes=None) -> list:
    """Every file waiting in the inboxes (of ``codes``; default every contributor's), processed
    in name order as a run would. Returns the outcomes."""
    from obsx.intake.dropzone import Dropzone, file_sha256, partition_key
    from obsx.intake.submission import process_submission

    registry = reference.observatories()
    zone = Dropzone(root, registry)
    outcomes = []
    for code in registry if codes is None else codes:
        for path in sorted(zone.inbox(code).iterdir()):
            key = partition_key(code, file_sha256(path))
            outcomes.append(process_submission(key, zone, engine, registry, TODAY))
    return outcomes
