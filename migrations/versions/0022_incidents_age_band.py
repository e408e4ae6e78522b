"""incidents: the victim's age band, for sources that give ages only as ranges

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-05 10:30:00.000000

schemas/incidents.yaml version 2 adds `age_band` ("18-24", "60+"): the indicators' age group
takes it where a record has no age and the band fits inside one group. Records held so far have
none (NULL); their content hashes do not change (Contract.hash_defaults).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("incidents", "incidents_pending", "incidents_revision")


def upgrade() -> None:
    for table in TABLES:
        op.add_column(
            table,
            sa.Column("age_band", sa.String(length=7), nullable=True, comment="Victim's age band"),
        )


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("age_band")
