"""The outbox: one Delivery row per edition and active member, and batches claimed from it.

Rows are created by one ``INSERT ... SELECT`` from the memberships, never from a
Python list of everyone, and ``UNIQUE(edition_id, subscriber_id)`` makes a second
enqueue harmless. Delivery claims batches of rows that are due, records their
results in one transaction per batch, and so can stop and resume at any point.
"""

import contextlib
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import and_, exists, func, insert, literal, update
from sqlalchemy.pool import PoolProxiedConnection
from sqlmodel import Session, col, select

from newsletter.core.errors import DatabaseError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    EditionStatus,
    Membership,
    MembershipStatus,
    utcnow,
)
from newsletter.core.settings import BouncesSection
from newsletter.feedback import policy

# Temporary failures are retried this many times, with exponential backoff (see retry_delay).
RETRY_ATTEMPTS = 6
# No retry is scheduled later than this after the first attempt.
RETRY_DEADLINE = timedelta(hours=24)
# A claimed row belongs to its claimer this long (its ``next_attempt_at`` says until
# when); the engine renews the lease of the rows in hand well before it runs out. A row
# whose lease ran out was claimed by a process that died: any worker puts it back.
LEASE = timedelta(minutes=10)


def enqueue(session: Session, edition: Edition) -> int:
    """Create a queued Delivery for every active member of the edition's group not yet queued."""
    already = exists().where(
        and_(col(Delivery.edition_id) == edition.id, col(Delivery.subscriber_id) == Membership.subscriber_id)
    )
    members = select(
        literal(edition.id), col(Membership.subscriber_id), literal(DeliveryStatus.QUEUED.value), literal(0)
    ).where(
        col(Membership.group_id) == edition.group_id,
        col(Membership.status) == MembershipStatus.ACTIVE,
        ~already,
    )
    statement = insert(Delivery).from_select(["edition_id", "subscriber_id", "status", "attempts"], members)
    result = session.execute(statement)
    return int(getattr(result, "rowcount", 0) or 0)


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


def claim(session: Session, edition: Edition, *, limit: int, now: datetime | None = None) -> list[Claimed]:
    """The edition's next due deliveries, marked ``sending`` (and their attempt counted)."""
    return _claim(session, edition.id or 0, limit=limit, now=now)


def claim_due(session: Session, *, limit: int, now: datetime | None = None) -> list[Claimed]:
    """The next due deliveries of the editions being sent, oldest edition first (``newsletter worker``).

    One edition at a time, so each claim reads its queue index in order (a query over
    several editions at once would sort all their queued rows on every claim).
    """
    sending = session.exec(
        select(Edition.id).where(col(Edition.status) == EditionStatus.SENDING).order_by(col(Edition.id))
    ).all()
    claimed: list[Claimed] = []
    for edition_id in sending:
        recover_abandoned(session, edition_id or 0, now=now)
        claimed += _claim(session, edition_id or 0, limit=limit - len(claimed), now=now)
        if len(claimed) >= limit:
            break
    return claimed


def _claim(session: Session, edition_id: int, *, limit: int, now: datetime | None) -> list[Claimed]:
    """One atomic ``UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING``.

    On PostgreSQL concurrent claimers skip each other's locked rows, so no row is
    claimed twice; on SQLite the UPDATE takes the database's single write lock. The
    member's address, name, language and whether they are still active come back in
    the same statement (correlated subqueries in RETURNING, which both databases run).
    """
    connection = session.connection()
    statement = _CLAIM_SQL[connection.dialect.name == "postgresql"]
    now = now or utcnow()
    parameters = {"edition": edition_id, "now": now, "lease": now + LEASE, "limit": limit}
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
    queued, sending = DeliveryStatus.QUEUED.value, DeliveryStatus.SENDING.value
    due = f"""
        SELECT id FROM delivery
        WHERE edition_id = :edition AND status = '{queued}'
            AND (next_attempt_at IS NULL OR next_attempt_at <= :now)
        ORDER BY id LIMIT :limit
    """
    if postgresql:
        # The rows another claimer holds are skipped. A join with the claimed ids, not
        # "id IN (...)": for that PostgreSQL reads the whole table on every claim.
        claim = f"""
            WITH due AS ({due} FOR UPDATE SKIP LOCKED)
            UPDATE delivery
            SET status = '{sending}', attempts = delivery.attempts + 1, next_attempt_at = :lease
            FROM due WHERE delivery.id = due.id
        """
    else:
        claim = (
            f"UPDATE delivery SET status = '{sending}', attempts = attempts + 1, next_attempt_at = :lease "
            f"WHERE id IN ({due})"
        )
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
            delivery.attempts - 1, delivery.edition_id
    """
    when: sa.types.TypeEngine[Any] = Delivery.__table__.c.next_attempt_at.type  # type: ignore[attr-defined]
    return sa.text(sql).bindparams(sa.bindparam("now", type_=when), sa.bindparam("lease", type_=when))


# By dialect: False for SQLite, True for PostgreSQL.
_CLAIM_SQL = {False: _claim_sql(False), True: _claim_sql(True)}


class Outcome(NamedTuple):
    """What became of one delivery (a tuple: one is made for every message)."""

    delivery_id: int
    status: DeliveryStatus
    message_id: str | None = None
    error: str | None = None
    retry: bool = False
    code: int | None = None


def retry_delay(tries: int) -> float | None:
    """Seconds until the next attempt after ``tries`` temporary failures; None: give up.

    Exponential (1, 4, 16, 64, 256 minutes, then 12 hours) with +-20 % jitter, so a
    relay that recovers is not hit by the whole list at once; the last retry comes
    about 18 hours after the first attempt, inside RETRY_DEADLINE.
    """
    if tries > RETRY_ATTEMPTS:
        return None
    minutes = min(4 ** (tries - 1), 720)
    return float(minutes * 60 * random.uniform(0.8, 1.2))


def record(
    session: Session, outcomes: Iterable[Outcome], attempts: dict[int, int], bounces: BouncesSection
) -> None:
    """Write a batch of results in a few statements; temporary failures go back to the queue.

    A permanent failure (a 5xx for this recipient) also goes to the bounce policy, in the
    same transaction, as a returned failure notice would (``feedback/policy.py``).
    """
    now = utcnow()
    table: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
    sent: list[dict[str, Any]] = []
    other: list[dict[str, Any]] = []
    permanent: list[Outcome] = []
    for outcome in outcomes:
        if outcome.status == DeliveryStatus.SENT:
            sent.append({"b_id": outcome.delivery_id, "b_message_id": outcome.message_id})
            continue
        status, next_at = outcome.status, None
        if outcome.retry:
            delay = retry_delay(attempts.get(outcome.delivery_id, 1))
            if delay is None:
                status = DeliveryStatus.FAILED
            else:
                status, next_at = DeliveryStatus.QUEUED, now + timedelta(seconds=delay)
        elif outcome.status == DeliveryStatus.FAILED:
            permanent.append(outcome)
        other.append(
            {"b_id": outcome.delivery_id, "b_status": status, "b_error": outcome.error, "b_next": next_at}
        )
    connection = session.connection()
    if sent:
        connection.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values(
                status=DeliveryStatus.SENT,
                last_error=None,
                sent_at=now,
                next_attempt_at=None,
                message_id=sa.bindparam("b_message_id"),
            ),
            sent,
        )
    if other:
        connection.execute(
            sa.update(table)
            .where(table.c.id == sa.bindparam("b_id"))
            .values(
                status=sa.bindparam("b_status"),
                last_error=sa.bindparam("b_error"),
                next_attempt_at=sa.bindparam("b_next"),
            ),
            other,
        )
    if permanent:
        _refused(session, permanent, bounces, now)


class Recorder:
    """Writes outcomes as they come, one transaction per call, for one run of the engine.

    The hottest write of a send is "these messages went", and the lanes wait for it
    (a message's final dot goes only once the lane's previous message is on record).
    It runs as one UPDATE on the driver's own connection (compiled once for the
    dialect by SQLAlchemy, then executed by the driver), kept open for the run:
    measured, SQLAlchemy's statement execution cost three times the database's own
    work per batch. A batch with any other outcome goes through :func:`record` and an
    ORM session.
    """

    def __init__(self, engine: sa.Engine, bounces: BouncesSection) -> None:
        self.engine = engine
        self.bounces = bounces
        self._connection: PoolProxiedConnection | None = None
        table: sa.Table = Delivery.__table__  # type: ignore[attr-defined]
        compiled = sa.text(
            f"UPDATE delivery SET status = '{DeliveryStatus.SENT.value}', last_error = NULL, "
            "next_attempt_at = NULL, sent_at = :at, message_id = :message_id WHERE id = :id"
        ).compile(dialect=engine.dialect)
        self._sql = str(compiled)
        # The driver's parameter style: positional (SQLite's "?") or named.
        self._order = tuple(compiled.positiontup or ()) if compiled.positional else None
        self._at = table.c.sent_at.type.dialect_impl(engine.dialect).bind_processor(engine.dialect)
        self._driver_error: type[Exception] = engine.dialect.loaded_dbapi.Error

    def write(self, outcomes: list[Outcome], attempts: dict[int, int]) -> None:
        if not outcomes:
            return
        if any(outcome.status != DeliveryStatus.SENT for outcome in outcomes):
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                record(session, outcomes, attempts, self.bounces)
            return
        now = utcnow()
        at = self._at(now) if self._at is not None else now
        rows = [{"at": at, "message_id": o.message_id, "id": o.delivery_id} for o in outcomes]
        order = self._order
        parameters: list[Any] = rows if order is None else [tuple(r[k] for k in order) for r in rows]
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        try:
            cursor = connection.cursor()
            try:
                cursor.executemany(self._sql, parameters)
            finally:
                cursor.close()
            connection.commit()
        except BaseException as exc:
            # The connection may be dead (a restarted server, a killed session): SQLAlchemy
            # does not see errors raised here, so drop it, and the next write opens a new one.
            self._connection = None
            with contextlib.suppress(Exception):
                connection.rollback()
            with contextlib.suppress(Exception):
                connection.invalidate()
            if isinstance(exc, self._driver_error):
                # The driver's own error, which SQLAlchemy would have wrapped: one line.
                raise DatabaseError(f"database error while recording sent messages: {exc}") from exc
            raise

    def _connect(self) -> PoolProxiedConnection:
        connection = self.engine.raw_connection()
        if self.engine.dialect.name == "postgresql":
            # Each commit waits for PostgreSQL to flush its log to disk: on a disk that
            # takes milliseconds, that and not the CPU set the pace (about 540 messages a
            # second on the benchmark). Without the wait a crash of this process loses
            # nothing, as with SQLite's WAL at synchronous=NORMAL; a crash of the database
            # server itself can forget the last fraction of a second of records, and those
            # messages are sent again. The setting stays on this connection, taken out of
            # the pool so that no other work inherits it.
            connection.detach()
            cursor = connection.cursor()
            cursor.execute("SET synchronous_commit TO OFF")
            cursor.close()
            connection.commit()
        return connection

    def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.close()


def _refused(session: Session, failures: list[Outcome], bounces: BouncesSection, now: datetime) -> None:
    """Permanent refusals go through the bounce policy, with the status the relay's reply gives."""
    rows = session.execute(
        sa.select(
            col(Delivery.id), col(Delivery.subscriber_id), col(Delivery.edition_id), col(Edition.group_id)
        )
        .join(Edition, col(Edition.id) == Delivery.edition_id)
        .where(col(Delivery.id).in_([f.delivery_id for f in failures]))
        .order_by(col(Delivery.id))
    )
    by_id = {f.delivery_id: f for f in failures}
    for delivery_id, subscriber_id, edition_id, group_id in rows:
        failure = by_id[delivery_id]
        refusal = policy.Bounce(
            subscriber_id,
            permanent=True,
            status=policy.reply_status(failure.code, failure.error or ""),
            via="smtp",
            group_id=group_id,
            edition_id=edition_id,
        )
        policy.apply(session, bounces, refusal, actor="delivery", source="smtp", at=now)


def counts(session: Session, edition_id: int) -> dict[str, int]:
    query = (
        select(Delivery.status, func.count())
        .where(col(Delivery.edition_id) == edition_id)
        .group_by(col(Delivery.status))
    )
    return {str(status): int(n) for status, n in session.exec(query)}


# The attempt a claim counted, taken back (portable: PostgreSQL has no two-argument max).
_uncounted = sa.case((col(Delivery.attempts) > 0, col(Delivery.attempts) - 1), else_=0)


def release(session: Session, delivery_ids: Iterable[int]) -> None:
    """Put claimed rows that were never handed over back in the queue (the claim did not count)."""
    ids = list(delivery_ids)
    if ids:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids), col(Delivery.status) == DeliveryStatus.SENDING)
            .values(status=DeliveryStatus.QUEUED, next_attempt_at=None, attempts=_uncounted)
        )


def renew(session: Session, delivery_ids: Iterable[int], *, now: datetime | None = None) -> None:
    """Extend the lease of claimed rows still in hand (see LEASE)."""
    ids = list(delivery_ids)
    if ids:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_(ids), col(Delivery.status) == DeliveryStatus.SENDING)
            .values(next_attempt_at=(now or utcnow()) + LEASE)
        )


def recover_abandoned(session: Session, edition_id: int, *, now: datetime | None = None) -> int:
    """Rows whose claimer died (their lease ran out): back to the queue, the attempt counted.

    Their messages may have reached the relay just before the claimer died, so these
    few can arrive twice, as after any kill.
    """
    result = session.execute(
        update(Delivery)
        .where(
            col(Delivery.edition_id) == edition_id,
            col(Delivery.status) == DeliveryStatus.SENDING,
            col(Delivery.next_attempt_at) < (now or utcnow()),
        )
        .values(status=DeliveryStatus.QUEUED, next_attempt_at=None)
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


def release_stale(session: Session, edition_id: int) -> int:
    """Rows a killed run left ``sending``: back to the queue (they may be sent a second time)."""
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.edition_id) == edition_id, col(Delivery.status) == DeliveryStatus.SENDING)
        .values(status=DeliveryStatus.QUEUED, next_attempt_at=None)
    )
    return int(getattr(result, "rowcount", 0) or 0)
