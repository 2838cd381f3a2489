"""item images: an item's image, resized once and served by the site

``item.image_source`` is the URL (or file) the image came from, ``item.image_name`` the
resized copy under the site's ``media/images/`` served at ``/images/{name}``, with its
size (``image_width``, ``image_height``) and alt text (``image_alt``; NULL when none was
given, which ``newsletter check`` reports).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

String = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    with op.batch_alter_table("item") as batch:
        batch.add_column(sa.Column("image_source", String(), nullable=True))
        batch.add_column(sa.Column("image_name", String(length=80), nullable=True))
        batch.add_column(sa.Column("image_width", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("image_height", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("image_alt", String(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("item") as batch:
        batch.drop_column("image_alt")
        batch.drop_column("image_height")
        batch.drop_column("image_width")
        batch.drop_column("image_name")
        batch.drop_column("image_source")
