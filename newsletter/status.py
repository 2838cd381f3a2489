"""``newsletter status``: what the database holds, counted per group and state."""

from dataclasses import dataclass, field

from sqlalchemy import func
from sqlmodel import Session, col, select

from newsletter.models import Edition, Group, Item, Membership
from newsletter.settings import Settings


@dataclass
class GroupStatus:
    slug: str
    name: str
    language: str
    timezone: str
    members: dict[str, int] = field(default_factory=dict)
    editions: dict[str, int] = field(default_factory=dict)


@dataclass
class SiteStatus:
    site: str
    database: str
    groups: list[GroupStatus]
    items: dict[str, int]


def _by(session: Session, column: object, group_column: object, table: type) -> dict[tuple[int, str], int]:
    query = select(group_column, column, func.count()).select_from(table).group_by(group_column, column)  # type: ignore[call-overload]
    return {(gid, str(status)): n for gid, status, n in session.exec(query)}


def site_status(session: Session, settings: Settings) -> SiteStatus:
    members = _by(session, Membership.status, Membership.group_id, Membership)
    editions = _by(session, Edition.status, Edition.group_id, Edition)
    groups = []
    for group in session.exec(select(Group).order_by(col(Group.slug))):
        if group.slug not in settings.groups:
            continue
        row = GroupStatus(group.slug, group.name, group.language, group.timezone)
        row.members = {s: n for (gid, s), n in members.items() if gid == group.id}
        row.editions = {s: n for (gid, s), n in editions.items() if gid == group.id}
        groups.append(row)
    items = {str(s): n for s, n in session.exec(select(Item.status, func.count()).group_by(Item.status))}
    from sqlalchemy.engine import make_url

    database = make_url(settings.database_url).render_as_string(hide_password=True)
    return SiteStatus(str(settings.site_dir), database, groups, items)
