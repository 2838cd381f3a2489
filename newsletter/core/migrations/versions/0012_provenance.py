"""provenance: every source entry that brought a story, so merged stories keep them all

Each item gets one row per feed entry, page article, file or editor that brought it
(``UNIQUE(source_id, guid)`` is how a collect knows an entry it has seen). Existing
items get the row of the entry that created them.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
When = newsletter.core.models.UTCDateTime


def upgrade() -> None:
    op.create_table(
        "provenance",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("source_id", sa.Integer(), nullable=True),
        sa.Column("guid", String(length=1000), nullable=True),
        sa.Column("origin", String(length=200), nullable=False),
        sa.Column("url", String(), nullable=True),
        sa.Column("title", String(), nullable=False),
        sa.Column("summary_html", String(), nullable=False),
        sa.Column("published_at", When(timezone=True), nullable=True),
        sa.Column("merged", String(length=20), nullable=True),
        sa.Column("similarity", sa.Float(), nullable=True),
        sa.Column("added_at", When(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["item_id"], ["item.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["source_id"], ["source.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("source_id", "guid"),
    )
    op.create_index(op.f("ix_provenance_item_id"), "provenance", ["item_id"], unique=False)
    op.execute(
        "INSERT INTO provenance (item_id, source_id, guid, origin, url, title, summary_html, published_at, "
        "added_at) "
        "SELECT id, source_id, SUBSTR(guid, 1, 1000), SUBSTR(COALESCE(origin, ''), 1, 200), url, title, "
        "summary_html, published_at, created_at FROM item"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_provenance_item_id"), table_name="provenance")
    op.drop_table("provenance")
