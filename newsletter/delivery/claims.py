"""Claiming due deliveries, and the row leases that say whose they are while they are sent.

A claim marks a batch of an edition's due rows ``sending`` in one statement, names the
claimer in ``claimed_by`` (a runner's owner id, see ``lease.py``) and gives each row a
lease until ``next_attempt_at``; the engine renews the lease of the rows in hand while
it works. A row goes back to the queue only when its lease ran out or its claimer is
known to be gone (:func:`recover_abandoned`), never because another process started:
that blind release is what once sent hundreds of members a second copy while two
sends ran side by side.
"""

from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from newsletter.core.models import Delivery, DeliveryStatus, EditionStatus, MembershipStatus, utcnow
from newsletter.core.site import Site
from newsletter.delivery import lease

# A claimed row belongs to its claimer this long (its ``next_attempt_at`` says until
# when); the engine renews the lease of the rows in hand well before it runs out.
LEASE = timedelta(minutes=10)


class Claimed(NamedTuple):
    """A delivery handed to the engine (a tuple: thousands are made a second)."""

    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None
    language: str | None
    active: int  # true while the member is still active (SQLite has no boolean: 1 or 0)
    attempts: int
    edition_id: int = 0
    # The topics the member chose in the edition's group (JSON, audience/topics.py); None: all.
    topics: str | None = None


def claim(
    session: Session, edition_id: int, owner: str, *, limit: int, now: datetime | None = None
) -> list[Claimed]:
    """The edition's next due deliveries, marked ``sending`` for ``owner`` (their attempt counted).

    None while the edition is not ``sending`` (paused by its owner, cancelled by an editor).

    One atomic ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``.
    On PostgreSQL concurrent claimers skip each other's locked rows, so no row is
    claimed twice; on SQLite the UPDATE takes the database's single write lock. The
    member's address, name, language and whether they are still active come back in
    the same statement (correlated subqueries in RETURNING, which both databases run), with
    the topics the member chose in the group (``delivery/variants.py`` picks their copy by them).
    """
    connection = session.connection()
    statement = _CLAIM_SQL[connection.dialect.name == "postgresql"]
    now = now or utcnow()
    parameters = {"edition": edition_id, "now": now, "lease": now + LEASE, "limit": limit, "owner": owner}
    rows = connection.execute(statement, parameters)
    return sorted(map(Claimed._make, rows))


def _claim_sql(postgresql: bool) -> sa.TextClause:
    # Written as SQL, not built with SQLAlchemy's expressions: its RETURNING drops the
    # table names the correlated subqueries need, and a claim of a few hundred rows
    # built and compiled each time cost more than the database's own work. The member's
    # status is read by the membership's unique key and compared outside the subquery:
    # with the status inside it, PostgreSQL (without fresh statistics, as right after
    # an edition is queued) combined in the index of every active membership, for each
    # row claimed.
    # Only while the edition is being sent: a paused or cancelled edition hands out no
    # more rows (the condition is not correlated, so both databases check it once).
    queued, sending = DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value
    being_sent = EditionStatus.SENDING.value
    due = f"""
        SELECT id FROM delivery
        WHERE edition_id = :edition AND status = '{queued}'
            AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
            AND EXISTS (SELECT 1 FROM edition WHERE id = :edition AND status = '{being_sent}')
        ORDER BY id LIMIT :limit
    """
    taken = f"status = '{sending}', next_attempt_at = :lease, claimed_by = :owner"
    if postgresql:
        # The rows another claimer holds are skipped. A join with the claimed ids, not
        # "id IN (...)": for that PostgreSQL reads the whole table on every claim.
        claim = f"""
            WITH due AS ({due} FOR UPDATE SKIP LOCKED)
            UPDATE delivery SET {taken}, attempts = delivery.attempts + 1
            FROM due WHERE delivery.id = due.id
        """
    else:
        claim = f"UPDATE delivery SET {taken}, attempts = attempts + 1 WHERE id IN ({due})"
    sql = f"""{claim}
        RETURNING delivery.id, delivery.subscriber_id,
            (SELECT s.email FROM subscriber s WHERE s.id = delivery.subscriber_id),
            (SELECT s.name FROM subscriber s WHERE s.id = delivery.subscriber_id),
            (SELECT s.language FROM subscriber s WHERE s.id = delivery.subscriber_id),
            COALESCE((
                SELECT m.status FROM membership m
                WHERE m.subscriber_id = delivery.subscriber_id
                    AND m.group_id = (SELECT e.group_id FROM edition e WHERE e.id = delivery.edition_id)
            ) = '{MembershipStatus.ACTIVE.value}', FALSE),
            delivery.attempts - 1, delivery.edition_id,
            (
                SELECT m.topics FROM membership m
                WHERE m.subscriber_id = delivery.subscriber_id
                    AND m.group_id = (SELECT e.group_id FROM edition e WHERE e.id = delivery.edition_id)
            )
    """
    when: sa.types.TypeEngine[Any] = Delivery.__table__.c.next_attempt_at.type  # type: ignore[attr-defined]
    return sa.text(sql).bindparams(sa.bindparam("now", type_=when), sa.bindparam("lease", type_=when))


# By dialect: False for SQLite, True for PostgreSQL.
_CLAIM_SQL = {False: _claim_sql(False), True: _claim_sql(True)}

# The attempt a claim counted, taken back (portable: PostgreSQL has no two-argument max).
_uncounted = sa.case((col(Delivery.attempts) > 0, col(Delivery.attempts) - 1), else_=0)


def _held_by(delivery_ids: list[int], owner: str) -> Any:
    return (
        col(Delivery.id).in_(delivery_ids),
        col(Delivery.status) == DeliveryStatus.SENDING,
        col(Delivery.claimed_by) == owner,
    )


def release(session: Session, delivery_ids: Iterable[int], owner: str) -> None:
    """Put rows ``owner`` claimed but never handed over back in the queue (the claim did not count)."""
    ids = list(delivery_ids)
    if ids:
        session.execute(
            update(Delivery)
            .where(*_held_by(ids, owner))
            .values(status=DeliveryStatus.QUEUED, next_attempt_at=None, attempts=_uncounted, claimed_by=None)
        )


def renew(session: Session, delivery_ids: Iterable[int], owner: str, *, now: datetime | None = None) -> None:
    """Extend the lease of the rows ``owner`` still has in hand (see LEASE)."""
    ids = list(delivery_ids)
    if ids:
        session.execute(
            update(Delivery).where(*_held_by(ids, owner)).values(next_attempt_at=(now or utcnow()) + LEASE)
        )


def due(session: Session, edition_id: int, *, now: datetime | None = None) -> int:
    """How many of the edition's queued rows are due now (retries wait for their time)."""
    query = select(sa.func.count()).where(
        col(Delivery.edition_id) == edition_id,
        col(Delivery.status) == DeliveryStatus.QUEUED,
        or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= (now or utcnow())),
    )
    return int(session.exec(query).one())


def claimers(session: Session, edition_id: int) -> list[str]:
    """The owners holding rows of the edition right now (rows ``sending``)."""
    rows = session.exec(
        select(Delivery.claimed_by)
        .where(col(Delivery.edition_id) == edition_id, col(Delivery.status) == DeliveryStatus.SENDING)
        .distinct()
    )
    return sorted(owner or "" for owner in rows)


def recover_abandoned(session: Session, edition_id: int, *, now: datetime | None = None) -> int:
    """Rows whose lease ran out, or whose claimer is gone: back to the queue, the attempt counted.

    Their messages may have reached the relay just before the claimer died, so these
    few can arrive twice, as after any kill. Rows of a live claimer stay with it.
    """
    dead = [owner for owner in claimers(session, edition_id) if owner and lease.gone(owner)]
    lapsed = or_(
        col(Delivery.next_attempt_at).is_(None),
        col(Delivery.next_attempt_at) < (now or utcnow()),
        col(Delivery.claimed_by).in_(dead),
    )
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.edition_id) == edition_id, col(Delivery.status) == DeliveryStatus.SENDING, lapsed)
        .values(status=DeliveryStatus.QUEUED, next_attempt_at=None, claimed_by=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)


def requeue(session: Session, delivery_ids: Iterable[int]) -> None:
    """Rows that failed only because the relay was down: due again now, the attempt not counted."""
    ids = list(delivery_ids)
    if ids:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids), col(Delivery.status) != DeliveryStatus.SENT)
            .values(status=DeliveryStatus.QUEUED, next_attempt_at=None, attempts=_uncounted)
        )


class EditionQueue:
    """The delivery engine's work for one edition: rows claimed for ``owner``, leases kept alive.

    The owner of the edition's send lease (``owns_lease``) renews it with its rows; a
    helper renews only its rows. When nothing is due, rows whose claimer is gone are
    put back first, and claimed if they are due.
    """

    def __init__(
        self, site: Site, edition_id: int, owner: str, owns_lease: bool, should_stop: Callable[[], bool]
    ) -> None:
        self.site = site
        self.edition_id = edition_id
        self.owner = owner
        self.owns_lease = owns_lease
        self.should_stop = should_stop

    def claim(self, limit: int) -> list[Claimed]:
        if self.should_stop():
            return []
        with self.site.transaction() as session:
            rows = claim(session, self.edition_id, self.owner, limit=limit)
            if not rows and recover_abandoned(session, self.edition_id):
                rows = claim(session, self.edition_id, self.owner, limit=limit)
        return rows

    def keep(self, delivery_ids: list[int]) -> None:
        with self.site.transaction() as session:
            if self.owns_lease:
                lease.renew(session, self.edition_id, self.owner)
            if delivery_ids:
                renew(session, delivery_ids, self.owner)

    def release(self, delivery_ids: list[int]) -> None:
        with self.site.transaction() as session:
            release(session, delivery_ids, self.owner)

    def requeue(self, delivery_ids: list[int]) -> None:
        with self.site.transaction() as session:
            requeue(session, delivery_ids)
