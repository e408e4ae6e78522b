"""records placed above the units: every area rolls up from its own level; coverage at a level

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-05 19:40:00.000000

A source may place its records at a level above the units (`level: province` in its profile):
they count for that area and those above it, never below. The roll-up now holds a chain for
every area, built when the geography is loaded (obsx/warehouse/reference.py, rollup). Forgetting the
geography's last load makes the next run load it again, which writes the new rows.

declared_coverage.geo_level: a file of such records that declares complete coverage covers the
areas of its level made only of its contributor's units (NULL: the units, as before).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0025"
down_revision: str | None = "0024"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("DELETE FROM reference_load WHERE dataset = 'geography'")
    op.add_column(
        "declared_coverage",
        sa.Column("geo_level", sa.String(16), comment="records placed at this level; NULL: units"),
    )


def downgrade() -> None:
    with op.batch_alter_table("declared_coverage") as batch:
        batch.drop_column("geo_level")
    op.execute("DELETE FROM reference_load WHERE dataset = 'geography'")
