"""RSS 2.0, RSS 1.0 and Atom feeds, fetched safely (``fetch.py``) and parsed with feedparser.

Fetching is polite and bounded: conditional GET (ETag and Last-Modified remembered per
source), the size, time and address limits of :mod:`newsletter.collecting.fetch`, and
any HTTP error reported for that source alone. feedparser copes with odd encodings and
much malformed XML; a feed it cannot read at all ("bozo" with no entries) is an error
for that source, never for the others. Summaries are sanitised again with nh3 before
they can reach an email.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import nh3

from newsletter.collecting.fetch import AddressPolicy, Fetcher, FetchLimits, read_file
from newsletter.core.errors import FeedError, FetchError, FetchRefused
from newsletter.core.models import ItemKind
from newsletter.pool.items import ItemDraft
from newsletter.pool.richtext import plain_text, sanitize_html

# A summary longer than this (in characters of text) is cut to plain text: a feed
# that puts whole articles in its description must not blow up the email.
MAX_SUMMARY_TEXT = 1200
# An entry without a title (RSS 2.0 only asks for a title *or* a description) is
# titled with the start of its text, cut at a word boundary near this length.
MAX_FALLBACK_TITLE = 100
ACCEPT = "application/rss+xml, application/atom+xml, */*"


@dataclass(frozen=True)
class Fetched:
    """One fetch: the parsed feed, or ``not_modified`` after a 304."""

    not_modified: bool
    entries: list[Any]
    etag: str | None = None
    last_modified: str | None = None
    bozo: str | None = None


def _is_web_url(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
        return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        return False


def _local_path(url: str, site_dir: Path) -> Path | None:
    """The file of a local feed (the site's own), or None for a URL to fetch."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme:
        return None
    path = Path(url)
    return path if path.is_absolute() else site_dir / path


def fetch(
    url: str,
    site_dir: Path,
    fetcher: Fetcher,
    *,
    policy: AddressPolicy | None = None,
    limits: FetchLimits | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """Fetch and parse one feed; raise :class:`FeedError` with a readable reason."""
    limits = limits or FetchLimits()
    local = _local_path(url, site_dir)
    headers: dict[str, str] = {}
    if local is not None:
        body = read_file(local, limits.max_bytes, FeedError)
    else:
        request_headers = {"Accept": ACCEPT}
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified
        try:
            response = fetcher.fetch(
                url, policy=policy or AddressPolicy(), limits=limits, headers=request_headers
            )
        except FetchRefused as exc:
            raise FeedError(f"{exc} (allow_private = true on the source allows it)") from exc
        except FetchError as exc:
            raise FeedError(str(exc)) from exc
        if response.status == 304:
            return Fetched(True, [], etag, last_modified)
        if response.status >= 400 or response.status < 200:
            raise FeedError(f"{url} answered HTTP {response.status} {response.reason}".rstrip())
        body = response.body
        if "content-type" in response.headers:
            headers["content-type"] = response.headers["content-type"]
        headers["content-location"] = response.url
        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
    import feedparser  # here: only a fetch needs it, and it is slow to import

    parsed = feedparser.parse(body, response_headers=headers or None, sanitize_html=True)
    exception = parsed.get("bozo_exception") if parsed.get("bozo") else None
    problem = str(exception) if exception is not None else None
    if not parsed.entries:
        # A wrong charset label alone is harmless: feedparser decoded the feed anyway.
        if exception is not None and not isinstance(exception, feedparser.CharacterEncodingOverride):
            raise FeedError(f"{url} is not a readable feed ({problem})")
        # Nothing recognisable at all (an empty body, an HTML page): say so, not "0 new items".
        if not parsed.get("version"):
            raise FeedError(f"{url} is not an RSS or Atom feed (no feed element found)")
    return Fetched(False, list(parsed.entries), etag, last_modified, problem)


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def _summary(entry: Any) -> str:
    contents = entry.get("content") or []
    markup = contents[0].get("value", "") if contents else ""
    markup = markup or entry.get("summary", "") or ""
    clean = sanitize_html(markup)
    text = nh3.clean(clean, tags=set()).strip()
    if len(text) > MAX_SUMMARY_TEXT:
        cut = text[:MAX_SUMMARY_TEXT].rsplit(" ", 1)[0]
        return f"<p>{nh3.clean(cut, tags=set())} …</p>"
    return clean


def _title(entry: Any, summary_html: str, link: str | None) -> str:
    # Titles are plain text in the emails (the templates escape them): drop any markup
    # an HTML title carries; a plain-text title ("Q&A <live>") is kept as it is.
    raw = entry.get("title", "") or ""
    detail = entry.get("title_detail") or {}
    is_plain = detail.get("type") == "text/plain"
    title = " ".join(raw.split()) if is_plain else plain_text(raw)
    if title:
        return title
    text = plain_text(summary_html)
    if len(text) > MAX_FALLBACK_TITLE:
        text = text[:MAX_FALLBACK_TITLE].rsplit(" ", 1)[0] + " …"
    return text or link or ""


def _image(entry: Any) -> str | None:
    """The entry's picture: its ``media:thumbnail``, else an image enclosure or ``media:content``."""
    candidates = [t.get("url") for t in entry.get("media_thumbnail") or []]
    for link in entry.get("enclosures") or []:
        if str(link.get("type", "")).startswith("image/"):
            candidates.append(link.get("href"))
    for media in entry.get("media_content") or []:
        if str(media.get("type", "")).startswith("image/") or media.get("medium") == "image":
            candidates.append(media.get("url"))
    for url in candidates:
        if url and _is_web_url(str(url)):
            return str(url).strip()[:2000]
    return None


@dataclass(frozen=True)
class FeedEntry:
    guid: str
    draft: ItemDraft


def entries_to_drafts(
    entries: list[Any],
    *,
    source_name: str,
    topic: str,
    groups: list[str] | None,
    language: str,
    since: datetime | None,
) -> tuple[list[FeedEntry], int]:
    """Turn feed entries into item drafts; returns the drafts and how many were too old."""
    drafts = []
    too_old = 0
    for entry in entries:
        link = entry.get("link") or None
        if link and not _is_web_url(str(link)):
            # A link we could not put in an email (javascript:, a bare path, no host).
            link = None
        summary_html = _summary(entry)
        title = _title(entry, summary_html, link)
        guid = entry.get("id") or link or title
        if not title or not guid:
            continue
        published = _when(entry)
        if since is not None and published is not None and published < since:
            too_old += 1
            continue
        draft = ItemDraft(
            title=title[:500],
            url=link,
            summary_md="",
            kind=ItemKind.NEWS,
            topic=topic,
            language=language,
            groups=groups,
            published_at=published,
            origin=f"feed:{source_name}",
        )
        draft.summary_html = summary_html
        draft.image = _image(entry)
        drafts.append(FeedEntry(str(guid)[:1000], draft))
    return drafts, too_old
