"""The archive as pages of the site and as a feed, and every public page with its own title.

The edition pages are parsed (stdlib ``html.parser``), not searched as text: one ``main``,
one ``h1``, the site header, links to the archive and the neighbouring editions, the
canonical URL and Open Graph tags, and no link that belongs to one reader. The feed is
read with feedparser, as a feed reader would.
"""

import html
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import feedparser
import pytest
from click.testing import CliRunner

from newsletter.cli import main
from newsletter.core.i18n import LOCALES
from newsletter.delivery import runner
from newsletter.editions.archive import feed_html, shorten, split_document
from newsletter.editions.render import Renderer
from tests.conftest import Cli, chromium, migrated, needs_chromium
from tests.test_web import Web, _factory, body_of, confirm_path, sign_up, subscribe, token

BASE = "https://news.example.org"


@pytest.fixture
def web(site_dir: Path, db_url: str) -> Iterator[Web]:
    """The app on the example site, on SQLite and PostgreSQL."""
    make = _factory(site_dir, db_url)
    yield next(make)()
    next(make, None)


@pytest.fixture
def page_web(site_dir: Path, tmp_path: Path) -> Iterator[Web]:
    """The app on SQLite only: for pages that no database engine changes."""
    make = _factory(site_dir, migrated(f"sqlite:///{tmp_path / 'pages.db'}"))
    yield next(make)()
    next(make, None)


@dataclass
class Parsed:
    """The parts of a page these tests look at."""

    tags: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    title: str = ""
    h1: list[str] = field(default_factory=list)
    # Tags seen inside <main>, and the nesting of main in the page.
    in_main: list[str] = field(default_factory=list)
    comments: int = 0

    def links(self) -> list[dict[str, str]]:
        return [attrs for tag, attrs in self.tags if tag == "a" and "href" in attrs]

    def meta(self, prop: str) -> str | None:
        for tag, attrs in self.tags:
            if tag == "meta" and (attrs.get("property") == prop or attrs.get("name") == prop):
                return attrs.get("content")
        return None

    def count(self, name: str) -> int:
        return sum(tag == name for tag, _ in self.tags)


class _Reader(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.parsed = Parsed()
        self._open: list[str] = []
        self._main = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.parsed.tags.append((tag, {k: v or "" for k, v in attrs}))
        if self._main:
            self.parsed.in_main.append(tag)
        if tag == "main":
            self._main += 1
        if tag in {"title", "h1"}:
            self._open.append(tag)
            if tag == "h1":
                self.parsed.h1.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "main":
            self._main -= 1
        if self._open and self._open[-1] == tag:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        if "title" in self._open:
            self.parsed.title += data
        if "h1" in self._open:
            self.parsed.h1[-1] += data

    def handle_comment(self, data: str) -> None:
        self.parsed.comments += 1


def parse(page: str) -> Parsed:
    reader = _Reader()
    reader.feed(page)
    reader.close()
    return reader.parsed


def send(web: Web, cli: Cli, slug: str, title: str) -> int:
    """Send an edition carrying one item with its own URL (the pool refuses the same URL twice)."""
    added = cli("items", "add", "--title", title, "--url", f"https://example.org/{len(title)}/{title[:5]}")
    item = re.search(r"#(\d+)", added.stdout)
    assert item
    cli("items", "approve", item.group(1))
    built = re.search(r"edition #(\d+)", cli("editions", "build", slug).stdout)
    assert built
    cli("editions", "approve", built.group(1))
    edition_id = int(built.group(1))
    runner.send_edition(web.site, Renderer(web.site.settings), web.transport, edition_id, actor="test")
    return edition_id


PERSONAL = re.compile(r"/(unsubscribe|preferences|confirm)(/|$)")


def test_an_archived_edition_is_a_page_of_the_site_without_personal_links(web: Web, cli: Cli) -> None:
    """Edition page: site header, main, h1, links to archive and neighbours, OG tags, no personal link."""
    sign_up(web, "cepiug", "reader@example.org", name="Reader Person")
    first = send(web, cli, "cepiug", "First story in the archive")
    middle = send(web, cli, "cepiug", "Espacenet gets a new look")
    last = send(web, cli, "cepiug", "Third story, the newest")

    response = web.client.get(f"/archive/cepiug/{middle}")
    assert response.status_code == 200
    page = parse(response.text)
    assert page.count("header") == 1
    assert page.count("main") == 1
    assert page.count("h1") == 1
    assert "h1" in page.in_main
    [subject] = page.h1
    assert "Espacenet gets a new look" in html.unescape(response.text)
    assert subject.strip()
    assert subject.strip() in page.title
    assert page.title.strip() != web.site.settings.site.name

    hrefs = [link["href"] for link in page.links()]
    assert "/archive/cepiug" in hrefs
    assert "/" in hrefs  # the site header
    [previous] = [link for link in page.links() if link.get("rel") == "prev"]
    [following] = [link for link in page.links() if link.get("rel") == "next"]
    assert previous["href"] == f"/archive/cepiug/{first}"
    assert following["href"] == f"/archive/cepiug/{last}"
    # No reader's links, and no "view in your browser" link to the page itself.
    assert [h for h in hrefs if PERSONAL.search(h)] == []
    assert f"{BASE}/archive/cepiug/{middle}" not in hrefs
    assert "View this email in your browser" not in response.text
    assert "Reader Person" not in response.text
    assert "reader@example.org" not in response.text
    # Neither the preheader (hidden text) nor Outlook's conditional comments come along.
    assert "display:none" not in response.text.replace(" ", "")
    assert page.comments == 0

    canonical = f"{BASE}/archive/cepiug/{middle}"
    [link] = [attrs for tag, attrs in page.tags if tag == "link" and attrs.get("rel") == "canonical"]
    assert link["href"] == canonical
    assert page.meta("og:url") == canonical
    assert page.meta("og:type") == "article"
    assert page.meta("og:title") == subject.strip()
    assert page.meta("og:site_name") == web.site.settings.site.name
    description = page.meta("og:description")
    assert description
    assert "Espacenet gets a new look" in description
    assert page.meta("description") == description
    assert page.meta("article:published_time")

    oldest = parse(web.client.get(f"/archive/cepiug/{first}").text)
    assert [link for link in oldest.links() if link.get("rel") == "prev"] == []
    newest = parse(web.client.get(f"/archive/cepiug/{last}").text)
    assert [link for link in newest.links() if link.get("rel") == "next"] == []

    # The email itself still carries the reader's own links: only the archive leaves them out.
    [delivered] = [m for m in web.mails() if m.edition_id == middle]
    text = body_of(delivered).get_body(("plain",))
    assert text is not None
    assert "/unsubscribe/" in text.get_content()
    assert "View this email in your browser" in text.get_content()


def test_feed_entries_carry_the_editions_html_and_a_summary(web: Web, cli: Cli) -> None:
    """Each Atom entry has the edition's sanitised HTML as content and a summary, not the text email."""
    edition = send(web, cli, "cepiug", "Espacenet gets a new look")
    response = web.client.get("/archive/cepiug/feed.atom")
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.version == "atom10"
    [entry] = feed.entries
    assert entry.link == f"{BASE}/archive/cepiug/{edition}"
    assert entry.published_parsed is not None
    assert "Espacenet gets a new look" in entry.summary
    [content] = entry.content
    assert content.type == "text/html"
    assert "Espacenet gets a new look" in content.value
    assert 'href="https://example.org/25/Espac"' in content.value
    for absent in ("View this email", "/unsubscribe", "/preferences", "<script", "style=", "===="):
        assert absent not in content.value, absent
    assert "====" not in entry.summary


def test_split_document_drops_hidden_text_comments_and_personal_links() -> None:
    """A site template that ignores ``archive`` still loses its personal links on the page."""
    email = (
        "<!doctype html><html><head><title>x</title><style>a { color: red; }</style>"
        "<!--[if mso]><style>.o{}</style><![endif]--></head>"
        '<body style="margin:0"><div style="display:none;max-height:0">preheader <b>text</b></div>'
        '<h1>Group</h1><p>News &amp; views &#8212; <a href="https://example.org/a">A</a><br>'
        f'<a href="{BASE}/unsubscribe">Unsubscribe</a> · <a href="{BASE}/archive/g/3">View</a>'
        '<img src="https://example.org/i.png" alt="logo"></p></body></html>'
    )
    links = frozenset({f"{BASE}/unsubscribe", f"{BASE}/archive/g/3"})
    document = split_document(email, dropped_links=links)
    assert document.styles == ("a { color: red; }",)
    assert "preheader" not in document.body
    assert "Unsubscribe" not in document.body
    assert "View" not in document.body
    assert "News &amp; views &#8212;" in document.body
    assert '<a href="https://example.org/a">A</a>' in document.body
    assert '<img src="https://example.org/i.png" alt="logo">' in document.body
    # The page's h1 is the subject: the email's own headings move down one level.
    assert "<h2>Group</h2>" in document.body
    assert "<h1" not in document.body
    assert "mso" not in document.body
    assert "<img" in feed_html(document)
    assert 'rel="noopener noreferrer"' in feed_html(document)


def test_shorten_cuts_at_a_word() -> None:
    """Summaries end on a whole word with an ellipsis."""
    assert shorten("short one") == "short one"
    cut = shorten("word " * 100, limit=22)
    assert cut == "word word word word…"


# -- titles ----------------------------------------------------------------------------------

TITLES = {
    # language: the pages' titles (before " – site name")
    "en": {
        "confirm": "Confirm your subscription",
        "unsubscribe": "Unsubscribe",
        "preferences": "Your preferences",
        "subscribe": "Subscribe: CEPIUG",
        "archive": "CEPIUG: Archive",
    },
    "de": {
        "confirm": "Bestätigen Sie Ihr Abonnement",
        "unsubscribe": "Abmelden",
        "preferences": "Ihre Einstellungen",
        "subscribe": "CEPIUG abonnieren",
        "archive": "CEPIUG: Archiv",
    },
    "fr": {
        "confirm": "Confirmez votre abonnement",
        "unsubscribe": "Se désabonner",
        "preferences": "Vos préférences",
        "subscribe": "S'abonner\u00a0: CEPIUG",
        "archive": "CEPIUG\u00a0: archives",
    },
}


@pytest.mark.parametrize("language", sorted(TITLES))
def test_each_public_page_has_its_own_translated_title(page_web: Web, language: str) -> None:
    """Confirm, unsubscribe, preferences, sign-up and archive pages each have their own title (WCAG 2.4.2)."""
    web = page_web
    address = f"reader-{language}@example.org"
    subscribe(web, "cepiug", address, language=language)
    [message] = web.sent_to(address)
    pages = {
        "confirm": confirm_path(message),
        "unsubscribe": f"/unsubscribe/{token(web, 'unsubscribe', address, 'cepiug')}",
        "preferences": f"/preferences/{token(web, 'preferences', address, 'cepiug')}",
        "subscribe": f"/subscribe/cepiug?lang={language}",
        "archive": f"/archive/cepiug?lang={language}",
    }
    site = web.site.settings.site.name
    seen = set()
    for name, path in pages.items():
        response = web.client.get(path)
        assert response.status_code == 200, name
        title = parse(response.text).title
        assert title == f"{TITLES[language][name]} – {site}", (name, title)
        seen.add(title)
        if language == "fr":
            # French sets a no-break space before a colon, never a plain one or none.
            assert not re.search(r"[^\u00a0\u202f]:", title.split(" – ")[0]), title
    assert len(seen) == len(pages)


def test_french_strings_use_no_break_spaces_before_high_punctuation() -> None:
    """No French translation has a plain space (which may break a line) before : ; ! or ?."""
    catalog = (LOCALES / "fr" / "LC_MESSAGES" / "newsletter.po").read_text(encoding="utf-8")
    translations = [line for line in catalog.splitlines() if line.startswith("msgstr")]
    assert translations
    assert [line for line in translations if re.search(r" [:;!?]", line)] == []


def test_german_greeting_is_followed_by_a_lower_case_line(web: Web, cli: Cli) -> None:
    """In German the line after "Guten Tag," starts in lower case, as in a letter."""
    sign_up(web, "dach", "leser@example.org", name="")
    edition = send(web, cli, "dach", "Neues von DEPATISnet")
    [delivered] = [m for m in web.mails() if m.edition_id == edition]
    text = body_of(delivered).get_body(("plain",))
    assert text is not None
    assert re.search(r"Guten Tag,\s*\nhier sind die neuesten Nachrichten", text.get_content())


def test_check_renders_the_archive_branch_of_a_template(site_dir: Path) -> None:
    """`check` renders the archive's copy too: a mistake only there is found before a build."""
    template = site_dir / "templates" / "digest.mjml.j2"
    text = template.read_text(encoding="utf-8")
    template.write_text(
        text.replace("<mj-body", "{% if archive %}{{ no_such_value }}{% endif %}\n  <mj-body", 1),
        encoding="utf-8",
    )
    result = CliRunner().invoke(main, ["--site", str(site_dir), "check"])
    assert result.exit_code != 0
    assert "no_such_value" in result.output
    assert "digest.mjml.j2" in result.output


@needs_chromium
def test_an_edition_page_reads_as_a_page_in_a_browser_at_phone_width(web: Web, cli: Cli) -> None:
    """In Chromium at 375 px: one main, one h1, the navigation landmarks, nothing wider than the screen."""
    edition = send(web, cli, "cepiug", "Espacenet gets a new look")
    markup = web.client.get(f"/archive/cepiug/{edition}").text
    with chromium() as browser:
        page = browser.new_page(viewport={"width": 375, "height": 800})
        page.set_content(markup)
        assert page.get_by_role("main").count() == 1
        assert page.get_by_role("heading", level=1).count() == 1
        assert page.get_by_role("banner").count() == 1
        assert page.get_by_role("navigation").count() == 2
        assert page.get_by_role("link", name="All editions").count() == 1
        assert page.get_by_text("Espacenet gets a new look").first.is_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
