"""`collect` against hostile sources: bombs, drips, endless bodies and a huge feed, on real servers.

One bad source is recorded against that source and never stops or blocks the others;
the whole run stays within its time and memory; other writers get the database
between batches of a big feed.
"""

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, func, select

from newsletter.audience import subscribers
from newsletter.collecting import collect as collect_module
from newsletter.collecting.collect import collect
from newsletter.collecting.feeds import fetch as fetch_feed
from newsletter.core.models import Item, Source, Subscriber
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from tests.conftest import Cli
from tests.feed_server import FeedServer, feed_server, rss, use_sources

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
GIGABYTE = 1024**3
# Runs the CLI as its only child, then prints that child's peak RSS (KiB) as the last
# line of stderr: the test process's own earlier children must not count.
PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "done = subprocess.run(sys.argv[1:])\n"
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(done.returncode)\n"
)


def story(n: int) -> dict[str, Any]:
    return {
        "title": f"Story {n}",
        "link": f"https://www.wipo.int/news/2026/story-{n}.html",
        "guid": f"wipo-{n}",
        "published": NOW - timedelta(hours=n),
        "description": f"Text of story {n}.",
    }


def source(name: str, url: str, **extra: Any) -> dict[str, Any]:
    # The test servers are on 127.0.0.1: only allow_private fetches from them.
    return {"name": name, "url": url, "groups": ["*"], "approval": "auto", "allow_private": True, **extra}


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


@pytest.fixture
def make_site(site_dir: Path, db_url: str) -> Iterator[Callable[..., Site]]:
    opened: list[Site] = []

    def make(sources: list[dict[str, Any]], tables: str = "") -> Site:
        use_sources(site_dir, sources, tables=tables)
        site = Site.open(load_settings(site_dir, env={}, overrides={"database.url": db_url}))
        opened.append(site)
        return site

    yield make
    for site in opened:
        site.close()


def test_hostile_sources_end_in_time_and_memory_and_the_honest_one_is_stored(
    cli: Cli, server: FeedServer
) -> None:
    """A gzip bomb, a drip, an endless body, a refused address and an honest feed: one bounded run.

    `newsletter collect`, run as a process of its own, ends (the guard below only stops a
    hang), peaks under 400 MB, stores the honest feed, records each hostile source's
    error, and prints no traceback.
    """
    honest = server.feed("honest.xml", rss([story(1), story(2)]))
    use_sources(
        cli.site,
        [
            source("bomb", server.gzip_bomb("bomb.xml", inflated=4 * GIGABYTE)),
            source("drip", server.drip("drip.xml", 0.2)),
            source("endless", server.endless("endless.xml")),
            source("inner", honest.replace("127.0.0.1", "localhost"), allow_private=False),
            source("honest", honest),
        ],
        tables="[fetch]\ntimeout = 5\n",
    )
    command = [sys.executable, "-m", "newsletter", "--site", str(cli.site), "--database-url", cli.db_url]
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, *command, "collect"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    peak = done.stderr.splitlines()[-1]
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert int(peak) < 400 * 1024, f"peak RSS {int(peak) // 1024} MB"
    lines = {line.split()[0]: line for line in done.stdout.splitlines()[1:] if line.strip()}
    assert "inflates to more than the 20 MB limit" in lines["bomb"]
    assert "timed out" in lines["drip"]
    assert "larger than the 20 MB limit" in lines["endless"]
    assert "refused" in lines["inner"]
    assert "loopback" in lines["inner"]
    assert lines["honest"].split()[1] == "2"
    assert lines["honest"].rstrip().endswith("ok")

    status = json.loads(cli("status", "--json").stdout)
    health = {s["name"]: s for s in status["sources"]}
    assert health["honest"]["last_error"] is None
    assert health["honest"]["items"] == 2
    assert health["honest"]["failures"] == 0
    for name in ("bomb", "drip", "endless", "inner"):
        assert health[name]["last_error"], name
        assert health[name]["failures"] == 1
        assert health[name]["last_success_at"] is None


def test_status_counts_failures_in_a_row(cli: Cli, server: FeedServer) -> None:
    """A source failing twice shows "2 failures in a row"; a success resets the count."""
    use_sources(cli.site, [source("flaky", server.error("flaky.xml", 503))])
    cli("collect", ok=False)
    cli("collect", ok=False)
    row = next(line for line in cli("status").output.splitlines() if line.startswith("flaky"))
    assert "HTTP 503" in row
    assert "2 failures in a row, never ok" in row
    server.feed("flaky.xml", rss([story(1)]))
    cli("collect")
    [flaky] = json.loads(cli("status", "--json").stdout)["sources"]
    assert (flaky["failures"], flaky["last_error"]) == (0, None)
    assert flaky["last_success_at"] is not None


def test_writes_from_elsewhere_succeed_between_batches(
    server: FeedServer, make_site: Callable[..., Site], site_dir: Path, db_url: str
) -> None:
    """A big feed is stored in batches: another connection signs someone up between any two of them."""
    url = server.feed("big.xml", rss([story(n) for n in range(250)]))
    site = make_site([source("big", url)], tables="[collect]\nbatch_size = 50\n")
    other = Site.open(load_settings(site_dir, env={}, overrides={"database.url": db_url}))
    stored: list[int] = []

    def sign_up(name: str, so_far: int) -> None:
        # Another engine, another connection: on SQLite this waits for (and, after the
        # busy timeout, fails on) any write transaction the collect still holds.
        with other.transaction() as session:
            subscribers.add(session, other.settings, "cepiug", f"reader{so_far}@example.org", actor="test")
        with other.transaction() as session:
            count = session.exec(select(func.count()).select_from(Item)).one()
        stored.append(so_far)
        assert count == so_far, "the batch is committed before the hook runs"

    try:
        [report] = collect(site, now=NOW, on_batch=sign_up)
        with other.transaction() as session:
            readers = session.exec(select(Subscriber.email).where(col(Subscriber.email).like("reader%")))
            signed_up = sorted(readers)
    finally:
        other.close()
    assert (report.added, report.error) == (250, None)
    assert stored == [50, 100, 150, 200, 250]
    assert signed_up == sorted(f"reader{n}@example.org" for n in stored)


def test_a_run_out_of_time_reports_the_sources_it_did_not_reach(
    server: FeedServer, make_site: Callable[..., Site]
) -> None:
    """[collect] timeout bounds the run: the fetch in hand stops; later sources are reported, not fetched."""
    site = make_site(
        [
            source("drip", server.drip("drip.xml", 0.2)),
            source("later", server.feed("later.xml", rss([story(1)]))),
        ],
        tables="[collect]\ntimeout = 1\n",
    )
    reports = {r.name: r for r in collect(site, now=NOW)}
    assert "the time left for this run ran out" in (reports["drip"].error or "")
    assert "not fetched: the collect run's 1 s ran out" in (reports["later"].error or "")
    assert server.seen("later.xml") == []
    with site.transaction() as session:
        rows = {s.name: s for s in session.exec(select(Source))}
    assert rows["later"].last_error == reports["later"].error
    assert rows["later"].last_fetched_at is None


def test_a_stopping_daemon_skips_the_sources_left(server: FeedServer, make_site: Callable[..., Site]) -> None:
    """When the daemon is stopping, the collect run ends after the source in hand; the rest are skipped."""
    first, second = server.feed("first.xml", rss([story(1)])), server.feed("second.xml", rss([story(2)]))
    site = make_site([source("first", first), source("second", second)])
    asked: list[bool] = []

    def stopping() -> bool:
        asked.append(True)
        return len(asked) > 1

    reports = {r.name: r for r in collect(site, now=NOW, should_stop=stopping)}
    assert (reports["first"].added, reports["first"].skipped) == (1, False)
    assert (reports["second"].skipped, reports["second"].error) == (True, None)
    assert server.seen("second.xml") == []


class Clock:
    """Stands in for the collect module's ``time``: its monotonic clock moves only when told."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now


def test_a_run_out_of_time_keeps_the_batches_stored_and_finishes_next_time(
    site_dir: Path, make_site: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Time running out between batches stops the run there; the next run stores the rest (the rest only)."""
    # A feed file of the site's own: its reading takes no deadline, so the stand-in clock only cuts batches.
    (site_dir / "big.xml").write_text(rss([story(n) for n in range(120)]), encoding="utf-8")
    site = make_site([source("big", "big.xml")], tables="[collect]\nbatch_size = 50\ntimeout = 60\n")
    clock = Clock()
    monkeypatch.setattr(collect_module, "time", clock)

    def late(name: str, so_far: int) -> None:
        clock.now += 61

    [cut] = collect(site, now=NOW, on_batch=late)
    assert (
        cut.error
        == "stopped after 50 of 120 entries: the collect run's 60 s ran out; the rest is stored next time"
    )
    assert cut.added == 50
    with site.transaction() as session:
        row = session.exec(select(Source)).one()
    assert (row.failures, row.last_error) == (1, cut.error)
    monkeypatch.undo()
    [rest] = collect(site, now=NOW)
    assert (rest.added, rest.seen, rest.error) == (70, 50, None)


def test_an_unexpected_fault_in_one_fetch_does_not_stop_the_others(
    server: FeedServer, make_site: Callable[..., Site], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fault nobody foresaw (a RecursionError) while fetching one source is that source's error only."""

    def faulty(url: str, *args: Any, **kwargs: Any) -> Any:
        if "faulty" in url:
            raise RecursionError("maximum recursion depth exceeded")
        return fetch_feed(url, *args, **kwargs)

    monkeypatch.setattr("newsletter.collecting.collect.fetch", faulty)
    site = make_site(
        [
            source("faulty", server.feed("faulty.xml", rss([story(1)]))),
            source("good", server.feed("good.xml", rss([story(2)]))),
        ]
    )
    reports = {r.name: r for r in collect(site, now=NOW)}
    assert reports["faulty"].error == "RecursionError: maximum recursion depth exceeded"
    assert (reports["good"].added, reports["good"].error) == (1, None)


def test_run_due_is_bounded_by_the_fetch_deadline_too(cli: Cli, server: FeedServer) -> None:
    """`run-due` collects through the same bounded fetch: a drip source is reported, the tick ends."""
    use_sources(
        cli.site,
        [
            source("drip", server.drip("drip.xml", 0.2)),
            source("honest", server.feed("h.xml", rss([story(1)]))),
        ],
        tables="[fetch]\ntimeout = 1\n",
    )
    result = cli("run-due", "--at", "2026-11-23T09:00:00+00:00", ok=False)
    assert "Traceback" not in result.output
    assert "timed out fetching" in result.output
    [honest] = [s for s in json.loads(cli("status", "--json").stdout)["sources"] if s["name"] == "honest"]
    assert (honest["items"], honest["last_error"]) == (1, None)
