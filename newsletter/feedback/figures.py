"""Figures per edition: what became of its messages, and what its readers did after it.

Read from the outbox and the audit log, nothing else (no open or click tracking):

- ``delivered``, ``failed``, ``skipped``: its delivery rows by state; ``deferred``: rows
  waiting for another attempt after a temporary failure; ``waiting``: rows not tried yet;
  ``written``: for an edition sent to the outbox folder only, the messages written there
  (nobody received them, so none counts as delivered);
- ``bounced_hard``, ``bounced_soft``: bounce events that name the edition (failure
  notices and refusals at send time alike, judged by the bounce policy), one per member;
- ``complained``: complaint events that name the edition, one per member;
- ``unsubscribed``: members of the edition's group who left between its send and the
  group's next edition's send (an unsubscribe carries no edition, so the time says which).
"""

import json
from dataclasses import asdict, dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core.models import Delivery, DeliveryStatus, Edition, Event


@dataclass(frozen=True)
class Figures:
    edition_id: int
    delivered: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    waiting: int = 0
    bounced_hard: int = 0
    bounced_soft: int = 0
    complained: int = 0
    unsubscribed: int = 0
    written: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


def _sent_at(session: Session, edition_id: int) -> datetime | None:
    """When the edition's send started (its first ``edition-send`` event)."""
    found: datetime | None = session.exec(
        select(func.min(Event.at)).where(
            col(Event.kind) == "edition-send", col(Event.edition_id) == edition_id
        )
    ).one()
    return found


def _next_send(session: Session, edition: Edition, after: datetime) -> datetime | None:
    """When the group's next edition started sending, if one did."""
    found: datetime | None = session.exec(
        select(func.min(Event.at)).where(
            col(Event.kind) == "edition-send",
            col(Event.group_id) == edition.group_id,
            col(Event.edition_id) != edition.id,
            col(Event.at) > after,
        )
    ).one()
    return found


def _deliveries(session: Session, edition_id: int) -> dict[str, int]:
    retried = col(Delivery.attempts) > 0
    query = (
        select(Delivery.status, retried, func.count())
        .where(col(Delivery.edition_id) == edition_id)
        .group_by(col(Delivery.status), retried)
    )
    counts: dict[str, int] = {}
    for status, tried, n in session.exec(query):
        if status == DeliveryStatus.QUEUED:
            key = "deferred" if tried else "waiting"
        elif status == DeliveryStatus.SENDING:
            key = "waiting"
        else:
            key = {"sent": "delivered"}.get(str(status), str(status))
        counts[key] = counts.get(key, 0) + int(n)
    return counts


def figures(session: Session, edition: Edition) -> Figures:
    """The edition's figures (see the module docstring); all zero before it is sent."""
    assert edition.id is not None
    counts = _deliveries(session, edition.id)
    hard: set[int | None] = set()
    soft: set[int | None] = set()
    complained: set[int | None] = set()
    events = session.exec(
        select(Event.kind, Event.subscriber_id, Event.detail).where(
            col(Event.edition_id) == edition.id, col(Event.kind).in_(["bounce", "complaint"])
        )
    )
    for kind, subscriber, detail in events:
        if kind == "complaint":
            complained.add(subscriber)
        elif json.loads(detail or "{}").get("verdict") == "hard":
            hard.add(subscriber)
        else:
            soft.add(subscriber)
    unsubscribed = 0
    start = _sent_at(session, edition.id)
    if start is not None:
        query = select(func.count(func.distinct(Event.subscriber_id))).where(
            col(Event.kind) == "unsubscribe", col(Event.group_id) == edition.group_id, col(Event.at) >= start
        )
        until = _next_send(session, edition, start)
        if until is not None:
            query = query.where(col(Event.at) < until)
        unsubscribed = int(session.exec(query).one())
    delivered = counts.get("delivered", 0)
    written = delivered if edition.outbox_only else 0
    return Figures(
        edition.id,
        delivered=delivered - written,
        written=written,
        deferred=counts.get("deferred", 0),
        failed=counts.get("failed", 0),
        skipped=counts.get("skipped", 0),
        waiting=counts.get("waiting", 0),
        bounced_hard=len(hard),
        bounced_soft=len(soft - hard),
        complained=len(complained),
        unsubscribed=unsubscribed,
    )
