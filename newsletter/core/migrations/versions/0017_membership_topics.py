"""membership topics: the topics a member chose to receive from a group

``membership.topics`` holds the member's choice on the preferences page as a JSON list
of topic names (``["EPO", "WIPO"]``); NULL is no choice, and a member without one gets
every item. The delivery engine renders an edition once per distinct choice among its
recipients (``newsletter/delivery/variants.py``).

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("membership") as batch:
        batch.add_column(sa.Column("topics", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("membership") as batch:
        batch.drop_column("topics")
