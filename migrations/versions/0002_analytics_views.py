"""analytics views for ministry analysts, with small cells suppressed

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23

On PostgreSQL the views live in schema ``analytics`` (the read-only analyst role sees only that
schema); SQLite has no schemas, so there they are named ``analytics_<view>``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Counts from 1 to 4 are withheld (and the rates built on them, which would reveal them);
# rates on 20 events or fewer are flagged unstable. See docs/analytics.md.
MIN_PUBLISHED_COUNT = 5
UNSTABLE_AT_OR_BELOW = 20

VIEWS = {
    "indicator_value": f"""
        SELECT v.indicator_code, v.geo_level, v.geo_code, v.period_type, v.period,
               v.disaggregation,
               CASE WHEN v.numerator > 0 AND v.numerator < {MIN_PUBLISHED_COUNT}
                         AND i.unit <> '%' THEN NULL ELSE v.numerator END AS numerator,
               v.denominator,
               CASE WHEN v.numerator > 0 AND v.numerator < {MIN_PUBLISHED_COUNT}
                         AND i.unit <> '%' THEN NULL ELSE v.value END AS value,
               v.unit,
               CASE WHEN v.numerator > 0 AND v.numerator < {MIN_PUBLISHED_COUNT}
                         AND i.unit <> '%' THEN 'C' ELSE 'F' END AS conf_status,
               CASE WHEN i.multiplier IS NOT NULL AND i.unit <> '%'
                         AND v.numerator <= {UNSTABLE_AT_OR_BELOW} THEN 'unstable'
                    ELSE '' END AS quality_flag,
               v.computed_at
        FROM indicator_value v JOIN indicator i ON i.indicator_code = v.indicator_code""",
    "indicator": """
        SELECT indicator_code, name_es, name_en, numerator, denominator, multiplier, unit, standard
        FROM indicator""",
    "geography": """
        SELECT geo_code, geo_level, name, parent_code, valid_from, valid_to, source FROM geography""",
    "population": """
        SELECT geo_code, year, sex, age_group, population, source FROM population""",
    "submission_summary": """
        SELECT s.observatory_code, o.name AS observatory_name, s.dataset, s.status,
               s.received_at, s.merged_at, s.rows_read, s.rows_accepted, s.rows_rejected,
               s.rows_inserted, s.rows_updated, s.rows_unchanged
        FROM submission s LEFT JOIN observatory o ON o.observatory_code = s.observatory_code""",
}


def view_name(name: str) -> str:
    return (
        f"analytics.{name}" if op.get_bind().dialect.name == "postgresql" else f"analytics_{name}"
    )


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE SCHEMA IF NOT EXISTS analytics")
    for name, select in VIEWS.items():
        op.execute(f"CREATE VIEW {view_name(name)} AS {select}")


def downgrade() -> None:
    for name in VIEWS:
        op.execute(f"DROP VIEW IF EXISTS {view_name(name)}")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP SCHEMA IF EXISTS analytics")
