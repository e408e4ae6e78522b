"""web accounts, their contributors, and the audit of what people do

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-05 10:00:00.000000

The web application (web/) signs people in: contributor staff (linked to one or more
contributors), ministry analysts and administrators, with Argon2 password hashes, an optional
e-mail address and a lock after repeated wrong passwords. audit_event records who did what
(sign-in, upload, decision, closing, publication), when and from which address; feedback_notice
which submissions' staff were e-mailed that their feedback is ready.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "web_user",
        sa.Column("user_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("username", sa.String(64), nullable=False, unique=True),
        sa.Column("display_name", sa.String(200), nullable=False),
        sa.Column("email", sa.String(254), comment="where feedback notices go (optional)"),
        sa.Column("role", sa.String(20), nullable=False, comment="contributor, analyst or admin"),
        sa.Column("password_hash", sa.String(255), nullable=False, comment="Argon2id"),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("failed_logins", sa.Integer, nullable=False, comment="wrong passwords in a row"),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("password_set_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "web_user_contributor",
        sa.Column(
            "user_id",
            sa.Integer,
            sa.ForeignKey("web_user.user_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("observatory_code", sa.String(64), primary_key=True),
    )
    op.create_table(
        "feedback_notice",
        sa.Column("submission_id", sa.String(64), primary_key=True),
        sa.Column("notified_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("recipients", sa.Integer, nullable=False, comment="e-mails sent"),
    )
    op.create_table(
        "audit_event",
        sa.Column("event_id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("username", sa.String(64), comment="who (as typed, for a failed sign-in)"),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("target", sa.String(300), comment="what: a submission, a period, an item"),
        sa.Column("detail", sa.Text),
        sa.Column("address", sa.String(64), comment="the client's IP address"),
    )
    op.create_index("ix_audit_event_at", "audit_event", ["at"])


def downgrade() -> None:
    op.drop_index("ix_audit_event_at", table_name="audit_event")
    op.drop_table("audit_event")
    op.drop_table("feedback_notice")
    op.drop_table("web_user_contributor")
    op.drop_table("web_user")
