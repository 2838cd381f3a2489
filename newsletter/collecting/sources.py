"""The declared sources' fetch state, which of them are due, and what a collect run reports.

This module loads no fetcher or parser: a scheduler tick asks it whether any source is
due and imports the collection machinery (``collect.py``: HTTP, feed and page parsing,
the pool's merging) only when one is, so a tick with nothing to fetch stays cheap.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlmodel import Session, select

from newsletter.core.models import Source
from newsletter.core.settings import Settings, SourceConfig
from newsletter.core.site import Site


@dataclass
class SourceReport:
    name: str
    added: int = 0
    seen: int = 0
    merged: int = 0
    # Page sources: articles still proposed whose text changed on the site.
    updated: int = 0
    too_old: int = 0
    not_modified: bool = False
    skipped: bool = False
    error: str | None = None
    warning: str | None = None
    # Failed fetches in a row, this one included (0 when it worked).
    failures: int = 0


def sync_sources(session: Session, settings: Settings) -> dict[str, Source]:
    """A ``source`` row for each declared source (where its fetch state is kept)."""
    rows = {s.name: s for s in session.exec(select(Source))}
    for config in settings.sources:
        row = rows.get(config.name) or Source(name=config.name, url=config.url)
        if row.url != config.url:
            row.etag = row.last_modified = None
        row.url, row.topic = config.url, config.topic
        session.add(row)
        rows[config.name] = row
    session.flush()
    return rows


def is_due(source: Source, config: SourceConfig, now: datetime) -> bool:
    """Whether the source's interval has passed since it was last fetched (or it never was)."""
    if source.last_fetched_at is None:
        return True
    return now - source.last_fetched_at >= timedelta(minutes=config.interval_minutes)


def collect_due(
    site: Site, now: datetime, should_stop: Callable[[], bool] | None = None
) -> list[SourceReport]:
    """Collect the sources that are due at ``now``; each one not due is reported skipped."""
    settings = site.settings
    with site.transaction() as session:
        rows = sync_sources(session, settings)
        due = any(is_due(rows[config.name], config, now) for config in settings.sources)
    if not due:
        return [SourceReport(config.name, skipped=True) for config in settings.sources]
    # Loaded here, not at the top: the fetchers and parsers cost a large part of a
    # tick's start-up, and most ticks have nothing to fetch (docs/performance.md).
    from newsletter.collecting.collect import collect

    return collect(site, now=now, only_due=True, should_stop=should_stop)
