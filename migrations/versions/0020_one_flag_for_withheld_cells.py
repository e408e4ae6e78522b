"""one flag for every withheld cell in the analysts' view; interval protection needs no memo

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-05 07:00:00.000000

The view showed C for a small count and D for a cell withheld to protect one. An intruder who
knows which withheld cells are small knows each holds 1 to threshold - 1, and with the table's
sums that pins cells no further suppression can protect (four months of 1 under a quarter of 4).
The published view now flags every withheld cell C (SDMX: confidential); indicator_value keeps
the distinction for `obsx explain` and the ministry's own audit. See docs/analytics.md.

disclosure_memo (0018) kept the exact-determination audit's answers between refreshes; the
interval protection that replaces that audit (obsx/indicators/protection.py) keeps none: the table goes.
"""

import importlib.util
from collections.abc import Sequence
from pathlib import Path

from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DISTINCT = "v.unit, v.conf_status, v.quality_flag,"
ONE_FLAG = "v.unit, CASE WHEN v.conf_status = 'D' THEN 'C' ELSE v.conf_status END AS conf_status,\n               v.quality_flag,"


def _migration(name: str):
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _indicator_value_view(one_flag: bool) -> str:
    views = _migration("0017_reconciliation_of_sources.py")._views(with_reconciliation=True)
    select = views["indicator_value"]
    assert DISTINCT in select
    return select.replace(DISTINCT, ONE_FLAG) if one_flag else select


def _replace(select: str) -> None:
    name = _migration("0015_indicator_catalogue_precision_.py").view_name("indicator_value")
    op.execute(f"DROP VIEW IF EXISTS {name}")
    op.execute(f"CREATE VIEW {name} AS {select}")


def upgrade() -> None:
    _replace(_indicator_value_view(one_flag=True))
    op.drop_table("disclosure_memo")


def downgrade() -> None:
    _migration("0018_disclosure_memo.py").upgrade()
    _replace(_indicator_value_view(one_flag=False))
