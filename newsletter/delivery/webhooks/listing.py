"""The endpoints and their recent deliveries, as ``webhooks list`` and the workspace show them.

An endpoint's view counts its rows per status and lists the latest ones with their
last answer: HTTP status, the start of the body (as text, shortened to
:data:`SHOWN_CHARACTERS`; the page escapes it, the CLI shows control characters as
escapes), or why there was none. Seen for one group, an endpoint is listed only if
it names that group, with only that group's deliveries (and items').
"""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, func, or_, select

from newsletter.core.models import Group, WebhookDelivery
from newsletter.core.sections import WebhookConfig
from newsletter.core.settings import Settings

RECENT = 20
SHOWN_CHARACTERS = 200


@dataclass(frozen=True)
class AttemptView:
    """One delivery as the lists show it."""

    id: int
    message_id: str
    topic: str
    group: str | None
    status: str
    attempts: int
    created_at: datetime
    last_attempt_at: datetime | None
    next_attempt_at: datetime | None
    last_status: int | None
    last_response: str
    last_error: str


@dataclass(frozen=True)
class EndpointView:
    """One ``[[webhooks]]`` endpoint: what it is declared to get, and how its deliveries stand."""

    name: str
    url: str
    events: tuple[str, ...]
    groups: tuple[str, ...]
    allow_private: bool
    secret_from: str
    counts: dict[str, int]
    recent: list[AttemptView]


def endpoints(
    session: Session, settings: Settings, group: str | None = None, recent: int = RECENT
) -> list[EndpointView]:
    """Every endpoint (``group`` None: the site's view) or the ones that name ``group``."""
    slugs = {row.id: row.slug for row in session.exec(select(Group))}
    group_id = next((gid for gid, slug in slugs.items() if slug == group), None)
    views = []
    for hook in settings.webhooks:
        if group is not None and group not in hook.groups:
            continue
        views.append(_view(session, hook, slugs, group, group_id, recent))
    return views


def _view(
    session: Session,
    hook: WebhookConfig,
    slugs: dict[int | None, str],
    group: str | None,
    group_id: int | None,
    recent: int,
) -> EndpointView:
    where = [col(WebhookDelivery.endpoint) == hook.name]
    if group is not None:
        where.append(or_(col(WebhookDelivery.group_id) == group_id, col(WebhookDelivery.group_id).is_(None)))
    counted = session.exec(
        select(WebhookDelivery.status, func.count()).where(*where).group_by(col(WebhookDelivery.status))
    ).all()
    rows = session.exec(
        select(WebhookDelivery).where(*where).order_by(col(WebhookDelivery.id).desc()).limit(recent)
    ).all()
    return EndpointView(
        name=hook.name,
        url=hook.url,
        events=hook.events,
        groups=hook.groups,
        allow_private=hook.allow_private,
        secret_from=hook.secret_env or hook.secret_file or "",
        counts={str(status): int(count) for status, count in counted},
        recent=[_attempt(row, slugs) for row in rows],
    )


def _attempt(row: WebhookDelivery, slugs: dict[int | None, str]) -> AttemptView:
    waiting = row.status == "queued"
    return AttemptView(
        id=row.id or 0,
        message_id=row.message_id,
        topic=row.topic,
        group=slugs.get(row.group_id),
        status=str(row.status),
        attempts=row.attempts,
        created_at=row.created_at,
        last_attempt_at=row.last_attempt_at,
        next_attempt_at=row.next_attempt_at if waiting else None,
        last_status=row.last_status,
        last_response=_shorten(row.last_response),
        last_error=_shorten(row.last_error),
    )


def _shorten(text: str) -> str:
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"
