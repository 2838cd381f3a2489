"""PostgreSQL connections from the pool: pinged when they sat idle, not on every checkout.

Each test kills the server side of a pooled connection (``pg_terminate_backend``, as a
server restart or a firewall would) and watches what the next checkout does.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from newsletter.core.db import make_engine
from tests.conftest import POSTGRES_URL

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(POSTGRES_URL is None, reason="NEWSLETTER_TEST_POSTGRES_URL is not set"),
]


@pytest.fixture
def admin() -> Iterator[Engine]:
    assert POSTGRES_URL
    engine = create_engine(POSTGRES_URL)
    yield engine
    engine.dispose()


def backend(engine: Engine) -> int:
    """The PostgreSQL backend that serves the connection the pool hands out next."""
    with engine.connect() as connection:
        return int(connection.execute(text("SELECT pg_backend_pid()")).scalar_one())


def kill(admin: Engine, pid: int) -> None:
    with admin.connect() as connection:
        gone = connection.execute(text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": pid}).scalar_one()
    assert gone, f"backend {pid} still running"


@contextmanager
def pool_with_a_dead_connection(admin: Engine, ping_idle_after: float) -> Iterator[tuple[Engine, int]]:
    """A pool whose one connection has lost its server side; the backend it had."""
    assert POSTGRES_URL
    engine = make_engine(POSTGRES_URL, ping_idle_after=ping_idle_after)
    try:
        first = backend(engine)
        kill(admin, first)
        yield engine, first
    finally:
        engine.dispose()


def test_an_idle_connection_whose_server_side_died_is_replaced_without_an_error(admin: Engine) -> None:
    with pool_with_a_dead_connection(admin, ping_idle_after=0.0) as (engine, first):
        # The checkout pings the idle connection, finds it dead and opens another.
        assert backend(engine) != first


def test_a_connection_used_moments_ago_is_not_pinged_and_one_failure_renews_the_pool(admin: Engine) -> None:
    with pool_with_a_dead_connection(admin, ping_idle_after=3600.0) as (engine, first):
        # No ping: the statement itself finds the connection dead (a page answers 503).
        with pytest.raises(OperationalError) as failure:
            backend(engine)
        assert failure.value.connection_invalidated
        # SQLAlchemy threw the dead connection away: the next checkout works.
        assert backend(engine) != first
