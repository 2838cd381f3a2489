"""Where each story came from: one row per source entry, file or editor that brought it.

Merging a story reached through several sources (``merging.py``) keeps every row, so an
item shows all its sources and an editor can split a wrong merge off again.
"""

from sqlmodel import Session, col, select

from newsletter.core import audit
from newsletter.core.errors import InputError, NotFoundError
from newsletter.core.models import Item, ItemStatus, ItemTarget, Provenance
from newsletter.pool.items import canonical_url, fingerprint, get_item, touch


def seen(session: Session, source_id: int, guid: str) -> bool:
    """Whether this source's entry already brought a story (its own, or one it was merged into)."""
    query = select(Provenance.id).where(col(Provenance.source_id) == source_id, col(Provenance.guid) == guid)
    return session.exec(query).first() is not None


def of_item(session: Session, item_id: int) -> list[Provenance]:
    """An item's sources, first first."""
    query = select(Provenance).where(col(Provenance.item_id) == item_id).order_by(col(Provenance.id))
    return list(session.exec(query))


def split(session: Session, item_id: int, provenance_id: int, *, actor: str, source: str = "cli") -> Item:
    """Make an entry merged into an item by resemblance an item of its own again (a wrong merge).

    The new item is a proposal with the entry's own title, link and text, for the same
    groups as the item it leaves; the entry's provenance goes with it, so the source's
    next collect sees it as known and merges nothing again.
    """
    row = session.get(Provenance, provenance_id)
    if row is None or row.item_id != item_id:
        raise NotFoundError(
            f"item #{item_id} has no source #{provenance_id} (see `newsletter items show {item_id}`)"
        )
    if row.merged != "similar":
        why = "it is the item's own" if row.merged is None else "it has the same link as the item"
        raise InputError(f"source #{provenance_id} cannot be split off item #{item_id}: {why}")
    story = get_item(session, item_id)
    mark = fingerprint(row.title, row.url, row.published_at)
    if session.exec(select(Item.id).where(col(Item.fingerprint) == mark)).first() is not None:
        raise InputError(f"source #{provenance_id} is already an item of the pool; nothing was changed")
    item = Item(
        title=row.title,
        url=row.url,
        canonical_url=canonical_url(row.url) if row.url else None,
        fingerprint=mark,
        summary_html=row.summary_html,
        kind=story.kind,
        topic=story.topic,
        language=story.language,
        status=ItemStatus.PROPOSED,
        all_groups=story.all_groups,
        source_id=row.source_id,
        guid=row.guid,
        editor=actor,
        origin=row.origin,
        published_at=row.published_at or story.published_at,
    )
    session.add(item)
    session.flush()
    assert item.id is not None
    for target in session.exec(select(ItemTarget).where(col(ItemTarget.item_id) == item_id)):
        session.add(ItemTarget(item_id=item.id, group_id=target.group_id))
    row.item_id, row.merged, row.similarity = item.id, None, None
    session.add(row)
    touch(story)
    session.add(story)
    audit.record(session, "item-split", actor=actor, source=source, item_id=item_id, into=item.id)
    audit.record(session, "item-add", actor=actor, source=source, item_id=item.id, split_from=item_id)
    return item
