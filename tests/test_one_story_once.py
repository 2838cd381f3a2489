"""One story, once: near-duplicates from several sources merge into one item, every provenance kept.

The labelled pairs (tests/data/near_duplicates.json) measure the merge rule's precision
and recall; docs/deduplication.md carries the same figures (``python -m
bench.dedup_quality`` prints them).
"""

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from sqlalchemy import text
from sqlmodel import Session, col, select

from newsletter.core.db import alembic_config, make_engine, migrate
from newsletter.core.models import Item, ItemStatus, Provenance
from newsletter.pool.similar import THRESHOLD, profile, same_story
from tests.conftest import Cli
from tests.feed_server import FeedServer, feed_server, rss, use_sources

PAIRS = json.loads((Path(__file__).parent / "data" / "near_duplicates.json").read_text(encoding="utf-8"))[
    "pairs"
]
NOW = datetime.now(UTC).replace(microsecond=0)


def _language(pair: dict[str, Any]) -> str:
    title = pair["a"]["title"]
    return "de" if title.startswith("DPMA") else "fr" if title.startswith("INPI") else "en"


def measure(threshold: float = THRESHOLD) -> tuple[float, float, int]:
    """Precision, recall and the number of pairs of the merge rule on the labelled set."""
    true_pos = false_pos = false_neg = 0
    for pair in PAIRS:
        language = _language(pair)
        a = profile(pair["a"]["title"], pair["a"]["text"], language)
        b = profile(pair["b"]["title"], pair["b"]["text"], language)
        merged = same_story(a, b, threshold)
        true_pos += merged and pair["same"]
        false_pos += merged and not pair["same"]
        false_neg += not merged and pair["same"]
    return true_pos / (true_pos + false_pos), true_pos / (true_pos + false_neg), len(PAIRS)


def test_the_labelled_set_has_both_kinds_of_pairs() -> None:
    same = sum(pair["same"] for pair in PAIRS)
    assert same >= 25
    assert len(PAIRS) - same >= 25


def test_precision_and_recall_on_the_labelled_set() -> None:
    """A wrong merge hides a story, a missed one shows it twice: precision first, recall close."""
    precision, recall, _ = measure()
    assert precision >= 0.95
    assert recall >= 0.85


def test_the_figures_in_the_docs_are_the_measured_ones() -> None:
    precision, recall, pairs = measure()
    doc = (Path(__file__).parent.parent / "docs" / "deduplication.md").read_text(encoding="utf-8")
    assert f"| {THRESHOLD:.2f} | {pairs} | {precision:.2f} | {recall:.2f} |" in doc


def test_an_identical_text_is_the_same_story_and_different_years_are_not() -> None:
    title, text = "EPO publishes Patent Index 2025", "Filings at the EPO rose by 2.1% last year."
    assert same_story(profile(title, text), profile(title, text))
    assert not same_story(profile(title, text), profile(title.replace("2025", "2024"), text))
    part = "PATENTSCOPE webinar series, part {}", "Searching chemical structures in PATENTSCOPE."
    assert not same_story(profile(part[0].format(1), part[1]), profile(part[0].format(2), part[1]))
    week = "Week {} story {}", "What happened this week."
    assert not same_story(profile(week[0].format(2, 1), week[1]), profile(week[0].format(1, 2), week[1]))
    assert not same_story(profile("", ""), profile("", ""))


# Collecting --------------------------------------------------------------------------


def story(slug: str, title: str, description: str, host: str, hours: int = 1) -> dict[str, Any]:
    return {
        "title": title,
        "link": f"https://{host}/news/{slug}.html",
        "guid": f"{host}:{slug}",
        "published": NOW - timedelta(hours=hours),
        "description": description,
    }


PATENTSCOPE_WIPO = story(
    "patentscope-ai",
    "WIPO launches new AI-powered search in PATENTSCOPE",
    "The World Intellectual Property Organization has launched a new artificial intelligence search "
    "feature in PATENTSCOPE, letting users find prior art by describing an invention in plain language.",
    "www.wipo.int",
)
PATENTSCOPE_EPO = story(
    "wipo-patentscope-ai-search",
    "New AI search in PATENTSCOPE launched by WIPO",
    "WIPO today launched an AI-powered semantic search in its PATENTSCOPE database. Users can describe "
    "an invention in plain language to find relevant prior art across 120 million documents.",
    "www.epo.org",
    hours=3,
)
TRANSLATE_KOREAN = story(
    "translate-ko",
    "WIPO Translate now covers Korean-English patent texts",
    "WIPO Translate, the neural machine translation tool for patent documents, now covers Korean to English.",
    "www.wipo.int",
    hours=5,
)
TRANSLATE_ARABIC = story(
    "translate-ar",
    "WIPO Translate now covers Arabic-English patent texts",
    "WIPO Translate, the neural machine translation tool for patent documents, now covers Arabic to English.",
    "www.epo.org",
    hours=6,
)


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


def two_feeds(site_dir: Path, server: FeedServer) -> None:
    # No ETag: every collect reads the feeds again, so "seen" is counted, not "not modified".
    wipo = server.feed("wipo.xml", rss([PATENTSCOPE_WIPO, TRANSLATE_KOREAN]), validators=False)
    epo = server.feed("epo.xml", rss([PATENTSCOPE_EPO, TRANSLATE_ARABIC]), validators=False)
    common = {"groups": ["*"], "approval": "editor", "allow_private": True, "topic": "WIPO"}
    use_sources(site_dir, [{"name": "wipo", "url": wipo, **common}, {"name": "epo", "url": epo, **common}])


def collected(cli: Cli) -> dict[str, dict[str, Any]]:
    return {report["name"]: report for report in json.loads(cli("collect", "--json").output)}


def shown(cli: Cli, item_id: int) -> dict[str, Any]:
    return dict(json.loads(cli("items", "show", str(item_id), "--json").output))


def pool(db_url: str) -> list[Item]:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            return list(session.exec(select(Item).order_by(col(Item.id))))
    finally:
        engine.dispose()


def test_the_same_story_from_two_feeds_is_one_item_with_both_sources(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    two_feeds(site_dir, server)

    reports = collected(cli)

    assert (reports["wipo"]["added"], reports["epo"]["added"], reports["epo"]["merged"]) == (2, 1, 1)
    titles = [item.title for item in pool(db_url)]
    assert titles == [PATENTSCOPE_WIPO["title"], TRANSLATE_KOREAN["title"], TRANSLATE_ARABIC["title"]]
    [patentscope] = [item for item in pool(db_url) if item.title == PATENTSCOPE_WIPO["title"]]
    sources = shown(cli, patentscope.id or 0)["sources"]
    assert [(s["origin"], s["merged"], s["url"]) for s in sources] == [
        ("feed:wipo", None, PATENTSCOPE_WIPO["link"]),
        ("feed:epo", "similar", PATENTSCOPE_EPO["link"]),
    ]
    assert sources[1]["similarity"] >= THRESHOLD

    again = collected(cli)
    assert [(again[n]["added"], again[n]["merged"], again[n]["seen"]) for n in ("wipo", "epo")] == [
        (0, 0, 2),
        (0, 0, 2),
    ]


def test_an_editor_splits_a_wrong_merge_and_it_stays_split(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    two_feeds(site_dir, server)
    collected(cli)
    [patentscope] = [item for item in pool(db_url) if item.title == PATENTSCOPE_WIPO["title"]]
    item_id = patentscope.id or 0
    first, merged = (s["id"] for s in shown(cli, item_id)["sources"])

    refused = cli("items", "split", str(item_id), str(first), ok=False)
    assert refused.exit_code != 0
    assert "it is the item's own" in refused.output
    assert "has no source #999" in cli("items", "split", str(item_id), "999", ok=False).output

    result = cli("items", "split", str(item_id), str(merged))
    new_id = int(result.output.split("item #")[1].split()[0])
    new = shown(cli, new_id)
    assert (new["title"], new["url"], new["status"]) == (
        PATENTSCOPE_EPO["title"],
        PATENTSCOPE_EPO["link"],
        str(ItemStatus.PROPOSED),
    )
    assert [s["origin"] for s in new["sources"]] == ["feed:epo"]
    assert [s["origin"] for s in shown(cli, item_id)["sources"]] == ["feed:wipo"]
    # The source's next collect knows its entry: nothing is merged back.
    again = collected(cli)
    assert (again["epo"]["added"], again["epo"]["merged"], again["epo"]["seen"]) == (0, 0, 2)
    assert len(pool(db_url)) == 4


def test_the_same_link_from_two_feeds_keeps_both_provenances(
    cli: Cli, site_dir: Path, db_url: str, server: FeedServer
) -> None:
    repeated = dict(PATENTSCOPE_EPO, link=PATENTSCOPE_WIPO["link"] + "?utm_source=epo", title="Other words")
    wipo = server.feed("wipo.xml", rss([PATENTSCOPE_WIPO]), validators=False)
    epo = server.feed("epo.xml", rss([repeated]), validators=False)
    common = {"groups": ["*"], "approval": "editor", "allow_private": True}
    use_sources(site_dir, [{"name": "wipo", "url": wipo, **common}, {"name": "epo", "url": epo, **common}])
    assert collected(cli)["epo"]["merged"] == 1
    [item] = pool(db_url)
    sources = shown(cli, item.id or 0)["sources"]
    assert [(s["origin"], s["merged"]) for s in sources] == [("feed:wipo", None), ("feed:epo", "url")]
    refused = cli("items", "split", str(item.id), str(sources[1]["id"]), ok=False)
    assert "it has the same link as the item" in refused.output
    assert collected(cli)["epo"]["seen"] == 1


def test_migrating_gives_existing_items_their_first_provenance(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        config = alembic_config()
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "0011")
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO item (title, url, fingerprint, summary_md, summary_html, kind, topic,"
                    " language, status, all_groups, origin, published_at, created_at, updated_at)"
                    " VALUES ('Old story', 'https://www.wipo.int/old', 'f1', '', '<p>Old</p>', 'news', '',"
                    " 'en', 'approved', true, 'cli', '2026-01-01 00:00:00', '2026-01-01 00:00:00',"
                    " '2026-01-01 00:00:00')"
                )
            )
        migrate(engine)
        with Session(engine) as session:
            [row] = session.exec(select(Provenance)).all()
            assert (row.title, row.url, row.origin, row.merged) == (
                "Old story",
                "https://www.wipo.int/old",
                "cli",
                None,
            )
    finally:
        engine.dispose()
