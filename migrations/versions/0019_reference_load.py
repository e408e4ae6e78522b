"""reference load: the digest of each reference file last loaded, so an unchanged one is skipped

Revision ID: 0019
Revises: 0018
Create Date: 2026-11-26 14:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "reference_load",
        sa.Column("dataset", sa.String(length=40), nullable=False),
        sa.Column(
            "digest", sa.String(length=64), nullable=False, comment="SHA-256 of what the load read"
        ),
        sa.Column("loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("dataset"),
    )


def downgrade() -> None:
    op.drop_table("reference_load")
