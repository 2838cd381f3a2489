"""Alembic environment: runs on the connection the library hands in, or on ``-x url=``."""

from alembic import context
from sqlalchemy import Connection, create_engine
from sqlmodel import SQLModel

import newsletter.core.models  # noqa: F401  (registers the tables on SQLModel.metadata)

config = context.config
target_metadata = SQLModel.metadata


def run() -> None:
    connection = config.attributes.get("connection")
    if connection is None:
        url = context.get_x_argument(as_dictionary=True).get("url", "sqlite:///scratch.db")
        with create_engine(url).connect() as own:
            _configure(own)
            with context.begin_transaction():
                context.run_migrations()
            own.commit()
        return
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()


def _configure(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        # SQLite cannot ALTER most things: batch mode rebuilds the table instead.
        render_as_batch=True,
        compare_type=True,
    )


run()
