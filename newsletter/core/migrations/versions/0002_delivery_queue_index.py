"""the delivery queue index

One index on (edition_id, status, id) replaces the single-column indexes on
edition_id and status: claiming an edition's next batch then reads only its queued
rows in id order, instead of stepping over every row already sent (which made a
send of a million members slow down as it went).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index("ix_delivery_queue", "delivery", ["edition_id", "status", "id"], unique=False)
    op.drop_index("ix_delivery_status", table_name="delivery")
    op.drop_index("ix_delivery_edition_id", table_name="delivery")


def downgrade() -> None:
    op.create_index("ix_delivery_edition_id", "delivery", ["edition_id"], unique=False)
    op.create_index("ix_delivery_status", "delivery", ["status"], unique=False)
    op.drop_index("ix_delivery_queue", table_name="delivery")
