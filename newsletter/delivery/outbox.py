"""The outbox: one Delivery row per edition and active member, and the results recorded on them.

Rows are created by one ``INSERT ... SELECT`` from the memberships, never from a
Python list of everyone, and ``UNIQUE(edition_id, subscriber_id)`` makes a second
enqueue harmless. Delivery claims batches of rows that are due (``claims.py``),
records their results in one transaction per batch, and so can stop and resume at
any point.
"""

import contextlib
import random
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlalchemy import and_, exists, insert, literal, update
from sqlalchemy.dialects import postgresql
from sqlalchemy.pool import PoolProxiedConnection
from sqlmodel import Session, col, select

from newsletter.core.errors import DatabaseError
from newsletter.core.models import (
    Delivery,
    DeliveryStatus,
    Edition,
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


def enqueue(session: Session, edition: Edition) -> int:
    """Create a queued Delivery for every active member of the edition's group not yet queued.

    One set-based ``INSERT ... SELECT``. On PostgreSQL the rows already queued are left
    to the unique key (``ON CONFLICT DO NOTHING``) rather than an anti-join: on a fresh,
    unanalysed delivery table the planner ran the anti-join as a nested loop, and a
    first edition to 100,000 members took minutes before its first message.
    """
    columns = ["edition_id", "subscriber_id", "status", "attempts"]
    members = select(
        literal(edition.id), col(Membership.subscriber_id), literal(DeliveryStatus.QUEUED.value), literal(0)
    ).where(
        col(Membership.group_id) == edition.group_id,
        col(Membership.status) == MembershipStatus.ACTIVE,
    )
    if session.connection().dialect.name == "postgresql":
        statement: Any = (
            postgresql.insert(Delivery)
            .from_select(columns, members)
            .on_conflict_do_nothing(index_elements=["edition_id", "subscriber_id"])
        )
    else:
        already = exists().where(
            and_(
                col(Delivery.edition_id) == edition.id,
                col(Delivery.subscriber_id) == Membership.subscriber_id,
            )
        )
        statement = insert(Delivery).from_select(columns, members.where(~already))
    # On the connection, not the session (an ORM-enabled INSERT reports no row count),
    # and asking SQLAlchemy to keep the driver's count, which it drops for an INSERT.
    result = session.connection().execute(statement.execution_options(preserve_rowcount=True))
    return max(int(result.rowcount), 0)


def restart(session: Session, edition_id: int) -> int:
    """Every row of the edition queued afresh: its earlier run wrote files and delivered nothing.

    For an edition written to the outbox folder that is now sent for real; the runner
    calls it only while no live process holds any of the rows.
    """
    result = session.execute(
        update(Delivery)
        .where(col(Delivery.edition_id) == edition_id)
        .values(
            status=DeliveryStatus.QUEUED,
            attempts=0,
            next_attempt_at=None,
            last_error=None,
            message_id=None,
            sent_at=None,
            claimed_by=None,
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


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

    A permanent failure (a 5xx for this recipient), and a temporary one retried until we
    gave up, also goes to the bounce policy, in the same transaction, as a returned
    failure notice would (``feedback/policy.py``).
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
                if outcome.code is not None:
                    # Retried until we gave up: as the notice a relay sends when its own
                    # retries run out, a failure the bounce policy counts (soft, by its 4xx).
                    permanent.append(outcome)
            else:
                status, next_at = DeliveryStatus.QUEUED, now + timedelta(seconds=delay)
        elif outcome.status == DeliveryStatus.FAILED and outcome.code is not None:
            # Only a relay's reply speaks about the mailbox. A failure without one was
            # ours (an address this relay cannot carry): it stays on the delivery alone.
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
    It runs as one UPDATE (per row on SQLite, over arrays on PostgreSQL) on the
    driver's own connection (compiled once for the dialect by SQLAlchemy, then executed
    by the driver), kept open for the run:
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
        # On PostgreSQL the batch is one statement over two arrays: executemany would run
        # one UPDATE per row on the server, whose CPU the workers share (psycopg's own
        # parameter style, as this runs on the driver's connection).
        self._unnest = engine.dialect.name == "postgresql"
        self._unnest_sql = (
            f"UPDATE delivery SET status = '{DeliveryStatus.SENT.value}', last_error = NULL, "
            "next_attempt_at = NULL, sent_at = %(at)s, message_id = sent.message_id "
            "FROM unnest(%(ids)s::bigint[], %(message_ids)s::text[]) AS sent(id, message_id) "
            "WHERE delivery.id = sent.id"
        )

    def write(self, outcomes: list[Outcome], attempts: dict[int, int]) -> None:
        if not outcomes:
            return
        if any(outcome.status != DeliveryStatus.SENT for outcome in outcomes):
            with Session(self.engine, expire_on_commit=False) as session, session.begin():
                record(session, outcomes, attempts, self.bounces)
            return
        now = utcnow()
        at = self._at(now) if self._at is not None else now
        if self._connection is None:
            self._connection = self._connect()
        connection = self._connection
        try:
            cursor = connection.cursor()
            try:
                if self._unnest:
                    ids = [o.delivery_id for o in outcomes]
                    message_ids = [o.message_id for o in outcomes]
                    cursor.execute(self._unnest_sql, {"at": at, "ids": ids, "message_ids": message_ids})
                else:
                    cursor.executemany(self._sql, self._rows(outcomes, at))
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

    def _rows(self, outcomes: list[Outcome], at: Any) -> list[Any]:
        rows = [{"at": at, "message_id": o.message_id, "id": o.delivery_id} for o in outcomes]
        order = self._order
        return rows if order is None else [tuple(r[k] for k in order) for r in rows]

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
            # Each write is one statement: in autocommit it and its commit are one round trip.
            connection.dbapi_connection.autocommit = True  # type: ignore[union-attr]
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
