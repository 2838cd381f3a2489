"""The site-wide pages' library: sources with their health, schedules with their last edition.

The workspace's sources and schedules pages (``web/admin/sources.py``, ``schedules.py``)
show what ``newsletter status`` counts, with what each row is declared as in the site
folder; "Fetch now" is ``newsletter collect --source NAME``: the same call, the same safe
fetcher (``collecting/fetch.py``), with the person who asked in the audit log.
"""

from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

from newsletter.collecting.collect import collect
from newsletter.collecting.fetch import Fetcher
from newsletter.collecting.sources import SourceReport
from newsletter.core import audit
from newsletter.core.errors import NotFoundError
from newsletter.core.models import Edition, Group
from newsletter.core.settings import Settings, SourceConfig
from newsletter.core.site import Site
from newsletter.operations.status import ScheduleStatus, SourceStatus, schedules_status, sources_status


@dataclass(frozen=True)
class SourceView:
    """A source as declared (``config``) and as it fared (``health``)."""

    config: SourceConfig
    health: SourceStatus


def sources(session: Session, settings: Settings) -> list[SourceView]:
    """Every declared source with its health, in declaration order."""
    return [
        SourceView(config, health)
        for config, health in zip(settings.sources, sources_status(session, settings), strict=True)
    ]


def fetch_now(site: Site, name: str, *, actor: str, fetcher: Fetcher | None = None) -> SourceReport:
    """Collect one source now (as ``newsletter collect --source NAME``) and log who asked."""
    if name not in {source.name for source in site.settings.sources}:
        raise NotFoundError(f"no source named {name!r} in {site.settings.config_file}")
    [report] = collect(site, names=[name], fetcher=fetcher)
    with site.transaction() as session:
        audit.record(
            session,
            "source-fetch",
            actor=actor,
            source="web",
            name=name,
            added=report.added,
            error=report.error,
        )
    return report


@dataclass(frozen=True)
class LastEdition:
    id: int
    subject: str
    status: str
    created_at: datetime


@dataclass(frozen=True)
class ScheduleView:
    """One schedule for one group: its next run, and the edition it built last."""

    status: ScheduleStatus
    last: LastEdition | None


def schedules(
    session: Session, settings: Settings, now: datetime, groups: list[str]
) -> tuple[list[ScheduleView], list[str]]:
    """The schedules of ``groups`` (those the person may see); and the schedule files' problems."""
    found, problems = schedules_status(settings, now)
    ids = {g.slug: g.id for g in session.exec(select(Group))}
    views = []
    for row in found:
        if row.group not in groups:
            continue
        edition = session.exec(
            select(Edition)
            .where(col(Edition.group_id) == ids.get(row.group), col(Edition.schedule) == row.schedule)
            .order_by(col(Edition.created_at).desc(), col(Edition.id).desc())
            .limit(1)
        ).first()
        views.append(ScheduleView(row, _last(edition) if edition is not None else None))
    return views, problems


@dataclass(frozen=True)
class GroupSummary:
    """What waits in one group, for the dashboard."""

    slug: str
    next_run: datetime | None
    items_waiting: int  # proposals waiting for review
    drafts: list[LastEdition]  # drafts waiting for approval
    last_sent: LastEdition | None
    last_figures: dict[str, int]
    failing_sources: list[str]  # sources for the group that failed their last fetch


def group_summaries(
    session: Session, settings: Settings, slugs: list[str], now: datetime
) -> dict[str, GroupSummary]:
    """The dashboard's lines for each of ``slugs``: next run, what waits, the last send, failing sources.

    The schedule files and the sources' health are read once for all the groups.
    """
    schedules = schedules_status(settings, now)[0]
    failing = [
        source
        for source, health in zip(settings.sources, sources_status(session, settings), strict=True)
        if health.failures
    ]
    return {slug: _summary(session, settings, slug, schedules, failing) for slug in slugs}


def _summary(
    session: Session,
    settings: Settings,
    slug: str,
    schedules: list[ScheduleStatus],
    failing: list[SourceConfig],
) -> GroupSummary:
    from newsletter.core.models import EditionStatus, ItemStatus
    from newsletter.feedback.figures import figures
    from newsletter.pool.items import queue

    group = session.exec(select(Group).where(col(Group.slug) == slug)).one()
    runs = [row.next_run for row in schedules if row.group == slug and row.next_run]
    waiting = queue(session, settings, slug, status=ItemStatus.PROPOSED.value, per_page=1).total
    editions = select(Edition).where(col(Edition.group_id) == group.id)
    drafts = session.exec(
        editions.where(col(Edition.status) == EditionStatus.DRAFT).order_by(col(Edition.id).desc()).limit(5)
    ).all()
    sent = session.exec(
        editions.where(col(Edition.status).in_([EditionStatus.SENT, EditionStatus.WRITTEN]))
        .order_by(col(Edition.id).desc())
        .limit(1)
    ).first()
    numbers = figures(session, sent).as_dict() if sent is not None else {}
    numbers.pop("edition_id", None)
    return GroupSummary(
        slug,
        min(runs) if runs else None,
        waiting,
        [_last(edition) for edition in drafts],
        _last(sent) if sent is not None else None,
        {name: count for name, count in numbers.items() if count},
        [source.name for source in failing if "*" in source.groups or slug in source.groups],
    )


def _last(edition: Edition) -> LastEdition:
    return LastEdition(edition.id or 0, edition.subject, str(edition.status), edition.created_at)
