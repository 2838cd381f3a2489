"""consent records and the queue of confirmation emails

``consent`` keeps every opt-in asked for, append-only (a new sign-up no longer
overwrites the consent of an ended membership); the consent already on record in
``membership`` is copied into it. ``confirmation_mail`` is the queue of double
opt-in emails that the worker and the daemon send, so that a sign-up never waits
for the relay (see ``newsletter/delivery/confirmations.py``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = newsletter.core.models.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "consent",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("text", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("ip", sqlmodel.sql.sqltypes.AutoString(length=45), nullable=True),
        sa.Column("confirmed_at", WHEN, nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["group.id"]),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_consent_subscriber_id", "consent", ["subscriber_id"], unique=False)
    op.execute(
        "INSERT INTO consent (subscriber_id, group_id, at, source, text, ip, confirmed_at) "
        "SELECT subscriber_id, group_id, consent_at, substr(source, 1, 40), consent_text, consent_ip, "
        "confirmed_at FROM membership WHERE consent_at IS NOT NULL ORDER BY id"
    )
    op.create_table(
        "confirmation_mail",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("consent_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("language", sqlmodel.sql.sqltypes.AutoString(length=35), nullable=True),
        sa.Column(
            "status",
            sa.Enum(
                "queued",
                "sending",
                "sent",
                "failed",
                "skipped",
                name="deliverystatus",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("queued_at", WHEN, nullable=False),
        sa.Column("due_at", WHEN, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True),
        sa.Column("sent_at", WHEN, nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.ForeignKeyConstraint(["consent_id"], ["consent.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["group_id"], ["group.id"]),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("consent_id"),
    )
    op.create_index("ix_confirmation_mail_due", "confirmation_mail", ["status", "due_at"], unique=False)
    op.create_index(
        "ix_confirmation_mail_subscriber_id", "confirmation_mail", ["subscriber_id"], unique=False
    )


def downgrade() -> None:
    op.drop_table("confirmation_mail")
    op.drop_table("consent")
