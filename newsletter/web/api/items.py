"""The groups a token's user sees, and each group's items: list, read, propose, edit, review, target.

GET   /groups                                   the groups the user holds a permission on
GET   /groups/{slug}/items                      the group's items, newest first (a contributor: their own)
POST  /groups/{slug}/items                      propose an item (items.propose)
GET   /groups/{slug}/items/{item_id}            one item
PATCH /groups/{slug}/items/{item_id}            change it (a reviewer; a contributor, their own proposal)
POST  /groups/{slug}/items/{item_id}/review     approve, reject or back to proposed (items.review)
POST  /groups/{slug}/items/{item_id}/target     the groups it is meant for

The work is ``pool/review.py``'s, the functions the workspace's item pages call, so a
token may do exactly what its user may do on the pages; the audit log names ``token:NAME``.
"""

from datetime import datetime
from typing import Any

from sqlmodel import Session

from newsletter.accounts.permissions import can, visible_groups
from newsletter.core.errors import InputError
from newsletter.core.language import normalize_language
from newsletter.core.models import Item, ItemStatus
from newsletter.core.permissions import PERMISSIONS
from newsletter.pool import items as pool
from newsletter.pool import review
from newsletter.pool.items import ItemDraft, as_utc
from newsletter.web.api.framework import Call, Endpoint, decode_cursor, encode_cursor
from newsletter.web.api.models import (
    GroupList,
    GroupOut,
    ItemCreate,
    ItemEdit,
    ItemFields,
    ItemList,
    ItemOut,
    ItemQuery,
    ItemReview,
    ItemTarget,
)

DECISIONS = {"approve": ItemStatus.APPROVED, "reject": ItemStatus.REJECTED, "propose": ItemStatus.PROPOSED}
ITEM = "/groups/{slug}/items/{item_id}"


def groups(call: Call) -> GroupList:
    settings = call.site.settings
    found = []
    for slug in visible_groups(call.actor, list(settings.groups)):
        config = settings.groups[slug]
        held = sorted(p for p in PERMISSIONS if can(call.actor, p, slug))
        found.append(
            GroupOut(
                slug=slug,
                name=config.name,
                language=config.language,
                timezone=config.timezone,
                permissions=held,
            )
        )
    return GroupList(data=found)


def _out(session: Session, item: Item) -> ItemOut:
    return ItemOut.of(item, pool.target_slugs(session, item))


def list_items(call: Call) -> ItemList:
    query: ItemQuery = call.query
    position = decode_cursor(query.cursor, {"page": int, "size": int})
    page, size = (position["page"], position["size"]) if position else (1, query.limit)
    reviewer = review.reviews(call.actor, call.slug)
    with call.site.transaction() as session:
        found = pool.queue(
            session,
            call.site.settings,
            call.slug,
            status=query.status.value if query.status else None,
            topic=query.topic or None,
            source=query.source or None,
            editor=None if reviewer else sorted(call.actor.identities),
            page=page,
            per_page=size,
        )
        data = [_out(session, item) for item in found.items] if page <= found.pages else []
    following = encode_cursor({"page": page + 1, "size": size}) if page < found.pages else None
    return ItemList(data=data, next_cursor=following)


def get_item(call: Call) -> ItemOut:
    with call.site.transaction() as session:
        item = review.item_for(session, call.site.settings, call.actor, call.slug, call.number("item_id"))
        return _out(session, item)


def _changes(fields: ItemFields, zone_language: str | None) -> dict[str, Any]:
    """The item's columns from the fields that were sent (left out: not changed)."""
    sent = fields.model_fields_set
    changes: dict[str, Any] = {}
    names = {
        "title": "title",
        "url": "url",
        "summary": "summary_md",
        "kind": "kind",
        "topic": "topic",
        "place": "event_place",
        "deadline": "deadline",
    }
    for field, column in names.items():
        if field in sent:
            changes[column] = getattr(fields, field)
    if "summary_md" in changes:
        changes["summary_md"] = (changes["summary_md"] or "").replace("\r\n", "\n")
    for field, column in (("start", "event_start"), ("end", "event_end")):
        if field in sent:
            changes[column] = as_utc(getattr(fields, field), what=f"the {field}")
    if "language" in sent or zone_language is not None:
        try:
            changes["language"] = normalize_language(fields.language or zone_language or "")
        except ValueError as exc:
            raise InputError(str(exc)) from None
    for column in ("title", "summary_md", "topic"):
        if column in changes and changes[column] is None:
            raise InputError(f"{column} cannot be null; leave it out to keep it")
    if "kind" in changes and changes["kind"] is None:
        raise InputError("kind cannot be null; leave it out to keep it")
    return changes


def propose(call: Call) -> ItemOut:
    body: ItemCreate = call.body
    settings = call.site.settings
    changes = _changes(body, None if body.language else settings.groups[call.slug].language)
    changes.setdefault("summary_md", "")
    draft = ItemDraft(**changes, groups=body.groups or None)
    with call.site.transaction() as session:
        item = review.propose(session, settings, call.actor, call.slug, draft)
        return _out(session, item)


def _version(text: str | None, item: Item) -> datetime:
    """The version the caller read, or (none sent) the item's own: the change then wins whatever happened."""
    return pool.parse_version(text) if text else item.updated_at


def edit(call: Call) -> ItemOut:
    body: ItemEdit = call.body
    settings = call.site.settings
    changes = _changes(body, None)
    item_id = call.number("item_id")
    with call.site.transaction() as session:
        item = review.item_for(session, settings, call.actor, call.slug, item_id)
        chosen = body.groups if body.groups is not None else _editable_targets(call, session, item)
        review.edit(
            session,
            settings,
            call.actor,
            call.slug,
            item_id,
            changes,
            chosen=chosen,
            expected=_version(body.version, item),
        )
        return _out(session, item)


def _editable_targets(call: Call, session: Session, item: Item) -> list[str]:
    """The boxes the person's form would show ticked: the item's groups among those they may target."""
    settings = call.site.settings
    permission = review.REVIEW if review.reviews(call.actor, call.slug) else review.PROPOSE
    editable = review.targetable(call.actor, settings, permission)
    current = pool.target_slugs(session, item)
    if "*" in current:
        return ["*"] if review.everywhere(call.actor, settings, permission) else editable
    return [slug for slug in current if slug in editable]


def decide(call: Call) -> ItemOut:
    body: ItemReview = call.body
    item_id = call.number("item_id")
    with call.site.transaction() as session:
        item = review.item_for(session, call.site.settings, call.actor, call.slug, item_id)
        decided = review.decide(
            session,
            call.site.settings,
            call.actor,
            call.slug,
            item_id,
            DECISIONS[body.decision],
            expected=_version(body.version, item),
        )
        return _out(session, decided)


def target(call: Call) -> ItemOut:
    body: ItemTarget = call.body
    item_id = call.number("item_id")
    with call.site.transaction() as session:
        item = review.item_for(session, call.site.settings, call.actor, call.slug, item_id)
        review.edit(
            session,
            call.site.settings,
            call.actor,
            call.slug,
            item_id,
            {},
            chosen=body.groups,
            expected=_version(body.version, item),
        )
        return _out(session, item)


ENDPOINTS = [
    Endpoint(
        "GET",
        "/groups",
        "groups",
        "The groups this token's user may see, with their permissions on each",
        (),
        groups,
        GroupList,
        tag="groups",
    ),
    Endpoint(
        "GET",
        "/groups/{slug}/items",
        "items",
        "The group's items, newest first (a contributor sees their own)",
        ("items.propose", "items.review"),
        list_items,
        ItemList,
        query=ItemQuery,
        tag="items",
    ),
    Endpoint(
        "POST",
        "/groups/{slug}/items",
        "item-propose",
        "Propose an item to the group (and others you may target)",
        "items.propose",
        propose,
        ItemOut,
        body=ItemCreate,
        status=201,
        creates=True,
        tag="items",
        errors=(409,),
    ),
    Endpoint(
        "GET",
        ITEM,
        "item",
        "One item, with its version",
        ("items.propose", "items.review"),
        get_item,
        ItemOut,
        tag="items",
    ),
    Endpoint(
        "PATCH",
        ITEM,
        "item-edit",
        "Change an item (only the fields sent)",
        ("items.propose", "items.review"),
        edit,
        ItemOut,
        body=ItemEdit,
        tag="items",
        errors=(409,),
    ),
    Endpoint(
        "POST",
        ITEM + "/review",
        "item-review",
        "Approve, reject, or send back to proposed",
        "items.review",
        decide,
        ItemOut,
        body=ItemReview,
        tag="items",
        errors=(409,),
    ),
    Endpoint(
        "POST",
        ITEM + "/target",
        "item-target",
        "Set the groups the item is meant for (among yours)",
        ("items.propose", "items.review"),
        target,
        ItemOut,
        body=ItemTarget,
        tag="items",
        errors=(409,),
    ),
]
