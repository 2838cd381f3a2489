"""Page sources: a listing page served by a real local HTTP server, its articles read with trafilatura.

The pages look like national offices' news pages: a menu, a footer, a cookie banner,
pagination, and articles with a "Source:" line. One article is built from the seed's
IP5 report (../shared/seeds/002_*.txt), banner included.
"""

import html
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import Session, col, select

from newsletter.collecting.pages import article_links, extract_article
from newsletter.core.db import make_engine
from newsletter.core.models import Item, ItemStatus
from tests.conftest import REPO, Cli
from tests.feed_server import FeedServer, feed_server, use_sources

HTML = "text/html; charset=utf-8"
SEED = next((REPO.parent / "shared" / "seeds").glob("002_*.txt"))


def _seed_parts() -> tuple[str, list[str], str, str]:
    """The seed's title, paragraphs, "Source:" line and cookie notice."""
    lines = [line.strip() for line in SEED.read_text(encoding="utf-8").splitlines()]
    title = lines[1]
    credit = next(i for i, line in enumerate(lines) if line.startswith("Source:"))
    paragraphs = [line for line in lines[2:credit] if line]
    cookie = next(line for line in lines if "uses cookies" in line)
    return title, paragraphs, lines[credit], cookie


TITLE, PARAGRAPHS, CREDIT, COOKIE = _seed_parts()
MENU = (
    '<header class="site-header"><nav class="menu"><ul>'
    '<li><a href="/news/">IP News</a></li><li><a href="/alerts/">Alerts</a></li>'
    '<li><a href="/articles/">Articles</a></li><li><a href="/cases/">Cases</a></li>'
    '<li><a href="/links/">Links</a></li></ul></nav></header>'
)
FOOTER = (
    '<footer><p>Copyright IP News</p><a href="/privacy">Privacy Statement</a> '
    '<a href="/contact">Contact us</a></footer>'
    f'<div id="cookie-banner" class="cookie-consent"><p>{html.escape(COOKIE)}</p>'
    '<button>I accept</button> <a href="/cookie-policy">Cookie Policy</a></div>'
)


def page(title: str, body: str, *, published: str | None = None) -> str:
    meta = f'<meta property="article:published_time" content="{published}">' if published else ""
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}'
        f" - IP News</title>{meta}</head><body>{MENU}<main>{body}</main>{FOOTER}</body></html>"
    )


def article(title: str, paragraphs: list[str], *, published: str, credit: str | None = None) -> str:
    text = "".join(f"<p>{html.escape(p)}</p>" for p in paragraphs)
    source = f'<p class="source">{html.escape(credit)}</p>' if credit else ""
    return page(
        title,
        f'<article><h1>{html.escape(title)}</h1><p class="date">{published}</p>{text}{source}'
        '<p><a href="/news/">&gt;&gt; Back</a></p></article>',
        published=published,
    )


STORIES = {
    "ip5-deputy-heads-2023": (TITLE, PARAGRAPHS, "2023-05-12", CREDIT),
    "wipo-pct-fees": (
        "WIPO lowers PCT fees for universities in 2024",
        [
            "Universities filing international patent applications under the PCT will pay "
            "less from January, WIPO's member states decided at their assembly in Geneva.",
            "The reduction applies to the international filing fee and to the handling fee.",
        ],
        "2023-10-02",
        None,
    ),
    "epo-unitary-patent-year": (
        "The Unitary Patent system one year on",
        [
            "Over 27,000 Unitary Patents were registered in the first year of the system, "
            "the European Patent Office reported at its users' conference in Munich.",
            "Uptake was highest among small companies and individual inventors.",
        ],
        "2024-06-01",
        "Source: European Patent Office",
    ),
}


def listing(slugs: list[str]) -> str:
    cards = "".join(
        f'<li class="news-item"><article><header><h2><a href="/news/{slug}.html">'
        f"{html.escape(STORIES[slug][0])}</a></h2></header><p>{STORIES[slug][2]}</p></article></li>"
        for slug in slugs
    )
    pagination = (
        '<div class="pagination"><a href="/news/?page=2" rel="next">Next page</a> '
        '<a href="/news/page/2/">2</a></div>'
    )
    sidebar = '<aside><h2>Related</h2><a href="/news/tags/ip5/">IP5 cooperation news and more</a></aside>'
    return page("News", f'<h1>News</h1><ul class="news-list">{cards}</ul>{pagination}{sidebar}')


def serve_story(server: FeedServer, slug: str, paragraphs: list[str] | None = None) -> None:
    title, text, published, credit = STORIES[slug]
    server.feed(
        f"news/{slug}.html",
        article(title, paragraphs or text, published=published, credit=credit),
        content_type=HTML,
    )


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


def page_source(server: FeedServer, **extra: Any) -> dict[str, Any]:
    # The test server is on 127.0.0.1: only allow_private fetches from it.
    return {
        "name": "ip-news",
        "kind": "page",
        "url": server.url("news/"),
        "topic": "IP5",
        "groups": ["*"],
        "approval": "editor",
        "allow_private": True,
        **extra,
    }


def items(db_url: str) -> list[Item]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            return list(
                session.exec(select(Item).where(col(Item.origin) == "page:ip-news").order_by(col(Item.id)))
            )
    finally:
        engine.dispose()


def collect(cli: Cli) -> dict[str, Any]:
    result = cli("collect", "--source", "ip-news", "--json")
    [report] = json.loads(result.output)
    assert report["error"] is None, report
    return dict(report)


def test_a_listing_gives_each_article_once_with_its_credit_and_no_banner(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    slugs = ["ip5-deputy-heads-2023", "wipo-pct-fees"]
    server.feed("news/", listing(slugs), content_type=HTML)
    for slug in slugs:
        serve_story(server, slug)
    use_sources(site_dir, [page_source(server)])

    report = collect(cli)

    assert (report["added"], report["seen"], report["warning"]) == (2, 0, None)
    stored = {item.url: item for item in items(db_url)}
    assert set(stored) == {server.url(f"news/{slug}.html") for slug in slugs}
    ip5 = stored[server.url("news/ip5-deputy-heads-2023.html")]
    assert ip5.title == TITLE
    assert ip5.topic == "IP5"
    assert ip5.status == ItemStatus.PROPOSED
    assert ip5.published_at is not None
    assert ip5.published_at.date().isoformat() == "2023-05-12"
    assert "<p>Source: China National Intellectual Property Administration</p>" in ip5.summary_html
    assert html.escape(PARAGRAPHS[0][:80], quote=False) in ip5.summary_html
    for boilerplate in ("cookies", "Cookie Policy", "Back", "Alerts", "Copyright"):
        assert boilerplate not in ip5.summary_html
    assert "Source:" not in stored[server.url("news/wipo-pct-fees.html")].summary_html
    # Only the listing and the articles were fetched: never the menu, footer, banner,
    # pagination or tag pages.
    assert len(server.seen("news/")) == 1
    for path in ("alerts/", "privacy", "cookie-policy", "news/page/2/", "news/tags/ip5/", "contact"):
        assert server.seen(path) == [], path


def test_a_second_collect_adds_nothing_and_a_new_article_adds_one(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    server.feed("news/", listing(["wipo-pct-fees"]), content_type=HTML)
    serve_story(server, "wipo-pct-fees")
    serve_story(server, "epo-unitary-patent-year")
    use_sources(site_dir, [page_source(server)])
    assert collect(cli)["added"] == 1

    again = collect(cli)
    assert (again["added"], again["seen"], again["updated"]) == (0, 1, 0)

    server.feed("news/", listing(["epo-unitary-patent-year", "wipo-pct-fees"]), content_type=HTML)
    third = collect(cli)
    assert (third["added"], third["seen"]) == (1, 1)
    assert [item.title for item in items(db_url)] == [
        STORIES[s][0] for s in ("wipo-pct-fees", "epo-unitary-patent-year")
    ]


def test_a_changed_article_updates_its_proposal_but_not_a_reviewed_item(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    server.feed("news/", listing(["wipo-pct-fees"]), content_type=HTML)
    serve_story(server, "wipo-pct-fees")
    use_sources(site_dir, [page_source(server)])
    collect(cli)
    [before] = items(db_url)

    serve_story(server, "wipo-pct-fees", ["Corrected: the reduction is 90 percent for universities."])
    report = collect(cli)
    assert (report["added"], report["updated"]) == (0, 1)
    [after] = items(db_url)
    assert after.id == before.id
    assert "Corrected: the reduction is 90 percent" in after.summary_html
    assert after.updated_at > before.updated_at

    cli("items", "approve", str(after.id))
    serve_story(server, "wipo-pct-fees", ["A later change nobody reviewed."])
    report = collect(cli)
    assert (report["updated"], report["seen"]) == (0, 1)
    [reviewed] = items(db_url)
    assert "Corrected" in reviewed.summary_html
    assert "nobody reviewed" not in reviewed.summary_html


def test_link_selector_picks_the_links(cli: Cli, site_dir: Path, db_url: str, server: FeedServer) -> None:
    slugs = ["wipo-pct-fees", "epo-unitary-patent-year"]
    body = listing(slugs).replace('<li class="news-item">', '<li class="news-item featured">', 1)
    server.feed("news/", body, content_type=HTML)
    for slug in slugs:
        serve_story(server, slug)
    use_sources(site_dir, [page_source(server, link_selector="li.featured h2 a")])

    assert collect(cli)["added"] == 1
    assert [item.title for item in items(db_url)] == [STORIES["wipo-pct-fees"][0]]


def test_a_broken_article_is_noted_and_the_others_are_stored(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    server.feed("news/", listing(["wipo-pct-fees", "epo-unitary-patent-year"]), content_type=HTML)
    server.error("news/wipo-pct-fees.html", 500)
    serve_story(server, "epo-unitary-patent-year")
    use_sources(site_dir, [page_source(server)])

    report = collect(cli)
    assert report["added"] == 1
    assert "HTTP 500" in report["warning"]
    # Fixed on the site: the next collect picks it up.
    serve_story(server, "wipo-pct-fees")
    assert collect(cli)["added"] == 1


def test_a_missing_listing_or_a_private_address_is_that_source_s_error(
    cli: Cli, site_dir: Path, server: FeedServer
) -> None:
    server.error("news/", 404)
    use_sources(site_dir, [page_source(server)])
    result = cli("collect", "--source", "ip-news", ok=False)
    assert result.exit_code == 1
    assert "HTTP 404" in result.output

    use_sources(site_dir, [page_source(server, allow_private=False)])
    result = cli("collect", "--source", "ip-news", ok=False)
    assert result.exit_code == 1
    assert "allow_private = true" in result.output


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"link_selector": "ul.news-list a[href"}, "is not a CSS selector"),
        ({"url": "samples/feeds/wipo-news.xml"}, "needs an http(s) URL"),
    ],
)
def test_check_refuses_a_bad_page_source(
    site_dir: Path, db_url: str, server: FeedServer, extra: dict[str, str], message: str
) -> None:
    use_sources(site_dir, [page_source(server, **extra)])
    result = Cli(site_dir, db_url, migrate=False)("check", ok=False)
    assert result.exit_code != 0
    assert message in result.output


def test_check_refuses_a_link_selector_on_a_feed(site_dir: Path, db_url: str, server: FeedServer) -> None:
    use_sources(site_dir, [page_source(server, kind="feed", link_selector="a")])
    result = Cli(site_dir, db_url, migrate=False)("check", ok=False)
    assert result.exit_code != 0
    assert 'link_selector is for kind = "page" sources only' in result.output


def test_article_links_without_a_selector_skip_site_chrome() -> None:
    body = listing(["wipo-pct-fees", "epo-unitary-patent-year"]).encode()
    links = article_links(body, "https://ip-news.example/news/", None, limit=20)
    assert [(link.url, link.text) for link in links] == [
        ("https://ip-news.example/news/wipo-pct-fees.html", STORIES["wipo-pct-fees"][0]),
        ("https://ip-news.example/news/epo-unitary-patent-year.html", STORIES["epo-unitary-patent-year"][0]),
    ]
    assert len(article_links(body, "https://ip-news.example/news/", None, limit=1)) == 1


@pytest.mark.parametrize(
    "body", [b"", b"\x00\xff not html", b"<html><body><nav><a href='/x'>x</a></nav></body></html>"]
)
def test_hostile_or_empty_pages_give_no_links_and_no_article(body: bytes) -> None:
    assert article_links(body, "https://ip-news.example/news/", None, limit=20) == []
    assert extract_article(body, "https://ip-news.example/news/a.html") is None
