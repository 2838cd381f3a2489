"""rate_limit without its index on window_start: the counters' lookups use the primary key alone

The index served only the hourly sweep of old windows (``web/ratelimit.py``). But a
PostgreSQL connection caches a generic plan for the counters' upsert, and one planned
while the previous window was empty looked the previous window's count up through this
index, filtering by name and key: after the turn of the hour each sign-up scanned every
row of the previous window (hundreds of thousands at 150 sign-ups a second), and the
server fell behind (docs/performance.md). Without the index the lookup can only use the
primary key (name, key, window_start); the sweep, once an hour per process, reads the
table's two windows once.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-05
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_rate_limit_window_start", table_name="rate_limit")


def downgrade() -> None:
    op.create_index("ix_rate_limit_window_start", "rate_limit", ["window_start"], unique=False)
