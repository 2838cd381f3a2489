"""Admins change the site's sources and schedules in the browser; the files stay the truth.

Against the real app on a copy of the example site (tests/workspace.py): each change is
written into ``newsletter.toml`` or ``schedules/NAME.toml`` with the rest of the file as
it was (comments included), ``newsletter check`` passes afterwards, the audit log names
the admin; bad input and stale forms leave the file byte for byte as it was; a fresh
site, the running app and the daemon's next tick see the change.
"""

import logging
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.core.models import Event
from newsletter.core.settings import load_settings
from newsletter.core.site import LiveSite
from newsletter.delivery.transports.memory import MemoryTransport
from newsletter.operations.siteedit import ScheduleForm, SiteEditor, SourceForm, version, write_atomically
from newsletter.scheduling.daemon import Daemon
from newsletter.scheduling.scheduler import TickReport
from tests.workspace import ADMIN, EDITOR, KEY, Workspace, csrf_of, session_for

NEW_SOURCE = {
    "name": "ipo-news",
    "url": "https://ipo.example.org/feed.xml",
    "topic": "IPO",
    "group": ["uk", "cepiug"],
    "approval": "editor",
    "language": "en",
    "interval_minutes": "120",
    "since_days": "",
}


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def form_of(client: TestClient, path: str) -> dict[str, Any]:
    """The CSRF token and the file version of the form on the page at ``path``."""
    page = client.get(path)
    assert page.status_code == 200, page.text
    found = re.search(r'name="version" value="([^"]*)"', page.text)
    assert found, "the form carries no version of the file"
    return {"csrf": csrf_of(page.text), "version": found.group(1)}


def events(ws: Workspace, prefix: str) -> list[Event]:
    with ws.site.transaction() as session:
        rows = session.exec(select(Event).where(col(Event.kind).startswith(prefix)).order_by(col(Event.id)))
        found = list(rows)
        for row in found:
            session.expunge(row)
    return found


def alert(page: str) -> str:
    found = re.search(r'role="alert"[^>]*>([^<]*)<', page)
    assert found, "the page shows no message"
    return found.group(1)


# -- sources -----------------------------------------------------------------------------------


def test_an_admin_adds_changes_and_removes_a_source_and_the_file_keeps_its_comments(ws: Workspace) -> None:
    """Add, change, remove through the pages: comments kept, `check` passes, each change audited by name."""
    config = ws.cli.site / "newsletter.toml"
    original = config.read_text(encoding="utf-8")
    admin = session_for(ws, ADMIN)

    added = admin.post("/admin/sources/new", data={**form_of(admin, "/admin/sources/new"), **NEW_SOURCE})
    assert added.status_code == 200, added.text
    assert "The source ipo-news was added to newsletter.toml." in added.text
    # The running app shows it at once (its sources follow the file).
    assert 'id="source-ipo-news"' in added.text
    text = config.read_text(encoding="utf-8")
    assert comments(text) == comments(original)
    assert text.startswith(original.rstrip("\n"))
    assert '\n[[sources]]\nname = "ipo-news"\nurl = "https://ipo.example.org/feed.xml"' in text
    ws.cli("check")

    change = {**NEW_SOURCE, "topic": "IP offices", "group": ["*"], "approval": "auto"}
    changed = admin.post(
        "/admin/sources/ipo-news/edit", data={**form_of(admin, "/admin/sources/ipo-news/edit"), **change}
    )
    assert changed.status_code == 200, changed.text
    text = config.read_text(encoding="utf-8")
    assert 'topic = "IP offices"\ngroups = ["*"]\napproval = "auto"' in text
    assert comments(text) == comments(original)
    ws.cli("check")

    form = form_of(admin, "/admin/sources/ipo-news/edit")
    removed = admin.post("/admin/sources/ipo-news/remove", data={**form, "confirm": "yes"})
    assert removed.status_code == 200, removed.text
    assert 'id="source-ipo-news"' not in removed.text
    assert config.read_text(encoding="utf-8") == original
    ws.cli("check")

    kinds = [(e.kind, e.actor, e.source) for e in events(ws, "source-")]
    assert kinds == [
        ("source-add", f"user:{ADMIN}", "web"),
        ("source-change", f"user:{ADMIN}", "web"),
        ("source-remove", f"user:{ADMIN}", "web"),
    ]
    change_event = events(ws, "source-change")[0]
    assert '"topic": ["IPO", "IP offices"]' in change_event.detail
    assert '"approval": ["editor", "auto"]' in change_event.detail


def test_an_admin_adds_a_news_page_source_and_turning_it_into_a_feed_drops_its_page_keys(
    ws: Workspace,
) -> None:
    """A page source from the form: kind, selector and article cap written; `check` validates the selector."""
    config = ws.cli.site / "newsletter.toml"
    admin = session_for(ws, ADMIN)
    page = {
        **NEW_SOURCE,
        "url": "https://ipo.example.org/news/",
        "kind": "page",
        "link_selector": "ul.news-list a",
        "max_articles": "5",
    }
    added = admin.post("/admin/sources/new", data={**form_of(admin, "/admin/sources/new"), **page})
    assert added.status_code == 200, added.text
    text = config.read_text(encoding="utf-8")
    assert 'kind = "page"\nlink_selector = "ul.news-list a"\nmax_articles = 5' in text
    ws.cli("check")

    bad = {**page, "link_selector": "ul.news-list a[href"}
    before = config.read_bytes()
    refused = admin.post(
        "/admin/sources/ipo-news/edit", data={**form_of(admin, "/admin/sources/ipo-news/edit"), **bad}
    )
    assert refused.status_code == 400
    assert "is not a CSS selector" in refused.text
    assert config.read_bytes() == before

    feed = {**page, "kind": "feed", "url": "https://ipo.example.org/feed.xml"}
    changed = admin.post(
        "/admin/sources/ipo-news/edit", data={**form_of(admin, "/admin/sources/ipo-news/edit"), **feed}
    )
    assert changed.status_code == 200, changed.text
    text = config.read_text(encoding="utf-8")
    assert "link_selector" not in text
    assert "max_articles" not in text
    ws.cli("check")


def test_changing_a_source_keeps_the_comment_on_its_line(ws: Workspace) -> None:
    """A key's trailing comment survives a change of its value."""
    config = ws.cli.site / "newsletter.toml"
    config.write_text(
        config.read_text(encoding="utf-8").replace(
            'topic = "EPO"\n', 'topic = "EPO"  # the European Patent Office\n'
        ),
        encoding="utf-8",
    )
    admin = session_for(ws, ADMIN)
    form = form_of(admin, "/admin/sources/epo-news/edit")
    data = {
        **form,
        "url": "samples/feeds/epo-news.atom",
        "topic": "European Patent Office",
        "group": ["cepiug", "uk", "dach"],
        "approval": "editor",
        "language": "en",
        "interval_minutes": "60",
        "since_days": "60",
    }
    assert admin.post("/admin/sources/epo-news/edit", data=data).status_code == 200
    text = config.read_text(encoding="utf-8")
    assert 'topic = "European Patent Office"  # the European Patent Office\n' in text
    assert [e.detail for e in events(ws, "source-change")] == [
        '{"changes": {"topic": ["EPO", "European Patent Office"]}, '
        '"file": "newsletter.toml", "name": "epo-news"}'
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"url": "ftp://ipo.example.org/feed"}, "is not an http:// or https:// address"),
        ({"url": "javascript:alert(1)"}, "is not an http:// or https:// address"),
        ({"url": "/etc/passwd"}, "nor a file in the site folder"),
        ({"url": "../outside.xml"}, "nor a file in the site folder"),
        ({"url": ""}, "give the feed's address"),
        ({"group": ["uk", "nope"]}, "groups: unknown group 'nope'"),
        ({"group": []}, "choose the groups"),
        ({"name": "wipo-news"}, "there is already a source named 'wipo-news'"),
        ({"name": "Bad Name"}, "give the source a name of lower-case letters"),
        ({"interval_minutes": "0"}, "interval_minutes: Input should be greater than or equal to 1"),
        ({"interval_minutes": "often"}, "interval_minutes: give a whole number"),
        ({"approval": "maybe"}, "approval: Input should be 'auto' or 'editor'"),
        ({"language": "xx-not a language"}, "language:"),
    ],
)
def test_bad_input_for_a_source_changes_nothing(ws: Workspace, change: dict[str, Any], message: str) -> None:
    """One clear message on the page (400), the form filled as posted, the file byte for byte as it was."""
    config = ws.cli.site / "newsletter.toml"
    before = config.read_bytes()
    admin = session_for(ws, ADMIN)
    answer = admin.post(
        "/admin/sources/new", data={**form_of(admin, "/admin/sources/new"), **NEW_SOURCE, **change}
    )
    assert answer.status_code == 400, answer.text
    assert message in alert(answer.text).replace("&#39;", "'")
    assert answer.text.count('role="alert"') == 1
    assert 'value="IPO"' in answer.text  # what was typed is kept for the next try
    assert config.read_bytes() == before
    assert events(ws, "source-") == []


def test_a_stale_source_form_is_refused_and_shows_the_file_as_it_is(ws: Workspace) -> None:
    """newsletter.toml changed after the form was shown: 409, nothing written, the form shows the file now."""
    config = ws.cli.site / "newsletter.toml"
    admin = session_for(ws, ADMIN)
    form = form_of(admin, "/admin/sources/epo-news/edit")
    by_hand = config.read_text(encoding="utf-8").replace('topic = "EPO"', 'topic = "EPO news"')
    config.write_text(by_hand, encoding="utf-8")
    data = {**form, **NEW_SOURCE, "url": "samples/feeds/epo-news.atom", "topic": "Mine"}
    answer = admin.post("/admin/sources/epo-news/edit", data=data)
    assert answer.status_code == 409
    assert "newsletter.toml was changed since this form was shown" in alert(answer.text)
    assert 'value="EPO news"' in answer.text
    assert config.read_text(encoding="utf-8") == by_hand
    assert events(ws, "source-") == []
    # Removing with the old version is refused the same way.
    removal = admin.post("/admin/sources/epo-news/remove", data={**form, "confirm": "yes"})
    assert removal.status_code == 409
    assert config.read_text(encoding="utf-8") == by_hand


def test_removing_needs_the_box_ticked(ws: Workspace) -> None:
    config = ws.cli.site / "newsletter.toml"
    before = config.read_bytes()
    admin = session_for(ws, ADMIN)
    answer = admin.post("/admin/sources/epo-news/remove", data=form_of(admin, "/admin/sources/epo-news/edit"))
    assert answer.status_code == 400
    assert "tick the box" in alert(answer.text)
    assert config.read_bytes() == before


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("de", "es gibt bereits eine Quelle namens &#39;wipo-news&#39;: wählen Sie einen anderen Namen"),
        ("fr", "il existe déjà une source nommée &#39;wipo-news&#39;\u00a0: choisissez un autre nom"),
    ],
)
def test_a_refusal_is_shown_in_the_readers_language(ws: Workspace, language: str, expected: str) -> None:
    """The editor's refusal is a msgid with values: the page translates it, the values stay as posted."""
    admin = session_for(ws, ADMIN)
    admin.headers["accept-language"] = language
    data = {**form_of(admin, "/admin/sources/new"), **NEW_SOURCE, "name": "wipo-news"}
    answer = admin.post("/admin/sources/new", data=data)
    assert answer.status_code == 400
    assert alert(answer.text) == expected


def test_an_editor_reads_the_pages_without_a_form_and_cannot_post(ws: Workspace) -> None:
    """Editors see sources and schedules, with no way to change them; a forged post is a 403."""
    config, weekly = ws.cli.site / "newsletter.toml", ws.cli.site / "schedules" / "weekly.toml"
    before = config.read_bytes(), weekly.read_bytes()
    editor, admin = session_for(ws, EDITOR), session_for(ws, ADMIN)
    for path in ("/admin/sources", "/admin/schedules"):
        page = editor.get(path)
        assert page.status_code == 200
        assert "/edit" not in page.text
        assert "/new" not in page.text
        assert "an admin changes them" in page.text
        assert "/edit" in admin.get(path).text
    token = csrf_of(editor.get("/admin/sources").text)
    posted = {"csrf": token, "version": version(config), **NEW_SOURCE}
    assert editor.post("/admin/sources/new", data=posted).status_code == 403
    assert editor.post("/admin/sources/epo-news/edit", data=posted).status_code == 403
    assert editor.post("/admin/sources/epo-news/remove", data={**posted, "confirm": "yes"}).status_code == 403
    schedule = {"csrf": token, "version": version(weekly), "cron": "0 1 * * mon", "group": ["uk"]}
    assert editor.post("/admin/schedules/weekly/edit", data=schedule).status_code == 403
    assert (
        editor.post("/admin/schedules/weekly/remove", data={**schedule, "confirm": "yes"}).status_code == 403
    )
    assert editor.post("/admin/schedules/new", data={**schedule, "name": "mine"}).status_code == 403
    assert (config.read_bytes(), weekly.read_bytes()) == before
    assert not (ws.cli.site / "schedules" / "mine.toml").exists()


def test_the_forms_are_labelled(ws: Workspace) -> None:
    """Every visible field of the forms has a label (WCAG 2.1 AA: 1.3.1, 4.1.2)."""
    admin = session_for(ws, ADMIN)
    for path in ("/admin/sources/new", "/admin/sources/epo-news/edit", "/admin/schedules/new"):
        page = admin.get(path).text
        ids = re.findall(r'<(?:input|select)[^>]*\bid="([^"]+)"', page)
        assert ids
        for field_id in ids:
            assert f'for="{field_id}"' in page, (path, field_id)
        # Checkboxes are wrapped in their labels.
        assert all("<label" in line for line in page.splitlines() if 'type="checkbox"' in line)


# -- schedules ---------------------------------------------------------------------------------


def test_an_admin_changes_adds_and_removes_a_schedule(ws: Workspace) -> None:
    """The weekly schedule's time changes in its file (comments kept); a new one is added and removed."""
    folder = ws.cli.site / "schedules"
    weekly = folder / "weekly.toml"
    original = weekly.read_text(encoding="utf-8")
    admin = session_for(ws, ADMIN)
    form = form_of(admin, "/admin/schedules/weekly/edit")
    page = admin.get("/admin/schedules/weekly/edit").text
    assert 'value="0 9 * * mon"' in page
    data = {
        **form,
        "cron": "30 8 * * tue",
        "group": ["cepiug", "uk"],
        "template": "digest",
        "subject": "{{ group.name }}: patent information news",
        "skip_if_empty": "yes",
        "approval": "auto",
        "grace_hours": "6",
    }
    changed = admin.post("/admin/schedules/weekly/edit", data=data)
    assert changed.status_code == 200, changed.text
    assert "<code>30 8 * * tue</code>" in changed.text
    assert weekly.read_text(encoding="utf-8") == original.replace(
        'cron = "0 9 * * mon"', 'cron = "30 8 * * tue"'
    )
    ws.cli("check")

    new = {**form_of(admin, "/admin/schedules/new"), "name": "daily-uk", "cron": "0 7 * * *", "group": ["uk"]}
    new |= {"timezone": "Europe/London", "subject": "{{ group.name }} today", "approval": "editor"}
    added = admin.post("/admin/schedules/new", data={**new, "grace_hours": "2"})
    assert added.status_code == 200, added.text
    daily = folder / "daily-uk.toml"
    assert daily.read_text(encoding="utf-8") == (
        'cron = "0 7 * * *"\ntimezone = "Europe/London"\ngroups = ["uk"]\n'
        'subject = "{{ group.name }} today"\nskip_if_empty = false\napproval = "editor"\ngrace_hours = 2\n'
    )
    ws.cli("check")
    assert "daily-uk" in admin.get("/admin/schedules").text

    removed = admin.post(
        "/admin/schedules/daily-uk/remove",
        data={**form_of(admin, "/admin/schedules/daily-uk/edit"), "confirm": "yes"},
    )
    assert removed.status_code == 200
    assert not daily.exists()
    assert [(e.kind, e.actor) for e in events(ws, "schedule-")] == [
        ("schedule-change", f"user:{ADMIN}"),
        ("schedule-add", f"user:{ADMIN}"),
        ("schedule-remove", f"user:{ADMIN}"),
    ]
    assert '"cron": ["0 9 * * mon", "30 8 * * tue"]' in events(ws, "schedule-change")[0].detail


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cron": "0 9 * * 1"}, "cron: write the weekday of '0 9 * * 1' as a name"),
        ({"cron": "every monday"}, "needs five fields"),
        ({"cron": "0 25 * * mon"}, "is not a valid cron expression"),
        ({"group": ["nope"]}, "unknown group 'nope'"),
        ({"group": []}, "choose the groups the schedule builds editions for"),
        ({"timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not a known time zone"),
        ({"template": "no-such-template"}, "templates/no-such-template.mjml.j2 does not exist"),
        ({"subject": "{{ group.name "}, "subject: template syntax error"),
        ({"subject": "{{ group.nmae }}"}, "does not render"),
        ({"approval": "later"}, "approval: Input should be 'auto' or 'editor'"),
        ({"grace_hours": "0"}, "grace_hours: Input should be greater than 0"),
        ({"grace_hours": "soon"}, "grace_hours: give a number of hours"),
    ],
)
def test_bad_input_for_a_schedule_changes_nothing(
    ws: Workspace, change: dict[str, Any], message: str
) -> None:
    """A bad cron, group, zone, template or subject: one message, the file as it was, nothing audited."""
    weekly = ws.cli.site / "schedules" / "weekly.toml"
    before = weekly.read_bytes()
    admin = session_for(ws, ADMIN)
    data = {
        **form_of(admin, "/admin/schedules/weekly/edit"),
        "cron": "0 9 * * mon",
        "group": ["cepiug", "uk"],
        "template": "digest",
        "subject": "{{ group.name }}: patent information news",
        "skip_if_empty": "yes",
        "approval": "auto",
        "grace_hours": "6",
        **change,
    }
    answer = admin.post("/admin/schedules/weekly/edit", data=data)
    assert answer.status_code == 400, answer.text
    assert message in alert(answer.text).replace("&#39;", "'")
    assert weekly.read_bytes() == before
    new = admin.post("/admin/schedules/new", data={**data, "name": "another"})
    assert new.status_code == 400
    assert not (ws.cli.site / "schedules" / "another.toml").exists()
    assert events(ws, "schedule-") == []


def test_a_schedule_name_is_new_and_safe(ws: Workspace) -> None:
    admin = session_for(ws, ADMIN)
    data = {
        **form_of(admin, "/admin/schedules/new"),
        "cron": "0 9 * * mon",
        "group": ["uk"],
        "grace_hours": "6",
    }
    for name, message in (
        ("weekly", "there is already a schedule named 'weekly'"),
        ("../escape", "give the schedule a name"),
        ("", "give the schedule a name"),
    ):
        answer = admin.post("/admin/schedules/new", data={**data, "name": name})
        assert answer.status_code == 400
        assert message in alert(answer.text).replace("&#39;", "'")
    assert sorted(p.name for p in (ws.cli.site / "schedules").iterdir()) == [
        "fortnightly-fr.toml",
        "monthly-dach.toml",
        "weekly.toml",
    ]
    assert not (ws.cli.site / "escape.toml").exists()


def test_a_stale_schedule_form_is_refused(ws: Workspace) -> None:
    weekly = ws.cli.site / "schedules" / "weekly.toml"
    admin = session_for(ws, ADMIN)
    form = form_of(admin, "/admin/schedules/weekly/edit")
    by_hand = weekly.read_text(encoding="utf-8") + "# changed by hand\n"
    weekly.write_text(by_hand, encoding="utf-8")
    data = {**form, "cron": "0 1 * * mon", "group": ["uk"], "grace_hours": "6", "subject": "x"}
    answer = admin.post("/admin/schedules/weekly/edit", data=data)
    assert answer.status_code == 409
    assert "schedules/weekly.toml was changed since this form was shown" in alert(answer.text)
    assert weekly.read_text(encoding="utf-8") == by_hand
    assert events(ws, "schedule-") == []


# -- the running processes see the change --------------------------------------------------------


def test_a_new_source_is_seen_by_a_fresh_site_the_live_site_and_the_next_tick(ws: Workspace) -> None:
    """After an edit: load_settings has it, LiveSite has it without a restart, the next tick collects it."""
    site_dir = ws.cli.site
    shutil.copy(
        site_dir / "samples" / "feeds" / "wipo-news.xml", site_dir / "samples" / "feeds" / "extra.xml"
    )
    live = LiveSite(ws.site)
    before = live.current()
    assert [s.name for s in before.settings.sources] == ["wipo-news", "epo-news"]
    editor = SiteEditor(ws.site, f"user:{ADMIN}")
    form = SourceForm(name="extra", url="samples/feeds/extra.xml", groups=("uk",), since_days="")
    editor.add_source(form, version(site_dir / "newsletter.toml"))

    fresh = load_settings(
        site_dir, env={"NEWSLETTER_SECRET_KEY": KEY}, overrides={"database.url": ws.cli.db_url}
    )
    assert [s.name for s in fresh.sources] == ["wipo-news", "epo-news", "extra"]
    assert [s.name for s in live.current().settings.sources] == ["wipo-news", "epo-news", "extra"]
    assert live.current() is live.current()  # read again only when the file changes
    assert live.current().engine is ws.site.engine

    reports: list[TickReport] = []
    daemon = Daemon(ws.site, MemoryTransport, on_tick=reports.append)
    daemon.tick(datetime(2026, 11, 25, 12, 0, tzinfo=UTC))
    [report] = reports
    assert "extra" in [r.name for r in report.collected]
    assert [r.error for r in report.collected if r.name == "extra"] == [None]


def test_a_broken_hand_edit_keeps_the_last_good_sources(
    ws: Workspace, caplog: pytest.LogCaptureFixture
) -> None:
    config = ws.cli.site / "newsletter.toml"
    live = LiveSite(ws.site)
    config.write_text(config.read_text(encoding="utf-8") + "\n[[sources]]\nname = 1\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="newsletter.core.site"):
        assert [s.name for s in live.current().settings.sources] == ["wipo-news", "epo-news"]
    assert "is not valid" in caplog.text


def test_the_daemon_plans_its_jobs_again_when_a_schedule_changes(ws: Workspace) -> None:
    """A schedule added, changed or removed in the workspace: the daemon's jobs follow at its next look."""
    daemon = Daemon(ws.site, MemoryTransport)
    scheduler = daemon._scheduler()
    jobs = {job.id for job in scheduler.get_jobs()}
    assert {"weekly:cepiug", "weekly:uk", "monthly-dach:dach", "fortnightly-fr:fr", "collect"} <= jobs
    assert daemon.watch(scheduler) is False  # nothing changed

    editor = SiteEditor(ws.site, f"user:{ADMIN}")
    daily = ScheduleForm(name="daily", cron="0 7 * * *", groups=("uk", "dach"))
    editor.save_schedule(daily, "absent", new=True)
    assert daemon.watch(scheduler) is True
    assert scheduler.get_job("daily:uk") is not None
    assert scheduler.get_job("daily:dach") is not None
    assert str(scheduler.get_job("daily:uk").trigger).startswith("cron[")

    weekly = ws.cli.site / "schedules" / "weekly.toml"
    editor.save_schedule(
        ScheduleForm(
            name="weekly",
            cron="0 9 * * mon",
            groups=("cepiug",),
            template="digest",
            subject="{{ group.name }}: patent information news",
            approval="auto",
        ),
        version(weekly),
        new=False,
    )
    editor.remove_schedule("daily", version(ws.cli.site / "schedules" / "daily.toml"))
    assert daemon.watch(scheduler) is True
    jobs = {job.id for job in scheduler.get_jobs()}
    assert "daily:uk" not in jobs
    assert "weekly:uk" not in jobs
    assert "weekly:cepiug" in jobs


def test_the_file_is_replaced_at_once_with_its_mode(tmp_path: Path) -> None:
    """write_atomically: the new text, the old file's permissions, no temporary file left behind."""
    target = tmp_path / "newsletter.toml"
    target.write_text("old = 1\n", encoding="utf-8")
    os.chmod(target, 0o640)
    write_atomically(target, "new = 2\n")
    assert target.read_text(encoding="utf-8") == "new = 2\n"
    assert target.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in tmp_path.iterdir()] == ["newsletter.toml"]


def test_the_running_app_follows_a_hand_edit_of_the_sources(ws: Workspace) -> None:
    """A source added to newsletter.toml by hand (or by `git pull`) shows on the page without a restart."""
    config = ws.cli.site / "newsletter.toml"
    admin = session_for(ws, ADMIN)
    assert 'id="source-by-hand"' not in admin.get("/admin/sources").text
    added = '\n[[sources]]\nname = "by-hand"\nurl = "https://example.org/by-hand.xml"\ngroups = ["uk"]\n'
    config.write_text(config.read_text(encoding="utf-8") + added, encoding="utf-8")
    page = admin.get("/admin/sources").text
    assert 'id="source-by-hand"' in page
    form = admin.get("/admin/schedules/new").text
    assert "May use {{ group.name }}." in form
