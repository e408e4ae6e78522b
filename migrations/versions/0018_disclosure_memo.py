"""disclosure memo: the audit's answers kept between indicator refreshes

Revision ID: 0018
Revises: 0017
Create Date: 2026-11-26 11:12:25.119987
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "disclosure_memo",
        sa.Column(
            "digest", sa.String(length=64), nullable=False, comment="SHA-256 of the equations"
        ),
        sa.Column("cells", sa.LargeBinary(), nullable=False, comment="determined columns, int32"),
        sa.Column("used_on", sa.Date(), nullable=False),
        sa.PrimaryKeyConstraint("digest"),
    )


def downgrade() -> None:
    op.drop_table("disclosure_memo")
