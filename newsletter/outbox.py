"""The outbox: one Delivery row per edition and active member, and batches claimed from it.

Rows are created by one ``INSERT ... SELECT`` from the memberships, never from a
Python list of everyone, and ``UNIQUE(edition_id, subscriber_id)`` makes a second
enqueue harmless. Delivery claims batches of rows that are due, records their
results in one transaction per batch, and so can stop and resume at any point.
"""

import random
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy import and_, exists, func, insert, literal, or_, update
from sqlmodel import Session, col, select

from newsletter.models import (
    Delivery,
    DeliveryStatus,
    Edition,
    Membership,
    MembershipStatus,
    Subscriber,
    utcnow,
)

# Temporary failures are retried after 1, 5, 15, 60 and 240 minutes (with jitter), then given up.
RETRY_MINUTES = (1, 5, 15, 60, 240)


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


@dataclass(frozen=True)
class Claimed:
    delivery_id: int
    subscriber_id: int
    email: str
    name: str | None
    language: str | None
    active: bool
    attempts: int


def claim(session: Session, edition: Edition, *, limit: int, now: datetime | None = None) -> list[Claimed]:
    """The next due deliveries, marked ``sending`` (and their attempt counted)."""
    now = now or utcnow()
    active = exists().where(
        and_(
            col(Membership.subscriber_id) == Delivery.subscriber_id,
            col(Membership.group_id) == edition.group_id,
            col(Membership.status) == MembershipStatus.ACTIVE,
        )
    )
    query = (
        sa.select(
            col(Delivery.id),
            col(Subscriber.id),
            col(Subscriber.email),
            col(Subscriber.name),
            col(Subscriber.language),
            active.label("active"),
            col(Delivery.attempts),
        )
        .join(Subscriber, col(Subscriber.id) == Delivery.subscriber_id)
        .where(
            col(Delivery.edition_id) == edition.id,
            col(Delivery.status) == DeliveryStatus.QUEUED,
            or_(col(Delivery.next_attempt_at).is_(None), col(Delivery.next_attempt_at) <= now),
        )
        .order_by(col(Delivery.id))
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(of=sa.inspect(Delivery).local_table, skip_locked=True)
    rows = [Claimed(*row) for row in session.execute(query)]
    if rows:
        session.execute(
            update(Delivery)
            .where(col(Delivery.id).in_([r.delivery_id for r in rows]))
            .values(status=DeliveryStatus.SENDING, attempts=Delivery.attempts + 1)
        )
    return rows


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: DeliveryStatus
    message_id: str | None = None
    error: str | None = None
    retry: bool = False


def record(session: Session, outcomes: Iterable[Outcome], attempts: dict[int, int]) -> None:
    """Write a batch of results; temporary failures go back to the queue with a delay."""
    now = utcnow()
    for outcome in outcomes:
        values: dict[str, object] = {"status": outcome.status, "last_error": outcome.error}
        if outcome.status == DeliveryStatus.SENT:
            values |= {"sent_at": now, "message_id": outcome.message_id, "next_attempt_at": None}
        elif outcome.retry:
            tries = attempts.get(outcome.delivery_id, 1)
            if tries > len(RETRY_MINUTES):
                values["status"] = DeliveryStatus.FAILED
            else:
                delay = RETRY_MINUTES[tries - 1] * 60 * random.uniform(0.8, 1.2)
                values |= {"status": DeliveryStatus.QUEUED, "next_attempt_at": now + timedelta(seconds=delay)}
        session.execute(update(Delivery).where(col(Delivery.id) == outcome.delivery_id).values(**values))


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
            .values(status=DeliveryStatus.QUEUED, attempts=_uncounted)
        )


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
        .values(status=DeliveryStatus.QUEUED)
    )
    return int(getattr(result, "rowcount", 0) or 0)
