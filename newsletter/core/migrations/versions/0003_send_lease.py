"""the send lease, claimed rows' owners, editions written to the outbox only

``send_lease`` says which process owns an edition's send and until when (see
``newsletter/delivery/runner.py``). ``delivery.claimed_by`` names the process that claimed a
row while it is ``sending``, so that only rows whose claimer is gone go back to the
queue. ``edition.outbox_only`` marks a send that goes to the outbox folder (nothing is
delivered); such an edition ends ``written`` and can still be sent for real.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-02
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "send_lease",
        sa.Column("edition_id", sa.Integer(), nullable=False),
        sa.Column("owner", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=False),
        sa.Column("acquired_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["edition_id"], ["edition.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("edition_id"),
    )
    with op.batch_alter_table("delivery") as batch:
        batch.add_column(sa.Column("claimed_by", sqlmodel.sql.sqltypes.AutoString(length=120), nullable=True))
    with op.batch_alter_table("edition") as batch:
        batch.add_column(sa.Column("outbox_only", sa.Boolean(), server_default=sa.false(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("edition") as batch:
        batch.drop_column("outbox_only")
    with op.batch_alter_table("delivery") as batch:
        batch.drop_column("claimed_by")
    op.drop_table("send_lease")
