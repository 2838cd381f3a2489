"""An edition made ready to go out: rendered once per language, with its per-recipient builder.

The runner prepares an edition once per send (a worker once per edition it works on);
the engine then builds each member's message by splicing the pre-encoded bytes
(``splice.py``) of the copy their chosen topics select (``variants.py``). ``send_test``
builds a single copy, marked [TEST], for an editor.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core import audit
from newsletter.core.errors import InputError
from newsletter.core.i18n import base_language, reader_language
from newsletter.core.models import Edition, Group, Membership, MembershipStatus, Subscriber
from newsletter.core.settings import Settings
from newsletter.core.site import Site
from newsletter.core.tokens import Signer
from newsletter.delivery import splice
from newsletter.delivery.engine import Job
from newsletter.delivery.message import MessageFactory, Recipient
from newsletter.delivery.transports.base import Transport
from newsletter.delivery.variants import Variants
from newsletter.editions.build import channel, content, get_edition, neutral, render_languages
from newsletter.editions.render import Rendered, Renderer


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


@dataclass(frozen=True)
class Prepared:
    """One edition rendered in every language, and the engine's job that builds its messages."""

    edition_id: int
    group_language: str
    parts: Mapping[str, Rendered]
    job: Job
    # The members by reading language (counted when it was prepared).
    audience: dict[str, int] = field(default_factory=dict)
    # The copies by members' topics (variants.py); None for a Prepared made elsewhere.
    variants: Variants | None = None
    # Members of the audience whose chosen topics leave no item of this edition (skipped).
    topic_skips: int = 0

    @property
    def warnings(self) -> tuple[str, ...]:
        return tuple(sorted({w for r in self.parts.values() for w in r.warnings}))

    def previews(self, settings: Settings) -> dict[str, str]:
        """The HTML of each language without anyone's personal links (the outbox writes them)."""
        return {language: neutral(rendered, settings)[0] for language, rendered in self.parts.items()}


def audience(session: Session, edition: Edition, group_language: str) -> dict[str, int]:
    """The group's active members counted by the language they will read."""
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


def topic_choices(session: Session, edition: Edition) -> dict[str, int]:
    """The group's active members who chose topics, counted by their stored choice."""
    query = (
        select(Membership.topics, func.count())
        .where(
            col(Membership.group_id) == edition.group_id,
            col(Membership.status) == MembershipStatus.ACTIVE,
            col(Membership.topics).is_not(None),
        )
        .group_by(col(Membership.topics))
    )
    return {str(stored): int(count) for stored, count in session.exec(query)}


def prepare(site: Site, renderer: Renderer, edition_id: int, *, allow_large: bool = False) -> Prepared:
    """Render the edition in every language and make its message builder."""
    settings = site.settings
    with site.transaction() as session:
        edition = get_edition(session, edition_id)
        group = session.get(Group, edition.group_id)
        assert group is not None
        group_language = base_language(settings.group(group.slug).language)
        edition_content = content(session, settings, edition)
        members = audience(session, edition, group_language)
        choices = topic_choices(session, edition)
    parts = render_languages(renderer, settings, edition_content, allow_large=allow_large)
    # Members who chose topics get the copy for their choice, rendered once per distinct one.
    copies = Variants(settings, renderer, group, edition_content, parts, allow_large=allow_large)
    job = Job(copies.build, group_language, copies.skip)
    skips = sum(count for stored, count in choices.items() if copies.skip(stored))
    return Prepared(edition_id, group_language, parts, job, members, copies, skips)


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
            session,
            "edition-test",
            actor=actor,
            source=channel(actor),
            group_id=group.id,
            edition_id=edition.id,
            to=address.email,
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
