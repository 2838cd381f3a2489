"""editions in the workspace: an intro, subjects per language, a planned send, who changed it

``edition`` gains ``intro_md`` (the editor's Markdown above the items), ``subjects``
(JSON, a subject per language), ``scheduled_at`` (one send planned for a moment; the
scheduler's tick sends it when due), ``last_changed_by`` (for the optional four-eyes
rule) and ``version`` (bumped on every change, so a stale form is refused).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import newsletter.core.models

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString
When = newsletter.core.models.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("edition") as batch:
        batch.add_column(sa.Column("intro_md", String(), nullable=False, server_default=""))
        batch.add_column(sa.Column("subjects", String(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("scheduled_at", When(timezone=True), nullable=True))
        batch.add_column(sa.Column("last_changed_by", String(length=340), nullable=True))
        batch.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("edition") as batch:
        for column in ("version", "last_changed_by", "scheduled_at", "subjects", "intro_md"):
            batch.drop_column(column)
