"""notifications: the notices waiting for a person's digest, and each person's setting

``notice`` holds what a person should be told (a draft waits for approval, a source
keeps failing, ...), once per event and person (``UNIQUE(user_id, key)``) until a
digest carries it (``sent_at``). ``notification_setting`` keeps whether a person wants
notifications (the signed stop link turns them off) and when their last digest went,
so that nobody gets more than one an hour (see ``newsletter/operations/notifications.py``).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
When = newsletter.core.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "notice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("key", String(length=200), nullable=False),
        sa.Column("kind", String(length=40), nullable=False),
        sa.Column("text", String(), nullable=False),
        sa.Column("created_at", When(timezone=True), nullable=False),
        sa.Column("sent_at", When(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "key"),
    )
    op.create_index("ix_notice_waiting", "notice", ["sent_at", "user_id"])
    op.create_table(
        "notification_setting",
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("last_digest_at", When(timezone=True), nullable=True),
        sa.Column("changed_at", When(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("user_id"),
    )


def downgrade() -> None:
    op.drop_table("notification_setting")
    op.drop_index("ix_notice_waiting", table_name="notice")
    op.drop_table("notice")
