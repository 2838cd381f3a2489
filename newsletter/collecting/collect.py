"""Collection: every source's new entries into the shared pool, with provenance.

Each source is fetched on its own (within the size, time and address limits of
``fetch.py``) and stored on its own, a batch of entries per transaction so that a big
feed never locks other writers out; one broken feed is reported (in ``newsletter
status``, with its failures in a row) and never stops the others. The whole run has
a deadline (``[collect] timeout``): sources not reached are reported. An entry seen
before (same source and guid) is skipped; the same story reached through another
feed (same canonical URL, tracking parameters stripped) is merged into the item
already in the pool, and so is an entry telling a story of the last weeks in nearly
the same words (``pool/similar.py``); each keeps its provenance. A page source
(``pages.py``) is a listing whose articles are fetched one by one, each stored in a
transaction of its own.
"""

import time
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from sqlmodel import Session, col, select

from newsletter.collecting import pages
from newsletter.collecting.feeds import FeedEntry, Fetched, entries_to_drafts, fetch
from newsletter.collecting.fetch import MEGABYTE, AddressPolicy, Fetcher, FetchLimits, HttpFetcher
from newsletter.collecting.images import attach, fetch_image
from newsletter.collecting.sources import SourceReport, is_due, sync_sources
from newsletter.core import audit
from newsletter.core.errors import FeedError, FetchError, InputError
from newsletter.core.models import Item, ItemStatus, Provenance, Source, utcnow
from newsletter.core.settings import Settings, SourceConfig
from newsletter.core.site import Site
from newsletter.pool import provenance
from newsletter.pool.items import add_item, refresh_from_source
from newsletter.pool.similar import StoryIndex

# Called after each committed batch of a source's entries: (source name, entries stored so far).
BatchHook = Callable[[str, int], None]


def _drafts(
    config: SourceConfig, entries: list[object], now: datetime, report: SourceReport
) -> list[FeedEntry]:
    since = now - timedelta(days=config.since_days) if config.since_days else None
    groups = None if "*" in config.groups else list(config.groups)
    drafts, too_old = entries_to_drafts(
        entries,
        source_name=config.name,
        topic=config.topic,
        groups=groups,
        language=config.language,
        since=since,
    )
    report.too_old += too_old
    return drafts


def _store_batch(
    session: Session,
    settings: Settings,
    config: SourceConfig,
    source_id: int,
    batch: list[FeedEntry],
    report: SourceReport,
    stories: StoryIndex,
) -> list[tuple[int, str]]:
    """Store a batch; returns the new items that name an image, as (item id, image URL)."""
    images = []
    for entry in batch:
        if provenance.seen(session, source_id, entry.guid):
            report.seen += 1
            continue
        entry.draft.source_id, entry.draft.guid = source_id, entry.guid
        item, created = add_item(
            session,
            settings,
            entry.draft,
            actor=f"source:{config.name}",
            approve=config.approval == "auto",
            stories=stories,
        )
        if created:
            report.added += 1
            if entry.draft.image and item.id is not None:
                images.append((item.id, entry.draft.image))
        else:
            report.merged += 1
    return images


def collect(
    site: Site,
    *,
    now: datetime | None = None,
    only_due: bool = False,
    names: Iterable[str] = (),
    fetcher: Fetcher | None = None,
    on_batch: BatchHook | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[SourceReport]:
    """Fetch the sources (all, the named ones, or those due) and add their new entries.

    The whole run ends within ``[collect] timeout``: sources not reached by then are
    reported as such and fetched next time. ``should_stop`` (the daemon stopping) is
    asked between sources; those left are skipped. ``on_batch`` is called after each
    committed batch of entries (tests use it to write from elsewhere during a run).
    """
    now = now or utcnow()
    settings = site.settings
    ends = time.monotonic() + settings.collect.timeout
    wanted = set(names)
    with site.transaction() as session:
        rows = sync_sources(session, settings)
    reports = []
    # Made only when a source is due: its TLS context loads the CA bundle, which costs
    # more than a whole tick with nothing to fetch.
    http = fetcher
    for config in settings.sources:
        if wanted and config.name not in wanted:
            continue
        report = SourceReport(config.name)
        reports.append(report)
        source = rows[config.name]
        if (only_due and not is_due(source, config, now)) or (should_stop and should_stop()):
            report.skipped = True
            continue
        if time.monotonic() >= ends:
            report.error = f"not fetched: the collect run's {settings.collect.timeout:g} s ran out"
            _record_failure(site, source, report, None)
            continue
        http = http or HttpFetcher()
        _collect_one(site, config, source, http, now, report, ends, on_batch)
    return reports


def _limits(settings: Settings, ends: float) -> FetchLimits:
    return FetchLimits(
        max_bytes=int(settings.fetch.max_megabytes * MEGABYTE),
        timeout=settings.fetch.timeout,
        max_redirects=settings.fetch.max_redirects,
        deadline=ends,
    )


def _collect_one(
    site: Site,
    config: SourceConfig,
    source: Source,
    fetcher: Fetcher,
    now: datetime,
    report: SourceReport,
    ends: float,
    on_batch: BatchHook | None,
) -> None:
    settings = site.settings
    if config.kind == "page":
        try:
            _collect_page(site, config, source, fetcher, now, report, ends)
        except FeedError as exc:
            report.error = str(exc)
        except Exception as exc:  # a fault of ours or a library's: that source's error, not the run's
            report.error = f"{type(exc).__name__}: {exc}"
        if report.error:
            _record_failure(site, source, report, now)
        return
    try:
        fetched = fetch(
            config.url,
            settings.site_dir,
            fetcher,
            policy=AddressPolicy(allow_private=config.allow_private),
            limits=_limits(settings, ends),
            etag=source.etag,
            last_modified=source.last_modified,
        )
    except FeedError as exc:
        report.error = str(exc)
    except Exception as exc:  # a fault of ours or a library's: that source's error, not the run's
        report.error = f"{type(exc).__name__}: {exc}"
    else:
        report.not_modified = fetched.not_modified
        report.warning = fetched.bozo
        try:
            _store(site, config, source, fetched, now, report, ends, on_batch, fetcher)
        except Exception as exc:  # one source's bad data must not stop the others
            report.error = f"{type(exc).__name__}: {exc}"
    if report.error:
        _record_failure(site, source, report, now)


def _store(
    site: Site,
    config: SourceConfig,
    source: Source,
    fetched: Fetched,
    now: datetime,
    report: SourceReport,
    ends: float,
    on_batch: BatchHook | None,
    fetcher: Fetcher,
) -> None:
    """Store the entries a batch per transaction; the source's state once all are in.

    The ETag and Last-Modified are kept only when every entry was stored, so that a run
    cut short fetches the whole feed again next time (entries already stored are "seen").
    """
    settings = site.settings
    assert source.id is not None
    # Entries become drafts a batch at a time: sanitised summaries of a whole big feed
    # would double what it already holds in memory.
    entries, size = fetched.entries, settings.collect.batch_size
    stories = _stories(site, now) if entries else None
    for start in range(0, len(entries), size):
        if start and time.monotonic() >= ends:
            report.error = (
                f"stopped after {start} of {len(entries)} entries: the collect run's "
                f"{settings.collect.timeout:g} s ran out; the rest is stored next time"
            )
            return
        drafts = _drafts(config, entries[start : start + size], now, report)
        with site.transaction() as session:
            assert stories is not None
            images = _store_batch(session, settings, config, source.id, drafts, report, stories)
        _fetch_images(site, config, fetcher, images, ends, report)
        if on_batch is not None:
            on_batch(config.name, min(start + size, len(entries)))
    _record_success(site, config, source, now, report, fetched.etag, fetched.last_modified)


def _record_success(
    site: Site,
    config: SourceConfig,
    source: Source,
    now: datetime,
    report: SourceReport,
    etag: str | None = None,
    last_modified: str | None = None,
) -> None:
    with site.transaction() as session:
        row = session.get(Source, source.id)
        assert row is not None
        row.etag, row.last_modified = etag, last_modified
        row.last_error, row.last_fetched_at, row.last_success_at, row.failures = None, now, now, 0
        session.add(row)
        audit.record(
            session,
            "collect",
            actor=f"source:{config.name}",
            source=config.url,
            added=report.added,
            seen=report.seen,
            merged=report.merged,
            updated=report.updated,
        )


def _fetch_images(
    site: Site,
    config: SourceConfig,
    fetcher: Fetcher,
    images: list[tuple[int, str]],
    ends: float,
    report: SourceReport,
) -> None:
    """Fetch, resize and attach the images of new items, outside any transaction.

    An image that cannot be had is a warning for the source: the item stays, without it.
    """
    if not images:
        return
    stored = []
    problems = []
    for item_id, url in images:
        if time.monotonic() >= ends:
            problems.append(f"{url}: not fetched, the collect run's time ran out")
            continue
        try:
            found = fetch_image(
                url,
                site.settings,
                fetcher,
                policy=AddressPolicy(allow_private=config.allow_private),
                deadline=ends,
            )
        except (FetchError, InputError) as exc:
            problems.append(str(exc))
            continue
        stored.append((item_id, url, found))
    if stored:
        with site.transaction() as session:
            for item_id, url, found in stored:
                row = session.get(Item, item_id)
                if row is not None:
                    attach(row, found, url, None)
                    session.add(row)
    if problems:
        note = f"{len(problems)} image(s) left out: {problems[0]}"
        report.warning = f"{report.warning}; {note}" if report.warning else note


def _stories(site: Site, now: datetime) -> StoryIndex:
    with site.transaction() as session:
        return StoryIndex(session, now)


def _collect_page(
    site: Site,
    config: SourceConfig,
    source: Source,
    fetcher: Fetcher,
    now: datetime,
    report: SourceReport,
    ends: float,
) -> None:
    """A listing page's new articles (and changed ones still proposed), one transaction each.

    An article that cannot be fetched or read is noted in the report's warning and tried
    again next time; it never stops the others.
    """
    settings = site.settings
    assert source.id is not None
    policy = AddressPolicy(allow_private=config.allow_private)
    body, listing_url = pages.fetch_page(
        config.url, fetcher, policy=policy, limits=_limits(settings, ends), what="listing"
    )
    links = pages.article_links(body, listing_url, config.link_selector, config.max_articles)
    # Entries this source brought before; an article updates only the item it created
    # (not a story it was merged into), and only while that is a proposal.
    with site.transaction() as session:
        rows = session.exec(
            select(Provenance.guid, Item.status, Item.source_id, Item.guid)
            .join(Item, col(Item.id) == col(Provenance.item_id))
            .where(
                col(Provenance.source_id) == source.id,
                col(Provenance.guid).in_([link.url for link in links]),
            )
        )
        known = {
            guid: (status if (item_source, item_guid) == (source.id, guid) else None)
            for guid, status, item_source, item_guid in rows
        }
    since = now - timedelta(days=config.since_days) if config.since_days else None
    groups = None if "*" in config.groups else list(config.groups)
    problems: list[str] = []
    stories = _stories(site, now) if links else None
    for link in links:
        if link.url in known and known[link.url] != ItemStatus.PROPOSED:
            report.seen += 1  # reviewed already: its text is the one the editors saw
            continue
        if time.monotonic() >= ends:
            problems.append(f"the collect run's {settings.collect.timeout:g} s ran out; the rest next time")
            break
        try:
            page, _ = pages.fetch_page(
                link.url, fetcher, policy=policy, limits=_limits(settings, ends), what="article"
            )
        except FeedError as exc:
            problems.append(str(exc))
            continue
        article = pages.extract_article(page, link.url, fallback_title=link.text)
        if article is None:
            problems.append(f"no article text found at {link.url}")
            continue
        if since is not None and article.published is not None and article.published < since:
            report.too_old += 1
            continue
        entry = pages.article_entry(
            article, source_name=config.name, topic=config.topic, groups=groups, language=config.language
        )
        with site.transaction() as session:
            if link.url in known:
                item = session.exec(
                    select(Item).where(col(Item.source_id) == source.id, col(Item.guid) == link.url)
                ).one()
                actor = f"source:{config.name}"
                if refresh_from_source(session, item, entry.draft, actor=actor):
                    report.updated += 1
                else:
                    report.seen += 1
            else:
                assert stories is not None
                _store_batch(session, settings, config, source.id, [entry], report, stories)
    if problems:
        report.warning = "; ".join(problems[:5]) + (
            f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        )
    _record_success(site, config, source, now, report)


def _record_failure(site: Site, source: Source, report: SourceReport, now: datetime | None) -> None:
    """Keep the error and count it; ``now`` None leaves the fetch time (the source was not reached)."""
    with site.transaction() as session:
        row = session.get(Source, source.id)
        assert row is not None
        row.last_error = (report.error or "")[:1000]
        row.failures += 1
        report.failures = row.failures
        if now is not None:
            row.last_fetched_at = now
        session.add(row)
