"""observatory: the day a contributor left the exchange

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-05 17:00:00.000000

A contributor that leaves keeps its entry in contributors.yaml with `closed_on:`; its records
stay counted for the periods it covered, it owes nothing after, and later files are refused.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "observatory",
        sa.Column("closed_on", sa.Date, nullable=True, comment="left the exchange on this day"),
    )


def downgrade() -> None:
    with op.batch_alter_table("observatory") as batch:
        batch.drop_column("closed_on")
