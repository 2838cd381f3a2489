"""What the workspace's people should be told, read from the database's state at each tick.

Nothing else in the pipeline has to announce anything: each tick (the daemon, ``run-due``)
looks at the state and turns what it finds into :class:`~newsletter.core.models.Notice`
rows, one per event and person (``UNIQUE(user_id, key)``), so looking again finds
nothing new. ``notifications.py`` sends them as digests.

| event                                         | key                          | who (permission)       |
|-----------------------------------------------|------------------------------|------------------------|
| a draft edition waits for approval            | ``edition-draft:ID``         | editions.approve       |
| a person's proposed item waits for review     | ``item-proposed:ID``         | items.review           |
| an edition was paused (the relay kept failing) | ``edition-paused:ID:EVENT``  | editions.send          |
| an edition was sent (with its figures)         | ``edition-sent:ID``          | editions.send          |
| a source failed N times in a row              | ``source-failing:ID:SINCE``  | sources.manage (site)  |

A group's event goes to the people whose roles *on that group* give the permission,
and to the site's admins only when the group has nobody such, so a federation's admin
is not told about every group's drafts, and no event is told to nobody. A proposal is
not reported to the person who made it. Sent editions older than
:data:`SENT_HORIZON` are not reported (a site turning notifications on is not told of
its whole past).

A notice is stored as a :class:`~newsletter.core.messages.Message` (its English msgid
and values, ``Notice.message``) and translated when the digest is written, in the
digest's language; ``Notice.text`` keeps the English.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, delete, select

from newsletter.accounts.permissions import Actor, GrantView
from newsletter.accounts.roles import site_roles
from newsletter.core.counts import delivery_counts
from newsletter.core.messages import Label, Message, Param
from newsletter.core.models import (
    Edition,
    EditionStatus,
    Event,
    Grant,
    Group,
    Item,
    ItemStatus,
    ItemTarget,
    Notice,
    NotificationSetting,
    Source,
    User,
)
from newsletter.core.settings import Settings

SENT_HORIZON = timedelta(days=2)
KEEP_SENT = timedelta(days=30)


@dataclass(frozen=True)
class Happened:
    """One event found in the state: its key, its line in a digest, and who should know."""

    key: str
    kind: str
    message: Message
    # The group it is about (None: the site's own things) and the permission that makes one concerned.
    group: str | None
    permission: str
    # The person who caused it (``user:EMAIL``), who needs no telling.
    by: str | None = None


def _editions(session: Session, settings: Settings, slugs: dict[int, str], now: datetime) -> list[Happened]:
    base = settings.site.base_url
    found = []
    waiting = col(Edition.status).in_([EditionStatus.DRAFT, EditionStatus.PAUSED])
    recent = (col(Edition.status) == EditionStatus.SENT) & (col(Edition.sent_at) >= now - SENT_HORIZON)
    rows = session.exec(select(Edition).where(waiting | recent).order_by(col(Edition.id)))
    for edition in rows:
        slug = slugs.get(edition.group_id)
        if slug is None or slug not in settings.groups:
            continue
        facts: dict[str, Param] = {
            "group": settings.groups[slug].name,
            "subject": edition.subject or f"#{edition.id}",
            "page": f"{base}/admin/groups/{slug}/editions",
        }
        if edition.status == EditionStatus.DRAFT:
            text = Message("{group}: the draft edition “{subject}” waits for approval. {page}", facts)
            found.append(Happened(f"edition-draft:{edition.id}", "draft", text, slug, "editions.approve"))
        elif edition.status == EditionStatus.PAUSED:
            # Each pause is its own event: the audit row the runner wrote when it paused.
            pause = session.exec(
                select(func.max(Event.id)).where(
                    col(Event.edition_id) == edition.id, col(Event.kind) == "edition-paused"
                )
            ).one()
            text = Message(
                "{group}: sending “{subject}” was paused, the mail relay kept failing; "
                "resume it once the relay works. {page}",
                facts,
            )
            key = f"edition-paused:{edition.id}:{pause or 0}"
            found.append(Happened(key, "paused", text, slug, "editions.send"))
        else:
            counts = delivery_counts(session, edition.id or 0)
            figures: list[Param] = [
                Message("{state} {count}", state=Label("DeliveryStatus", state), count=n)
                for state, n in sorted(counts.items())
            ]
            text = Message(
                "{group}: “{subject}” was sent ({figures}). {page}",
                facts,
                figures=figures or [Message("no recipients")],
            )
            found.append(Happened(f"edition-sent:{edition.id}", "sent", text, slug, "editions.send"))
    return found


def _proposals(session: Session, settings: Settings, slugs: dict[int, str]) -> list[Happened]:
    base = settings.site.base_url
    items = session.exec(
        select(Item)
        .where(col(Item.status) == ItemStatus.PROPOSED, col(Item.editor).startswith("user:"))
        .order_by(col(Item.id))
    ).all()
    targets: dict[int, list[str]] = {}
    ids = [item.id for item in items]
    for target in session.exec(select(ItemTarget).where(col(ItemTarget.item_id).in_(ids))):
        targets.setdefault(target.item_id, []).append(slugs.get(target.group_id, ""))
    found = []
    for item in items:
        groups = list(settings.groups) if item.all_groups else targets.get(item.id or 0, [])
        who = (item.editor or "").removeprefix("user:")
        for slug in groups:
            if slug in settings.groups:
                text = Message(
                    "{group}: {who} proposed “{title}”; it waits for review. {page}",
                    group=settings.groups[slug].name,
                    who=who,
                    title=item.title,
                    page=f"{base}/admin/groups/{slug}/items",
                )
                key = f"item-proposed:{item.id}"
                found.append(Happened(key, "proposal", text, slug, "items.review", by=item.editor))
    return found


def _sources(session: Session, settings: Settings) -> list[Happened]:
    declared = {source.name for source in settings.sources}
    threshold = settings.notifications.source_failures
    found = []
    for source in session.exec(select(Source).where(col(Source.failures) >= threshold)):
        if source.name not in declared:
            continue
        since = source.last_success_at.isoformat() if source.last_success_at else "never"
        text = Message(
            "the source “{source}” failed {count} times in a row: {error}. {page}",
            source=source.name,
            count=source.failures,
            error=source.last_error or "",
            page=f"{settings.site.base_url}/admin/sources",
        )
        found.append(Happened(f"source-failing:{source.id}:{since}", "source", text, None, "sources.manage"))
    return found


def happened(session: Session, settings: Settings, now: datetime) -> list[Happened]:
    """Every event the state shows now (already told or not)."""
    slugs = {group.id or 0: group.slug for group in session.exec(select(Group))}
    return [
        *_editions(session, settings, slugs, now),
        *_proposals(session, settings, slugs),
        *_sources(session, settings),
    ]


def _people(session: Session, settings: Settings) -> list[Actor]:
    """Every active user, as the permission check sees them."""
    grants: dict[int, list[GrantView]] = {}
    rows = session.exec(
        select(Grant.user_id, Grant.role, Group.slug)
        .select_from(Grant)
        .join(Group, col(Group.id) == Grant.group_id, isouter=True)
    )
    for user_id, role, slug in rows:
        grants.setdefault(user_id, []).append(GrantView(role, slug))
    roles = site_roles(settings)
    return [
        Actor(user.id or 0, user.email, user.name, True, tuple(grants.get(user.id or 0, [])), roles)
        for user in session.exec(select(User).where(col(User.active)))
    ]


def concerned(people: list[Actor], event: Happened) -> list[Actor]:
    """Who should be told: the group's own people with the permission, else the site-wide ones."""
    site_wide = [
        p for p in people if event.permission in replace(p, grants=_site(p)).permissions_on(event.group)
    ]
    if event.group is None:
        chosen = site_wide
    else:
        own = [
            p
            for p in people
            if event.permission in replace(p, grants=_on(p, event.group)).permissions_on(event.group)
        ]
        chosen = own or site_wide
    return [p for p in chosen if p.label != event.by]


def _site(person: Actor) -> tuple[GrantView, ...]:
    return tuple(g for g in person.grants if g.group is None)


def _on(person: Actor, group: str) -> tuple[GrantView, ...]:
    return tuple(g for g in person.grants if g.group == group)


def record(session: Session, settings: Settings, now: datetime) -> int:
    """Turn what the state shows into notices for the people concerned; how many are new.

    Notices sent more than :data:`KEEP_SENT` ago are deleted once their event is over
    (a notice whose event still shows is kept, or it would be told again).
    """
    events = happened(session, settings, now)
    over = col(Notice.sent_at) < now - KEEP_SENT
    session.exec(delete(Notice).where(over, col(Notice.key).not_in({e.key for e in events})))
    if not events:
        return 0
    people = _people(session, settings)
    # Someone who turned notifications off is still the one concerned: their group's
    # events do not fall to the admins, they are simply not told.
    off = set(
        session.exec(select(NotificationSetting.user_id).where(col(NotificationSetting.enabled).is_(False)))
    )
    known = set(
        session.exec(
            select(Notice.user_id, Notice.key).where(col(Notice.key).in_({e.key for e in events}))
        ).all()
    )
    added = 0
    for event in events:
        for person in concerned(people, event):
            if (person.user_id, event.key) in known or person.user_id in off:
                continue
            known.add((person.user_id, event.key))
            session.add(
                Notice(
                    user_id=person.user_id,
                    key=event.key,
                    kind=event.kind,
                    text=str(event.message),
                    message=event.message.to_json(),
                    created_at=now,
                )
            )
            added += 1
    return added


def stored(notice: Notice) -> Message | str:
    """A stored notice as the digest shows it: its message, or the English text of an older row."""
    if notice.message:
        try:
            return Message.from_json(notice.message)
        except ValueError:
            pass
    return notice.text
