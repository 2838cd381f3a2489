"""A sign-up on PostgreSQL is one statement; it stores what the step-by-step way stores.

``selfservice.request_subscription`` runs the whole sign-up as one statement on
PostgreSQL (one round trip instead of a dozen) and statement by statement on SQLite.
The same sign-ups are made both ways on one PostgreSQL database, which is emptied
between the two, and every column of every row they write is compared: a column
added to a model and to one way only fails here.
"""

from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from newsletter.audience import selfservice
from newsletter.core.errors import NotFoundError
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from tests.conftest import wait_until

TABLES = ("subscriber", "membership", "consent", "confirmation_mail", "event", "webhook_event")
# (group, address, name, language): a newcomer, the same person for a second group and
# again for the first (a membership already there), a second newcomer.
SIGN_UPS = [
    ("cepiug", "Ann.Example@Example.org", "Ann Example", "fr"),
    ("dach", "ann.example@example.org", None, None),
    ("cepiug", "ann.example@example.org", "Ann", "de"),
    ("cepiug", "bob@example.org", None, "en"),
]


def step_by_step(engine: sa.Engine, slug: str, email: str, name: str | None, language: str | None) -> int:
    values = selfservice._sign_up_values(
        slug,
        selfservice.sign_up_address(email),
        name=name,
        language=language,
        text="I agree",
        ip="192.0.2.7",
        source="web",
    )
    with engine.begin() as connection:
        consent_id = selfservice._sign_up_step_by_step(connection, values)
    assert consent_id is not None
    return consent_id


def at_once(engine: sa.Engine, slug: str, email: str, name: str | None, language: str | None) -> int:
    return selfservice.request_subscription(
        engine,
        slug,
        selfservice.sign_up_address(email),
        name=name,
        language=language,
        consent_text="I agree",
        ip="192.0.2.7",
    )


def rows(engine: sa.Engine) -> dict[str, list[dict[str, Any]]]:
    """Every row of the sign-up's tables, without its own id; a time only as "set"."""
    found: dict[str, list[dict[str, Any]]] = {}
    with engine.connect() as connection:
        for table in TABLES:
            result = connection.exec_driver_sql(f"SELECT * FROM {table} ORDER BY id").mappings().all()
            found[table] = [
                {k: (True if isinstance(v, datetime) else v) for k, v in row.items() if k != "id"}
                for row in result
            ]
    return found


def empty(engine: sa.Engine) -> None:
    with engine.begin() as connection:
        connection.exec_driver_sql(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")


@pytest.mark.postgres
def test_one_statement_stores_what_the_steps_store(site_dir: Path, db_url: str) -> None:
    if not db_url.startswith("postgresql"):
        pytest.skip("the one-statement sign-up is PostgreSQL's")
    site = Site.open(load_settings(site_dir, env={}, overrides={"database.url": db_url}))
    try:
        stepped = [step_by_step(site.engine, *sign_up) for sign_up in SIGN_UPS]
        expected = rows(site.engine)
        empty(site.engine)
        assert [at_once(site.engine, *sign_up) for sign_up in SIGN_UPS] == stepped
        assert rows(site.engine) == expected
    finally:
        site.close()
    # What is compared is what a sign-up is: two people, three memberships, four requests.
    assert [len(expected[table]) for table in TABLES] == [2, 3, 4, 4, 4, 4]
    members = expected["membership"]
    assert sorted((m["subscriber_id"], m["status"]) for m in members) == [
        (1, "pending"),
        (1, "pending"),
        (2, "pending"),
    ]
    assert len({m["group_id"] for m in members}) == 2
    assert {m["consent_text"] for m in members} == {"I agree"}


def test_a_sign_up_for_no_group_stores_nothing(site_dir: Path, db_url: str) -> None:
    site = Site.open(load_settings(site_dir, env={}, overrides={"database.url": db_url}))
    try:
        with pytest.raises(NotFoundError, match="no group 'nosuch'"):
            at_once(site.engine, "nosuch", "carl@example.org", None, None)
        assert all(not found for found in rows(site.engine).values())
    finally:
        site.close()


@pytest.mark.postgres
def test_two_sign_ups_of_one_new_address_at_once_both_succeed(site_dir: Path, db_url: str) -> None:
    # A double click: the second sign-up's statement looks for the subscriber before the
    # first has committed it, then meets it on the unique key. The browser shows the
    # second click's answer, which must not be an error for a sign-up that was kept.
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite's writers take turns (BEGIN IMMEDIATE): no such race")
    site = Site.open(load_settings(site_dir, env={}, overrides={"database.url": db_url}))
    values = selfservice._sign_up_values(
        "cepiug",
        selfservice.sign_up_address("dana@example.org"),
        name=None,
        language=None,
        text="I agree",
        ip="192.0.2.7",
        source="web",
    )
    try:
        with ThreadPoolExecutor(max_workers=1) as pool, site.engine.connect() as first:
            first.begin()
            first_id = first.execute(selfservice._sign_up_at_once(), values).scalar_one()  # not committed
            second = pool.submit(at_once, site.engine, "cepiug", "dana@example.org", None, None)
            wait_for_lock_wait(site.engine, second)
            first.commit()
            consent_id = second.result(timeout=60)
        found = rows(site.engine)
        with site.engine.connect() as connection:
            consents = connection.exec_driver_sql("SELECT id FROM consent ORDER BY id").scalars().all()
    finally:
        site.close()
    # One person, one membership, and each click's request with its confirmation mail.
    assert [len(found[table]) for table in TABLES] == [1, 1, 2, 2, 2, 2]
    assert consents == [first_id, consent_id]
    assert len({c["subscriber_id"] for c in found["consent"]}) == 1


def wait_for_lock_wait(engine: sa.Engine, pending: Future[int]) -> None:
    """Until a sign-up statement waits on a row lock (it found the uncommitted subscriber)."""
    waiting = sa.text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND wait_event_type = 'Lock' AND query LIKE '%INSERT INTO subscriber%'"
    )

    def blocked() -> bool:
        assert not pending.done(), pending.exception()
        # A connection of its own each time: a fresh snapshot of pg_stat_activity.
        with engine.connect() as watcher:
            return bool(watcher.execute(waiting).scalar_one())

    assert wait_until(blocked), "the second sign-up never reached the first's row"
