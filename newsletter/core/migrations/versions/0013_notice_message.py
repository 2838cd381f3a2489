"""notice_message: a notice keeps its sentence as a message id and values, read in the reader's language

``notice.message`` holds the notice as JSON (``{"msgid": ..., "params": ...}``, see
``newsletter/core/messages.py``) so that the digest translates it when it is sent;
``notice.text`` keeps the English. Notices recorded before have no message and are
shown by their text, as before.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("notice") as batch:
        batch.add_column(sa.Column("message", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notice") as batch:
        batch.drop_column("message")
