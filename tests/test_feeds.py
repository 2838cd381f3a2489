"""Feed collection: real feeds over real HTTP on 127.0.0.1, into a real database.

The corpus in ../shared/corpora/feeds (feedparser's own test files and sample feeds)
is served by :class:`tests.feed_server.FeedServer` and read through
``newsletter.collecting.feeds.fetch``; what a correct parse gives is written down per
file below, from the corpus's SOURCES.md and expected.json.
"""

import importlib.util
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select

from newsletter.collecting.collect import collect
from newsletter.collecting.feeds import FeedEntry, Fetched, entries_to_drafts
from newsletter.collecting.feeds import fetch as fetch_feed
from newsletter.collecting.fetch import AddressPolicy, FetchLimits, HttpFetcher
from newsletter.core.errors import FeedError
from newsletter.core.models import Item, Source
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from tests.conftest import CORPORA, Cli
from tests.feed_server import FeedServer, feed_server, rss, use_sources

FEEDS = CORPORA / "feeds"
EXPECTED: list[dict[str, Any]] = (
    json.loads((FEEDS / "expected.json").read_text(encoding="utf-8"))
    if (FEEDS / "expected.json").is_file()
    else []
)
NO_CORPUS = "the feed corpus (../shared/corpora/feeds) is not on this machine"
HAS_CHARDET = importlib.util.find_spec("chardet") is not None
SHORT_TIMEOUT = 0.5
# A slow route answers after this long, or as soon as its server closes at the end of the
# test: a fetch that gives up on it before then can only have timed out, and a fetch
# without a timeout gets the page, late, and fails the test instead of hanging the suite.
SLOW_SECONDS = 60.0


# Helpers -------------------------------------------------------------------------


def drafts_of(fetched: Fetched) -> list[FeedEntry]:
    drafts, _ = entries_to_drafts(
        fetched.entries, source_name="corpus", topic="", groups=None, language="en", since=None
    )
    return drafts


def source(name: str, url: str, **extra: Any) -> dict[str, Any]:
    """A source for the test server on 127.0.0.1, which only ``allow_private`` may fetch from."""
    return {
        "name": name,
        "url": url,
        "topic": "News",
        "groups": ["*"],
        "approval": "auto",
        "allow_private": True,
        **extra,
    }


def fetch(url: str, site_dir: Path, client: HttpFetcher, timeout: float = 60.0) -> Fetched:
    """A feed fetched from the test server (on 127.0.0.1, so with private addresses allowed)."""
    policy, limits = AddressPolicy(allow_private=True), FetchLimits(timeout=timeout)
    return fetch_feed(url, site_dir, client, policy=policy, limits=limits)


@pytest.fixture
def make_site(site_dir: Path, db_url: str) -> Iterator[Callable[[list[dict[str, Any]]], Site]]:
    """Open the example site (copied to a temp dir) with these sources, on the test database."""
    opened: list[Site] = []

    def make(sources: list[dict[str, Any]], tables: str = "") -> Site:
        use_sources(site_dir, sources, tables=tables)
        settings = load_settings(site_dir, env={}, overrides={"database.url": db_url})
        site = Site.open(settings)
        opened.append(site)
        return site

    yield make
    for site in opened:
        site.close()


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture(scope="module")
def corpus_server() -> Iterator[FeedServer]:
    if not FEEDS.is_dir():
        pytest.skip(NO_CORPUS)
    with feed_server(FEEDS) as running:
        yield running


@pytest.fixture
def client() -> HttpFetcher:
    return HttpFetcher()


def items(site: Site) -> list[Item]:
    with site.transaction() as session:
        return list(session.exec(select(Item).order_by(col(Item.id))))


# The corpus, file by file --------------------------------------------------------

Check = Callable[[Fetched, list[FeedEntry]], None]
CHECKS: dict[str, Check | str] = {}


def case(*files: str) -> Callable[[Check], Check]:
    def register(check: Check) -> Check:
        for name in files:
            CHECKS[name] = check
        return check

    return register


def unreadable(file: str) -> None:
    CHECKS[file] = "error"


@case(
    "encoding/big5.xml",
    "encoding/euc-kr.xml",
    "encoding/utf-16le-bom.xml",
    "encoding/utf-8-bom.xml",
    "encoding/http_text_xml_charset_overrides_encoding.xml",
    "malformed/always_strip_doctype.xml",
)
def _empty_but_clean(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # Channels without items: decoded without complaint (a wrong decoding would be "bozo").
    assert fetched.bozo is None
    assert fetched.entries == []
    assert drafts == []


@case("malformed/http_high_bit_date.xml")
def _high_bit_date(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # Served as text/xml (so us-ascii by RFC 3023) with Greek bytes in a date: feedparser
    # decodes it anyway and says so; an empty channel is not an error.
    assert fetched.entries == []
    assert drafts == []


@case("encoding/demoronize-1.xml")
def _demoronize(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # A Windows-1252 apostrophe byte in a UTF-8 feed comes out as U+2019.
    assert fetched.bozo is None
    [entry] = drafts
    assert entry.draft.title == "don\u2019t"
    assert entry.draft.summary_html == "don\u2019t"


@case("encoding/double-encoded-html.xml")
def _double_encoded(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    [entry] = drafts
    assert entry.draft.summary_html == "\u2026"
    assert entry.draft.title == "\u2026"


@case("encoding/bozo_linenoise.xml")
def _linenoise(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    assert fetched.bozo is not None
    [entry] = drafts
    if not HAS_CHARDET:
        # Without chardet feedparser falls back to iso-8859-2; with it the guess (and the
        # text) depends on chardet's version, so only "the entry came through" is checked.
        assert entry.draft.title == "\xe2\u20ac\u2122\xe2\u20ac\x9d\u0160"


@case("encoding/chardet_koi8r.xml", "encoding/chardet_shiftjis.xml", "encoding/chardet_windows1255.xml")
def _undeclared_encoding(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # No encoding information at all: only chardet can guess, and its guesses vary by
    # version (SOURCES.md). Asserted loosely: flagged, yet the entry comes through.
    assert fetched.bozo is not None
    assert len(drafts) == 1


@case("full/large_atom_feed_that_needs_css_sanitisation.xml")
def _large_atom(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    assert fetched.bozo is None
    assert len(drafts) == 15
    assert drafts[0].draft.title == "Невидимая броня для Вашего Nokia 5800"
    assert all(d.draft.url and d.draft.url.startswith("http://touchnokia.ru/") for d in drafts)
    assert all("style=" not in (d.draft.summary_html or "") for d in drafts)


@case("full/rss2.0NSwithModulesNoDefNSLocalNameClash.xml")
def _namespace_clash(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    [entry] = drafts
    assert entry.draft.summary_html == "correct description"
    assert entry.draft.title == "Test Item - RSS2.0 w/ NS, no default NS, localName clash"


@case("full/rss20.xml", "full/rss20dc.xml", "full/atom10.xml", "full/atom03.xml", "full/rss10.rdf")
def _documented(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # Checked against the annotated values in test_documented_feeds_give_the_annotated_entry.
    assert fetched.bozo is None
    assert len(drafts) == 1


@case("items/atom10_entry_link_rel_enclosure.xml", "items/rss_item_pubDate_map_updated_parsed.xml")
def _nothing_to_show(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # An entry with no title, no text and no page link has nothing a reader could use.
    assert fetched.bozo is None
    assert len(fetched.entries) == 1
    assert drafts == []


@case("items/rss_item_guid_not_permalink.xml")
def _guid_not_link(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # A guid with isPermaLink="false" is an identity, never the item's link.
    assert fetched.bozo is None
    assert "link" not in fetched.entries[0]
    assert all(d.draft.url != "http://guid.example.com/" for d in drafts)


@case("items/base_entry_content_xml_base.xml")
def _xml_base(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    [entry] = drafts
    assert entry.draft.title == "Example test"
    assert 'href="http://example.com/test/test.html"' in (entry.draft.summary_html or "")


@case("items/rss_item_content_encoded.xml")
def _content_encoded(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    [entry] = drafts
    assert entry.draft.summary_html == "<p>Example content</p>"
    assert entry.draft.title == "Example content"


@case("items/rss_item_enclosure_multiple.xml")
def _enclosures(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    [entry] = drafts
    assert entry.draft.url == "http://example.com/"
    assert fetched.entries[0]["enclosures"][1]["href"] == "http://example.com/2"


@case("items/sanitize_entry_content_script.xml")
def _content_script(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    [entry] = drafts
    assert entry.draft.summary_html == "safe description"
    assert "location" not in entry.draft.summary_html + entry.draft.title


@case("items/sanitize_entry_summary_onclick.xml")
def _summary_onclick(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # Only an image, which emails built here never carry: nothing is left to show.
    assert "onclick" not in fetched.entries[0]["summary"]
    assert drafts == []


@case("malformed/rss_incomplete_cdata.xml")
def _incomplete_cdata(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # Tolerated: flagged, not an error; the cut-off entry holds nothing usable.
    assert fetched.bozo is not None
    assert drafts == []


@case("malformed/rss_item_link_corrupted_ampersands.xml")
def _corrupted_ampersands(fetched: Fetched, drafts: list[FeedEntry]) -> None:
    # Ill-formed (the document is cut off) yet the entry comes through, link intact.
    assert fetched.bozo is not None
    [entry] = drafts
    assert entry.draft.url == "http://link/get?a=1&b=2"


for _name in ("malformed/aaa_illformed.xml", "malformed/rss_empty_document.xml"):
    unreadable(_name)
# An undeclared namespace prefix stops the XML parser before any item: nothing to take.
unreadable("malformed/undeclared_namespace.xml")


def _corpus_params() -> list[Any]:
    if not EXPECTED:
        return [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS))]
    return [pytest.param(case, id=case["file"]) for case in EXPECTED]


def test_every_corpus_file_has_a_written_expectation() -> None:
    """Each file in expected.json is covered by a check here, so a new corpus file cannot go untested."""
    if not EXPECTED:
        pytest.skip(NO_CORPUS)
    files = {case["file"] for case in EXPECTED}
    assert files == set(CHECKS)
    assert all((FEEDS / name).is_file() for name in files)


@pytest.mark.parametrize("corpus_case", _corpus_params())
def test_corpus_feed_over_http(
    corpus_case: dict[str, Any], corpus_server: FeedServer, client: HttpFetcher
) -> None:
    """Each corpus feed, served over HTTP with its documented headers, parses as SOURCES.md says."""
    name = corpus_case["file"]
    content_type = corpus_case.get("http_headers", {}).get("Content-type")
    url = corpus_server.file_url(name, content_type)
    check = CHECKS[name]
    if check == "error":
        with pytest.raises(FeedError) as raised:
            fetch(url, FEEDS, client)
        assert url in str(raised.value)
        assert "not a readable feed" in str(raised.value) or "not an RSS or Atom feed" in str(raised.value)
        return
    fetched = fetch(url, FEEDS, client)
    assert not isinstance(check, str)
    check(fetched, drafts_of(fetched))


DOCUMENTED = [case for case in EXPECTED if "expected_from_docs" in case]


@pytest.mark.parametrize(
    "corpus_case",
    [pytest.param(c, id=c["file"]) for c in DOCUMENTED]
    or [pytest.param(None, marks=pytest.mark.skip(reason=NO_CORPUS))],
)
def test_documented_feeds_give_the_annotated_entry(
    corpus_case: dict[str, Any], corpus_server: FeedServer, client: HttpFetcher
) -> None:
    """The sample feeds of feedparser's docs give the title, link, guid and date their annotations state."""
    expected = corpus_case["expected_from_docs"]
    fetched = fetch(corpus_server.file_url(corpus_case["file"]), FEEDS, client)
    [entry] = drafts_of(fetched)
    assert entry.draft.title == expected["entry_title"]
    assert entry.draft.url == expected["entry_link"]
    if "entry_id" in expected:
        assert entry.guid == expected["entry_id"]
    if "entry_published" in expected:
        text = expected["entry_published"]
        when = (
            parsedate_to_datetime(text)
            if text[:3].isalpha()
            else datetime.fromisoformat(text.replace("Z", "+00:00"))
        )
        assert entry.draft.published_at == when


@pytest.mark.parametrize("name", ["full/rss20.xml", "full/atom10.xml", "full/atom03.xml"])
def test_javascript_in_sample_feeds_is_removed(
    name: str, corpus_server: FeedServer, client: HttpFetcher
) -> None:
    """The style="...javascript:..." trick in the sample feeds never survives into a summary."""
    raw = (FEEDS / name).read_text(encoding="utf-8")
    assert "javascript:" in raw
    [entry] = drafts_of(fetch(corpus_server.file_url(name), FEEDS, client))
    summary = entry.draft.summary_html or ""
    assert "nasty tricks" in summary
    assert "javascript" not in summary.lower()
    assert "style" not in summary.lower()
    assert "<script" not in summary.lower()


# Encodings beyond the corpus: the decoded text is what counts ---------------------

ENCODED = [
    ("euc-kr", "특허 정보 뉴스", None),
    ("big5", "專利資訊新聞", None),
    ("shift_jis", "特許情報のお知らせ", None),
    ("koi8-r", "Патентная информация", None),
    ("utf-16", "Información de patentes – “nuevo”", None),
    ("windows-1252", "Café déjà vu – “quoted”", "application/rss+xml; charset=windows-1252"),
    ("iso-8859-7", "Πληροφορίες διπλωμάτων ευρεσιτεχνίας", "text/xml; charset=iso-8859-7"),
]


@pytest.mark.parametrize(("encoding", "title", "content_type"), ENCODED, ids=[e[0] for e in ENCODED])
def test_odd_encodings_decode(
    encoding: str, title: str, content_type: str | None, server: FeedServer, client: HttpFetcher
) -> None:
    """A feed in a legacy or UTF-16 encoding, declared in XML or only in HTTP, decodes to the right text."""
    declaration = "" if content_type else f'<?xml version="1.0" encoding="{encoding}"?>\n'
    document = (
        declaration + '<rss version="2.0"><channel><title>t</title><link>https://example.org/</link>'
        f"<description>d</description><item><title>{title}</title>"
        f"<link>https://example.org/1</link><description>{title}</description></item></channel></rss>"
    )
    url = server.feed("odd.xml", document.encode(encoding), content_type=content_type or "application/xml")
    fetched = fetch(url, Path("."), client)
    [entry] = drafts_of(fetched)
    assert entry.draft.title == title
    assert entry.draft.summary_html == title


# Errors from the network and from what comes back ---------------------------------


def test_empty_body_and_html_page_are_errors(server: FeedServer, client: HttpFetcher) -> None:
    """A 200 answer that is empty or an HTML page is an error naming the URL, not "0 new items"."""
    empty = server.feed("empty.xml", b"")
    page = server.feed("page.xml", b"<html><body><p>Login</p></body></html>", content_type="text/html")
    for url in (empty, page):
        with pytest.raises(FeedError, match="not") as raised:
            fetch(url, Path("."), client)
        assert url in str(raised.value)


@pytest.mark.parametrize(("status", "words"), [(404, "HTTP 404 Not Found"), (500, "HTTP 500")])
def test_http_errors_name_the_url_and_status(
    status: int, words: str, server: FeedServer, client: HttpFetcher
) -> None:
    """A 404 or a 500 is a FeedError that says which URL answered what."""
    url = server.error(f"gone-{status}.xml", status)
    with pytest.raises(FeedError) as raised:
        fetch(url, Path("."), client)
    assert str(raised.value).startswith(url)
    assert words in str(raised.value)


def test_slow_server_times_out(server: FeedServer, client: HttpFetcher) -> None:
    """A server that never answers gives a "timed out" error instead of hanging."""
    url = server.slow("slow.xml", SLOW_SECONDS, rss([{"title": "late", "link": "https://example.org/late"}]))
    with pytest.raises(FeedError, match="timed out") as raised:
        fetch(url, Path("."), client, SHORT_TIMEOUT)
    assert url in str(raised.value)
    assert len(server.seen("slow.xml")) == 1


def test_missing_local_file_is_an_error(tmp_path: Path, client: HttpFetcher) -> None:
    """A local feed file that is not there is a FeedError naming the file."""
    with pytest.raises(FeedError, match="cannot read") as raised:
        fetch("samples/feeds/nothing-here.xml", tmp_path, client)
    assert "nothing-here.xml" in str(raised.value)


# Collection into the database ------------------------------------------------------

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def story(n: int, **extra: Any) -> dict[str, Any]:
    return {
        "title": f"Story {n}",
        "link": f"https://www.wipo.int/news/2026/story-{n}.html",
        "guid": f"wipo-{n}",
        "published": NOW - timedelta(days=1, hours=n),
        "description": f"Text of story {n}.",
        **extra,
    }


def test_conditional_get_and_304(server: FeedServer, make_site: Callable[..., Site]) -> None:
    """The second fetch sends If-None-Match and If-Modified-Since; a 304 adds nothing; a change is fetched."""
    url = server.feed("cond.xml", rss([story(1), story(2)]))
    site = make_site([source("cond", url)])
    first = collect(site, now=NOW)
    assert (first[0].added, first[0].error) == (2, None)
    second = collect(site, now=NOW)
    assert second[0].not_modified
    assert (second[0].added, second[0].seen, second[0].error) == (0, 0, None)
    route = server.routes["/cond.xml"]
    [plain, conditional] = server.seen("cond.xml")
    assert "if-none-match" not in plain
    assert "if-modified-since" not in plain
    assert conditional["if-none-match"] == route.etag
    assert conditional["if-modified-since"] == route.last_modified
    assert len(items(site)) == 2

    server.feed("cond.xml", rss([story(1), story(2), story(3)]))
    third = collect(site, now=NOW)
    assert (third[0].not_modified, third[0].added, third[0].seen) == (False, 1, 2)
    assert server.seen("cond.xml")[2]["if-none-match"] == route.etag
    with site.transaction() as session:
        row = session.exec(select(Source).where(col(Source.name) == "cond")).one()
    assert row.etag == server.routes["/cond.xml"].etag
    assert [i.title for i in items(site)] == ["Story 1", "Story 2", "Story 3"]


def test_broken_sources_do_not_stop_the_others(server: FeedServer, make_site: Callable[..., Site]) -> None:
    """404, 500 and a slow server each give one error for their own source; the good ones are collected."""
    good = server.feed("good.xml", rss([story(1)]))
    site = make_site(
        [
            source("missing", server.error("missing.xml", 404)),
            source("broken", server.error("broken.xml", 500)),
            source("slow", server.slow("slow.xml", SLOW_SECONDS, rss([story(9)]))),
            source("good", good),
            source("local", "samples/feeds/wipo-news.xml"),
        ],
        tables=f"[fetch]\ntimeout = {SHORT_TIMEOUT}\n",
    )
    reports = {r.name: r for r in collect(site, now=NOW)}
    assert "HTTP 404" in (reports["missing"].error or "")
    assert "HTTP 500" in (reports["broken"].error or "")
    assert "timed out" in (reports["slow"].error or "")
    assert (reports["good"].added, reports["good"].error) == (1, None)
    assert (reports["local"].added, reports["local"].error) == (2, None)
    with site.transaction() as session:
        errors = {s.name: s.last_error for s in session.exec(select(Source))}
    assert errors["good"] is None
    for name in ("missing", "broken", "slow"):
        assert errors[name] == reports[name].error
        assert server.url(f"{name}.xml") in (errors[name] or "")
    # Each failing URL was asked once: no hidden retries slowing the whole run down.
    assert len(server.seen("slow.xml")) == 1


@pytest.fixture
def failing_site(cli: Cli, server: FeedServer) -> Cli:
    """The example site with one good, one 404, one 500 and one slow source; a short fetch timeout."""
    use_sources(
        cli.site,
        [
            source("good", server.feed("good.xml", rss([story(1), story(2)]))),
            source("missing", server.error("missing.xml", 404)),
            source("broken", server.error("broken.xml", 500)),
            source("slow", server.slow("slow.xml", SLOW_SECONDS, rss([story(3)]))),
        ],
        tables=f"[fetch]\ntimeout = {SHORT_TIMEOUT}\n",
    )
    return cli


def test_collect_command_reports_failures_and_exits_1(failing_site: Cli) -> None:
    """`newsletter collect` collects the good source, prints each failure once, and exits 1."""
    result = failing_site("collect", ok=False)
    assert result.exit_code == 1, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()[1:] if line.strip()}
    assert lines["good"].split()[1:3] == ["2", "0"]
    assert lines["good"].rstrip().endswith("ok")
    assert "HTTP 404" in lines["missing"]
    assert "HTTP 500" in lines["broken"]
    assert "timed out" in lines["slow"]
    assert "Traceback" not in result.output
    listed = json.loads(failing_site("items", "list", "--json").stdout)
    assert sorted(i["title"] for i in listed) == ["Story 1", "Story 2"]


def test_status_shows_source_errors(failing_site: Cli) -> None:
    """After a failed collection, `newsletter status` names each broken source with its error."""
    failing_site("collect", ok=False)
    output = failing_site("status").output
    rows = {line.split()[0]: line for line in output.splitlines() if line.strip()}
    assert rows["good"].rstrip().endswith("ok")
    assert "error:" in rows["missing"]
    assert "HTTP 404" in rows["missing"]
    assert "HTTP 500" in rows["broken"]
    assert "timed out" in rows["slow"]
    sources = {s["name"]: s for s in json.loads(failing_site("status", "--json").stdout)["sources"]}
    assert sources["good"]["last_error"] is None
    assert "HTTP 404" in sources["missing"]["last_error"]


def test_items_keep_their_provenance(server: FeedServer, make_site: Callable[..., Site]) -> None:
    """An item from a feed records its source, guid, link, published and collected times."""
    published = datetime(2026, 11, 16, 7, 0, tzinfo=UTC)
    url = server.feed("prov.xml", rss([story(1, published=published)]))
    site = make_site([source("prov", url, topic="WIPO")])
    before = datetime.now(UTC)
    collect(site, now=NOW)
    [item] = items(site)
    with site.transaction() as session:
        row = session.exec(select(Source).where(col(Source.name) == "prov")).one()
    assert item.source_id == row.id
    assert item.guid == "wipo-1"
    assert item.url == "https://www.wipo.int/news/2026/story-1.html"
    assert item.canonical_url == item.url
    assert item.published_at == published
    assert item.created_at is not None
    assert before - timedelta(seconds=1) <= item.created_at <= datetime.now(UTC)
    assert item.origin == "feed:prov"
    assert item.topic == "WIPO"
    assert item.status == "approved"
    assert row.last_fetched_at == NOW


def test_same_guid_twice_is_one_item(server: FeedServer, make_site: Callable[..., Site]) -> None:
    """The same guid twice in a feed, and again in a later fetch, gives one item."""
    twice = [story(1), story(1, title="Story 1 (updated)", link="https://www.wipo.int/news/other.html")]
    url = server.feed("twice.xml", rss(twice), validators=False)
    site = make_site([source("twice", url)])
    [report] = collect(site, now=NOW)
    assert (report.added, report.seen) == (1, 1)
    [again] = collect(site, now=NOW)
    assert (again.added, again.seen, again.not_modified) == (0, 2, False)
    assert [i.title for i in items(site)] == ["Story 1"]


def test_same_story_through_another_feed_is_merged(
    server: FeedServer, make_site: Callable[..., Site]
) -> None:
    """A story reached again through another feed (utm_ parameters, host in capitals) stays one item."""
    first = server.feed("a.xml", rss([story(1)]))
    tracked = story(
        1,
        guid="partner-77",
        title="WIPO: story one, via a partner",
        link="https://WWW.WIPO.INT/news/2026/story-1.html?utm_source=partner&utm_medium=rss&utm_campaign=x",
    )
    second = server.feed("b.xml", rss([tracked]))
    site = make_site([source("a", first), source("b", second)])
    reports = {r.name: r for r in collect(site, now=NOW)}
    assert reports["a"].added == 1
    assert (reports["b"].added, reports["b"].merged) == (0, 1)
    [item] = items(site)
    assert item.title == "Story 1"
    assert item.canonical_url == "https://www.wipo.int/news/2026/story-1.html"


def test_entries_older_than_since_days_are_skipped(
    server: FeedServer, make_site: Callable[..., Site]
) -> None:
    """With since_days = 30, an entry published 40 days ago is skipped and counted; undated ones are kept."""
    old = story(1, published=NOW - timedelta(days=40))
    fresh = story(2, published=NOW - timedelta(days=2))
    undated = {k: v for k, v in story(3).items() if k != "published"}
    url = server.feed("since.xml", rss([old, fresh, undated]))
    site = make_site([source("since", url, since_days=30)])
    [report] = collect(site, now=NOW)
    assert (report.added, report.too_old) == (2, 1)
    assert sorted(i.title for i in items(site)) == ["Story 2", "Story 3"]


def test_scripts_never_reach_an_item(
    corpus_server: FeedServer, server: FeedServer, make_site: Callable[..., Site]
) -> None:
    """The <script> of the example feed and the javascript: of rss20/atom10 are gone from stored summaries."""
    site = make_site(
        [
            source("rss20", corpus_server.file_url("full/rss20.xml")),
            source("atom10", corpus_server.file_url("full/atom10.xml")),
            source("local", "samples/feeds/wipo-news.xml"),
            source(
                "evil",
                server.feed(
                    "evil.xml",
                    rss(
                        [
                            story(
                                1,
                                description='<p onclick="x()">Hi <a href="javascript:alert(1)">there</a>'
                                "<script>alert(2)</script><iframe src='https://evil.example'></iframe></p>",
                            )
                        ]
                    ),
                ),
            ),
        ]
    )
    reports = collect(site, now=NOW)
    assert all(r.error is None for r in reports), reports
    stored = items(site)
    assert len(stored) == 5
    assert any("Kazakhstan" in i.summary_html for i in stored)
    assert any("nasty tricks" in i.summary_html for i in stored)
    for item in stored:
        lowered = (item.summary_html + item.title).lower()
        for bad in ("<script", "javascript", "alert(", "onclick", "<iframe", "style="):
            assert bad not in lowered, (item.title, item.summary_html)


def test_an_unusable_link_does_not_break_its_source(
    server: FeedServer, make_site: Callable[..., Site]
) -> None:
    """An entry whose link has no host or is javascript: is kept without the link; its feed still works."""
    entries = [
        story(1, link="https://:80/no-host.html"),
        story(2, link="javascript:alert(1)"),
        story(3),
        story(4, link="HTTPS://WWW.EPO.ORG/News"),
    ]
    site = make_site([source("odd", server.feed("odd.xml", rss(entries)))])
    [report] = collect(site, now=NOW)
    assert (report.error, report.added) == (None, 4)
    urls = {i.title: i.url for i in items(site)}
    assert urls == {
        "Story 1": None,
        "Story 2": None,
        "Story 3": "https://www.wipo.int/news/2026/story-3.html",
        "Story 4": "HTTPS://WWW.EPO.ORG/News",
    }


def test_titles_are_plain_text(server: FeedServer, client: HttpFetcher) -> None:
    """Titles come out as the text a reader sees: markup dropped, entities decoded, never escaped twice."""
    atom = (
        '<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom"><title>t</title>'
        '<entry><id>1</id><title type="text">Q&amp;A &lt;live&gt; on R&amp;D</title>'
        '<link href="https://example.org/1"/></entry>'
        '<entry><id>2</id><title type="html">AT&amp;amp;T &lt;i&gt;unveils&lt;/i&gt; 5 &amp;lt; 6</title>'
        '<link href="https://example.org/2"/></entry></feed>'
    )
    fetched = fetch(server.feed("titles.xml", atom, content_type="application/atom+xml"), Path("."), client)
    assert [d.draft.title for d in drafts_of(fetched)] == ["Q&A <live> on R&D", "AT&T unveils 5 < 6"]
    fetched = fetch(
        server.feed("titles.rss", rss([story(1, title="Tom & Jerry <b>return</b>")])), Path("."), client
    )
    [entry] = drafts_of(fetched)
    assert entry.draft.title == "Tom & Jerry return"
