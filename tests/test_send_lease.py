"""The send lease and the row leases: taken, renewed, refused while live, taken over once lapsed.

Each test runs on a fresh database (SQLite, and PostgreSQL when configured) with one
group and one edition; owners are made up the way ``lease.new_owner`` makes them.
"""

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from sqlalchemy import Engine
from sqlmodel import Session, col, select

from newsletter.core.db import make_engine, migrate
from newsletter.core.errors import LeaseHeld, LeaseLost
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Group,
    Membership,
    MembershipStatus,
    Subscriber,
    utcnow,
)
from newsletter.delivery import claims, lease

# A process of this machine that is running (this one), with another runner's nonce.
ALIVE = f"{lease.host()}:{os.getpid()}:a11ve000"
# A process of another machine: nothing here can tell whether it still runs.
ELSEWHERE = "news2/5e1c0a:4242:e15e0000"


def dead_owner() -> str:
    """The owner id of a process of this machine that has ended (and been reaped)."""
    child = subprocess.Popen([sys.executable, "-c", ""])
    child.wait()
    return f"{lease.host()}:{child.pid}:dead0000"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated database holding group `g` and its edition #1, being sent, with three queued deliveries."""
    engine = make_engine(db_url)
    migrate(engine)
    with Session(engine) as session:
        group = Group(slug="g", name="G", language="en", timezone="UTC")
        session.add(group)
        session.flush()
        edition = Edition(group_id=group.id or 0, period_key="k", status=EditionStatus.SENDING)
        session.add(edition)
        for n in range(3):
            subscriber = Subscriber(email=f"m{n}@example.org", email_key=f"m{n}@example.org")
            session.add(subscriber)
            session.flush()
            session.add(
                Membership(
                    subscriber_id=subscriber.id or 0, group_id=group.id or 0, status=MembershipStatus.ACTIVE
                )
            )
            session.flush()
            session.add(Delivery(edition_id=edition.id or 0, subscriber_id=subscriber.id or 0))
        session.commit()
        assert edition.id == 1
    try:
        yield engine
    finally:
        engine.dispose()


def take(engine: Engine, owner: str, now: datetime | None = None) -> str | None:
    with Session(engine) as session:
        previous = lease.take(session, 1, owner, now=now)
        session.commit()
    return previous


def holder(engine: Engine) -> lease.Holder | None:
    with Session(engine) as session:
        return lease.holder(session, 1)


def test_an_owner_id_names_this_host_and_process() -> None:
    """An owner id is host:pid:random for this process; `describe` says it for people."""
    owner = lease.new_owner()
    host, pid, nonce = owner.split(":")
    assert host == lease.host()
    assert host.startswith(os.uname().nodename)
    assert int(pid) == os.getpid()
    assert len(nonce) == 8
    assert lease.describe(owner) == f"process {os.getpid()} on {os.uname().nodename}"
    assert lease.new_owner() != owner


def test_take_renew_and_give_up(engine: Engine) -> None:
    """The first taker holds the lease; taking it again or renewing extends it; giving it up frees it."""
    me = lease.new_owner()
    start = utcnow()
    assert take(engine, me, now=start) is None
    first = holder(engine)
    assert first is not None
    assert (first.owner, first.since) == (me, start)
    assert first.expires_at == start + lease.LEASE_TTL
    later = start + timedelta(seconds=30)
    with Session(engine) as session:
        lease.renew(session, 1, me, now=later)
        session.commit()
    renewed = holder(engine)
    assert renewed is not None
    assert (renewed.since, renewed.expires_at) == (start, later + lease.LEASE_TTL)
    assert take(engine, me, now=later + timedelta(seconds=5)) is None
    with Session(engine) as session:
        lease.give_up(session, 1, ALIVE)  # not the owner: nothing happens
        session.commit()
    assert holder(engine) is not None
    with Session(engine) as session:
        lease.give_up(session, 1, me)
        session.commit()
    assert holder(engine) is None


@pytest.mark.parametrize("other", [ALIVE, ELSEWHERE], ids=["this-machine", "another-machine"])
def test_a_live_lease_is_refused_in_one_line_and_renewing_it_is_refused_to_others(
    engine: Engine, other: str
) -> None:
    """While the holder runs (or may run) and its lease has time left, another taker is refused."""
    me = lease.new_owner()
    assert take(engine, other) is None
    with pytest.raises(LeaseHeld) as refused:
        take(engine, me)
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith(f"edition #1 is being sent by {lease.describe(other)} (since ")
    assert message.endswith("`newsletter editions send 1 --wait` waits for it to finish")
    assert refused.value.owner == other
    with Session(engine) as session, pytest.raises(LeaseLost):
        lease.renew(session, 1, me)
    current = holder(engine)
    assert current is not None
    assert current.owner == other


def test_a_lease_whose_time_ran_out_is_taken_over(engine: Engine) -> None:
    """A holder on another machine that stopped renewing loses the lease once LEASE_TTL has passed."""
    start = utcnow()
    assert take(engine, ELSEWHERE, now=start) is None
    me = lease.new_owner()
    with pytest.raises(LeaseHeld):
        take(engine, me, now=start + lease.LEASE_TTL - timedelta(seconds=1))
    assert take(engine, me, now=start + lease.LEASE_TTL) == ELSEWHERE
    current = holder(engine)
    assert current is not None
    assert current.owner == me
    # The old owner, back from its stall, finds out at its next renewal.
    with Session(engine) as session, pytest.raises(LeaseLost):
        lease.renew(session, 1, ELSEWHERE)


def test_a_dead_owners_lease_is_taken_over_at_once(engine: Engine) -> None:
    """A holder of this machine whose process has ended loses the lease without waiting for its time."""
    dead = dead_owner()
    assert lease.gone(dead)
    assert not lease.gone(ALIVE)
    assert not lease.gone(ELSEWHERE)
    assert take(engine, dead) is None
    me = lease.new_owner()
    assert take(engine, me) == dead
    current = holder(engine)
    assert current is not None
    assert current.owner == me


def states(engine: Engine) -> dict[int, tuple[str, str | None]]:
    with Session(engine) as session:
        rows = session.exec(select(Delivery).order_by(col(Delivery.id))).all()
    return {row.id or 0: (str(row.status), row.claimed_by) for row in rows}


def test_rows_go_back_only_when_their_claimer_is_gone_or_their_lease_ran_out(engine: Engine) -> None:
    """A live claimer keeps its rows; a dead one's go back at once; a silent one's when the row lease ends."""
    dead = dead_owner()
    now = utcnow()
    with Session(engine) as session:
        # One row each; a claim takes the next due row in id order.
        [live_row] = claims.claim(session, 1, ALIVE, limit=1, now=now)
        [dead_row] = claims.claim(session, 1, dead, limit=1, now=now)
        [silent_row] = claims.claim(session, 1, ELSEWHERE, limit=1, now=now)
        session.commit()
    assert {owner for _, owner in states(engine).values()} == {ALIVE, dead, ELSEWHERE}

    with Session(engine) as session:
        assert claims.recover_abandoned(session, 1, now=now) == 1
        session.commit()
    after = states(engine)
    assert after[dead_row.delivery_id] == (DeliveryStatus.QUEUED, None)
    assert after[live_row.delivery_id] == (DeliveryStatus.SENDING, ALIVE)
    assert after[silent_row.delivery_id] == (DeliveryStatus.SENDING, ELSEWHERE)

    # Another claimer cannot release or renew rows that are not its own.
    with Session(engine) as session:
        claims.release(session, [live_row.delivery_id], ELSEWHERE)
        session.commit()
    assert states(engine)[live_row.delivery_id] == (DeliveryStatus.SENDING, ALIVE)

    with Session(engine) as session:
        claims.renew(session, [live_row.delivery_id], ALIVE, now=now + claims.LEASE)
        session.commit()
    with Session(engine) as session:
        assert claims.recover_abandoned(session, 1, now=now + claims.LEASE + timedelta(seconds=1)) == 1
        session.commit()
    after = states(engine)
    assert after[silent_row.delivery_id] == (DeliveryStatus.QUEUED, None)
    assert after[live_row.delivery_id] == (DeliveryStatus.SENDING, ALIVE)


def test_a_database_at_0002_gets_the_lease_table_and_keeps_its_rows(empty_db_url: str) -> None:
    """Revision 0003 adds send_lease, delivery.claimed_by and edition.outbox_only to a database in use."""
    from alembic import command
    from sqlalchemy import inspect, text

    from newsletter.core.db import alembic_config

    engine = make_engine(empty_db_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0002")
        with engine.begin() as connection:
            connection.execute(
                text(
                    'INSERT INTO "group" (slug, name, language, timezone, created_at) '
                    "VALUES ('old', 'Old', 'en', 'UTC', '2026-01-01 00:00:00')"
                )
            )
            connection.execute(
                text(
                    "INSERT INTO edition (group_id, schedule, period_key, template, subject_template, "
                    "subject, status, created_at) "
                    "VALUES (1, 'manual', 'k', 'digest', '', 'Old news', 'sent', '2026-01-01 00:00:00')"
                )
            )
        assert "send_lease" not in inspect(engine).get_table_names()
        migrate(engine)
        assert "send_lease" in inspect(engine).get_table_names()
        assert "claimed_by" in {column["name"] for column in inspect(engine).get_columns("delivery")}
        with Session(engine) as session:
            [edition] = session.exec(select(Edition)).all()
        assert (edition.subject, edition.status) == ("Old news", EditionStatus.SENT)
        assert edition.outbox_only is False
    finally:
        engine.dispose()


def test_enqueue_adds_each_missing_member_once_and_counts_them(engine: Engine) -> None:
    """The fixture's three members already queued: a fourth joins, and enqueue adds exactly her, counted."""
    from newsletter.delivery import outbox

    with Session(engine) as session:
        late = Subscriber(email="late@example.org", email_key="late@example.org")
        session.add(late)
        session.flush()
        late_id = late.id or 0
        session.add(Membership(subscriber_id=late_id, group_id=1, status=MembershipStatus.ACTIVE))
        session.flush()
        edition = session.get(Edition, 1)
        assert edition is not None
        assert outbox.enqueue(session, edition) == 1
        assert outbox.enqueue(session, edition) == 0
        session.commit()
        rows = session.exec(select(Delivery.subscriber_id).where(col(Delivery.edition_id) == 1)).all()
    assert sorted(rows) == [1, 2, 3, late_id]
