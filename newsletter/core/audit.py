"""The audit log: every change to a person or an item writes one :class:`Event` row.

Each row names its actor: ``cli:<login>`` for a command typed at a terminal,
``user:<email>`` for a person signed in to the workspace, ``token:<name>`` for a
script using an API token (token names are unique across the site).

An event that outside systems may subscribe to (``webhookevents.topic_of``) is also
captured as a :class:`WebhookEvent` in the same session, so it commits with the change
or not at all: no webhook is lost to a crash, and none announces a rolled-back change.
"""

import getpass
import json
import os
from typing import Any

from sqlmodel import Session

from newsletter.core.models import Event, WebhookEvent
from newsletter.core.webhookevents import topic_of


def current_actor() -> str:
    """Who is acting: ``cli:<login>`` for a person at a terminal."""
    try:
        login = getpass.getuser()
    except (KeyError, OSError):
        login = os.environ.get("USER", "unknown")
    return f"cli:{login}"


def user_actor(email: str) -> str:
    """Who is acting: ``user:<email>`` for a person signed in to the workspace, ``token:<name>`` for a
    script using an API token (token names are unique across the site)."""
    return f"user:{email}"


def token_actor(name: str) -> str:
    """Who is acting: ``token:<name>`` for a script using one of the JSON API's tokens."""
    return f"token:{name}"


def record(
    session: Session,
    kind: str,
    *,
    actor: str,
    source: str = "",
    subscriber_id: int | None = None,
    group_id: int | None = None,
    edition_id: int | None = None,
    item_id: int | None = None,
    **detail: Any,
) -> Event:
    """Add one audit row to the session (it commits with the change it describes)."""
    event = Event(
        kind=kind,
        actor=actor,
        source=source,
        subscriber_id=subscriber_id,
        group_id=group_id,
        edition_id=edition_id,
        item_id=item_id,
        detail=json.dumps(detail, default=str, ensure_ascii=False, sort_keys=True),
    )
    session.add(event)
    topic = topic_of(kind, detail)
    if topic is not None:
        session.add(
            WebhookEvent(
                topic=topic,
                at=event.at,
                subscriber_id=subscriber_id,
                group_id=group_id,
                item_id=item_id,
                edition_id=edition_id,
                detail=event.detail,
            )
        )
    return event
