"""what each file supplied; values the sources cannot support are not available, never 0

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-05 10:30:00.000000

A unit that reported counted for every indicator of its dataset, so a file without a
`relationship` column gave a femicide rate of 0 and a homicide register made robbery 0.
submission_scope keeps what each accepted file supplied: the record fields it filled and, of
the catalogue's scope fields, the codes it covers (obsx/intake/submission.py). Indicators count a unit
and month only where one of its files supplied what they read; elsewhere the value is empty
and flagged not_available (obsx/indicators/engine.py). Files merged before this migration are given
the fields their current records fill and the count units they hold.

indicator_value gains coverage (% of the area's population-months covered by the units
counted) and population_year (the year of the population figures a rate divides by); its
numerator may be null (not available). The analysts' view shows both new columns.
"""

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATASETS = ("incidents", "prevention_activities", "survey_responses", "arrests")
SYSTEM = {
    "observatory_code", "period_month", "period_year", "row_hash", "revision", "submission_id",
    "valid_from", "valid_to", "source_row", "record_action",
}  # fmt: skip
OBSERVED = {"incidents": ("count_unit",)}  # the catalogue's scope fields read from the rows
FLAGS = "v.quality_flag,"
WITH_COVERAGE = "v.quality_flag, v.coverage, v.population_year,"


def _migration(name: str):
    path = Path(__file__).with_name(name)
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _view(with_coverage: bool) -> str:
    select = _migration("0020_one_flag_for_withheld_cells.py")._indicator_value_view(True)
    assert FLAGS in select
    return select.replace(FLAGS, WITH_COVERAGE) if with_coverage else select


def _replace_view(select: str | None) -> None:
    name = _migration("0015_indicator_catalogue_precision_.py").view_name("indicator_value")
    op.execute(f"DROP VIEW IF EXISTS {name}")
    if select is not None:
        op.execute(f"CREATE VIEW {name} AS {select}")


def _backfill(conn) -> None:
    tables = set(sa.inspect(conn).get_table_names())
    rows = []
    for dataset in DATASETS:
        if dataset not in tables:
            continue
        columns = [
            c["name"] for c in sa.inspect(conn).get_columns(dataset) if c["name"] not in SYSTEM
        ]
        counted = ", ".join(f"count({c})" for c in columns)
        observed: dict[str, dict[str, list[str]]] = {}  # submission -> field -> codes
        for name in OBSERVED.get(dataset, ()):
            if name in columns:
                for submission_id, code in conn.exec_driver_sql(
                    f"SELECT DISTINCT submission_id, {name} FROM {dataset}"
                    f" WHERE {name} IS NOT NULL ORDER BY 1, 2"
                ):
                    observed.setdefault(submission_id, {}).setdefault(name, []).append(code)
        for submission_id, *counts in conn.exec_driver_sql(
            f"SELECT submission_id, {counted} FROM {dataset} GROUP BY submission_id"
        ):
            covers = observed.get(submission_id, {})
            supplied = [c for c, n in zip(columns, counts, strict=True) if n]
            rows.append(
                {
                    "submission_id": submission_id,
                    "dataset": dataset,
                    "supplied": json.dumps(sorted(supplied)),
                    "covers": json.dumps(covers, sort_keys=True),
                }
            )
    if rows:
        table = sa.table(
            "submission_scope",
            *(sa.column(c) for c in ("submission_id", "dataset", "supplied", "covers")),
        )
        op.bulk_insert(table, rows)


def upgrade() -> None:
    op.create_table(
        "submission_scope",
        sa.Column("submission_id", sa.String(length=64), nullable=False),
        sa.Column("dataset", sa.String(length=64), nullable=False),
        sa.Column("supplied", sa.Text(), nullable=False, comment="JSON list of record fields"),
        sa.Column(
            "covers", sa.Text(), nullable=False, comment="JSON {field: [codes]}; absent: all"
        ),
        sa.PrimaryKeyConstraint("submission_id"),
    )
    _backfill(op.get_bind())
    _replace_view(None)
    with op.batch_alter_table("indicator_value") as batch:
        batch.alter_column(
            "numerator",
            existing_type=sa.Float(),
            nullable=True,
            comment="null: not available (see quality_flag)",
        )
        batch.add_column(
            sa.Column(
                "coverage",
                sa.Float(),
                comment="% of the area's population-months in the period covered by units whose"
                " sources supplied what the indicator reads (100: all units, every month)",
            )
        )
        batch.add_column(
            sa.Column(
                "population_year",
                sa.Integer(),
                comment="rates: the year of the population figures used",
            )
        )
    _replace_view(_view(with_coverage=True))


def downgrade() -> None:
    _replace_view(None)
    op.execute("DELETE FROM indicator_value WHERE numerator IS NULL")
    with op.batch_alter_table("indicator_value") as batch:
        batch.drop_column("population_year")
        batch.drop_column("coverage")
        batch.alter_column("numerator", existing_type=sa.Float(), nullable=False)
    _replace_view(_view(with_coverage=False))
    op.drop_table("submission_scope")
