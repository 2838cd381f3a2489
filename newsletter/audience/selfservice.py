"""What subscribers do for themselves: opt in (double), confirm, unsubscribe, choose, leave.

Every action is authorised by a signed token from an email (``tokens.py``), never by
an address typed into a form, and writes an audit event. Every consent asked for is
kept (:class:`~newsletter.core.models.Consent`, append-only): the time, the source,
the IP address and the exact consent text that was shown. A sign-up queues its
confirmation email (:class:`~newsletter.core.models.ConfirmationMail`), which the
worker or the daemon sends (``delivery/confirmations.py``); the link in it works
once, and never after the membership has changed since the sign-up.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Engine
from sqlmodel import Session, col, select, update

from newsletter.audience import topics
from newsletter.audience.addresses import Address, clean_name, limit_key, parse_address
from newsletter.core import audit, states
from newsletter.core.db import database_error, single_statement
from newsletter.core.errors import BadToken, InputError, InvalidAddress, NotFoundError
from newsletter.core.i18n import base_language, reader_language
from newsletter.core.language import normalize_language
from newsletter.core.messages import reason
from newsletter.core.models import (
    ConfirmationMail,
    Consent,
    Delivery,
    DeliveryStatus,
    Event,
    Group,
    Membership,
    MembershipStatus,
    Subscriber,
    UTCDateTime,
    search_text,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.core.tokens import TokenData

GROUP: sa.Table = Group.__table__  # type: ignore[attr-defined]
SUBSCRIBER: sa.Table = Subscriber.__table__  # type: ignore[attr-defined]
MEMBERSHIP: sa.Table = Membership.__table__  # type: ignore[attr-defined]
CONSENT: sa.Table = Consent.__table__  # type: ignore[attr-defined]
CONFIRMATION_MAIL: sa.Table = ConfirmationMail.__table__  # type: ignore[attr-defined]
# The step-by-step sign-up's statements, compiled once and cached (_sign_up_step_by_step).
_GROUP_ID = sa.select(GROUP.c.id).where(GROUP.c.slug == sa.bindparam("slug"))
_FIND_SUBSCRIBER = sa.select(SUBSCRIBER.c.id).where(SUBSCRIBER.c.email_key == sa.bindparam("key"))
_NEW_SUBSCRIBER = sa.insert(SUBSCRIBER).returning(SUBSCRIBER.c.id)
_FIND_MEMBERSHIP = sa.select(MEMBERSHIP.c.id).where(
    MEMBERSHIP.c.subscriber_id == sa.bindparam("subscriber_id"),
    MEMBERSHIP.c.group_id == sa.bindparam("group_id"),
)
_NEW_MEMBERSHIP = sa.insert(MEMBERSHIP)
_NEW_CONSENT = sa.insert(CONSENT).returning(CONSENT.c.id)
_NEW_CONFIRMATION = sa.insert(CONFIRMATION_MAIL)

# Confirmation links expire after two days.
CONFIRM_MAX_AGE = 2 * 24 * 3600
USED_LINK = (
    "this confirmation link was already used, or the subscription changed since it was sent; "
    "sign up again to get a new one"
)


@dataclass(frozen=True)
class Subscription:
    """Whom a confirmation email goes to, and for which consent request (``consent_id``)."""

    subscriber_id: int
    group_id: int
    email: str
    name: str | None
    language: str
    needs_confirmation: bool
    consent_id: int | None = None


def _group(session: Session, slug: str) -> Group:
    group = session.exec(select(Group).where(col(Group.slug) == slug)).one_or_none()
    if group is None:
        raise NotFoundError("no group '{group}'", group=slug)
    return group


def sign_up_address(email: str) -> Address:
    """The address a sign-up is for; one we cannot send to is an :class:`InputError`."""
    try:
        return parse_address(email)
    except InvalidAddress as exc:
        raise InputError("this is not an address we can send to: {reason}", reason=exc.msg) from None


def sign_up_limit_key(address: Address) -> str:
    """The key a sign-up for ``address`` counts against in the per-address rate limit.

    ``a+news@example.org`` and ``A@Example.org`` are one mailbox for the limit (never
    for storage).
    """
    return limit_key(address)


def request_subscription(
    engine: Engine,
    group_slug: str,
    address: Address,
    *,
    name: str | None,
    language: str | None,
    consent_text: str,
    ip: str | None,
    source: str = "web",
) -> int:
    """Record a sign-up and queue its confirmation email, committed; returns the consent request's id.

    ``source`` says where the request came from, kept on the membership and the consent:
    ``web`` (our sign-up page), ``embed:FORM`` or ``json:FORM`` (a group's own website).

    Every address takes the same path: a consent request is appended, a newcomer gets a
    pending membership, and a :class:`ConfirmationMail` is queued. Whether the email
    goes (an active member gets none) is decided when it is sent
    (``delivery/confirmations.py``), so neither the page nor its timing tells who is
    subscribed. An existing membership is left as it is: its status, and the consent
    in force, change only when the new request is confirmed.

    All of it commits, or none of it: a :class:`DatabaseError` means nothing was stored.
    Two sign-ups of the same new address at once (a double click on the button) both
    succeed.
    """
    values = _sign_up_values(
        group_slug, address, name=name, language=language, text=consent_text, ip=ip, source=source
    )
    try:
        try:
            consent_id = _sign_up(engine, values)
        except sa.exc.IntegrityError:
            # PostgreSQL: another sign-up of this address committed the subscriber after
            # this statement looked for it (SQLite's writers take turns: BEGIN IMMEDIATE).
            # Nothing of this one was kept; once more finds that subscriber. A browser
            # shows the answer to the last click, so that must not be an error.
            consent_id = _sign_up(engine, values)
    except sa.exc.SQLAlchemyError as exc:
        raise database_error(exc) from exc
    if consent_id is None:
        raise NotFoundError("no group '{group}'", group=group_slug)
    return int(consent_id)


def _sign_up(engine: Engine, values: dict[str, Any]) -> int | None:
    """One attempt at the sign-up, committed; the consent request's id, None if the group is gone."""
    if engine.dialect.name == "postgresql":
        with single_statement(engine) as connection:
            found: int | None = connection.execute(_sign_up_at_once(), values).scalar()
            return found
    with engine.begin() as connection:
        return _sign_up_step_by_step(connection, values)


def _sign_up_values(
    group_slug: str,
    address: Address,
    *,
    name: str | None,
    language: str | None,
    text: str,
    ip: str | None,
    source: str,
) -> dict[str, Any]:
    """The values a sign-up stores, checked and cut to their columns' sizes."""
    if language:
        try:
            language = normalize_language(language)
        except ValueError:
            language = None
    name = (clean_name(name) or clean_name(address.display_name) or "")[:200] or None
    ip = ip[:45] if ip else None
    return {
        "slug": group_slug,
        "email": address.email,
        "email_key": address.key,
        "name": name,
        "language": language,
        "search_key": search_text(address.email, name),
        "now": utcnow(),
        "status": MembershipStatus.PENDING,
        "source": source,
        "text": text,
        "ip": ip,
        "event_source": ip or "",
    }


def _sign_up_step_by_step(connection: sa.Connection, values: dict[str, Any]) -> int | None:
    """The sign-up in a statement per row, in the caller's transaction (SQLite: no round trips).

    Core statements compiled once, not ORM objects: building, flushing and committing six
    ORM objects was most of a sign-up's CPU time, and of the time it held SQLite's write
    lock (docs/performance.md).
    """
    group_id: int | None = connection.execute(_GROUP_ID, values).scalar()
    if group_id is None:
        return None
    now = values["now"]
    subscriber_id = connection.execute(_FIND_SUBSCRIBER, {"key": values["email_key"]}).scalar()
    if subscriber_id is None:
        subscriber = {k: values[k] for k in ("email", "email_key", "name", "language", "search_key")}
        subscriber_id = connection.execute(
            _NEW_SUBSCRIBER, {**subscriber, "created_at": now, "updated_at": now}
        ).scalar_one()
    ids = {"subscriber_id": subscriber_id, "group_id": group_id}
    asked = {"source": values["source"], "ip": values["ip"]}
    if connection.execute(_FIND_MEMBERSHIP, ids).first() is None:
        connection.execute(
            _NEW_MEMBERSHIP,
            {
                **ids,
                "status": values["status"],
                "source": values["source"],
                "consent_text": values["text"],
                "consent_ip": values["ip"],
                "consent_at": now,
                "status_changed_at": now,
                "created_at": now,
            },
        )
    consent_id: int = connection.execute(
        _NEW_CONSENT, {**ids, **asked, "at": now, "text": values["text"]}
    ).scalar_one()
    connection.execute(
        _NEW_CONFIRMATION,
        {**ids, "consent_id": consent_id, "language": values["language"], "queued_at": now, "due_at": now},
    )
    audit.insert(connection, "consent", actor="web", source=values["event_source"], **ids)
    return consent_id


# The whole sign-up as one PostgreSQL statement (the rows of _sign_up_step_by_step).
_SIGN_UP_AT_ONCE = """
WITH g AS (SELECT id FROM "group" WHERE slug = :slug),
found AS (SELECT id FROM subscriber WHERE email_key = :email_key),
added AS (
    INSERT INTO subscriber (email, email_key, name, language, search_key, created_at, updated_at)
    SELECT :email, :email_key, :name, :language, :search_key, :now, :now
    WHERE EXISTS (SELECT FROM g) AND NOT EXISTS (SELECT FROM found)
    RETURNING id
),
s AS (SELECT id FROM found UNION ALL SELECT id FROM added),
joined AS (
    INSERT INTO membership (subscriber_id, group_id, status, source, consent_text, consent_ip,
        consent_at, status_changed_at, bounce_score, created_at)
    SELECT s.id, g.id, :status, :source, :text, :ip, :now, :now, 0, :now FROM s, g
    ON CONFLICT (subscriber_id, group_id) DO NOTHING
),
asked AS (
    INSERT INTO consent (subscriber_id, group_id, at, source, text, ip)
    SELECT s.id, g.id, :now, :source, :text, :ip FROM s, g
    RETURNING id, subscriber_id, group_id
),
queued AS (
    INSERT INTO confirmation_mail (consent_id, subscriber_id, group_id, language, status, queued_at,
        due_at, attempts)
    SELECT id, subscriber_id, group_id, :language, :queued, :now, :now, 0 FROM asked
),
logged AS (
    INSERT INTO event (at, kind, actor, source, subscriber_id, group_id, detail)
    SELECT :now, :kind, :actor, :event_source, subscriber_id, group_id, :event_detail FROM asked
){capture}
SELECT id FROM asked
"""
_CAPTURE = """,
captured AS (
    INSERT INTO webhook_event (topic, at, subscriber_id, group_id, detail)
    SELECT :topic, :now, subscriber_id, group_id, :captured_detail FROM asked
)"""


@functools.cache
def _sign_up_at_once() -> sa.TextClause:
    """The whole sign-up as one PostgreSQL statement: the rows :func:`_sign_up_step_by_step` writes.

    SQL by hand: SQLAlchemy's Core builds INSERT ... SELECT inside WITH only awkwardly,
    and SQLite runs none of it. ``tests/test_signup_statement.py`` checks that both ways
    store the same rows, so a column added to a model and not here fails there. Each
    step reads what the one before returned: no group, no rows at all; the membership
    is added only if there is none (nor a concurrent sign-up's).
    """
    event, captured = audit.rows("consent", "web", "", {}, {})
    constants: list[sa.BindParameter[Any]] = [sa.bindparam(name, event[name]) for name in ("kind", "actor")]
    constants.append(sa.bindparam("event_detail", event["detail"]))
    if captured is not None:
        constants.append(sa.bindparam("topic", captured["topic"]))
        constants.append(sa.bindparam("captured_detail", captured["detail"]))
    statement = _SIGN_UP_AT_ONCE.format(capture=_CAPTURE if captured is not None else "")
    return sa.text(statement).bindparams(
        sa.bindparam("now", type_=UTCDateTime()),
        sa.bindparam("status", type_=MEMBERSHIP.c.status.type),
        sa.bindparam("queued", DeliveryStatus.QUEUED, type_=CONFIRMATION_MAIL.c.status.type),
        *constants,
    )


def confirmation_for(
    session: Session, settings: Settings, mail: ConfirmationMail
) -> tuple[Subscription, str] | None:
    """Whom the queued confirmation ``mail`` goes to, and the group's slug; None when it should not go.

    It does not go when the membership is already active, or when the request was
    confirmed or overtaken (the membership changed since it was made).
    """
    subscriber = session.get(Subscriber, mail.subscriber_id)
    consent = session.get(Consent, mail.consent_id)
    group = session.get(Group, mail.group_id)
    membership = session.exec(
        select(Membership).where(
            col(Membership.subscriber_id) == mail.subscriber_id, col(Membership.group_id) == mail.group_id
        )
    ).one_or_none()
    if subscriber is None or consent is None or group is None or membership is None:
        return None
    if group.slug not in settings.groups:
        return None
    if membership.status == MembershipStatus.ACTIVE or _overtaken(consent, membership):
        return None
    reader = reader_language(mail.language or subscriber.language, settings.group(group.slug).language)
    assert subscriber.id is not None
    subscription = Subscription(
        subscriber.id, group.id or 0, subscriber.email, subscriber.name, reader, True, consent.id
    )
    return subscription, group.slug


def _overtaken(consent: Consent, membership: Membership) -> bool:
    """Whether the request was confirmed already, or the membership changed after it was made."""
    return consent.confirmed_at is not None or membership.status_changed_at > consent.at


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
    """Confirm the token's consent request; False if the membership already was active.

    A link works once, and only while nothing has happened to the membership since the
    request it answers: after an unsubscribe (or a bounce, a complaint) it is refused
    with a :class:`BadToken`, so an old link never undoes a later unsubscribe. A link
    from before consent requests were kept (no ``c`` in it) may only activate a
    pending membership.
    """
    subscriber, membership = _membership(session, data)
    consent_id = data.extra.get("c")
    consent = session.get(Consent, consent_id) if isinstance(consent_id, int) else None
    if consent is not None and (consent.subscriber_id, consent.group_id) != (
        subscriber.id,
        membership.group_id,
    ):
        raise NotFoundError("this link no longer matches a subscription")
    if membership.status == MembershipStatus.ACTIVE:
        return False
    if consent is None:
        if consent_id is not None or membership.status != MembershipStatus.PENDING:
            raise BadToken(USED_LINK)
    elif _overtaken(consent, membership):
        raise BadToken(USED_LINK)
    now = utcnow()
    if consent is not None:
        # Two clicks at once: only the one whose update finds the request unconfirmed goes on.
        claimed = session.execute(
            update(Consent)
            .where(col(Consent.id) == consent.id, col(Consent.confirmed_at).is_(None))
            .values(confirmed_at=now)
        )
        if getattr(claimed, "rowcount", 0) != 1:
            raise BadToken(USED_LINK)
        membership.consent_text, membership.consent_ip, membership.consent_at = (
            consent.text,
            consent.ip,
            consent.at,
        )
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
    # Per group: the topics it offers, each with whether the member gets it (audience/topics.py);
    # a member with no choice gets them all.
    topics: dict[str, list[tuple[str, bool]]] = field(default_factory=dict)


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
    chosen_by_group = dict(
        session.exec(
            select(Group.slug, Membership.topics)
            .join(Membership, col(Membership.group_id) == Group.id)
            .where(col(Membership.subscriber_id) == subscriber.id)
        ).all()
    )
    choice: dict[str, list[tuple[str, bool]]] = {}
    for slug in settings.groups:
        offered = topics.offered(session, settings, _group(session, slug))
        chosen = topics.parse(chosen_by_group.get(slug))
        choice[slug] = [(topic, chosen is None or topics.key(topic) in chosen) for topic in offered]
    return Preferences(
        subscriber.email,
        subscriber.name,
        subscriber.language,
        {slug: slug in active for slug in settings.groups},
        choice,
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
    chosen_topics: Mapping[str, list[str]] | None = None,
) -> None:
    """Join and leave groups, change name and language, choose topics; the token proves the mailbox.

    A list joined here gets its own consent record: the time, the IP address and
    ``consent_text``, the sentence the page showed beside the lists. ``chosen_topics``
    (by group slug) replaces the member's choice of topics in each group it names
    (``audience/topics.py``: none or all of them is everything).
    """
    subscriber, _ = _membership(session, data)
    if language:
        try:
            subscriber.language = normalize_language(language)
        except ValueError as exc:
            raise InputError(reason(exc)) from None
    subscriber.name = (clean_name(name) or "")[:200] or None
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
            # A fresh opt-in starts a fresh bounce record, as a confirmed sign-up does.
            row.bounce_score = 0.0
            row.consent_text, row.consent_ip, row.consent_at = consent_text, ip, now
            session.add(row)
            session.add(
                Consent(
                    subscriber_id=row.subscriber_id,
                    group_id=row.group_id,
                    at=now,
                    source="web:preferences",
                    text=consent_text,
                    ip=ip,
                    confirmed_at=now,
                )
            )
            audit.record(
                session,
                "subscribe",
                actor="subscriber",
                source="web:preferences",
                subscriber_id=subscriber.id,
                group_id=group.id,
            )
        if wanted and row is not None and chosen_topics is not None and slug in chosen_topics:
            choice = topics.stored(chosen_topics[slug], topics.offered(session, settings, group))
            if choice != row.topics:
                row.topics = choice
                session.add(row)
                audit.record(
                    session,
                    "topics",
                    actor="subscriber",
                    source="web:preferences",
                    subscriber_id=subscriber.id,
                    group_id=group.id,
                    count=len(topics.parse(choice) or ()),
                )
        if not wanted and row is not None and row.status == MembershipStatus.ACTIVE:
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
    consents = session.exec(
        select(Consent, Group.slug)
        .join(Group, col(Group.id) == Consent.group_id)
        .where(col(Consent.subscriber_id) == subscriber.id)
        .order_by(col(Consent.id))
    ).all()
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
                "topics": sorted(topics.parse(m.topics) or ()),
            }
            for m, slug in memberships
        ],
        "consents": [
            {
                "group": slug,
                "at": c.at.isoformat(),
                "source": c.source,
                "text": c.text,
                "ip": c.ip,
                "confirmed_at": c.confirmed_at.isoformat() if c.confirmed_at else None,
            }
            for c, slug in consents
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


def refuse_stale(subscriber: Subscriber, issued: datetime) -> None:
    """NotFoundError for a token ``issued`` before its subscriber existed.

    Such a token was made for someone who has been erased since, whose row id was
    given to the new subscriber (SQLite reuses the highest id after a delete). The web
    pages and the List-Unsubscribe mailto: both ask this.
    """
    if subscriber.created_at.replace(microsecond=0) > issued:
        raise NotFoundError("this link no longer matches a subscription")


def language_of(
    session: Session, settings: Settings, data: TokenData, *, issued: datetime | None = None
) -> str:
    """The language of the token's subscriber; a token ``issued`` before they existed is refused."""
    subscriber, membership = _membership(session, data)
    if issued is not None:
        refuse_stale(subscriber, issued)
    group = session.get(Group, membership.group_id)
    return reader_language(subscriber.language, settings.group(group.slug).language if group else "en")


__all__ = ["CONFIRM_MAX_AGE", "base_language"]
