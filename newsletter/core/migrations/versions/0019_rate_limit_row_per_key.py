"""rate_limit: one row per limit and key, holding its current and previous window's hits

Until now each key had a row per window, and every hit looked the previous window's row
up beside the upsert. Now a key's row carries both counts (``hits`` in ``window_start``,
``previous_hits`` in the window before it) and the upsert rolls it forward when a new
window begins: a hit is one primary-key upsert with nothing else to plan, and the
table holds one row per key seen in the last two windows. The index on
``window_start`` is back for the sweep of keys idle longer than that, which
``web/ratelimit.py`` now deletes a bounded batch at a time instead of all at once
at the turn of the hour (docs/performance.md).

The table holds only the counts of the last hour or two; they are dropped, not
converted, so for up to an hour after the upgrade every client starts afresh.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _create(*columns: sa.Column[int], key: Sequence[str]) -> None:
    op.create_table(
        "rate_limit",
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("window_start", sa.BigInteger(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        *columns,
        sa.PrimaryKeyConstraint(*key),
    )


def upgrade() -> None:
    op.drop_table("rate_limit")
    _create(sa.Column("previous_hits", sa.Integer(), nullable=False), key=["name", "key"])
    op.create_index("ix_rate_limit_window_start", "rate_limit", ["window_start"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_rate_limit_window_start", table_name="rate_limit")
    op.drop_table("rate_limit")
    _create(key=["name", "key", "window_start"])
