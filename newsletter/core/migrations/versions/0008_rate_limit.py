"""rate-limit counters shared by several web processes

``rate_limit`` counts hits per limit, key and window (``web/ratelimit.py``), so that
``newsletter serve --workers N`` applies one limit across its processes. Only the
current and the previous window are kept.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rate_limit",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("name", "key", "window_start"),
    )
    op.create_index(op.f("ix_rate_limit_window_start"), "rate_limit", ["window_start"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_rate_limit_window_start"), table_name="rate_limit")
    op.drop_table("rate_limit")
