"""source health: the last fetch that worked, and failures in a row

``source.last_success_at`` is the last time the source was fetched and stored without
error; ``source.failures`` counts the failed fetches since (reset by a good one).
``newsletter status`` shows both.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import newsletter.core.models

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("source") as batch:
        batch.add_column(
            sa.Column("last_success_at", newsletter.core.models.UTCDateTime(timezone=True), nullable=True)
        )
        batch.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("source") as batch:
        batch.drop_column("failures")
        batch.drop_column("last_success_at")
