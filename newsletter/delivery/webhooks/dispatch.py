"""Dispatch: each captured event becomes one queued delivery per endpoint that wants it.

An event is deleted in the transaction that queues its deliveries, and only by the
dispatcher whose delete removed it (``rowcount``), so two dispatchers at once (the
daemon and ``newsletter webhooks deliver``) never queue it twice; the
``UNIQUE(endpoint, event_id)`` of the queue holds that promise in the database too.
Events no endpoint wants are deleted all the same: an endpoint added later gets the
events from then on, not the past's.

The body is written here, once per event and endpoint, and never changes: each
retry sends the same bytes under the same ``webhook-id``. It follows the Standard
Webhooks shape ``{"type", "timestamp", "data"}``. A group-scoped endpoint sees only
its own groups: an item's ``groups`` lists only those of them the item is meant for.
"""

import json
import secrets
from collections.abc import Mapping
from typing import Any

from sqlmodel import Session, col, delete, select

from newsletter.core.models import (
    Edition,
    Group,
    Item,
    ItemTarget,
    Membership,
    Subscriber,
    WebhookDelivery,
    WebhookEvent,
)
from newsletter.core.sections import WebhookConfig
from newsletter.core.settings import Settings
from newsletter.core.site import Site

BATCH = 200
# Counts an edition's sent and paused events carry from the audit detail.
EDITION_COUNTS = ("sent", "failed", "skipped")


def dispatch(site: Site, *, batch: int = BATCH) -> int:
    """Queue the deliveries of every captured event, ``batch`` events per transaction; returns how many."""
    queued = 0
    while True:
        with site.transaction() as session:
            events = session.exec(
                select(WebhookEvent)
                .order_by(col(WebhookEvent.id))
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            queued += _dispatch(session, site.settings, events)
        if len(events) < batch:
            return queued


def _dispatch(session: Session, settings: Settings, events: list[WebhookEvent] | Any) -> int:
    slugs = {group.id: group.slug for group in session.exec(select(Group))}
    queued = 0
    for event in events:
        taken = session.execute(delete(WebhookEvent).where(col(WebhookEvent.id) == event.id))
        if getattr(taken, "rowcount", 0) != 1:
            continue
        for hook in settings.webhooks:
            data = _data_for(session, settings, hook, event, slugs)
            if data is None:
                continue
            body = {"type": event.topic, "timestamp": _iso(event), "data": data}
            session.add(
                WebhookDelivery(
                    endpoint=hook.name,
                    event_id=event.id or 0,
                    message_id=f"msg_{secrets.token_urlsafe(18)}",
                    topic=event.topic,
                    group_id=event.group_id,
                    subscriber_id=event.subscriber_id,
                    body=json.dumps(body, ensure_ascii=False, separators=(",", ":"), sort_keys=True),
                    next_attempt_at=event.at,
                )
            )
            queued += 1
    return queued


def _iso(event: WebhookEvent) -> str:
    return event.at.isoformat(timespec="seconds").replace("+00:00", "Z")


def _data_for(
    session: Session,
    settings: Settings,
    hook: WebhookConfig,
    event: WebhookEvent,
    slugs: Mapping[int | None, str],
) -> dict[str, Any] | None:
    """What ``hook`` is told of ``event``, or None when the event is not for it."""
    if not hook.wants(event.topic):
        return None
    data: dict[str, Any] = {"site": settings.site.base_url}
    if event.item_id is not None and event.topic.startswith("item."):
        item = session.get(Item, event.item_id)
        if item is None:
            return None
        meant = _item_groups(session, item, slugs)
        shown = [slug for slug in meant if not hook.groups or slug in hook.groups]
        if not shown:
            return None
        data["item"] = {
            "id": item.id,
            "title": item.title,
            "url": item.url,
            "topic": item.topic,
            "kind": str(item.kind),
            "status": str(item.status),
            "groups": shown,
        }
        return data
    group = slugs.get(event.group_id)
    if group is None or (hook.groups and group not in hook.groups):
        return None
    data["group"] = group
    if event.subscriber_id is not None:
        subscriber = session.get(Subscriber, event.subscriber_id)
        if subscriber is None:
            return None
        membership = session.exec(
            select(Membership).where(
                col(Membership.subscriber_id) == subscriber.id, col(Membership.group_id) == event.group_id
            )
        ).first()
        data["member"] = {
            "email": subscriber.email,
            "name": subscriber.name,
            "language": subscriber.language,
            "status": str(membership.status) if membership else None,
        }
    if event.edition_id is not None:
        edition = session.get(Edition, event.edition_id)
        if edition is None:
            return None
        detail = json.loads(event.detail or "{}")
        data["edition"] = {
            "id": edition.id,
            "subject": edition.subject,
            "status": str(edition.status),
            "schedule": edition.schedule,
            "period_key": edition.period_key,
            **{name: detail[name] for name in EDITION_COUNTS if name in detail},
        }
    return data


def _item_groups(session: Session, item: Item, slugs: Mapping[int | None, str]) -> list[str]:
    if item.all_groups:
        return sorted(slug for slug in slugs.values())
    targets = session.exec(select(ItemTarget.group_id).where(col(ItemTarget.item_id) == item.id)).all()
    return sorted(slugs[group_id] for group_id in targets if group_id in slugs)
