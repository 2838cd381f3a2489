"""RSS 2.0, RSS 1.0 and Atom feeds, fetched with httpx and parsed with feedparser.

Fetching is polite and robust: a timeout, conditional GET (ETag and Last-Modified
remembered per source), and any HTTP error reported for that source alone. feedparser
copes with odd encodings and much malformed XML; a feed it cannot read at all
("bozo" with no entries) is an error for that source, never for the others.
Summaries are sanitised again with nh3 before they can reach an email.
"""

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import feedparser
import httpx
import nh3

from newsletter.items import ItemDraft
from newsletter.models import ItemKind
from newsletter.richtext import sanitize_html

USER_AGENT = "newsletter-collector/0.1 (+https://github.com/cepiug/newsletter)"
TIMEOUT = httpx.Timeout(20.0, connect=10.0)
# A summary longer than this (in characters of text) is cut to plain text: a feed
# that puts whole articles in its description must not blow up the email.
MAX_SUMMARY_TEXT = 1200


class FeedError(Exception):
    """This source could not be fetched or read; the message says why."""


@dataclass(frozen=True)
class Fetched:
    """One fetch: the parsed feed, or ``not_modified`` after a 304."""

    not_modified: bool
    entries: list[Any]
    etag: str | None = None
    last_modified: str | None = None
    bozo: str | None = None


def _local_path(url: str, site_dir: Path) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme == "file":
        return Path(parts.path)
    if parts.scheme in {"http", "https"}:
        return None
    path = Path(url)
    return path if path.is_absolute() else site_dir / path


def fetch(
    url: str,
    site_dir: Path,
    client: httpx.Client,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    """Fetch and parse one feed; raise :class:`FeedError` with a readable reason."""
    local = _local_path(url, site_dir)
    headers: dict[str, str] = {}
    if local is not None:
        try:
            body = local.read_bytes()
        except OSError as exc:
            raise FeedError(f"cannot read {local}: {exc.strerror or exc}") from None
    else:
        request_headers = {
            "User-Agent": USER_AGENT,
            "Accept": "application/rss+xml, application/atom+xml, */*",
        }
        if etag:
            request_headers["If-None-Match"] = etag
        if last_modified:
            request_headers["If-Modified-Since"] = last_modified
        try:
            response = client.get(url, headers=request_headers, timeout=TIMEOUT, follow_redirects=True)
        except httpx.TimeoutException:
            raise FeedError(f"timed out fetching {url}") from None
        except httpx.HTTPError as exc:
            raise FeedError(f"cannot fetch {url}: {exc}") from None
        if response.status_code == 304:
            return Fetched(True, [], etag, last_modified)
        if response.status_code >= 400:
            raise FeedError(f"{url} answered HTTP {response.status_code} {response.reason_phrase}")
        body = response.content
        headers = {k.lower(): v for k, v in response.headers.items() if k.lower() in {"content-type"}}
        headers["content-location"] = str(response.url)
        etag = response.headers.get("etag")
        last_modified = response.headers.get("last-modified")
    parsed = feedparser.parse(body, response_headers=headers or None, sanitize_html=True)
    problem = str(parsed.get("bozo_exception")) if parsed.get("bozo") else None
    if not parsed.entries and problem:
        raise FeedError(f"{url} is not a readable feed ({problem})")
    return Fetched(False, list(parsed.entries), etag, last_modified, problem)


def _when(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if value:
            return datetime.fromtimestamp(calendar.timegm(value), tz=UTC)
    return None


def _summary(entry: Any) -> str:
    contents = entry.get("content") or []
    html = contents[0].get("value", "") if contents else ""
    html = html or entry.get("summary", "") or ""
    clean = sanitize_html(html)
    text = nh3.clean(clean, tags=set()).strip()
    if len(text) > MAX_SUMMARY_TEXT:
        cut = text[:MAX_SUMMARY_TEXT].rsplit(" ", 1)[0]
        return f"<p>{nh3.clean(cut, tags=set())} …</p>"
    return clean


def _title(entry: Any) -> str:
    # Titles are plain text in the emails (autoescaped): drop any markup a feed put in.
    return " ".join(nh3.clean(entry.get("title", ""), tags=set()).split())


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
        title = _title(entry)
        link = entry.get("link") or None
        guid = entry.get("id") or link or title
        if not title or not guid:
            continue
        published = _when(entry)
        if since is not None and published is not None and published < since:
            too_old += 1
            continue
        if link and not str(link).startswith(("http://", "https://")):
            link = None
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
        draft.summary_html = _summary(entry)
        drafts.append(FeedEntry(str(guid)[:1000], draft))
    return drafts, too_old
