"""Editions: built per group from the item pool, approved, rendered, cancelled.

States: ``draft -> approved -> sending -> sent``, or ``paused`` (the relay kept
failing; a send resumes), ``written`` (sent to the outbox folder only) and
``cancelled``. Sending belongs to the delivery runner (``delivery/runner.py``), which makes the
moves from ``approved`` on. Building takes the approved items meant for the group
that no earlier edition of the group carried; the ``EditionItem(group_id, item_id)``
key makes "never offered twice" a database rule.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core import audit, states
from newsletter.core.counts import delivery_counts
from newsletter.core.errors import (
    NotFoundError,
    NothingToBuild,
    SecondPersonRequired,
    StaleRecord,
    StateError,
)
from newsletter.core.i18n import available_languages, base_language, translations
from newsletter.core.models import (
    MANUAL_SCHEDULE,
    Edition,
    EditionItem,
    EditionStatus,
    Group,
    Item,
    ItemStatus,
    ItemTarget,
    ItemTranslation,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.core.site import get_group
from newsletter.editions.render import EditionContent, ItemImage, Marker, PoolItem, Rendered, Renderer
from newsletter.pool.richtext import markdown_to_html

# `t.colon` is the language's colon: French sets it off with a no-break space.
DEFAULT_SUBJECT = "{{ group.name }}{{ t.colon }} {{ edition.date }}"


def channel(actor: str) -> str:
    """The channel an actor works through: the scheduler, the workspace or the command line."""
    if actor == "scheduler":
        return "scheduler"
    return "web" if actor.startswith("user:") else "cli"


def _record(session: Session, kind: str, edition: Edition, *, actor: str, **detail: Any) -> None:
    """An audit event about an edition, with the actor's channel."""
    source = channel(actor)
    audit.record(
        session, kind, actor=actor, source=source, group_id=edition.group_id, edition_id=edition.id, **detail
    )


def get_edition(session: Session, edition_id: int) -> Edition:
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFoundError("no edition #{id} (see `newsletter editions list`)", id=edition_id)
    return edition


def eligible_items(session: Session, settings: Settings, group: Group) -> list[Item]:
    """Approved items meant for the group (and its topics) that no edition of it carried."""
    targeted = select(ItemTarget.item_id).where(col(ItemTarget.group_id) == group.id)
    carried = select(EditionItem.item_id).where(col(EditionItem.group_id) == group.id)
    query = select(Item).where(
        col(Item.status) == ItemStatus.APPROVED,
        col(Item.all_groups) | col(Item.id).in_(targeted),
        col(Item.id).not_in(carried),
    )
    topics = settings.group(group.slug).topics
    if topics:
        query = query.where(func.lower(col(Item.topic)).in_([t.lower() for t in topics]))
    return list(session.exec(query.order_by(col(Item.published_at).desc(), col(Item.id))))


def build(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    group_slug: str,
    *,
    actor: str,
    schedule: str = MANUAL_SCHEDULE,
    period_key: str | None = None,
    subject_template: str | None = None,
    template: str | None = None,
    allow_empty: bool = False,
    now: datetime | None = None,
) -> Edition:
    """Make a draft edition for the group; raise :class:`NothingToBuild` when nothing waits."""
    now = now or utcnow()
    group = get_group(session, settings, group_slug)
    config = settings.group(group_slug)
    items = eligible_items(session, settings, group)
    if not items and not allow_empty:
        raise NothingToBuild(
            "nothing to build for {group}: no approved item is waiting for it", group=group_slug
        )
    edition = Edition(
        group_id=group.id or 0,
        schedule=schedule,
        period_key=period_key or f"manual:{now.isoformat(timespec='microseconds')}",
        template=template or config.template,
        subject_template=subject_template or config.subject or DEFAULT_SUBJECT,
        status=EditionStatus.DRAFT,
        created_at=now,
        last_changed_by=actor,
    )
    session.add(edition)
    session.flush()
    assert edition.id is not None
    for position, item in enumerate(items):
        session.add(
            EditionItem(
                edition_id=edition.id, item_id=item.id or 0, group_id=group.id or 0, position=position
            )
        )
    session.flush()
    # A draft may be large: the editor previews it and decides. Approving and sending
    # refuse an edition above the limit unless told to go on.
    store_archive(session, settings, renderer, edition, allow_large=True)
    audit.record(
        session,
        "edition-build",
        actor=actor,
        source=schedule,
        group_id=group.id,
        edition_id=edition.id,
        items=len(items),
    )
    return edition


def content(session: Session, settings: Settings, edition: Edition) -> EditionContent:
    """Everything the renderer needs, read from the database."""
    group = session.get(Group, edition.group_id)
    assert group is not None
    assert edition.id is not None
    rows = session.exec(
        select(Item)
        .join(EditionItem, col(EditionItem.item_id) == Item.id)
        .where(col(EditionItem.edition_id) == edition.id)
        .order_by(col(EditionItem.position))
    ).all()
    ids = [item.id for item in rows]
    translated: dict[int, dict[str, tuple[str, str]]] = {}
    for translation in session.exec(select(ItemTranslation).where(col(ItemTranslation.item_id).in_(ids))):
        translated.setdefault(translation.item_id, {})[base_language(translation.language)] = (
            translation.title,
            translation.summary_html,
        )
    items = [
        PoolItem(
            id=i.id or 0,
            title=i.title,
            url=i.url,
            summary_html=i.summary_html,
            kind=i.kind,
            topic=i.topic,
            language=i.language,
            published_at=i.published_at,
            event_start=i.event_start,
            event_end=i.event_end,
            event_place=i.event_place,
            deadline=i.deadline,
            translations=translated.get(i.id or 0, {}),
            image=ItemImage(i.image_name, i.image_width, i.image_height, i.image_alt or "")
            if i.image_name and i.image_width and i.image_height
            else None,
        )
        for i in rows
    ]
    return EditionContent(
        edition_id=edition.id,
        group_slug=group.slug,
        group=settings.group(group.slug),
        subject_template=edition.subject_template or DEFAULT_SUBJECT,
        template=edition.template,
        # The date the group's readers see: built at 00:30 in Berlin is the new day there.
        issued=edition.created_at.astimezone(ZoneInfo(settings.group(group.slug).timezone)).date(),
        items=items,
        intro_html=markdown_to_html(edition.intro_md) if edition.intro_md.strip() else "",
        subjects=subjects_of(edition),
    )


def subjects_of(edition: Edition) -> dict[str, str]:
    """The edition's subject lines by language (empty: the subject template everywhere)."""
    found = json.loads(edition.subjects or "{}")
    return {str(k): str(v) for k, v in found.items() if str(v).strip()} if isinstance(found, dict) else {}


def neutral(rendered: Rendered, settings: Settings) -> tuple[str, str]:
    """HTML and text without anyone's personal links: for the archive and previews."""
    base = settings.site.base_url
    hello = translations(rendered.language).gettext("Hello,")
    values = {
        Marker.GREETING: hello,
        Marker.UNSUBSCRIBE_URL: f"{base}/unsubscribe",
        Marker.PREFERENCES_URL: f"{base}/preferences",
    }
    html, text = rendered.html, rendered.text
    for marker, value in values.items():
        html, text = html.replace(marker.value, value), text.replace(marker.value, value)
    return html, text


def store_archive(
    session: Session, settings: Settings, renderer: Renderer, edition: Edition, *, allow_large: bool = False
) -> Rendered:
    """Render the edition in the group's language and keep its archive copy on the row.

    The email is rendered (its size checked, its warnings returned) and, apart, the copy
    the public archive serves: rendered with ``archive`` so that the template leaves out
    what only a recipient needs; markers a site's template still shows get neutral values.
    """
    config = settings.group(_slug(session, edition))
    edition_content = content(session, settings, edition)
    language = base_language(config.language)
    rendered = renderer.render(edition_content, language, allow_large=allow_large)
    archived = renderer.render(edition_content, language, allow_large=True, archive=True)
    edition.subject = rendered.subject
    edition.html, edition.text = neutral(archived, settings)
    session.add(edition)
    return rendered


def _slug(session: Session, edition: Edition) -> str:
    group = session.get(Group, edition.group_id)
    assert group is not None
    return group.slug


def approve(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    edition_id: int,
    *,
    actor: str,
    allow_large: bool = False,
    version: int | None = None,
) -> tuple[Edition, Rendered]:
    """Re-render a draft with the items as they are now and mark it approved.

    With the group's ``require_second_person``, whoever last changed the draft may not
    approve it (:class:`SecondPersonRequired`). ``version``: the one the approver saw;
    a draft changed since is refused (:class:`StaleRecord`).
    """
    edition = get_edition(session, edition_id)
    if edition.status != EditionStatus.DRAFT:
        raise StateError(
            "edition #{id} is {status}; only a draft can be approved", id=edition_id, status=edition.status
        )
    check_version(edition, version)
    if settings.group(_slug(session, edition)).require_second_person and edition.last_changed_by == actor:
        raise SecondPersonRequired(
            "edition #{id} was last changed by you ({actor}); "
            "this group asks for a second person to approve it",
            id=edition_id,
            actor=actor,
        )
    rendered = store_archive(session, settings, renderer, edition, allow_large=allow_large)
    states.move(edition, EditionStatus.APPROVED)
    edition.approved_at = utcnow()
    edition.version += 1
    _record(session, "edition-approve", edition, actor=actor)
    return edition, rendered


def check_version(edition: Edition, version: int | None) -> None:
    """Refuse a form made from an older state of the edition (None: no form, no check)."""
    if version is not None and version != edition.version:
        if edition.last_changed_by:
            raise StaleRecord(
                "edition #{id} was changed since you opened it (by {who}); reload the page and try again",
                id=edition.id,
                who=edition.last_changed_by,
            )
        raise StaleRecord(
            "edition #{id} was changed since you opened it; reload the page and try again", id=edition.id
        )


def cancel(session: Session, edition_id: int, *, actor: str) -> Edition:
    """Cancel an edition that has not been sent; its items become free for the next one."""
    edition = get_edition(session, edition_id)
    if edition.status in {EditionStatus.SENT, EditionStatus.CANCELLED}:
        raise StateError("edition #{id} is already {status}", id=edition_id, status=edition.status)
    # An edition written to the outbox folder reached nobody: its items go back too.
    sent = 0 if edition.outbox_only else delivery_counts(session, edition_id).get("sent", 0)
    if not sent:
        for link in session.exec(select(EditionItem).where(col(EditionItem.edition_id) == edition_id)):
            session.delete(link)
    states.move(edition, EditionStatus.CANCELLED)
    session.add(edition)
    _record(session, "edition-cancel", edition, actor=actor, already_sent=sent)
    return edition


@dataclass(frozen=True)
class EditionRow:
    id: int
    group: str
    status: str
    subject: str
    schedule: str
    period_key: str
    items: int
    created_at: datetime
    deliveries: dict[str, int] = field(default_factory=dict)


def count_editions(session: Session, settings: Settings, group: str) -> int:
    """How many editions the group has (for a paginated list)."""
    settings.group(group)
    query = (
        select(func.count())
        .select_from(Edition)
        .join(Group, col(Group.id) == Edition.group_id)
        .where(col(Group.slug) == group)
    )
    return int(session.exec(query).one())


def list_editions(
    session: Session,
    settings: Settings,
    *,
    group: str | None = None,
    status: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[EditionRow]:
    """Editions, newest first, with their item and delivery counts; ``limit``/``offset`` for a page."""
    query = select(Edition, Group.slug).join(Group, col(Group.id) == Edition.group_id)
    if group:
        settings.group(group)
        query = query.where(col(Group.slug) == group)
    if status:
        query = query.where(col(Edition.status) == status)
    query = query.order_by(col(Edition.id).desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    rows = []
    for edition, slug in session.exec(query):
        assert edition.id is not None
        items = session.exec(
            select(func.count()).select_from(EditionItem).where(col(EditionItem.edition_id) == edition.id)
        ).one()
        rows.append(
            EditionRow(
                edition.id,
                slug,
                str(edition.status),
                edition.subject,
                edition.schedule,
                edition.period_key,
                int(items),
                edition.created_at,
                delivery_counts(session, edition.id),
            )
        )
    return rows


def render_languages(
    renderer: Renderer, settings: Settings, edition_content: EditionContent, *, allow_large: bool
) -> dict[str, Rendered]:
    """The edition in every language we have strings for, plus the group's own."""
    languages = available_languages() | {base_language(edition_content.group.language)}
    return {
        lang: renderer.render(edition_content, lang, allow_large=allow_large) for lang in sorted(languages)
    }
