"""The pool as a signed-in person sees it: propose, edit, review and target within their groups.

The workspace (and the API after it) call these with an :class:`Actor`; each asks the
one permission check (``accounts.permissions``) and then the same functions the CLI
calls (``items.py``), naming the person (``user:EMAIL``) in the audit log.

* ``items.review`` on a group: edit, approve, reject and target any item meant for it.
* ``items.propose`` only (a contributor): propose items to the groups they hold it on,
  see their own proposals, and edit them while they are still proposed. Anyone else's
  item is a :class:`Forbidden` (403); an item not meant for the group, or a group they
  hold nothing on, a :class:`NotFoundError` (404).
* Targeting only ever adds or removes the groups the person holds the permission on;
  the item's other groups stay as they were.
"""

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from newsletter.accounts.permissions import Actor, can, require, require_visible
from newsletter.core.errors import Forbidden, InputError, NotFoundError
from newsletter.core.models import Event, Item, ItemStatus, Source
from newsletter.core.settings import Settings
from newsletter.pool import items as pool
from newsletter.pool.items import ItemDraft

PROPOSE, REVIEW = "items.propose", "items.review"
SOURCE = "web"


def reviews(actor: Actor, group: str) -> bool:
    return can(actor, REVIEW, group)


def own(actor: Actor, item: Item) -> bool:
    """Whether the person wrote the item, in the workspace or through one of their API tokens."""
    return item.editor in actor.identities


def item_for(session: Session, settings: Settings, actor: Actor, group: str, item_id: int) -> Item:
    """The item as ``actor`` may see it under ``group``: 404 if not meant for it, 403 if not theirs."""
    require_visible(actor, group)
    settings.group(group)
    item = session.get(Item, item_id)
    if item is None or not pool.in_group(session, item, group):
        raise NotFoundError("no item #{id} in group {group}", id=item_id, group=group)
    if reviews(actor, group):
        return item
    require(actor, PROPOSE, group)
    if not own(actor, item):
        raise Forbidden("item #{id} is not one of your proposals", id=item_id)
    return item


def may_edit(actor: Actor, group: str, item: Item) -> bool:
    """Reviewers edit any item of the group; a proposer edits their own while it is proposed."""
    if reviews(actor, group):
        return True
    return can(actor, PROPOSE, group) and own(actor, item) and item.status == ItemStatus.PROPOSED


def targetable(actor: Actor, settings: Settings, permission: str) -> list[str]:
    """The groups ``actor`` may target with ``permission`` (what the form offers)."""
    return [slug for slug in settings.groups if can(actor, permission, slug)]


def everywhere(actor: Actor, settings: Settings, permission: str) -> bool:
    """Whether ``actor`` may target every group at once (``*``): only with the permission on all."""
    return len(targetable(actor, settings, permission)) == len(settings.groups)


def retarget(
    current: Collection[str], chosen: Collection[str], editable: Collection[str], every: Collection[str]
) -> list[str] | None:
    """The item's new groups from the ones ticked, or None when nothing changes.

    ``current`` is the item's groups (``["*"]``: every group), ``chosen`` the boxes ticked
    among ``editable`` (``*`` for every group), ``every`` the site's groups. Groups
    outside ``editable`` keep their state.
    """
    outside = set(chosen) - set(editable) - {"*"}
    if outside or ("*" in chosen and set(editable) != set(every)):
        if outside:
            raise Forbidden("you may not target {groups}", groups=sorted(outside))
        raise Forbidden("you may not target every group")
    if "*" in chosen:
        return None if "*" in current else ["*"]
    now = set(every) if "*" in current else set(current)
    wanted = (now - set(editable)) | set(chosen)
    if wanted == now:
        return None
    if not wanted:
        raise InputError("choose at least one group for the item")
    return sorted(wanted)


def propose(session: Session, settings: Settings, actor: Actor, group: str, draft: ItemDraft) -> Item:
    """Put a person's draft in the pool as proposed, meant for the groups they may propose to."""
    require(actor, PROPOSE, group)
    # Nothing is targeted yet, so whatever is ticked (at least this group) is a change.
    targets = retarget(
        [], draft.groups or [group], targetable(actor, settings, PROPOSE), list(settings.groups)
    )
    assert targets is not None
    draft.groups = targets
    draft.origin = SOURCE
    item, created = pool.add_item(session, settings, draft, actor=actor.label)
    if not created:
        if pool.in_group(session, item, group) and reviews(actor, group):
            raise InputError("this story is already in the pool (item #{id}); nothing was added", id=item.id)
        raise InputError("this story is already in the pool; nothing was added")
    return item


def edit(
    session: Session,
    settings: Settings,
    actor: Actor,
    group: str,
    item_id: int,
    changes: Mapping[str, Any],
    *,
    chosen: Collection[str],
    expected: datetime,
) -> Item:
    """Change an item from the workspace form made at version ``expected``."""
    item = item_for(session, settings, actor, group, item_id)
    if not may_edit(actor, group, item):
        raise Forbidden("item #{id} has been reviewed; only an editor may change it now", id=item_id)
    permission = REVIEW if reviews(actor, group) else PROPOSE
    groups = retarget(
        pool.target_slugs(session, item),
        chosen,
        targetable(actor, settings, permission),
        list(settings.groups),
    )
    changed = {name: value for name, value in changes.items() if getattr(item, name) != value}
    if not changed and groups is None:
        return item  # a form sent back as it came: nothing to record
    return pool.edit_item(
        session,
        settings,
        item_id,
        changed,
        actor=actor.label,
        groups=groups,
        source=SOURCE,
        expected=expected,
    )


def decide(
    session: Session,
    settings: Settings,
    actor: Actor,
    group: str,
    item_id: int,
    status: ItemStatus,
    *,
    expected: datetime,
) -> Item:
    """Approve, reject, or send an item back to proposed (``items.review``), from version ``expected``."""
    item_for(session, settings, actor, group, item_id)
    require(actor, REVIEW, group)
    [item] = pool.set_status(session, [item_id], status, actor=actor.label, source=SOURCE, expected=expected)
    return item


@dataclass(frozen=True)
class Change:
    """One line of an item's history: when, what, who (``user:EMAIL``, ``cli:LOGIN``, ``source:NAME``)."""

    at: datetime
    kind: str
    actor: str
    # The fields an edit changed (``groups`` for a change of targets).
    fields: list[str]


def history(session: Session, item: Item) -> list[Change]:
    events = session.exec(
        select(Event).where(Event.item_id == item.id).order_by(col(Event.at), col(Event.id))
    )
    return [Change(e.at, e.kind, e.actor, json.loads(e.detail or "{}").get("fields", [])) for e in events]


def source_of(session: Session, item: Item) -> Source | None:
    return session.get(Source, item.source_id) if item.source_id is not None else None
