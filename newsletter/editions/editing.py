"""Changing a draft edition: its items' order, dropping and adding items, its intro and subjects.

Only a draft changes. Each change names the form's ``version`` (the one the editor
saw): a draft changed since, by another editor or in another tab, is refused with
:class:`StaleRecord` and nothing is written. A change bumps the version, records who
made it (``last_changed_by``, which the four-eyes rule reads), renders the archive copy
again and writes one audit event. An item dropped from a draft is free for the next
edition again; an item added must be one the group could get (``eligible_items``).
"""

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.core import audit
from newsletter.core.errors import InputError, NotFoundError, StateError
from newsletter.core.i18n import available_languages, base_language
from newsletter.core.models import Edition, EditionItem, EditionStatus, Group, Item, utcnow
from newsletter.core.settings import Settings
from newsletter.editions.build import (
    channel,
    check_version,
    content,
    eligible_items,
    get_edition,
    store_archive,
)
from newsletter.editions.render import Renderer

# An intro is a few paragraphs; a subject is one line.
MAX_INTRO = 5_000
MAX_SUBJECT = 200


def draft(session: Session, edition_id: int, version: int | None) -> Edition:
    """The edition, if it is a draft at the version the form showed; else a clear refusal."""
    edition = get_edition(session, edition_id)
    if edition.status != EditionStatus.DRAFT:
        raise StateError(
            "edition #{id} is {status}; only a draft can be changed", id=edition_id, status=edition.status
        )
    check_version(edition, version)
    return edition


def _changed(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    edition: Edition,
    kind: str,
    actor: str,
    **detail: Any,
) -> Edition:
    edition.version += 1
    edition.last_changed_by = actor
    session.flush()
    store_archive(session, settings, renderer, edition, allow_large=True)
    audit.record(
        session,
        kind,
        actor=actor,
        source=channel(actor),
        group_id=edition.group_id,
        edition_id=edition.id,
        **detail,
    )
    return edition


def _links(session: Session, edition_id: int) -> list[EditionItem]:
    return list(
        session.exec(
            select(EditionItem)
            .where(col(EditionItem.edition_id) == edition_id)
            .order_by(col(EditionItem.position), col(EditionItem.item_id))
        )
    )


def items_of(session: Session, edition_id: int) -> list[Item]:
    """The edition's items in their order."""
    return list(
        session.exec(
            select(Item)
            .join(EditionItem, col(EditionItem.item_id) == Item.id)
            .where(col(EditionItem.edition_id) == edition_id)
            .order_by(col(EditionItem.position), col(EditionItem.item_id))
        )
    )


def addable(session: Session, settings: Settings, edition: Edition) -> list[Item]:
    """Approved items the edition's group could carry and that no edition of it offered yet."""
    group = session.get(Group, edition.group_id)
    assert group is not None
    return eligible_items(session, settings, group)


def move(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    edition_id: int,
    item_id: int,
    step: int,
    *,
    version: int | None,
    actor: str,
) -> Edition:
    """Move an item one place up (``step`` -1) or down (+1); at either end it stays."""
    edition = draft(session, edition_id, version)
    links = _links(session, edition_id)
    index = next((i for i, link in enumerate(links) if link.item_id == item_id), None)
    if index is None:
        raise NotFoundError("edition #{id} does not carry item #{item}", id=edition_id, item=item_id)
    other = index + step
    if 0 <= other < len(links):
        links[index], links[other] = links[other], links[index]
    for position, link in enumerate(links):
        link.position = position
        session.add(link)
    return _changed(session, settings, renderer, edition, "edition-reorder", actor, item=item_id, step=step)


def drop(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    edition_id: int,
    item_id: int,
    *,
    version: int | None,
    actor: str,
) -> Edition:
    """Take an item out of the draft; it is free for the group's next edition."""
    edition = draft(session, edition_id, version)
    link = session.get(EditionItem, (edition_id, item_id))
    if link is None:
        raise NotFoundError("edition #{id} does not carry item #{item}", id=edition_id, item=item_id)
    session.delete(link)
    return _changed(session, settings, renderer, edition, "edition-drop", actor, item=item_id)


def add(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    edition_id: int,
    item_id: int,
    *,
    version: int | None,
    actor: str,
) -> Edition:
    """Add an approved item meant for the group that no edition of it offered yet, at the end."""
    edition = draft(session, edition_id, version)
    if item_id not in {item.id for item in addable(session, settings, edition)}:
        raise InputError(
            "item #{item} cannot be added: it is not approved for this group, "
            "or an edition already offered it",
            item=item_id,
        )
    last = session.exec(
        select(func.max(EditionItem.position)).where(col(EditionItem.edition_id) == edition_id)
    ).one()
    session.add(
        EditionItem(
            edition_id=edition_id,
            item_id=item_id,
            group_id=edition.group_id,
            position=(last if last is not None else -1) + 1,
        )
    )
    return _changed(session, settings, renderer, edition, "edition-add", actor, item=item_id)


def write(
    session: Session,
    settings: Settings,
    renderer: Renderer,
    edition_id: int,
    *,
    intro_md: str,
    subjects: Mapping[str, str],
    version: int | None,
    actor: str,
) -> Edition:
    """Set the intro (Markdown) and the subject per language (blank: the group's subject template)."""
    edition = draft(session, edition_id, version)
    intro = intro_md.replace("\r\n", "\n").strip()
    if len(intro) > MAX_INTRO:
        raise InputError(
            "the intro is {length} characters long; keep it under {limit}", length=len(intro), limit=MAX_INTRO
        )
    lines: dict[str, str] = {}
    for language, subject in subjects.items():
        language = base_language(language)
        if language not in available_languages():
            raise InputError(
                "'{language}' is not a language the emails exist in ({known})",
                language=language,
                known=sorted(available_languages()),
            )
        subject = " ".join(subject.split())
        if len(subject) > MAX_SUBJECT:
            raise InputError(
                "the {language} subject is too long; keep it under {limit} characters",
                language=language,
                limit=MAX_SUBJECT,
            )
        if subject:
            lines[language] = subject
    edition.intro_md = intro
    edition.subjects = json.dumps(lines, ensure_ascii=False, sort_keys=True)
    # A subject that does not render (a stray "{{") is refused here, before it is kept.
    edition_content = content(session, settings, edition)
    for language in lines:
        renderer.render(edition_content, language, allow_large=True)
    return _changed(session, settings, renderer, edition, "edition-write", actor, languages=sorted(lines))


def schedule(
    session: Session, edition_id: int, at: datetime | None, *, actor: str, now: datetime | None = None
) -> Edition:
    """Plan the send of an approved edition for ``at`` (UTC), or drop the plan (None)."""
    edition = get_edition(session, edition_id)
    if edition.status != EditionStatus.APPROVED:
        raise StateError(
            "edition #{id} is {status}; only an approved edition can be scheduled",
            id=edition_id,
            status=edition.status,
        )
    if at is not None and at <= (now or utcnow()):
        raise InputError("that moment has passed; choose a time in the future, or send it now")
    edition.scheduled_at = at
    edition.version += 1
    session.add(edition)
    audit.record(
        session,
        "edition-schedule",
        actor=actor,
        source=channel(actor),
        group_id=edition.group_id,
        edition_id=edition.id,
        at=at.isoformat() if at else None,
    )
    return edition
