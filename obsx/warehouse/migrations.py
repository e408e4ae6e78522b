"""Warehouse schema migrations (Alembic), one code path for SQLite and PostgreSQL."""

import functools

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from obsx.config import REPO_ROOT

MIGRATIONS_DIR = REPO_ROOT / "migrations"


def alembic_config(connection: sa.Connection | None = None) -> Config:
    config = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the warehouse to ``revision`` (default: the newest) in one transaction."""
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), revision)


@functools.cache
def ensure_current(url: str, engine: sa.Engine) -> None:
    """Upgrade the warehouse at ``url`` when behind; checked once per process."""
    if current_revision(engine) != head_revision():
        upgrade(engine)
