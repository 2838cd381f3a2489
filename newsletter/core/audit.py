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

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlmodel import Session

from newsletter.core.models import Event, WebhookEvent, utcnow
from newsletter.core.webhookevents import topic_of

EVENT: sa.Table = Event.__table__  # type: ignore[attr-defined]
WEBHOOK_EVENT: sa.Table = WebhookEvent.__table__  # type: ignore[attr-defined]
_NEW_EVENT = sa.insert(EVENT)
_NEW_CAPTURE = sa.insert(WEBHOOK_EVENT)


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


def rows(
    kind: str, actor: str, source: str, ids: dict[str, int | None], detail: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The audit row's values, and the captured webhook event's (None: no topic for this kind)."""
    text = json.dumps(detail, default=str, ensure_ascii=False, sort_keys=True)
    event = {"kind": kind, "actor": actor, "source": source, "detail": text, "at": utcnow(), **ids}
    topic = topic_of(kind, detail)
    if topic is None:
        return event, None
    return event, {"topic": topic, "at": event["at"], "detail": text, **ids}


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
    ids = {"subscriber_id": subscriber_id, "group_id": group_id, "edition_id": edition_id, "item_id": item_id}
    values, captured = rows(kind, actor, source, ids, detail)
    event = Event(**values)
    session.add(event)
    if captured is not None:
        session.add(WebhookEvent(**captured))
    return event


def insert(
    connection: Connection,
    kind: str,
    *,
    actor: str,
    source: str = "",
    subscriber_id: int | None = None,
    group_id: int | None = None,
    **detail: Any,
) -> None:
    """As :func:`record`, in Core statements on ``connection``: for a path that builds no ORM objects."""
    ids: dict[str, int | None] = {"subscriber_id": subscriber_id, "group_id": group_id}
    values, captured = rows(kind, actor, source, ids, detail)
    connection.execute(_NEW_EVENT, values)
    if captured is not None:
        connection.execute(_NEW_CAPTURE, captured)
