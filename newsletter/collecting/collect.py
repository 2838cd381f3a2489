"""Collection: every source's new entries into the shared pool, with provenance.

Each source is fetched on its own and committed on its own, so one broken feed is
reported (in ``newsletter status``) and never stops the others. An entry seen
before (same source and guid) is skipped; the same story reached through another
feed (same canonical URL, tracking parameters stripped) is merged into the item
already in the pool.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlmodel import Session, col, select

from newsletter.collecting.feeds import entries_to_drafts, fetch
from newsletter.core import audit
from newsletter.core.errors import FeedError
from newsletter.core.models import Item, Source, utcnow
from newsletter.core.settings import Settings, SourceConfig
from newsletter.core.site import Site
from newsletter.pool.items import add_item


@dataclass
class SourceReport:
    name: str
    added: int = 0
    seen: int = 0
    merged: int = 0
    too_old: int = 0
    not_modified: bool = False
    skipped: bool = False
    error: str | None = None
    warning: str | None = None


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


def _due(source: Source, config: SourceConfig, now: datetime) -> bool:
    if source.last_fetched_at is None:
        return True
    return now - source.last_fetched_at >= timedelta(minutes=config.interval_minutes)


def _store(
    session: Session,
    settings: Settings,
    config: SourceConfig,
    source: Source,
    entries: list[object],
    now: datetime,
    report: SourceReport,
) -> None:
    since = now - timedelta(days=config.since_days) if config.since_days else None
    groups = None if "*" in config.groups else list(config.groups)
    drafts, report.too_old = entries_to_drafts(
        entries,
        source_name=config.name,
        topic=config.topic,
        groups=groups,
        language=config.language,
        since=since,
    )
    for entry in drafts:
        known = session.exec(
            select(Item.id).where(col(Item.source_id) == source.id, col(Item.guid) == entry.guid)
        )
        if known.first() is not None:
            report.seen += 1
            continue
        entry.draft.source_id, entry.draft.guid = source.id, entry.guid
        _, created = add_item(
            session, settings, entry.draft, actor=f"source:{config.name}", approve=config.approval == "auto"
        )
        if created:
            report.added += 1
        else:
            report.merged += 1


def collect(
    site: Site,
    *,
    now: datetime | None = None,
    only_due: bool = False,
    names: Iterable[str] = (),
    client: httpx.Client | None = None,
    timeout: httpx.Timeout | float | None = None,
) -> list[SourceReport]:
    """Fetch the sources (all, the named ones, or those due) and add their new entries.

    ``timeout`` bounds each fetch (default: :data:`newsletter.collecting.feeds.TIMEOUT`).
    """
    now = now or utcnow()
    settings = site.settings
    wanted = set(names)
    with site.transaction() as session:
        rows = sync_sources(session, settings)
    reports = []
    # Made only when a source is due: a client loads the CA bundle, which costs more
    # than a whole tick with nothing to fetch.
    http = client
    try:
        for config in settings.sources:
            if wanted and config.name not in wanted:
                continue
            report = SourceReport(config.name)
            reports.append(report)
            source = rows[config.name]
            if only_due and not _due(source, config, now):
                report.skipped = True
                continue
            http = http or httpx.Client()
            _collect_one(site, config, source, http, now, report, timeout)
    finally:
        if client is None and http is not None:
            http.close()
    return reports


def _collect_one(
    site: Site,
    config: SourceConfig,
    source: Source,
    http: httpx.Client,
    now: datetime,
    report: SourceReport,
    timeout: httpx.Timeout | float | None = None,
) -> None:
    settings = site.settings
    try:
        fetched = fetch(
            config.url,
            settings.site_dir,
            http,
            etag=source.etag,
            last_modified=source.last_modified,
            timeout=timeout,
        )
    except FeedError as exc:
        report.error = str(exc)
    else:
        report.not_modified = fetched.not_modified
        report.warning = fetched.bozo
        try:
            with site.transaction() as session:
                row = session.get(Source, source.id)
                assert row is not None
                _store(session, settings, config, row, fetched.entries, now, report)
                row.etag, row.last_modified = fetched.etag, fetched.last_modified
                row.last_error, row.last_fetched_at = None, now
                session.add(row)
                audit.record(
                    session,
                    "collect",
                    actor=f"source:{config.name}",
                    source=config.url,
                    added=report.added,
                    seen=report.seen,
                    merged=report.merged,
                )
        except Exception as exc:  # one source's bad data must not stop the others
            report.error = f"{type(exc).__name__}: {exc}"
    if report.error:
        with site.transaction() as session:
            row = session.get(Source, source.id)
            assert row is not None
            row.last_error, row.last_fetched_at = report.error[:1000], now
            session.add(row)
