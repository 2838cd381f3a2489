"""the workspace's subscribers: custom fields, search, and CSV uploads awaiting confirmation

``subscriber.field_values`` (JSON) holds the site's custom fields; ``subscriber.search_key``
is what the list page searches (address, name and field values, case-folded), filled
here for the rows that exist. ``ix_membership_group_status`` answers a group's counts
per state and its status filter from the index alone. ``subscriber_upload`` keeps an
uploaded CSV between its plan and the editor's confirmation.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
When = newsletter.core.models.UTCDateTime
BATCH = 1000


def upgrade() -> None:
    with op.batch_alter_table("subscriber") as batch:
        batch.add_column(sa.Column("field_values", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("search_key", sa.Text(), server_default="", nullable=False))
    _fill_search_keys()
    op.create_index("ix_membership_group_status", "membership", ["group_id", "status"])
    op.create_table(
        "subscriber_upload",
        sa.Column("id", String(length=64), nullable=False),
        sa.Column("group_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("filename", String(length=200), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("plan_digest", String(length=64), nullable=False),
        sa.Column("created_at", When(timezone=True), nullable=False),
        sa.Column("expires_at", When(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["group_id"], ["group.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["user_account.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_subscriber_upload_user_id", "subscriber_upload", ["user_id"])


def _fill_search_keys() -> None:
    # Python's casefold, as the application computes it: SQL lower() folds only ASCII on SQLite.
    connection = op.get_bind()
    subscriber = sa.table(
        "subscriber", sa.column("id"), sa.column("email"), sa.column("name"), sa.column("search_key")
    )
    last = 0
    while True:
        rows = connection.execute(
            sa.select(subscriber.c.id, subscriber.c.email, subscriber.c.name)
            .where(subscriber.c.id > last)
            .order_by(subscriber.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            return
        connection.execute(
            subscriber.update().where(subscriber.c.id == sa.bindparam("row_id")),
            [{"row_id": r.id, "search_key": f"{r.email}\n{r.name or ''}".casefold()} for r in rows],
        )
        last = rows[-1].id


def downgrade() -> None:
    op.drop_index("ix_subscriber_upload_user_id", table_name="subscriber_upload")
    op.drop_table("subscriber_upload")
    op.drop_index("ix_membership_group_status", table_name="membership")
    with op.batch_alter_table("subscriber") as batch:
        batch.drop_column("search_key")
        batch.drop_column("field_values")
