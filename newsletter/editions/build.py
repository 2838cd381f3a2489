"""Editions: built per group from the item pool, approved, rendered and sent.

States: ``draft -> approved -> sending -> sent``, or ``paused`` (the relay kept
failing; ``send`` resumes) and ``cancelled``. Building takes the approved items
meant for the group that no earlier edition of the group carried; the
``EditionItem(group_id, item_id)`` key makes "never offered twice" a database rule.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core import audit
from newsletter.core.errors import InputError, NotFoundError, NothingToBuild, StateError
from newsletter.core.i18n import available_languages, base_language, reader_language, translations
from newsletter.core.models import (
    Edition,
    EditionItem,
    EditionStatus,
    Group,
    Item,
    ItemStatus,
    ItemTarget,
    ItemTranslation,
    Membership,
    MembershipStatus,
    Subscriber,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.core.site import Site, get_group
from newsletter.core.tokens import Signer
from newsletter.delivery import outbox, splice
from newsletter.delivery.engine import DeliveryReport, drain
from newsletter.delivery.message import MessageFactory, Recipient
from newsletter.delivery.transports import Transport
from newsletter.editions.render import EditionContent, Marker, PoolItem, Rendered, Renderer

# `t.colon` is the language's colon: French sets it off with a no-break space.
DEFAULT_SUBJECT = "{{ group.name }}{{ t.colon }} {{ edition.date }}"


def _record(session: Session, kind: str, edition: Edition, *, actor: str, **detail: Any) -> None:
    """An audit event about an edition; the channel is the scheduler's or the command line's."""
    source = "scheduler" if actor == "scheduler" else "cli"
    audit.record(
        session, kind, actor=actor, source=source, group_id=edition.group_id, edition_id=edition.id, **detail
    )


def message_factory(
    settings: Settings,
    group: Group,
    edition_id: int,
    parts: Mapping[str, Rendered],
    *,
    subject_prefix: str = "",
) -> MessageFactory:
    """The per-recipient message builder for one edition of one group."""
    return MessageFactory(
        settings,
        Signer(settings.signing_key),
        edition_id=edition_id,
        group_id=group.id or 0,
        group_slug=group.slug,
        group_name=group.name,
        parts=parts,
        subject_prefix=subject_prefix,
    )


def get_edition(session: Session, edition_id: int) -> Edition:
    edition = session.get(Edition, edition_id)
    if edition is None:
        raise NotFoundError(f"no edition #{edition_id} (see `newsletter editions list`)")
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
    schedule: str = "manual",
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
        raise NothingToBuild(f"nothing to build for {group_slug}: no approved item is waiting for it")
    edition = Edition(
        group_id=group.id or 0,
        schedule=schedule,
        period_key=period_key or f"manual:{now.isoformat(timespec='microseconds')}",
        template=template or config.template,
        subject_template=subject_template or config.subject or DEFAULT_SUBJECT,
        status=EditionStatus.DRAFT,
        created_at=now,
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
    _store_archive(session, settings, renderer, edition, allow_large=True)
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
    )


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


def _store_archive(
    session: Session, settings: Settings, renderer: Renderer, edition: Edition, *, allow_large: bool = False
) -> Rendered:
    config = settings.group(_slug(session, edition))
    rendered = renderer.render(
        content(session, settings, edition), base_language(config.language), allow_large=allow_large
    )
    edition.subject = rendered.subject
    edition.html, edition.text = neutral(rendered, settings)
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
) -> tuple[Edition, Rendered]:
    """Re-render a draft with the items as they are now and mark it approved."""
    edition = get_edition(session, edition_id)
    if edition.status != EditionStatus.DRAFT:
        raise StateError(f"edition #{edition_id} is {edition.status}; only a draft can be approved")
    rendered = _store_archive(session, settings, renderer, edition, allow_large=allow_large)
    edition.status = EditionStatus.APPROVED
    edition.approved_at = utcnow()
    _record(session, "edition-approve", edition, actor=actor)
    return edition, rendered


def cancel(session: Session, edition_id: int, *, actor: str) -> Edition:
    """Cancel an edition that has not been sent; its items become free for the next one."""
    edition = get_edition(session, edition_id)
    if edition.status in {EditionStatus.SENT, EditionStatus.CANCELLED}:
        raise StateError(f"edition #{edition_id} is already {edition.status}")
    sent = outbox.counts(session, edition_id).get("sent", 0)
    if not sent:
        for link in session.exec(select(EditionItem).where(col(EditionItem.edition_id) == edition_id)):
            session.delete(link)
    edition.status = EditionStatus.CANCELLED
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


def list_editions(
    session: Session, settings: Settings, *, group: str | None = None, status: str | None = None
) -> list[EditionRow]:
    query = select(Edition, Group.slug).join(Group, col(Group.id) == Edition.group_id)
    if group:
        settings.group(group)
        query = query.where(col(Group.slug) == group)
    if status:
        query = query.where(col(Edition.status) == status)
    rows = []
    for edition, slug in session.exec(query.order_by(col(Edition.id).desc())):
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
                outbox.counts(session, edition.id),
            )
        )
    return rows


class Progress(Protocol):
    def start(self, total: int) -> None: ...
    def advance(self, count: int) -> None: ...


@dataclass
class SendResult:
    edition_id: int
    status: str
    report: DeliveryReport
    totals: dict[str, int]
    warnings: Sequence[str] = ()
    languages: dict[str, int] = field(default_factory=dict)
    dry_run: bool = False


def render_languages(
    renderer: Renderer, settings: Settings, edition_content: EditionContent, *, allow_large: bool
) -> dict[str, Rendered]:
    """The edition in every language we have strings for, plus the group's own."""
    languages = available_languages() | {base_language(edition_content.group.language)}
    return {
        lang: renderer.render(edition_content, lang, allow_large=allow_large) for lang in sorted(languages)
    }


def _audience(session: Session, edition: Edition, group_language: str) -> dict[str, int]:
    query = (
        select(Subscriber.language, func.count())
        .join(Membership, col(Membership.subscriber_id) == Subscriber.id)
        .where(
            col(Membership.group_id) == edition.group_id, col(Membership.status) == MembershipStatus.ACTIVE
        )
        .group_by(col(Subscriber.language))
    )
    languages: dict[str, int] = {}
    for language, count in session.exec(query):
        reader = reader_language(language, group_language)
        languages[reader] = languages.get(reader, 0) + int(count)
    return languages


def send(
    site: Site,
    renderer: Renderer,
    transport: Transport,
    edition_id: int,
    *,
    actor: str,
    dry_run: bool = False,
    allow_large: bool = False,
    progress: Progress | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> SendResult:
    """Send an approved edition (or resume a sending or paused one) to every active member.

    When ``should_stop`` says yes (the daemon got SIGTERM) the batch in hand is finished
    and the edition stays ``sending``; the next ``send`` or tick resumes it.
    """
    settings = site.settings
    with site.transaction() as session:
        edition = get_edition(session, edition_id)
        if edition.status == EditionStatus.DRAFT and not dry_run:
            # A dry run may count a draft's audience: it sends nothing.
            raise StateError(
                f"edition #{edition_id} is a draft; approve it first "
                f"(`newsletter editions approve {edition_id}`)"
            )
        if edition.status in {EditionStatus.SENT, EditionStatus.CANCELLED}:
            raise StateError(f"edition #{edition_id} is already {edition.status}; nothing to send")
        group = session.get(Group, edition.group_id)
        assert group is not None
        group_language = base_language(settings.group(group.slug).language)
        edition_content = content(session, settings, edition)
        audience = _audience(session, edition, group_language)
    parts = render_languages(renderer, settings, edition_content, allow_large=allow_large)
    warnings = tuple(sorted({w for r in parts.values() for w in r.warnings}))
    if dry_run:
        return SendResult(
            edition_id,
            str(edition.status),
            DeliveryReport(),
            {"would send": sum(audience.values())},
            warnings,
            audience,
            dry_run=True,
        )
    with site.transaction() as session:
        edition = get_edition(session, edition_id)
        if edition.status == EditionStatus.APPROVED:
            queued = outbox.enqueue(session, edition)
            _record(session, "edition-send", edition, actor=actor, queued=queued)
        else:
            outbox.release_stale(session, edition_id)
            _record(session, "edition-resume", edition, actor=actor)
        edition.status = EditionStatus.SENDING
        session.add(edition)
        due = outbox.counts(session, edition_id).get("queued", 0)
    factory = message_factory(settings, group, edition_id, parts)
    transport.begin(edition_id, {lang: neutral(r, settings)[0] for lang, r in parts.items()})
    if progress is not None:
        progress.start(due)
    try:
        report = drain(
            site,
            edition,
            factory,
            transport,
            group_language=group_language,
            progress=progress.advance if progress else None,
            should_stop=should_stop,
        )
    finally:
        transport.close()
    with site.transaction() as session:
        edition = get_edition(session, edition_id)
        totals = outbox.counts(session, edition_id)
        if report.paused:
            edition.status = EditionStatus.PAUSED
        elif not totals.get("queued") and not totals.get("sending"):
            edition.status = EditionStatus.SENT
            edition.sent_at = utcnow()
        session.add(edition)
        _record(
            session,
            f"edition-{edition.status}",
            edition,
            actor=actor,
            sent=report.sent,
            failed=report.failed,
            skipped=report.skipped,
        )
    return SendResult(edition_id, str(edition.status), report, totals, warnings, audience)


def send_test(
    site: Site,
    renderer: Renderer,
    transport: Transport,
    edition_id: int,
    to: str,
    *,
    actor: str,
    language: str | None = None,
    allow_large: bool = True,
) -> str:
    """Send one copy, marked [TEST], to an address; nothing is recorded as delivered."""
    from newsletter.audience.addresses import parse_address
    from newsletter.core.errors import InvalidAddress

    try:
        address = parse_address(to)
    except InvalidAddress as exc:
        raise InputError(f"{to!r} is not a usable address: {exc}") from None
    settings = site.settings
    with site.transaction() as session:
        edition = get_edition(session, edition_id)
        group = session.get(Group, edition.group_id)
        assert group is not None
        edition_content = content(session, settings, edition)
        audit.record(
            session, "edition-test", actor=actor, source="cli", group_id=group.id, edition_id=edition.id
        )
    reader = reader_language(language, settings.group(group.slug).language)
    rendered = renderer.render(edition_content, reader, allow_large=allow_large)
    factory = message_factory(settings, group, edition_id, {reader: rendered}, subject_prefix="[TEST] ")
    message = splice.builder(factory)(Recipient(0, address.email, address.display_name, reader))
    try:
        transport.send(message)
    finally:
        transport.close()
    return message.message_id
