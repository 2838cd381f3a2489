"""Sources without a feed: a listing page of article links, each article read with trafilatura.

A ``kind = "page"`` source names a listing (a news page of a national office, say). A
collect fetches it through the same safe fetcher as feeds (size, time and address
limits), keeps only the links that lead to articles (``link_selector`` picks them with
a CSS selector; without one, links inside navigation, headers, footers, cookie banners,
pagination and sidebars are dropped, as are links off the site or back to the listing),
and fetches each article it has not stored yet. Extraction of the title, date and main
text is trafilatura's (maintained, and far better at dropping menus and boilerplate than
anything we would write); what is left here is what it does not do: finding the article
links on a listing, keeping a "Source:" attribution line as the item's credit, and
dropping a cookie notice should one survive the extraction.
"""

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urldefrag, urljoin, urlsplit

import lxml.html
from cssselect import GenericTranslator
from lxml import etree

from newsletter.collecting.feeds import FeedEntry
from newsletter.collecting.fetch import AddressPolicy, Fetcher, FetchLimits
from newsletter.core.errors import FeedError, FetchError, FetchRefused
from newsletter.core.models import ItemKind
from newsletter.pool.items import ItemDraft

ACCEPT = "text/html, application/xhtml+xml;q=0.9, */*;q=0.5"
# The summary an email carries of an article: its first paragraphs up to about this many
# characters (the reader follows the link for the rest).
SUMMARY_CHARACTERS = 600
MAX_TITLE = 500

# Elements whose links are never articles, by tag, ARIA role, or a word in class or id.
_CHROME_TAGS = frozenset({"nav", "footer", "aside", "form"})
_CHROME_ROLES = frozenset({"navigation", "banner", "contentinfo", "search", "complementary"})
_CHROME_WORDS = re.compile(
    r"(?:^|[\s_-])(?:nav|navbar|navigation|menu|menubar|footer|breadcrumbs?|cookies?|consent|"
    r"gdpr|banner|pagination|pager|share|sharing|social|sidebar|skip|toolbar)(?:$|[\s_-])",
    re.IGNORECASE,
)
# A link whose text says it is about the site, not news.
_CHROME_TEXT = re.compile(
    r"\b(cookies?|privacy|imprint|impressum|legal notice|terms|contact|log ?in|sign ?in|"
    r"subscribe|rss|sitemap|accessibility|next|previous|more news|back)\b",
    re.IGNORECASE,
)
# "Source: China National Intellectual Property Administration", in a few languages.
_ATTRIBUTION = re.compile(
    r"^\s*(?:source|sources|quelle|fuente|fonte|bron)\s*:\s*(?P<who>\S.{0,300}?)\s*$", re.I
)
_COOKIE_NOTICE = re.compile(r"\bcookies?\b.*\b(accept|consent|settings|policy|agree)\b", re.IGNORECASE)


@dataclass(frozen=True)
class ArticleLink:
    url: str
    text: str


@dataclass(frozen=True)
class Article:
    url: str
    title: str
    published: datetime | None
    paragraphs: tuple[str, ...]
    attribution: str | None


def fetch_page(
    url: str, fetcher: Fetcher, *, policy: AddressPolicy, limits: FetchLimits, what: str
) -> tuple[bytes, str]:
    """The body and final URL of one HTML page; :class:`FeedError` says why not."""
    try:
        response = fetcher.fetch(url, policy=policy, limits=limits, headers={"Accept": ACCEPT})
    except FetchRefused as exc:
        raise FeedError(f"{exc} (allow_private = true on the source allows it)") from exc
    except FetchError as exc:
        raise FeedError(str(exc)) from exc
    if not 200 <= response.status < 300:
        raise FeedError(f"{what} {url} answered HTTP {response.status} {response.reason}".rstrip())
    kind = response.headers.get("content-type", "text/html").split(";")[0].strip().lower()
    if kind not in {"text/html", "application/xhtml+xml", ""}:
        raise FeedError(f"{what} {url} is {kind}, not an HTML page")
    return response.body, response.url


def _parse(body: bytes, base_url: str) -> etree._Element | None:
    if not body.strip():
        return None
    try:
        tree = lxml.html.document_fromstring(body, base_url=base_url)
    except (etree.ParserError, ValueError):
        return None
    return tree


def _in_chrome(element: etree._Element) -> bool:
    for node in (element, *element.iterancestors()):
        tag = node.tag if isinstance(node.tag, str) else ""
        if tag in _CHROME_TAGS or node.get("role") in _CHROME_ROLES:
            return True
        # A site header is chrome; an article card's own <header> (its title) is not.
        if tag == "header" and not any(a.tag in {"article", "li", "main"} for a in node.iterancestors()):
            return True
        if _CHROME_WORDS.search(f"{node.get('class') or ''} {node.get('id') or ''}"):
            return True
    return False


def _link_text(anchor: etree._Element) -> str:
    return " ".join(anchor.text_content().split())


def article_links(body: bytes, listing_url: str, selector: str | None, limit: int) -> list[ArticleLink]:
    """The article links of a listing page, in page order, at most ``limit``, each once."""
    from courlan import is_navigation_page, is_not_crawlable  # slow to import: see extract_article

    tree = _parse(body, listing_url)
    if tree is None:
        return []
    listing = urlsplit(listing_url)
    if selector:
        anchors: list[etree._Element] = []
        for element in tree.xpath(GenericTranslator().css_to_xpath(selector)):
            if not isinstance(element, etree._Element):
                continue
            anchors.extend([element] if element.tag == "a" else element.iter("a"))
    else:
        anchors = [a for a in tree.iter("a") if not _in_chrome(a)]
    found: dict[str, ArticleLink] = {}
    for anchor in anchors:
        href = (anchor.get("href") or "").strip()
        rel = (anchor.get("rel") or "").lower().split()
        if not href or "next" in rel or "prev" in rel:
            continue
        url, _ = urldefrag(urljoin(listing_url, href))
        parts = urlsplit(url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            continue
        text = _link_text(anchor)
        if not selector:
            if parts.hostname != listing.hostname or (parts.path or "/") == (listing.path or "/"):
                continue
            if is_navigation_page(url) or is_not_crawlable(url):
                continue
            if not text or (_CHROME_TEXT.search(text) and len(text.split()) < 4):
                continue
        if url != listing_url and url not in found:
            found[url] = ArticleLink(url, text)
        if len(found) >= limit:
            break
    return list(found.values())


def _date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def extract_article(body: bytes, url: str, fallback_title: str = "") -> Article | None:
    """Title, date, main text and "Source:" credit of one article page (None: nothing readable)."""
    # Imported here: trafilatura and its helpers take a good part of a second to load,
    # which every command would pay (`run-due` from cron every minute) for no page source.
    import trafilatura

    document = trafilatura.bare_extraction(
        body,
        url=url,
        with_metadata=True,
        include_comments=False,
        include_tables=False,
        favor_precision=True,
    )
    if document is None or isinstance(document, dict):
        return None
    title = " ".join((document.title or fallback_title).split())[:MAX_TITLE]
    date = document.date
    paragraphs: list[str] = []
    attribution = None
    for line in (document.text or "").splitlines():
        line = " ".join(line.split())
        if not line or line in {title, date}:
            continue  # trafilatura keeps the heading and the date line in the text
        credit = _ATTRIBUTION.match(line)
        if credit:
            attribution = credit.group("who")
            continue
        if _COOKIE_NOTICE.search(line):
            continue
        paragraphs.append(line)
    if not title or not paragraphs:
        return None
    return Article(url, title, _date(date), tuple(paragraphs), attribution)


def _summary_html(article: Article) -> str:
    """The first paragraphs (escaped), cut at a word near :data:`SUMMARY_CHARACTERS`, and the credit."""
    kept: list[str] = []
    length = 0
    for paragraph in article.paragraphs:
        room = SUMMARY_CHARACTERS - length
        if room <= 0:
            break
        if len(paragraph) > room:
            paragraph = paragraph[:room].rsplit(" ", 1)[0] + " …"
        kept.append(paragraph)
        length += len(paragraph)
    parts = [f"<p>{html.escape(p, quote=False)}</p>" for p in kept]
    if article.attribution:
        parts.append(f"<p>Source: {html.escape(article.attribution, quote=False)}</p>")
    return "".join(parts)


def article_entry(
    article: Article, *, source_name: str, topic: str, groups: list[str] | None, language: str
) -> FeedEntry:
    """The pool draft of an article: its link is its identity (the guid)."""
    draft = ItemDraft(
        title=article.title,
        url=article.url,
        summary_md="",
        kind=ItemKind.NEWS,
        topic=topic,
        language=language,
        groups=groups,
        published_at=article.published,
        origin=f"page:{source_name}",
    )
    draft.summary_html = _summary_html(article)
    return FeedEntry(article.url[:1000], draft)
