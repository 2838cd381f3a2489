"""The shared item pool: queue, edit, approve, reject and target news items.

An item carries its provenance (a ``provenance`` row per source entry, file or editor
that brought it, when published, when it entered the pool). Its fingerprint (the
canonical URL, or the title and date when there is no URL) keeps the same story from
entering the pool twice; entries from sources may also be merged into an item they
closely resemble (``similar.py``).
"""

import hashlib
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import func, update
from sqlmodel import Session, col, select
from w3lib.url import canonicalize_url, url_query_cleaner

from newsletter.core import audit, states
from newsletter.core.errors import InputError, NotFoundError, StaleRecord, TransitionError
from newsletter.core.models import (
    Edition,
    EditionItem,
    EditionStatus,
    Group,
    Item,
    ItemKind,
    ItemStatus,
    ItemTarget,
    ItemTranslation,
    Provenance,
    Source,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.pool import similar
from newsletter.pool.richtext import markdown_to_html, plain_text

# Query parameters that identify a campaign or a click, never the page itself.
TRACKING_PARAMETERS = [
    "utm_source",
    "utm_medium",
    "utm_campaign",
    "utm_term",
    "utm_content",
    "utm_id",
    "fbclid",
    "gclid",
    "dclid",
    "msclkid",
    "mc_cid",
    "mc_eid",
    "_hsenc",
    "_hsmi",
    "mkt_tok",
    "igshid",
    "yclid",
    "ref_src",
]


@dataclass
class Translation:
    title: str
    summary_md: str = ""


@dataclass
class ItemDraft:
    """An item as an editor or a feed describes it, before it enters the pool."""

    title: str
    url: str | None = None
    summary_md: str = ""
    kind: ItemKind = ItemKind.NEWS
    topic: str = ""
    language: str = "en"
    groups: list[str] | None = None
    published_at: datetime | None = None
    event_start: datetime | None = None
    event_end: datetime | None = None
    event_place: str | None = None
    deadline: date | None = None
    translations: dict[str, Translation] = field(default_factory=dict)
    origin: str = "cli"
    # Feeds bring HTML (already sanitised) instead of Markdown, and their own identity.
    summary_html: str | None = None
    source_id: int | None = None
    guid: str | None = None
    # An image for the item: a URL, or a file (absolute path) named by a Markdown item;
    # ``collecting/images.py`` fetches, resizes and attaches it once the item is stored.
    image: str | None = None
    image_alt: str | None = None

    def check(self) -> None:
        """Refuse what would make a broken email: raise :class:`InputError`."""
        if not self.title.strip():
            raise InputError("an item needs a title")
        if self.url and not _is_web_url(self.url):
            raise InputError(
                "the item URL '{url}' must be a web address starting with http:// or https://", url=self.url
            )
        if self.event_end and self.event_start and self.event_end < self.event_start:
            raise InputError("the event ends before it starts")
        if self.kind == ItemKind.EVENT and not self.event_start:
            raise InputError("an event needs a start (e.g. --start 2026-12-03T14:00+01:00)")
        if self.kind == ItemKind.SURVEY and not self.deadline:
            raise InputError("a survey needs an answer deadline (e.g. --deadline 2027-01-15)")


def _is_web_url(url: str) -> bool:
    # Schemes and host names are case-insensitive: HTTPS://EPO.org is a fine link.
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        return False


def canonical_url(url: str) -> str:
    """The URL with tracking parameters, fragment and spelling differences removed."""
    return canonicalize_url(url_query_cleaner(url, TRACKING_PARAMETERS, remove=True))


def fingerprint(title: str, url: str | None, published: datetime | None) -> str:
    if url:
        basis = "url:" + canonical_url(url)
    else:
        day = published.date().isoformat() if published else ""
        basis = "title:" + " ".join(title.casefold().split()) + "|" + day
    return hashlib.sha256(basis.encode()).hexdigest()


def as_utc(value: date | datetime | None, *, what: str) -> datetime | None:
    """Dates become midnight UTC; datetimes must say their offset."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        return datetime.combine(value, time(), tzinfo=UTC)
    if value.tzinfo is None:
        raise InputError(
            "{what} {value} has no time zone; add an offset such as +01:00",
            what=what,
            value=value.isoformat(),
        )
    return value.astimezone(UTC)


def _groups(session: Session, settings: Settings, slugs: Sequence[str] | None) -> list[Group] | None:
    if not slugs or "*" in slugs:
        return None
    for slug in slugs:
        settings.group(slug)
    rows = list(session.exec(select(Group).where(col(Group.slug).in_(list(slugs)))))
    return sorted(rows, key=lambda g: g.slug)


def _provenance(
    session: Session, item: Item, draft: ItemDraft, *, merged: str | None = None, score: float | None = None
) -> None:
    assert item.id is not None
    session.add(
        Provenance(
            item_id=item.id,
            source_id=draft.source_id,
            guid=draft.guid[:1000] if draft.guid else None,
            origin=draft.origin[:200],
            url=draft.url,
            title=draft.title.strip(),
            summary_html=draft.summary_html if draft.summary_html is not None else item.summary_html,
            published_at=draft.published_at or item.published_at,
            merged=merged,
            similarity=None if score is None else round(score, 3),
        )
    )
    session.flush()


def add_item(
    session: Session,
    settings: Settings,
    draft: ItemDraft,
    *,
    actor: str,
    approve: bool = False,
    stories: similar.StoryIndex | None = None,
) -> tuple[Item, bool]:
    """Put a draft into the pool; returns ``(item, created)`` (False: it was already there).

    Already there: the same canonical URL (or title and day), or, given the recent
    ``stories`` (entries from sources), an item of the last weeks telling the same story
    (:mod:`similar`). A source's entry merged so is kept in the item's provenance.
    """
    draft.check()
    mark = fingerprint(draft.title, draft.url, draft.published_at)
    existing = session.exec(select(Item).where(Item.fingerprint == mark)).one_or_none()
    if existing is not None:
        if draft.source_id is not None:
            _provenance(session, existing, draft, merged="url")
        return existing, False
    new_profile = None
    if stories is not None:
        text = plain_text(draft.summary_html if draft.summary_html is not None else draft.summary_md)
        new_profile = similar.profile(draft.title, text, draft.language)
        match = stories.find(new_profile, draft.published_at)
        if match is not None:
            story, score = get_item(session, match[0]), match[1]
            _provenance(session, story, draft, merged="similar", score=score)
            audit.record(
                session,
                "item-merge",
                actor=actor,
                source=draft.origin,
                item_id=story.id,
                similarity=round(score, 3),
            )
            return story, False
    targets = _groups(session, settings, draft.groups)
    item = Item(
        title=draft.title.strip(),
        url=draft.url,
        canonical_url=canonical_url(draft.url) if draft.url else None,
        fingerprint=mark,
        summary_md=draft.summary_md,
        summary_html=draft.summary_html
        if draft.summary_html is not None
        else markdown_to_html(draft.summary_md),
        source_id=draft.source_id,
        guid=draft.guid,
        kind=draft.kind,
        topic=draft.topic,
        language=draft.language,
        status=ItemStatus.APPROVED if approve else ItemStatus.PROPOSED,
        all_groups=targets is None,
        editor=actor,
        origin=draft.origin,
        published_at=draft.published_at or utcnow(),
        event_start=draft.event_start,
        event_end=draft.event_end,
        event_place=draft.event_place,
        deadline=draft.deadline,
    )
    session.add(item)
    session.flush()
    assert item.id is not None
    _provenance(session, item, draft)
    if stories is not None and new_profile is not None:
        stories.add(item.id, new_profile, item.published_at)
    _set_targets(session, item, targets)
    for language, translation in draft.translations.items():
        session.add(
            ItemTranslation(
                item_id=item.id,
                language=language,
                title=translation.title,
                summary_md=translation.summary_md,
                summary_html=markdown_to_html(translation.summary_md),
            )
        )
    audit.record(
        session, "item-add", actor=actor, source=draft.origin, item_id=item.id, status=str(item.status)
    )
    return item, True


def refresh_from_source(session: Session, item: Item, draft: ItemDraft, *, actor: str) -> bool:
    """Bring a still-proposed item up to date with a newer text of its article.

    True when it changed. An item someone approved, rejected or sent is left as it was
    reviewed; its version moves on a change, so an editor's form made from the older
    text is refused as stale rather than overwriting the newer one.
    """
    if item.status != ItemStatus.PROPOSED:
        return False
    changes = {"title": draft.title.strip(), "summary_html": draft.summary_html or ""}
    fields = sorted(name for name, value in changes.items() if getattr(item, name) != value)
    if not fields:
        return False
    for name in fields:
        setattr(item, name, changes[name])
    touch(item)
    session.add(item)
    audit.record(session, "item-update", actor=actor, source=draft.origin, item_id=item.id, fields=fields)
    return True


def _set_targets(session: Session, item: Item, groups: list[Group] | None) -> None:
    for old in session.exec(select(ItemTarget).where(ItemTarget.item_id == item.id)):
        session.delete(old)
    item.all_groups = groups is None
    for group in groups or []:
        session.add(ItemTarget(item_id=item.id or 0, group_id=group.id or 0))


def get_item(session: Session, item_id: int) -> Item:
    item = session.get(Item, item_id)
    if item is None:
        raise NotFoundError("no item #{id} (see `newsletter items list`)", id=item_id)
    return item


def target_slugs(session: Session, item: Item) -> list[str]:
    if item.all_groups:
        return ["*"]
    query = (
        select(Group.slug)
        .join(ItemTarget, col(ItemTarget.group_id) == Group.id)
        .where(ItemTarget.item_id == item.id)
    )
    return sorted(session.exec(query))


def translations(session: Session, item: Item) -> list[ItemTranslation]:
    query = select(ItemTranslation).where(ItemTranslation.item_id == item.id)
    return list(session.exec(query.order_by(col(ItemTranslation.language))))


# Editions that will still be sent: an item they carry goes out with them whatever its status.
UNSENT = (EditionStatus.DRAFT, EditionStatus.APPROVED, EditionStatus.SENDING, EditionStatus.PAUSED)


def version(item: Item) -> str:
    """The item's version as a form carries it (its ``updated_at``), to refuse a stale form."""
    return item.updated_at.isoformat()


def parse_version(text: str) -> datetime:
    """A version read back from a form; anything else is an :class:`InputError`."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise InputError("the form has no valid version; reload the page and try again") from None
    if value.tzinfo is None:
        raise InputError("the form has no valid version; reload the page and try again")
    return value


def touch(item: Item) -> datetime:
    """A new ``updated_at``, always later than the last one, so every change gives a new version."""
    item.updated_at = max(utcnow(), item.updated_at + timedelta(microseconds=1))
    return item.updated_at


def claim_version(session: Session, item: Item, expected: datetime) -> None:
    """Refuse (:class:`StaleRecord`) unless the item is still at version ``expected``; else take it.

    One conditional UPDATE both checks and moves the version, so of two forms sent at the
    same moment from the same version only one passes (PostgreSQL holds the row until the
    first commits, then finds the version moved; SQLite writes one at a time).
    """
    following = max(utcnow(), expected + timedelta(microseconds=1))
    result = session.execute(
        update(Item)
        .where(col(Item.id) == item.id, col(Item.updated_at) == expected)
        .values(updated_at=following)
    )
    if getattr(result, "rowcount", 0) != 1:
        raise StaleRecord(
            "item #{id} was changed by someone else since this page was loaded; "
            "nothing was changed: reload the page to see their change, then try again",
            id=item.id,
        )
    item.updated_at = following


def set_status(
    session: Session,
    item_ids: Iterable[int],
    status: ItemStatus,
    *,
    actor: str,
    source: str = "cli",
    expected: datetime | None = None,
) -> list[Item]:
    """Approve or reject items; every id must exist and every move be legal, or nothing changes.

    An approved item that an unsent edition carries stays approved: that edition would
    send it anyway, so rejecting it there would be a change that does not happen.
    ``expected`` (one item only: a form's version) refuses the change if the item moved since.
    """
    items = [get_item(session, item_id) for item_id in item_ids]
    if expected is not None:
        if len(items) != 1:
            raise ValueError("expected is a version of one item")
        claim_version(session, items[0], expected)
    for item in items:
        if not states.allowed(item.status, status):
            states.move(item, status)  # raises TransitionError, changing nothing
        if item.status == ItemStatus.APPROVED and status != ItemStatus.APPROVED:
            carrier = session.exec(
                select(Edition)
                .join(EditionItem, col(EditionItem.edition_id) == Edition.id)
                .where(col(EditionItem.item_id) == item.id, col(Edition.status).in_(UNSENT))
                .order_by(col(Edition.id))
            ).first()
            if carrier is not None:
                raise TransitionError(
                    "item #{id} is approved and edition #{edition} ({state}) carries it; "
                    "it cannot become {status} unless that edition is cancelled first "
                    "(newsletter editions cancel {edition}); nothing was changed",
                    id=item.id,
                    edition=carrier.id,
                    state=carrier.status,
                    status=status,
                )
    for item in items:
        if states.move(item, status):
            touch(item)
            session.add(item)
            audit.record(session, f"item-{status}", actor=actor, source=source, item_id=item.id)
    return items


EDITABLE = {
    "title",
    "url",
    "summary_md",
    "kind",
    "topic",
    "language",
    "published_at",
    "event_start",
    "event_end",
    "event_place",
    "deadline",
    "image_alt",
}


def edit_item(
    session: Session,
    settings: Settings,
    item_id: int,
    changes: dict[str, Any],
    *,
    actor: str,
    groups: Sequence[str] | None = None,
    source: str = "cli",
    expected: datetime | None = None,
) -> Item:
    """Change an item's fields and, when ``groups`` is given, its targeting.

    ``expected`` is the version the form was made from (:func:`version`): if someone
    changed the item since, :class:`StaleRecord` is raised and nothing changes.
    """
    item = get_item(session, item_id)
    unknown = set(changes) - EDITABLE
    if unknown:
        raise InputError("cannot edit {fields}", fields=sorted(unknown))
    if expected is not None:
        claim_version(session, item, expected)
    for name, value in changes.items():
        setattr(item, name, value)
    draft = ItemDraft(
        title=item.title,
        url=item.url,
        kind=item.kind,
        event_start=item.event_start,
        event_end=item.event_end,
        deadline=item.deadline,
    )
    draft.check()
    if "summary_md" in changes:
        item.summary_html = markdown_to_html(item.summary_md)
    if "url" in changes:
        item.canonical_url = canonical_url(item.url) if item.url else None
    mark = fingerprint(item.title, item.url, item.published_at)
    if mark != item.fingerprint:
        # The identity follows the edit, so the corrected story cannot be queued again.
        clash = session.exec(select(Item).where(Item.fingerprint == mark, Item.id != item.id)).first()
        if clash is not None:
            raise InputError(
                "item #{id} is already this story ({title}); nothing was changed",
                id=clash.id,
                title=clash.title,
            )
        item.fingerprint = mark
    fields = sorted(changes)
    if groups is not None:
        _set_targets(session, item, _groups(session, settings, groups))
        fields.append("groups")
    touch(item)
    session.add(item)
    audit.record(session, "item-edit", actor=actor, source=source, item_id=item.id, fields=fields)
    return item


def _filtered(
    query: Any,
    settings: Settings,
    *,
    status: str | None,
    group: str | None,
    topic: str | None,
    source: str | None = None,
    editor: str | Collection[str] | None = None,
) -> Any:
    if status:
        query = query.where(Item.status == status)
    if topic:
        query = query.where(col(Item.topic).ilike(topic))
    if source:
        query = query.where(col(Item.source_id).in_(select(Source.id).where(Source.name == source)))
    if editor:
        # One person may have written under several labels (``user:EMAIL``, their tokens).
        names = [editor] if isinstance(editor, str) else list(editor)
        query = query.where(col(Item.editor).in_(names))
    if group:
        settings.group(group)
        targeted = (
            select(ItemTarget.item_id)
            .join(Group, col(Group.id) == ItemTarget.group_id)
            .where(Group.slug == group)
        )
        query = query.where(col(Item.all_groups) | col(Item.id).in_(targeted))
    return query


NEWEST_FIRST = (col(Item.published_at).desc(), col(Item.id).desc())


def list_items(
    session: Session,
    settings: Settings,
    *,
    status: str | None = None,
    group: str | None = None,
    topic: str | None = None,
) -> list[Item]:
    """Items newest first, optionally only one status, one topic, or those meant for a group."""
    query = select(Item).order_by(*NEWEST_FIRST)
    return list(session.exec(_filtered(query, settings, status=status, group=group, topic=topic)))


@dataclass(frozen=True)
class QueuePage:
    """One page of a group's queue: its items, and how many match in all."""

    items: list[Item]
    total: int
    page: int
    per_page: int

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))


def queue(
    session: Session,
    settings: Settings,
    group: str,
    *,
    status: str | None = None,
    topic: str | None = None,
    source: str | None = None,
    editor: str | Collection[str] | None = None,
    page: int = 1,
    per_page: int = 50,
) -> QueuePage:
    """The items meant for ``group`` (or every group), newest first, one page at a time.

    ``source`` keeps one source's items (by name); ``editor`` one person's (``user:EMAIL``,
    or every label they wrote under: their API tokens too).
    """
    filters: dict[str, Any] = {
        "status": status,
        "group": group,
        "topic": topic,
        "source": source,
        "editor": editor,
    }
    total = session.exec(_filtered(select(func.count()).select_from(Item), settings, **filters)).one()
    # Past the last page (an old link, a typed number) shows the last one.
    page = min(max(1, page), max(1, -(-int(total) // per_page)))
    query = _filtered(select(Item), settings, **filters).order_by(*NEWEST_FIRST)
    rows = list(session.exec(query.offset((page - 1) * per_page).limit(per_page)))
    return QueuePage(rows, int(total), page, per_page)


def in_group(session: Session, item: Item, group: str) -> bool:
    """Whether the item is meant for ``group`` (targeted at it, or at every group)."""
    slugs = target_slugs(session, item)
    return "*" in slugs or group in slugs


def topics(session: Session) -> list[str]:
    """Every topic in the pool, for the queue's filter."""
    return sorted(t for t in session.exec(select(Item.topic).distinct()) if t)


def source_names(session: Session) -> list[str]:
    return sorted(session.exec(select(Source.name)))
