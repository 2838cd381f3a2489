"""What subscribers do for themselves: opt in (double), confirm, unsubscribe, choose, leave.

Every action is authorised by a signed token from an email (``tokens.py``), never by
an address typed into a form, and writes an audit event. The consent record keeps
the time, the source, the IP address and the exact consent text that was shown.
"""

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from newsletter.audience.addresses import parse_address
from newsletter.core import audit, states
from newsletter.core.errors import InputError, InvalidAddress, NotFoundError
from newsletter.core.i18n import base_language, reader_language
from newsletter.core.language import normalize_language
from newsletter.core.models import Delivery, Event, Group, Membership, MembershipStatus, Subscriber, utcnow
from newsletter.core.settings import Settings
from newsletter.core.tokens import TokenData

# Confirmation links expire after two days.
CONFIRM_MAX_AGE = 2 * 24 * 3600


@dataclass(frozen=True)
class Subscription:
    """The result of a sign-up: whom to send a confirmation to, if anyone."""

    subscriber_id: int
    group_id: int
    email: str
    name: str | None
    language: str
    needs_confirmation: bool


def _group(session: Session, slug: str) -> Group:
    group = session.exec(select(Group).where(col(Group.slug) == slug)).one_or_none()
    if group is None:
        raise NotFoundError(f"no group {slug!r}")
    return group


def request_subscription(
    session: Session,
    settings: Settings,
    group_slug: str,
    email: str,
    *,
    name: str | None,
    language: str | None,
    consent_text: str,
    ip: str | None,
) -> Subscription:
    """Record a sign-up as pending; say whether a confirmation email should go out.

    An address that is already an active member gets no email, and the caller shows
    the same page either way, so the form never reveals who is subscribed.
    """
    group = _group(session, group_slug)
    try:
        address = parse_address(email)
    except InvalidAddress as exc:
        raise InputError(f"this is not an address we can send to: {exc}") from None
    if language:
        try:
            language = normalize_language(language)
        except ValueError:
            language = None
    name = " ".join((name or address.display_name or "").split())[:200] or None
    subscriber = session.exec(
        select(Subscriber).where(col(Subscriber.email_key) == address.key)
    ).one_or_none()
    if subscriber is None:
        subscriber = Subscriber(email=address.email, email_key=address.key, name=name, language=language)
        session.add(subscriber)
        session.flush()
    membership = session.exec(
        select(Membership).where(
            col(Membership.subscriber_id) == subscriber.id, col(Membership.group_id) == group.id
        )
    ).one_or_none()
    reader = reader_language(language or subscriber.language, settings.group(group_slug).language)
    assert subscriber.id is not None
    assert group.id is not None
    if membership is not None and membership.status == MembershipStatus.ACTIVE:
        return Subscription(subscriber.id, group.id, subscriber.email, subscriber.name, reader, False)
    now = utcnow()
    if membership is None:
        membership = Membership(
            subscriber_id=subscriber.id, group_id=group.id, status=MembershipStatus.PENDING, source="web"
        )
    # An ended membership keeps its status until the new opt-in is confirmed.
    membership.consent_text, membership.consent_ip, membership.consent_at = consent_text, ip, now
    session.add(membership)
    audit.record(
        session, "consent", actor="web", source=ip or "", subscriber_id=subscriber.id, group_id=group.id
    )
    return Subscription(subscriber.id, group.id, subscriber.email, subscriber.name, reader, True)


def _membership(session: Session, data: TokenData) -> tuple[Subscriber, Membership]:
    subscriber = session.get(Subscriber, data.subscriber_id)
    membership = session.exec(
        select(Membership).where(
            col(Membership.subscriber_id) == data.subscriber_id, col(Membership.group_id) == data.group_id
        )
    ).one_or_none()
    if subscriber is None or membership is None:
        raise NotFoundError("this link no longer matches a subscription")
    return subscriber, membership


def confirm(session: Session, data: TokenData, *, ip: str | None) -> bool:
    """Activate a pending (or ended, re-requested) membership; False if it already was active."""
    subscriber, membership = _membership(session, data)
    if membership.status == MembershipStatus.ACTIVE:
        return False
    now = utcnow()
    states.move(membership, MembershipStatus.ACTIVE, at=now, opt_in=True)
    membership.confirmed_at = now
    membership.bounce_score = 0.0
    session.add(membership)
    audit.record(
        session,
        "confirm",
        actor="web",
        source=ip or "",
        subscriber_id=subscriber.id,
        group_id=membership.group_id,
    )
    return True


def unsubscribe(session: Session, data: TokenData, *, everything: bool, source: str) -> list[str]:
    """End the token's membership (or all of the person's); returns the groups left."""
    subscriber, membership = _membership(session, data)
    query = (
        select(Membership, Group.slug)
        .join(Group, col(Group.id) == Membership.group_id)
        .where(col(Membership.subscriber_id) == subscriber.id)
    )
    if not everything:
        query = query.where(col(Membership.id) == membership.id)
    left = []
    now = utcnow()
    for row, slug in session.exec(query):
        if row.status in {MembershipStatus.ACTIVE, MembershipStatus.PENDING}:
            states.move(row, MembershipStatus.UNSUBSCRIBED, at=now)
            session.add(row)
            audit.record(
                session,
                "unsubscribe",
                actor="subscriber",
                source=source,
                subscriber_id=subscriber.id,
                group_id=row.group_id,
            )
            left.append(slug)
    return left


@dataclass(frozen=True)
class Preferences:
    email: str
    name: str | None
    language: str | None
    groups: dict[str, bool]


def preferences(session: Session, settings: Settings, data: TokenData) -> Preferences:
    subscriber, _ = _membership(session, data)
    active = set(
        session.exec(
            select(Group.slug)
            .join(Membership, col(Membership.group_id) == Group.id)
            .where(
                col(Membership.subscriber_id) == subscriber.id,
                col(Membership.status) == MembershipStatus.ACTIVE,
            )
        )
    )
    return Preferences(
        subscriber.email,
        subscriber.name,
        subscriber.language,
        {slug: slug in active for slug in settings.groups},
    )


def update_preferences(
    session: Session,
    settings: Settings,
    data: TokenData,
    *,
    groups: set[str],
    name: str | None,
    language: str | None,
    consent_text: str | None = None,
    ip: str | None = None,
) -> None:
    """Join and leave groups, change name and language; the token proves the mailbox.

    A list joined here gets its own consent record: the time, the IP address and
    ``consent_text``, the sentence the page showed beside the lists.
    """
    subscriber, _ = _membership(session, data)
    if language:
        try:
            subscriber.language = normalize_language(language)
        except ValueError as exc:
            raise InputError(str(exc)) from None
    subscriber.name = " ".join((name or "").split())[:200] or None
    subscriber.updated_at = utcnow()
    session.add(subscriber)
    now = utcnow()
    for slug in settings.groups:
        group = _group(session, slug)
        row = session.exec(
            select(Membership).where(
                col(Membership.subscriber_id) == subscriber.id, col(Membership.group_id) == group.id
            )
        ).one_or_none()
        wanted = slug in groups
        if wanted and (row is None or row.status != MembershipStatus.ACTIVE):
            if row is None:
                row = Membership(
                    subscriber_id=subscriber.id or 0,
                    group_id=group.id or 0,
                    status=MembershipStatus.ACTIVE,
                    source="web:preferences",
                    status_changed_at=now,
                )
            else:
                # The page was reached from the person's own email: a confirmed opt-in.
                states.move(row, MembershipStatus.ACTIVE, at=now, opt_in=True)
            row.confirmed_at = now
            row.consent_text, row.consent_ip, row.consent_at = consent_text, ip, now
            session.add(row)
            audit.record(
                session,
                "subscribe",
                actor="subscriber",
                source="web:preferences",
                subscriber_id=subscriber.id,
                group_id=group.id,
            )
        elif not wanted and row is not None and row.status == MembershipStatus.ACTIVE:
            states.move(row, MembershipStatus.UNSUBSCRIBED, at=now)
            session.add(row)
            audit.record(
                session,
                "unsubscribe",
                actor="subscriber",
                source="web:preferences",
                subscriber_id=subscriber.id,
                group_id=group.id,
            )
    audit.record(session, "update", actor="subscriber", source="web:preferences", subscriber_id=subscriber.id)


def export(session: Session, data: TokenData) -> dict[str, Any]:
    """Everything held about the person (GDPR access), as JSON-ready data."""
    subscriber, _ = _membership(session, data)
    memberships = session.exec(
        select(Membership, Group.slug)
        .join(Group, col(Group.id) == Membership.group_id)
        .where(col(Membership.subscriber_id) == subscriber.id)
    ).all()
    events = session.exec(
        select(Event).where(col(Event.subscriber_id) == subscriber.id).order_by(col(Event.at))
    )
    deliveries = session.exec(select(Delivery).where(col(Delivery.subscriber_id) == subscriber.id))
    return {
        "email": subscriber.email,
        "name": subscriber.name,
        "language": subscriber.language,
        "created_at": subscriber.created_at.isoformat(),
        "memberships": [
            {
                "group": slug,
                "status": str(m.status),
                "source": m.source,
                "consent_at": m.consent_at.isoformat() if m.consent_at else None,
                "consent_text": m.consent_text,
                "consent_ip": m.consent_ip,
                "confirmed_at": m.confirmed_at.isoformat() if m.confirmed_at else None,
            }
            for m, slug in memberships
        ],
        "events": [{"at": e.at.isoformat(), "kind": e.kind, "source": e.source} for e in events],
        "deliveries": [
            {
                "edition": d.edition_id,
                "status": str(d.status),
                "sent_at": d.sent_at.isoformat() if d.sent_at else None,
            }
            for d in deliveries
        ],
    }


def language_of(
    session: Session, settings: Settings, data: TokenData, *, issued: datetime | None = None
) -> str:
    """The language of the token's subscriber; a token ``issued`` before they existed is refused.

    Such a token was made for someone who has been erased since, whose row id was
    given to the new subscriber (SQLite reuses the highest id after a delete).
    """
    subscriber, membership = _membership(session, data)
    if issued is not None and subscriber.created_at.replace(microsecond=0) > issued:
        raise NotFoundError("this link no longer matches a subscription")
    group = session.get(Group, membership.group_id)
    return reader_language(subscriber.language, settings.group(group.slug).language if group else "en")


__all__ = ["CONFIRM_MAX_AGE", "base_language"]
