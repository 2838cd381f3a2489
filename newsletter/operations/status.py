"""``newsletter status``: what the database holds, counted per group and state."""

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func
from sqlalchemy.engine import make_url
from sqlmodel import Session, col, select

from newsletter.core.models import (
    ConfirmationMail,
    Edition,
    EditionStatus,
    Group,
    Item,
    Membership,
    Source,
    utcnow,
)
from newsletter.core.settings import Settings
from newsletter.feedback.figures import figures
from newsletter.scheduling.schedules import load_schedules


@dataclass
class GroupStatus:
    slug: str
    name: str
    language: str
    timezone: str
    members: dict[str, int] = field(default_factory=dict)
    editions: dict[str, int] = field(default_factory=dict)


@dataclass
class SourceStatus:
    name: str
    url: str
    last_fetched_at: datetime | None
    last_error: str | None
    items: int
    # The last fetch that worked, and the failed fetches in a row since.
    last_success_at: datetime | None = None
    failures: int = 0


@dataclass
class ScheduleStatus:
    schedule: str
    group: str
    cron: str
    timezone: str
    next_run: datetime | None
    # "auto" (sent without an editor) or "editor" (the draft waits for approval).
    approval: str = "editor"


@dataclass
class EditionFigures:
    """One sent (or sending) edition's figures (``feedback/figures.py``)."""

    id: int
    group: str
    status: str
    subject: str
    figures: dict[str, int]


# How many of the latest sent or sending editions `status` shows.
RECENT_EDITIONS = 10
_SENT_STATES = [EditionStatus.SENDING, EditionStatus.PAUSED, EditionStatus.SENT, EditionStatus.WRITTEN]


@dataclass
class SiteStatus:
    site: str
    database: str
    groups: list[GroupStatus]
    items: dict[str, int]
    sources: list[SourceStatus] = field(default_factory=list)
    schedules: list[ScheduleStatus] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    # The sign-ups' confirmation emails by state: ``queued`` ones wait for a worker or the daemon.
    confirmations: dict[str, int] = field(default_factory=dict)
    # The latest editions that went out (or are going out), newest first, with their figures.
    editions: list[EditionFigures] = field(default_factory=list)


def _by(session: Session, column: object, group_column: object, table: type) -> dict[tuple[int, str], int]:
    query = select(group_column, column, func.count()).select_from(table).group_by(group_column, column)  # type: ignore[call-overload]
    return {(gid, str(status)): n for gid, status, n in session.exec(query)}


def site_status(session: Session, settings: Settings, *, now: datetime | None = None) -> SiteStatus:
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
    database = make_url(settings.database_url).render_as_string(hide_password=True)
    report = SiteStatus(str(settings.site_dir), database, groups, items)
    report.sources = sources_status(session, settings)
    report.schedules, report.problems = schedules_status(settings, now or utcnow())
    report.confirmations = {
        str(s): n
        for s, n in session.exec(
            select(ConfirmationMail.status, func.count()).group_by(col(ConfirmationMail.status))
        )
    }
    report.editions = _editions(session, settings)
    return report


def _editions(session: Session, settings: Settings) -> list[EditionFigures]:
    query = (
        select(Edition, Group.slug)
        .join(Group, col(Group.id) == Edition.group_id)
        .where(col(Edition.status).in_(_SENT_STATES), col(Group.slug).in_(list(settings.groups)))
        .order_by(col(Edition.id).desc())
        .limit(RECENT_EDITIONS)
    )
    found = []
    for edition, slug in session.exec(query):
        numbers = figures(session, edition).as_dict()
        numbers.pop("edition_id")
        found.append(EditionFigures(edition.id or 0, slug, str(edition.status), edition.subject, numbers))
    return found


def sources_status(session: Session, settings: Settings) -> list[SourceStatus]:
    """Each declared source's health, in the order ``newsletter.toml`` declares them."""
    counts = dict(session.exec(select(Item.source_id, func.count()).group_by(col(Item.source_id))).all())
    rows = {s.name: s for s in session.exec(select(Source))}
    found = []
    for config in settings.sources:
        row = rows.get(config.name)
        found.append(
            SourceStatus(
                config.name,
                config.url,
                row.last_fetched_at if row else None,
                row.last_error if row else None,
                int(counts.get(row.id, 0)) if row else 0,
                row.last_success_at if row else None,
                row.failures if row else 0,
            )
        )
    return found


def schedules_status(settings: Settings, now: datetime) -> tuple[list[ScheduleStatus], list[str]]:
    """Each schedule per group with its next run after ``now``; and the schedule files' problems."""
    from newsletter.scheduling.scheduler import next_run, zone_of

    schedules, problems = load_schedules(settings.site_dir, settings.groups)
    found = []
    for schedule in schedules:
        for group in schedule.groups:
            if group in settings.groups:
                zone = zone_of(schedule, settings, group)
                found.append(
                    ScheduleStatus(
                        schedule.name,
                        group,
                        schedule.cron,
                        str(zone),
                        next_run(schedule, group, settings, now),
                        schedule.approval,
                    )
                )
    return found, [str(p) for p in problems]
