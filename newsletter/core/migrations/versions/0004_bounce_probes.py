"""bounce probes

``probe`` holds the short VERP-signed messages sent to check an address that an
unverified bounce (one that did not come back to the member's own signed VERP
address) named; only the probe's own bounce ends the membership (see
``newsletter/feedback/actions.py`` and ``newsletter/delivery/probes.py``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "probe",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("message_id", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("last_error", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("bounced_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["group_id"], ["group.id"]),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscriber.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("probe") as batch:
        batch.create_index(batch.f("ix_probe_subscriber_id"), ["subscriber_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("probe") as batch:
        batch.drop_index(batch.f("ix_probe_subscriber_id"))
    op.drop_table("probe")
