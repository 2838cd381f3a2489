"""The scheduler: time driven through ``run_due(site, at, ...)`` and ``run-due --at``, never by sleeping.

Sites are the example site copied to a temp dir, on SQLite and (when configured)
PostgreSQL; feeds come from a real HTTP server on 127.0.0.1 or local files; mail goes
to the memory transport (library tests) or the outbox folder (CLI tests). The daemon
tests start ``python -m newsletter daemon`` as a real process and signal it.
"""

import email
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from newsletter.audience import subscribers
from newsletter.core.models import Edition, EditionItem, EditionStatus, Event, Group, Item
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.delivery.message import OutgoingMessage
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.scheduling.daemon import Daemon
from newsletter.scheduling.leader import leadership
from newsletter.scheduling.scheduler import TickReport, latest_slot, run_due, zone_of
from newsletter.scheduling.schedules import load_schedules
from tests.conftest import POSTGRES_URL, REPO, Cli, migrated, wait_until
from tests.feed_server import FeedServer, feed_server, rss, use_sources

WEEKLY = """
cron = "0 9 * * mon"
groups = ["cepiug", "uk"]
template = "digest"
subject = "{{ group.name }}: patent information news"
skip_if_empty = true
approval = "auto"
"""


# Helpers -------------------------------------------------------------------------


def set_schedules(site_dir: Path, **files: str) -> None:
    """Replace every schedule of the site with these (name -> TOML text)."""
    for old in (site_dir / "schedules").glob("*.toml"):
        old.unlink()
    for name, body in files.items():
        (site_dir / "schedules" / f"{name}.toml").write_text(body, encoding="utf-8")


def open_site(site_dir: Path, db_url: str) -> Site:
    return Site.open(load_settings(site_dir, env={}, overrides={"database.url": db_url}))


def import_members(site: Site, *groups: str) -> dict[str, int]:
    """Import the example subscriber lists; returns the number of members per group."""
    counts = {}
    with site.transaction() as session:
        for group in groups:
            path = site.settings.site_dir / "subscribers" / f"{group}.csv"
            report = subscribers.import_csv(session, site.settings, group, path, actor="test")
            counts[group] = report.added
    return counts


def feed_source(url: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "wipo",
        "url": url,
        "topic": "WIPO",
        "groups": ["*"],
        "approval": "auto",
        "since_days": 60,
        # The test feed server is on 127.0.0.1, which only allow_private may fetch from.
        "allow_private": True,
        **extra,
    }


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


def editions_by_group(site: Site) -> dict[str, list[Edition]]:
    result: dict[str, list[Edition]] = {}
    with site.transaction() as session:
        rows = session.exec(
            select(Edition, Group.slug)
            .join(Group, col(Group.id) == Edition.group_id)
            .order_by(col(Edition.id))
        )
        for edition, slug in rows:
            result.setdefault(slug, []).append(edition)
    return result


def titles_in(site: Site, edition_id: int | None) -> set[str]:
    with site.transaction() as session:
        return set(
            session.exec(
                select(Item.title)
                .join(EditionItem, col(EditionItem.item_id) == Item.id)
                .where(col(EditionItem.edition_id) == edition_id)
            )
        )


def plain_text(data: bytes) -> str:
    message = email.message_from_bytes(data, policy=default_policy)
    assert isinstance(message, EmailMessage)
    body = message.get_body(("plain",))
    assert body is not None
    return str(body.get_content())


def open_csv(site_dir: Path, group: str) -> list[str]:
    """The data lines of a group's subscriber CSV."""
    return (site_dir / "subscribers" / f"{group}.csv").read_text(encoding="utf-8").splitlines()[1:]


def events(site: Site, kind: str) -> list[Event]:
    with site.transaction() as session:
        return list(session.exec(select(Event).where(col(Event.kind) == kind)))


class HeldTransport(MemoryTransport):
    """A memory transport whose messages wait until ``release`` is set, like a relay that stalls."""

    def __init__(self, release: threading.Event) -> None:
        super().__init__()
        self.release = release

    def send(self, message: OutgoingMessage) -> None:
        if not self.release.wait(timeout=60):
            raise AssertionError("the transport was not released within 60 s")
        super().send(message)


class Mailbox:
    """One memory transport shared by every tick of a test."""

    def __init__(self, transport: MemoryTransport | None = None) -> None:
        self.transport = transport or MemoryTransport()

    def __call__(self) -> MemoryTransport:
        return self.transport

    @property
    def sent(self) -> list[tuple[int, int]]:
        return [(m.edition_id, m.subscriber_id) for m in self.transport.messages]


@pytest.fixture(autouse=True)
def few_members(site_dir: Path) -> None:
    """Two members per group: a message costs tens of milliseconds, and two prove as much as ten."""
    for path in (site_dir / "subscribers").glob("*.csv"):
        lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
        path.write_text("".join(lines[:3]), encoding="utf-8")


@pytest.fixture
def server() -> Iterator[FeedServer]:
    with feed_server() as running:
        yield running


# A weekly schedule over six simulated weeks ---------------------------------------

FIRST_MONDAY = date(2026, 11, 2)


def week_stories(week: int) -> list[dict[str, Any]]:
    """Two stories published on the Friday before the week's Monday."""
    monday = FIRST_MONDAY + timedelta(weeks=week)
    published = datetime.combine(monday - timedelta(days=3), datetime.min.time(), UTC) + timedelta(hours=10)
    return [
        {
            "title": f"Week {week} story {n}",
            "link": f"https://www.wipo.int/news/2026/w{week}-{n}.html",
            "guid": f"wipo-w{week}-{n}",
            "published": published + timedelta(minutes=n),
            "description": f"What happened in week {week}, part {n}.",
        }
        for n in (1, 2)
    ]


def test_six_weeks_send_one_edition_per_group_per_week(
    site_dir: Path, db_url: str, server: FeedServer
) -> None:
    """Six simulated weeks: each group gets exactly one edition a week, holding only that week's new items."""
    feed = server.feed("wipo.xml", rss(week_stories(0)))
    use_sources(site_dir, [feed_source(feed)])
    set_schedules(site_dir, weekly=WEEKLY)
    site = open_site(site_dir, db_url)
    members = import_members(site, "cepiug", "uk")
    mailbox = Mailbox()
    reports: list[TickReport] = []
    stories: list[dict[str, Any]] = []
    try:
        for week in range(6):
            stories += week_stories(week)
            server.feed("wipo.xml", rss(stories))
            if week == 3:
                # A restart: a new Site object (new engine) on the same database.
                site.close()
                site = open_site(site_dir, db_url)
            monday = datetime.combine(FIRST_MONDAY + timedelta(weeks=week), datetime.min.time(), UTC)
            before = len(mailbox.sent)
            # Saturday; Monday 08:30Z (09:30 Brussels, 08:30 London); 09:05Z twice.
            for at in (
                monday - timedelta(days=2) + timedelta(hours=12),
                monday + timedelta(hours=8, minutes=30),
                monday + timedelta(hours=9, minutes=5),
                monday + timedelta(hours=9, minutes=5),
            ):
                reports.append(run_due(site, at, mailbox))
            new = {s["title"] for s in week_stories(week)}
            by_group = editions_by_group(site)
            assert {g: len(e) for g, e in by_group.items()} == {"cepiug": week + 1, "uk": week + 1}
            this_week = mailbox.sent[before:]
            for group in ("cepiug", "uk"):
                edition = by_group[group][-1]
                assert edition.status == EditionStatus.SENT
                assert titles_in(site, edition.id) == new, (week, group)
                received = [s for e, s in this_week if e == edition.id]
                assert len(received) == len(set(received)) == members[group]
            assert len(this_week) == members["cepiug"] + members["uk"]
            text_part = plain_text(mailbox.transport.messages[-1].data)
            assert all(title in text_part for title in new)
            assert "Week 0 story" not in text_part or week == 0
    finally:
        site.close()
    assert len(mailbox.sent) == len(set(mailbox.sent)) == 6 * (members["cepiug"] + members["uk"])
    # The Monday 09:05 tick ran twice each week: the second one found nothing to do.
    repeats = reports[3::4]
    assert all(not r.built and not r.sent and not r.missed for r in repeats)
    # Before the first week, last Monday's slots were long past, but the schedule had
    # never run: they are set aside quietly, not reported as missed.
    assert [m for r in reports for m in r.missed] == []
    assert [r.built for r in reports[1:3]] == [
        ["weekly:cepiug:2026-11-02T09:00 -> edition #1"],
        ["weekly:uk:2026-11-02T09:00 -> edition #2"],
    ]


# The same moment twice, concurrently ----------------------------------------------


def test_two_schedulers_at_the_same_moment_build_and_send_once(site_dir: Path, db_url: str) -> None:
    """Two Site objects ticking one moment in two threads build each edition once, send each message once."""
    set_schedules(site_dir, weekly=WEEKLY)
    use_sources(site_dir, [feed_source("samples/feeds/wipo-news.xml")])
    first, second = open_site(site_dir, db_url), open_site(site_dir, db_url)
    try:
        members = import_members(first, "cepiug", "uk")
        at = utc(2026, 11, 23, 9, 30)
        run_due(first, at - timedelta(days=2), Mailbox())
        # Whichever tick sends holds its messages until the other tick has ended, so the
        # two overlap for certain: the other one finds the send lock taken.
        ended = [threading.Event(), threading.Event()]
        mailboxes = [Mailbox(HeldTransport(ended[1])), Mailbox(HeldTransport(ended[0]))]
        start = threading.Barrier(2, timeout=60)
        results: list[TickReport | BaseException] = []

        def tick(site: Site, mailbox: Mailbox, done: threading.Event) -> None:
            try:
                start.wait()
                results.append(run_due(site, at, mailbox))
            except BaseException as exc:
                results.append(exc)
            finally:
                done.set()

        threads = [
            threading.Thread(target=tick, args=arguments)
            for arguments in zip((first, second), mailboxes, ended, strict=True)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        reports = [r for r in results if isinstance(r, TickReport)]
        assert len(reports) == 2, results
        built = [b for r in reports for b in r.built]
        assert len(built) == 2
        waited = ["sending (another process is sending)" in r.skipped for r in reports]
        assert sorted(waited) == [False, True]
        # Sending is one process at a time; what the loser of that race left, a later tick sends.
        run_due(second, at + timedelta(minutes=5), mailboxes[1])
        editions = editions_by_group(first)
        assert {g: len(e) for g, e in editions.items()} == {"cepiug": 1, "uk": 1}
        sent = mailboxes[0].sent + mailboxes[1].sent
        assert len(sent) == len(set(sent)) == members["cepiug"] + members["uk"]
        assert all(e[0].status == EditionStatus.SENT for e in editions.values())
    finally:
        first.close()
        second.close()


# Daylight saving time -------------------------------------------------------------

DST = """
cron = "30 2 * * sun"
timezone = "Europe/Berlin"
groups = ["dach"]
template = "digest"
subject = "{{ group.name }}: Nachrichten"
skip_if_empty = true
approval = "auto"
"""


def finishes(function: Callable[[], Any], seconds: float = 60.0) -> Any:
    """Run ``function`` in a thread; fail (instead of hanging the suite) if it does not return."""
    result: list[Any] = []
    worker = threading.Thread(target=lambda: result.append(function()), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    return result[0]


def test_autumn_dst_night_builds_once(site_dir: Path, db_url: str) -> None:
    """On 2026-10-25 Europe/Berlin lives 02:30 twice; a `30 2 * * sun` schedule builds and sends once."""
    set_schedules(site_dir, night=DST)
    use_sources(site_dir, [feed_source("samples/feeds/wipo-news.xml", since_days=400)])
    site = open_site(site_dir, db_url)
    mailbox = Mailbox()
    try:
        members = import_members(site, "dach")
        # The second 02:30 (01:30 UTC) is a firing of its own, with the same period key.
        settings = site.settings
        [schedule] = load_schedules(settings.site_dir, settings.groups)[0]
        zone = zone_of(schedule, settings, "dach")
        for at, fold in ((utc(2026, 10, 25, 0, 45), 0), (utc(2026, 10, 25, 1, 45), 1)):
            slot = finishes(partial(latest_slot, schedule, "dach", zone, at))
            assert (slot.period_key, slot.fire_time.fold) == ("2026-10-25T02:30", fold)
        reports = []
        # Every half hour from Saturday 22:00 UTC to Sunday 04:00 UTC (00:00 to 05:00 local).
        at = utc(2026, 10, 24, 22, 0)
        while at <= utc(2026, 10, 25, 4, 0):
            reports.append(finishes(partial(run_due, site, at, mailbox)))
            at += timedelta(minutes=30)
        built = [(r.at, b) for r in reports for b in r.built]
        # 02:30 CEST is 00:30 UTC: built there, and not again at 02:30 CET (01:30 UTC).
        assert built == [(utc(2026, 10, 25, 0, 30), "night:dach:2026-10-25T02:30 -> edition #1")]
        [edition] = editions_by_group(site)["dach"]
        assert edition.period_key == "2026-10-25T02:30"
        assert edition.status == EditionStatus.SENT
        assert len(mailbox.sent) == len(set(mailbox.sent)) == members["dach"]
    finally:
        site.close()


# Downtime and grace ----------------------------------------------------------------


def test_missed_run_within_grace_is_built_once_and_beyond_grace_reported_once(
    site_dir: Path, db_url: str, server: FeedServer
) -> None:
    """After downtime a slot is built once within its 6 h grace; beyond it, it is reported missed once."""
    set_schedules(site_dir, weekly=WEEKLY.replace('["cepiug", "uk"]', '["cepiug"]'))
    feed = server.feed("wipo.xml", rss(week_stories(3)))
    use_sources(site_dir, [feed_source(feed)])
    site = open_site(site_dir, db_url)
    mailbox = Mailbox()
    try:
        members = import_members(site, "cepiug")
        saturday = utc(2026, 11, 21, 12, 0)
        assert not run_due(site, saturday, mailbox).built
        # Down from Saturday until Monday 11:00 UTC: the 08:00 UTC slot is 3 h late.
        late = run_due(site, utc(2026, 11, 23, 11, 0), mailbox)
        assert late.built == ["weekly:cepiug:2026-11-23T09:00 -> edition #1"]
        again = run_due(site, utc(2026, 11, 23, 12, 0), mailbox)
        assert (again.built, again.missed) == ([], [])
        assert len(mailbox.sent) == members["cepiug"]

        # Next week: new items, but down until Monday 15:00 UTC, 7 h after the slot.
        server.feed("wipo.xml", rss(week_stories(3) + week_stories(4)))
        missed = run_due(site, utc(2026, 11, 30, 15, 0), mailbox)
        assert missed.missed == ["weekly:cepiug:2026-11-30T09:00"]
        assert missed.built == []
        later = run_due(site, utc(2026, 11, 30, 18, 0), mailbox)
        assert (later.missed, later.built) == ([], [])
        markers = [e.source for e in events(site, "schedule-missed")]
        assert markers.count("weekly:cepiug:2026-11-30T09:00") == 1
        assert len(editions_by_group(site)["cepiug"]) == 1

        # The items that were not sent go out with the next slot.
        following = run_due(site, utc(2026, 12, 7, 8, 5), mailbox)
        assert following.built == ["weekly:cepiug:2026-12-07T09:00 -> edition #2"]
        assert titles_in(site, 2) == {s["title"] for s in week_stories(4)}
    finally:
        site.close()


# Approval and empty periods -------------------------------------------------------


def test_editor_approval_waits_for_editions_approve(site_dir: Path, db_url: str) -> None:
    """With approval = "editor" a tick builds a draft and sends nothing until `editions approve`."""
    set_schedules(site_dir, weekly=WEEKLY.replace('approval = "auto"', 'approval = "editor"'))
    use_sources(site_dir, [feed_source("samples/feeds/wipo-news.xml")])
    site = open_site(site_dir, db_url)
    cli = Cli(site_dir, db_url)
    mailbox = Mailbox()
    try:
        members = import_members(site, "cepiug", "uk")
        report = run_due(site, utc(2026, 11, 23, 9, 30), mailbox)
        assert len(report.waiting) == 2
        assert mailbox.sent == []
        assert run_due(site, utc(2026, 11, 23, 10, 0), mailbox).sent == []
        editions = editions_by_group(site)
        assert [e[0].status for e in editions.values()] == [EditionStatus.DRAFT, EditionStatus.DRAFT]
        cepiug = editions["cepiug"][0]
        cli("editions", "approve", str(cepiug.id))
        report = run_due(site, utc(2026, 11, 23, 10, 30), mailbox)
        assert len(report.sent) == 1
        assert {e for e, _ in mailbox.sent} == {cepiug.id}
        assert len(mailbox.sent) == members["cepiug"]
        assert editions_by_group(site)["uk"][0].status == EditionStatus.DRAFT
    finally:
        site.close()


def test_an_approved_edition_built_by_hand_waits_for_send_now_or_its_moment(
    site_dir: Path, db_url: str
) -> None:
    """Approving is not sending: a tick leaves a hand-built approved edition alone unless it is planned."""
    set_schedules(site_dir)
    use_sources(site_dir, [feed_source("samples/feeds/wipo-news.xml")])
    site = open_site(site_dir, db_url)
    cli = Cli(site_dir, db_url)
    mailbox = Mailbox()
    try:
        members = import_members(site, "cepiug", "uk")
        cli("collect")
        cli("items", "approve", "--all-proposed")
        cli("editions", "build", "cepiug")
        cli("editions", "build", "uk")
        built = editions_by_group(site)
        cepiug, uk = built["cepiug"][0], built["uk"][0]
        cli("editions", "approve", str(cepiug.id))
        cli("editions", "approve", str(uk.id))
        with site.transaction() as session:
            planned = session.get(Edition, uk.id)
            assert planned is not None
            planned.scheduled_at = utc(2026, 11, 23, 12, 0)

        assert run_due(site, utc(2026, 11, 23, 11, 0), mailbox).sent == []
        assert mailbox.sent == []
        report = run_due(site, utc(2026, 11, 23, 12, 0), mailbox)
        assert len(report.sent) == 1
        assert {e for e, _ in mailbox.sent} == {uk.id}
        assert len(mailbox.sent) == members["uk"]
        assert editions_by_group(site)["cepiug"][0].status == EditionStatus.APPROVED
    finally:
        site.close()


def test_skip_if_empty(site_dir: Path, db_url: str) -> None:
    """With nothing new, skip_if_empty = true builds nothing (once noted); false sends an empty edition."""
    skip = WEEKLY.replace('["cepiug", "uk"]', '["cepiug"]')
    send_empty = WEEKLY.replace('["cepiug", "uk"]', '["uk"]').replace(
        "skip_if_empty = true", "skip_if_empty = false"
    )
    set_schedules(site_dir, skip=skip, empty=send_empty)
    use_sources(site_dir, [])
    site = open_site(site_dir, db_url)
    mailbox = Mailbox()
    try:
        members = import_members(site, "cepiug", "uk")
        report = run_due(site, utc(2026, 11, 23, 9, 30), mailbox)
        assert report.skipped == ["skip:cepiug:2026-11-23T09:00"]
        assert report.built == ["empty:uk:2026-11-23T09:00 -> edition #1"]
        again = run_due(site, utc(2026, 11, 23, 9, 45), mailbox)
        assert (again.skipped, again.built) == ([], [])
        editions = editions_by_group(site)
        assert "cepiug" not in editions
        [empty] = editions["uk"]
        assert titles_in(site, empty.id) == set()
        assert len(mailbox.sent) == members["uk"]
        assert [e.source for e in events(site, "schedule-skip")] == ["skip:cepiug:2026-11-23T09:00"]
    finally:
        site.close()


def test_stop_request_ends_a_tick_between_editions(site_dir: Path, db_url: str) -> None:
    """A stop request (the daemon's SIGTERM) lets the edition in hand finish; the next tick sends the rest."""
    set_schedules(site_dir, weekly=WEEKLY)
    use_sources(site_dir, [feed_source("samples/feeds/wipo-news.xml")])
    site = open_site(site_dir, db_url)
    mailbox = Mailbox()
    try:
        members = import_members(site, "cepiug", "uk")
        at = utc(2026, 11, 23, 9, 30)
        first = run_due(site, at, mailbox, should_stop=lambda: bool(mailbox.sent))
        assert len(first.built) == 2
        assert len(first.sent) == 1
        assert len(mailbox.sent) in (members["cepiug"], members["uk"])
        second = run_due(site, at, mailbox)
        assert (second.built, len(second.sent)) == ([], 1)
        assert len(mailbox.sent) == len(set(mailbox.sent)) == members["cepiug"] + members["uk"]
    finally:
        site.close()


# The command line ---------------------------------------------------------------


def test_run_due_command_on_the_example_site(cli: Cli) -> None:
    """`run-due --at` on the example site collects, builds and sends each due edition; again: nothing."""
    cli("subscribers", "import", "cepiug", str(cli.site / "subscribers" / "cepiug.csv"))
    cli("subscribers", "import", "uk", str(cli.site / "subscribers" / "uk.csv"))
    first = cli("run-due", "--at", "2026-11-23T10:00:00+01:00")
    assert (
        "built: weekly:cepiug:2026-11-23T09:00 -> edition #1; weekly:uk:2026-11-23T09:00 -> edition #2"
        in first.output
    )
    outbox = cli.site / "outbox"
    sent = sorted(outbox.rglob("*.eml"))
    members = sum(len(open_csv(cli.site, g)) for g in ("cepiug", "uk"))
    assert len(sent) == members
    second = cli("run-due", "--at", "2026-11-23T10:00:00+01:00")
    assert "nothing was due" in second.output
    assert sorted(outbox.rglob("*.eml")) == sent
    status = json.loads(cli("status", "--json").stdout)
    next_runs = {(s["schedule"], s["group"]): s["next_run"] for s in status["schedules"]}
    assert set(next_runs) >= {("weekly", "cepiug"), ("weekly", "uk"), ("monthly-dach", "dach")}
    assert all(next_runs.values())


def test_run_due_command_exits_non_zero_when_a_slot_fails(cli: Cli) -> None:
    """A template that breaks every build: `run-due` says so, exits 1, and never says "nothing was due"."""
    template = cli.site / "templates" / "digest.mjml.j2"
    template.write_text(template.read_text().replace("{{ item.title }}", "{{ item.titel }}", 1))
    for _ in range(2):  # the failed slot is tried again on the next tick, and fails again
        result = cli("run-due", "--at", "2026-11-23T10:00:00+01:00", ok=False)
        assert result.exit_code == 1
        assert "errors: weekly:cepiug:2026-11-23T09:00: " in result.stdout
        assert "has no attribute 'titel'" in result.stdout
        assert "nothing was due" not in result.stdout
        assert result.stderr.startswith("error: 2 problem(s) in this tick, listed above")
        assert result.stderr.count("\n") == 1
    report = json.loads(cli("run-due", "--at", "2026-11-23T10:00:00+01:00", "--json", ok=False).stdout)
    assert len(report["errors"]) == 2


def test_run_due_command_refuses_while_a_daemon_leads(cli: Cli) -> None:
    """`newsletter run-due` does nothing and says why while another process holds the scheduler lock."""
    engine = create_engine(cli.db_url)
    open_site(cli.site, cli.db_url).close()
    try:
        with leadership(engine) as leader:
            assert leader
            result = cli("run-due", "--at", "2026-11-23T10:00:00+01:00", ok=False)
    finally:
        engine.dispose()
    assert result.exit_code != 0
    assert "daemon is running" in result.output
    assert not list((cli.site / "outbox").rglob("*.eml"))


# Leadership --------------------------------------------------------------------------


def test_leadership_is_exclusive_and_released(db_url: str) -> None:
    """One holder at a time gets the scheduler lock; after release the next one gets it."""
    engine, other = create_engine(db_url), create_engine(db_url)
    try:
        with leadership(engine) as first:
            assert first
            with leadership(other) as second:
                assert not second
        with leadership(other) as after:
            assert after
        # The send lock is another lock: `run-due` holds leadership and still sends.
        with leadership(engine) as leader, leadership(other, name="send") as sender:
            assert (leader, sender) == (True, True)
    finally:
        engine.dispose()
        other.dispose()


@pytest.mark.postgres
@pytest.mark.skipif(not POSTGRES_URL, reason="NEWSLETTER_TEST_POSTGRES_URL is not set")
def test_advisory_lock_is_per_schema() -> None:
    """Two sites in two schemas of one PostgreSQL database each get their own scheduler leader."""
    assert POSTGRES_URL
    admin = create_engine(POSTGRES_URL)
    schemas = [f"t_{uuid.uuid4().hex[:12]}" for _ in range(2)]
    engines = []
    try:
        with admin.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        for schema in schemas:
            url = make_url(POSTGRES_URL).update_query_dict({"options": f"-csearch_path={schema}"})
            engines.append(create_engine(url))
        with leadership(engines[0]) as first, leadership(engines[1]) as second:
            assert (first, second) == (True, True)
    finally:
        for engine in engines:
            engine.dispose()
        with admin.begin() as connection:
            for schema in schemas:
                connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def test_standby_daemon_takes_over_when_the_leader_stops(site_dir: Path, db_url: str) -> None:
    """Two in-process daemons: one leads; the other, refused again and again, ticks nothing until it leads."""
    set_schedules(site_dir, weekly=WEEKLY)
    use_sources(site_dir, [])
    sites = [open_site(site_dir, db_url), open_site(site_dir, db_url)]
    ticks: list[list[TickReport]] = [[], []]
    refusals: list[list[None]] = [[], []]
    daemons = [
        Daemon(
            site,
            Mailbox(),
            on_tick=ticked.append,
            now=lambda: utc(2026, 11, 21, 12, 0),
            standby_seconds=0.05,
            on_standby=partial(refused.append, None),
        )
        for site, ticked, refused in zip(sites, ticks, refusals, strict=True)
    ]
    threads = [threading.Thread(target=d.run, kwargs={"install_signals": False}) for d in daemons]
    try:
        threads[0].start()
        assert wait_until(lambda: bool(ticks[0]))
        threads[1].start()
        # The standby asks three times while the leader runs, and is refused each time.
        assert wait_until(lambda: len(refusals[1]) >= 3)
        assert ticks[1] == []
        daemons[0].request_stop()
        threads[0].join(timeout=60)
        assert not threads[0].is_alive()
        assert wait_until(lambda: bool(ticks[1]))
        assert refusals[0] == []
        assert [r.at for r in ticks[0] + ticks[1]] == [utc(2026, 11, 21, 12, 0)] * 2
    finally:
        for d in daemons:
            d.request_stop()
        for t in threads:
            t.join(timeout=60)
        for s in sites:
            s.close()
    assert not any(t.is_alive() for t in threads)


# The daemon as a real process ------------------------------------------------------


class DaemonProcess:
    """`python -m newsletter daemon` on a site, its log written to a file."""

    def __init__(self, site: Path, db_url: str, log: Path) -> None:
        self.log = log
        env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
        env["PYTHONPATH"] = str(REPO)
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "newsletter", "--site", str(site), "--database-url", db_url, "daemon"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=site,
            )

    def text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def terminate(self, timeout: float = 60.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise


def test_daemon_runs_logs_its_jobs_and_stops_on_sigterm(site_dir: Path, tmp_path: Path) -> None:
    """The daemon process ticks, logs each job's next run, and on SIGTERM finishes its work and exits 0."""
    daemon = DaemonProcess(site_dir, migrated(f"sqlite:///{tmp_path / 'daemon.db'}"), tmp_path / "daemon.log")
    try:
        jobs = ("weekly:cepiug", "weekly:uk", "monthly-dach:dach", "fortnightly-fr:fr", "collect")
        expected = ["leader: scheduling", " tick ", *(f"job {job}: next run" for job in jobs)]
        # The lines come one by one as the daemon starts: wait for all of them, not the first.
        assert wait_until(lambda: all(line in daemon.text() for line in expected)), daemon.text()
        assert daemon.terminate() == 0, daemon.text()
    finally:
        if daemon.process.poll() is None:
            daemon.process.kill()
    log = daemon.text()
    assert "stopping after the work in hand" in log
    assert log.rstrip().endswith("stopped")
    assert "Traceback" not in log


def test_second_daemon_stands_by(site_dir: Path, db_url: str, tmp_path: Path) -> None:
    """Two daemons on one database (SQLite file lock, PostgreSQL advisory lock): one leads, one stands by."""
    daemons = [DaemonProcess(site_dir, db_url, tmp_path / f"daemon-{n}.log") for n in (1, 2)]
    try:

        def settled() -> bool:
            logs = [d.text() for d in daemons]
            return any("leader: scheduling" in t for t in logs) and any("standing by" in t for t in logs)

        assert wait_until(settled), [d.text() for d in daemons]
        leaders = [d for d in daemons if "leader: scheduling" in d.text()]
        standbys = [d for d in daemons if "another daemon is the leader; standing by" in d.text()]
        assert len(leaders) == len(standbys) == 1
        assert leaders[0] is not standbys[0]
        assert [d.terminate() for d in daemons] == [0, 0]
    finally:
        for daemon in daemons:
            if daemon.process.poll() is None:
                daemon.process.kill()
    assert " tick " not in standbys[0].text()
    assert all(d.text().rstrip().endswith("stopped") for d in daemons)
