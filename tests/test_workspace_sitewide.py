"""The workspace's site-wide pages (sources, schedules, users) and the notifications by email.

Against the real app on the example site (tests/workspace.py), a real SMTP server
(aiosmtpd) for invitations and digests, a real feed server on 127.0.0.1 for "Fetch now",
on SQLite and PostgreSQL.
"""

import re
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from email import message_from_bytes
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select
from starlette.testclient import TestClient

from newsletter.accounts import users
from newsletter.core import audit
from newsletter.core.models import Edition, EditionStatus, Source
from newsletter.core.tokens import Signer
from newsletter.delivery.transports.smtp import SmtpTransport
from newsletter.editions import build as editions
from newsletter.editions.render import Renderer
from newsletter.operations import notifications
from newsletter.operations.notifications import NotifyReport
from newsletter.pool import review
from newsletter.pool.items import ItemDraft
from newsletter.scheduling.daemon import Chore, Daemon
from tests.conftest import Cli, wait_until
from tests.feed_server import FeedServer, feed_server, rss, use_sources
from tests.smtp_server import Received, SmtpServer
from tests.test_workspace_signin import link_in, press_sign_in
from tests.workspace import (
    ADMIN,
    CONTRIBUTOR,
    EDITOR,
    KEY,
    OTHER_EDITOR,
    Workspace,
    csrf_of,
    session_for,
    workspaces,
)

# -- sources ---------------------------------------------------------------------------------


@pytest.fixture
def feeds() -> Iterator[FeedServer]:
    with feed_server() as server:
        yield server


@pytest.fixture
def fed(site_dir: Path, db_url: str, smtp_server: SmtpServer, feeds: FeedServer) -> Iterator[Workspace]:
    """The workspace on a site whose two sources are on the feed server: one works, one fails."""
    entries = [
        {"title": f"Local news {n}", "link": f"https://example.org/{n}", "guid": f"n{n}"} for n in (1, 2)
    ]
    use_sources(
        site_dir,
        [
            {
                "name": "local",
                "url": feeds.feed("/local.xml", rss(entries)),
                "groups": ["uk", "dach"],
                "allow_private": True,
            },
            {"name": "broken", "url": feeds.error("/broken.xml", 500), "allow_private": True},
        ],
        tables="[notifications]\nsource_failures = 2\n",
    )
    for make in workspaces(Cli(site_dir, db_url), smtp_server):
        yield make()


def fetch_now(client: TestClient, name: str) -> Any:
    page = client.get("/admin/sources")
    assert page.status_code == 200
    return client.post(f"/admin/sources/{name}/fetch", data={"csrf": csrf_of(page.text)})


def source(ws: Workspace, name: str) -> Source:
    with ws.cli.database() as session:
        return session.exec(select(Source).where(Source.name == name)).one()


def test_fetch_now_collects_the_source_and_updates_its_health(fed: Workspace, feeds: FeedServer) -> None:
    """Fetch now fetches the feed over HTTP, stores its entries, and the page shows the new health."""
    admin = session_for(fed, ADMIN)
    done = fetch_now(admin, "local")
    assert done.status_code == 200
    assert "local fetched: 2 new" in done.text
    assert len(feeds.seen("/local.xml")) == 1
    row = source(fed, "local")
    assert row.last_success_at is not None
    assert row.failures == 0
    assert row.last_error is None
    page = admin.get("/admin/sources")
    assert row.last_success_at.strftime("%Y-%m-%d %H:%M UTC") in page.text
    asked = [e for e in fed.cli.events() if e.kind == "source-fetch"]
    assert [(e.actor, e.source) for e in asked] == [(f"user:{ADMIN}", "web")]


def test_a_failing_source_shows_its_error(fed: Workspace) -> None:
    """A source answering 500 is reported on the page with its error, and counted as a failure in a row."""
    admin = session_for(fed, ADMIN)
    done = fetch_now(admin, "broken")
    assert done.status_code == 200
    assert "Fetching broken failed" in done.text
    again = fetch_now(admin, "broken")
    row = source(fed, "broken")
    assert row.failures == 2
    assert row.last_success_at is None
    assert row.last_error
    assert "500" in row.last_error
    page = session_for(fed, EDITOR).get("/admin/sources")
    assert "Failures in a row: 2" in page.text
    assert "500" in page.text
    assert "500" in again.text


def test_the_sources_page_shows_only_the_groups_one_may_see_and_no_button_to_editors(
    fed: Workspace, feeds: FeedServer
) -> None:
    """The uk editor sees the source's uk target, not dach's name, and no Fetch now button."""
    page = session_for(fed, EDITOR).get("/admin/sources")
    assert page.status_code == 200
    assert "UK Patent" in page.text
    assert fed.site.settings.groups["dach"].name not in page.text
    assert "Fetch now" not in page.text
    assert "newsletter.toml" in page.text
    assert fed.site.settings.groups["dach"].name in session_for(fed, ADMIN).get("/admin/sources").text
    assert fetch_now(session_for(fed, EDITOR), "local").status_code == 403
    assert feeds.seen("/local.xml") == []


def test_fetch_now_of_an_unknown_source_is_404(fed: Workspace) -> None:
    assert fetch_now(session_for(fed, ADMIN), "no-such-source").status_code == 404


# -- schedules -------------------------------------------------------------------------------


def test_the_schedules_page_shows_each_visible_groups_schedule_and_its_last_edition(ws: Workspace) -> None:
    """Cron, zone, next run, approval mode and the last edition built; an editor sees only their groups."""
    ws.cli("items", "add", "--title", "A weekly story", "--group", "uk", "--approve")
    with ws.site.transaction() as session:
        made = editions.build(
            session, ws.site.settings, Renderer(ws.site.settings), "uk", actor="test", schedule="weekly"
        )
        subject = made.subject
    admin = session_for(ws, ADMIN).get("/admin/schedules")
    assert admin.status_code == 200
    for slug in ("cepiug", "uk", "dach", "fr"):
        assert f'href="/admin/groups/{slug}/"' in admin.text
    assert "0 9 * * mon" in admin.text
    assert "Europe/London" in admin.text
    assert "sent without approval" in admin.text
    assert "an editor approves" in admin.text
    editor = session_for(ws, EDITOR).get("/admin/schedules")
    assert editor.status_code == 200
    assert re.findall(r'href="/admin/groups/([^/]+)/"', editor.text) == ["uk"]
    assert subject in editor.text
    assert "draft" in editor.text
    assert session_for(ws, CONTRIBUTOR).get("/admin/schedules").status_code == 403


# -- users -----------------------------------------------------------------------------------


def users_page(client: TestClient) -> str:
    page = client.get("/admin/users")
    assert page.status_code == 200
    return page.text


def user_id(ws: Workspace, address: str) -> int:
    with ws.site.transaction() as session:
        return users.get(session, address).id or 0


def grant_ids(page: str, person: int) -> dict[str, int]:
    """The user's roles on the users page (``editor@uk``, ``admin``) and the grant id each form takes away."""
    row = page.split(f'id="user-{person}"', 1)[1].split("</tr>", 1)[0]
    found = re.findall(
        r'data-grant="([^"]+)">\s*<input[^>]*>\s*<input type="hidden" name="grant" value="(\d+)"', row
    )
    return {grant: int(number) for grant, number in found}


def post(client: TestClient, path: str, **fields: str | list[str]) -> Any:
    return client.post(path, data={"csrf": csrf_of(users_page(client)), **fields})


def test_an_invitation_mails_a_sign_in_link_that_signs_the_new_user_in(ws: Workspace) -> None:
    """Invite: the user is made with the role, the link arrives by SMTP, and it signs them in."""
    admin = session_for(ws, ADMIN)
    new = "newcomer@example.org"
    done = post(admin, "/admin/users", email=new, name="New Comer", role="editor", group=["uk", "fr"])
    assert done.status_code == 200, done.text
    assert "a sign-in link is on its way" in done.text
    assert wait_until(lambda: len(ws.mails_to(new)) == 1)
    mail = ws.mails_to(new)[0].message()
    assert f"{ADMIN} invited you" in mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    browser = ws.client()
    signed = press_sign_in(browser, link_in(ws.mails_to(new)[0]))
    assert signed.status_code == 303
    dashboard = browser.get("/admin/")
    assert set(re.findall(r'href="/admin/groups/([^/]+)/"', dashboard.text)) == {"uk", "fr"}
    assert [e.actor for e in ws.cli.events() if e.kind == "user-add"][-1] == f"user:{ADMIN}"


def test_a_bad_invitation_changes_nothing_and_says_why(ws: Workspace) -> None:
    admin = session_for(ws, ADMIN)
    cases = [
        ({"email": "someone@example.org", "role": ""}, "choose the role"),
        ({"email": "someone@example.org", "role": "editor"}, "choose at least one group"),
        ({"email": "someone@example.org", "role": "admin", "group": "uk"}, "choose no group"),
        ({"email": "someone@example.org", "role": "editor", "group": "nowhere"}, "no group"),
        ({"email": "not an address", "role": "admin"}, "not a usable address"),
        ({"email": "someone@example.org", "role": "nosuchrole"}, "no role"),
        ({"email": EDITOR, "role": "editor", "group": "fr"}, "already has an account"),
    ]
    for fields, message in cases:
        answer = post(admin, "/admin/users", **fields)
        assert answer.status_code == 400, fields
        assert message in answer.text, (fields, answer.text)
    assert "someone@example.org" not in ws.cli("users", "list").stdout
    assert ws.mails_to("someone@example.org") == []


def test_a_role_change_applies_from_the_next_request(ws: Workspace) -> None:
    """The uk editor gets dach: dach's page opens at once; taken away, it is a 404 again."""
    editor = session_for(ws, EDITOR)
    assert editor.get("/admin/groups/dach/").status_code == 404
    admin = session_for(ws, ADMIN)
    person = user_id(ws, EDITOR)
    given = post(admin, f"/admin/users/{person}/roles", role="editor", group="dach")
    assert given.status_code == 200
    assert "is now editor of dach" in given.text
    assert editor.get("/admin/groups/dach/").status_code == 200
    grant = grant_ids(users_page(admin), person)["editor@dach"]
    taken = post(admin, f"/admin/users/{person}/roles/remove", grant=str(grant))
    assert taken.status_code == 200
    assert "is no longer editor of dach" in taken.text
    assert editor.get("/admin/groups/dach/").status_code == 404
    assert editor.get("/admin/groups/uk/").status_code == 200


def test_the_last_admin_cannot_be_taken_away(ws: Workspace) -> None:
    """Neither the admin role nor the account of the site's only admin can go; with a second admin, it can."""
    admin = session_for(ws, ADMIN)
    me = user_id(ws, ADMIN)
    grant = grant_ids(users_page(admin), me)["admin"]
    refused = post(admin, f"/admin/users/{me}/roles/remove", grant=str(grant))
    assert refused.status_code == 409
    assert "last admin" in refused.text
    removed = post(admin, f"/admin/users/{me}/remove", confirm="yes")
    assert removed.status_code == 409
    assert "last admin" in removed.text
    assert admin.get("/admin/users").status_code == 200
    post(admin, f"/admin/users/{user_id(ws, OTHER_EDITOR)}/roles", role="admin")
    allowed = post(admin, f"/admin/users/{me}/roles/remove", grant=str(grant))
    assert allowed.status_code == 200
    assert admin.get("/admin/users").status_code == 403


def test_removing_a_user_signs_them_out_everywhere(ws: Workspace) -> None:
    editor = session_for(ws, EDITOR)
    assert editor.get("/admin/").status_code == 200
    admin = session_for(ws, ADMIN)
    unticked = post(admin, f"/admin/users/{user_id(ws, EDITOR)}/remove")
    assert unticked.status_code == 400
    assert editor.get("/admin/").status_code == 200
    done = post(admin, f"/admin/users/{user_id(ws, EDITOR)}/remove", confirm="yes")
    assert done.status_code == 200
    assert f"{EDITOR} was removed (1 session(s) ended)" in done.text
    assert editor.get("/admin/").status_code == 303
    assert EDITOR not in ws.cli("users", "list").stdout


# -- notifications ---------------------------------------------------------------------------


def notify(ws: Workspace, at: datetime) -> NotifyReport:
    """One round of notifications at ``at``, as the daemon and run-due do, through the SMTP server."""
    return notifications.run(ws.site, lambda: SmtpTransport(ws.smtp.url()), at)


def draft_for(ws: Workspace, group: str, title: str) -> int:
    ws.cli("items", "add", "--title", title, "--group", group, "--approve")
    with ws.site.transaction() as session:
        made = editions.build(session, ws.site.settings, Renderer(ws.site.settings), group, actor="test")
        return made.id or 0


def propose(ws: Workspace, title: str, group: str = "uk", by: str = CONTRIBUTOR) -> None:
    """An item proposed by a person, through the items pages' library call."""
    with ws.site.transaction() as session:
        person = users.load_actor(session, ws.site.settings, users.get(session, by).id or 0)
        assert person is not None
        review.propose(session, ws.site.settings, person, group, ItemDraft(title=title, groups=[group]))


def text_of(received: Received) -> str:
    part = received.message().get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def stop_path(received: Received) -> str:
    header = str(received.message()["List-Unsubscribe"])
    found = re.fullmatch(r"<https://news\.example\.org(/admin/notifications/stop/\S+)>", header)
    assert found, header
    assert found.group(1) in text_of(received)
    return found.group(1)


def test_a_draft_waiting_sends_one_digest_to_the_groups_editor_only(ws: Workspace) -> None:
    """The uk draft is told to uk's editor, once; not to dach's editor, nor the admin (uk has an editor)."""
    draft_for(ws, "uk", "A story for the UK")
    now = ws.clock()
    report = notify(ws, now)
    assert report.sent == [EDITOR]
    [digest] = ws.mails_to(EDITOR)
    assert "the draft edition" in text_of(digest)
    assert "waits for approval" in text_of(digest)
    assert "https://news.example.org/admin/groups/uk/editions" in text_of(digest)
    message = digest.message()
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    stop_path(digest)
    assert ws.mails_to(OTHER_EDITOR) == []
    assert ws.mails_to(ADMIN) == []
    assert ws.mails_to(CONTRIBUTOR) == []
    # Looking again, even hours later, tells nobody twice.
    assert notify(ws, now + timedelta(hours=3)).sent == []
    assert len(ws.mails_to(EDITOR)) == 1


def test_events_within_the_hour_make_one_digest(ws: Workspace) -> None:
    """Two events before a digest: one digest with both; two more within the hour: one, an hour later."""
    draft_for(ws, "uk", "A story for the UK")
    propose(ws, "WIPO Inspire report on machine translation")
    start = ws.clock()
    assert notify(ws, start).sent == [EDITOR]
    [first] = ws.mails_to(EDITOR)
    assert "waits for approval" in text_of(first)
    assert f"{CONTRIBUTOR} proposed “WIPO Inspire report on machine translation”" in text_of(first)
    propose(ws, "IP5 heads of office meeting")
    assert notify(ws, start + timedelta(minutes=10)).sent == []
    propose(ws, "EPO survey on patent information")
    assert notify(ws, start + timedelta(minutes=59)).sent == []
    assert len(ws.mails_to(EDITOR)) == 1
    assert notify(ws, start + timedelta(minutes=61)).sent == [EDITOR]
    second = ws.mails_to(EDITOR)[1]
    assert "IP5 heads of office meeting" in text_of(second)
    assert "EPO survey on patent information" in text_of(second)
    assert "A story for the UK" not in text_of(second)
    assert ws.mails_to(CONTRIBUTOR) == []


def test_the_stop_link_turns_notifications_off_and_the_account_page_on_again(ws: Workspace) -> None:
    """The link's GET changes nothing; its button stops them; the signed-in page turns them back on."""
    draft_for(ws, "uk", "A story for the UK")
    start = ws.clock()
    notify(ws, start)
    path = stop_path(ws.mails_to(EDITOR)[0])
    browser = ws.client()
    page = browser.get(path)
    assert page.status_code == 200
    assert EDITOR in page.text
    propose(ws, "Proposed while the link was only opened")
    assert notify(ws, start + timedelta(hours=2)).sent == [EDITOR]
    stopped = browser.post(path, data={"csrf": csrf_of(page.text)})
    assert stopped.status_code == 200
    assert "Notifications turned off" in stopped.text
    propose(ws, "Proposed after the stop")
    # Nobody is told instead (the admin is told only about groups without anyone concerned).
    assert notify(ws, start + timedelta(hours=4)).sent == []
    assert len(ws.mails_to(EDITOR)) == 2
    mine = session_for(ws, EDITOR)
    settings_page = mine.get("/admin/notifications")
    assert re.search(r'value="off" checked', settings_page.text)
    turned = mine.post(
        "/admin/notifications", data={"csrf": csrf_of(settings_page.text), "notifications": "on"}
    )
    assert turned.status_code == 200
    propose(ws, "Proposed once they are on again")
    assert notify(ws, start + timedelta(hours=6)).sent == [EDITOR]
    assert "Proposed once they are on again" in text_of(ws.mails_to(EDITOR)[-1])
    # What still waits is told once they are on again; what was told before is not.
    assert "Proposed after the stop" in text_of(ws.mails_to(EDITOR)[-1])
    assert "Proposed while the link was only opened" not in text_of(ws.mails_to(EDITOR)[-1])
    kinds = [(e.kind, e.actor) for e in ws.cli.events() if e.kind.startswith("notifications-")]
    assert kinds == [
        ("notifications-off", f"notifications-link:{EDITOR}"),
        ("notifications-on", f"user:{EDITOR}"),
    ]


def test_a_mail_providers_one_click_post_stops_them_and_forged_links_do_nothing(ws: Workspace) -> None:
    draft_for(ws, "uk", "A story for the UK")
    notify(ws, ws.clock())
    path = stop_path(ws.mails_to(EDITOR)[0])
    token = path.rsplit("/", 1)[1]
    forged = path[:-4] + ("AAAA" if not path.endswith("AAAA") else "BBBB")
    other_purpose = Signer(KEY).make("unsubscribe", user_id(ws, EDITOR), 0)
    for bad in (forged, f"/admin/notifications/stop/{other_purpose}"):
        assert ws.client().get(bad).status_code == 400
        assert ws.client().post(bad, data={"List-Unsubscribe": "One-Click"}).status_code == 400
    with ws.site.transaction() as session:
        assert notifications.enabled(session, user_id(ws, EDITOR))
    one_click = ws.client().post(path, data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    with ws.site.transaction() as session:
        assert not notifications.enabled(session, user_id(ws, EDITOR))
        assert notifications.user_of(session, ws.site.settings, token).email == EDITOR


def test_a_source_failing_n_times_in_a_row_is_told_to_the_admins(fed: Workspace) -> None:
    """[notifications] source_failures = 2: the second failure in a row is told to the admin, once."""
    admin = session_for(fed, ADMIN)
    fetch_now(admin, "broken")
    assert notify(fed, fed.clock()).sent == []
    fetch_now(admin, "broken")
    assert notify(fed, fed.clock()).sent == [ADMIN]
    [digest] = fed.mails_to(ADMIN)
    assert "the source “broken” failed 2 times in a row" in text_of(digest)
    fetch_now(admin, "broken")
    assert notify(fed, fed.clock() + timedelta(hours=2)).sent == []
    assert fed.mails_to(EDITOR) == []


def test_a_sent_edition_is_told_with_its_figures(ws: Workspace) -> None:
    edition_id = draft_for(ws, "uk", "A story for the UK")
    with ws.site.transaction() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        edition.status, edition.sent_at = EditionStatus.SENT, ws.clock()
        session.add(edition)
    notify(ws, ws.clock())
    [digest] = ws.mails_to(EDITOR)
    assert "was sent (no recipients)" in text_of(digest)
    assert "waits for approval" not in text_of(digest)


def test_run_due_records_notices_and_sends_the_digests(ws: Workspace) -> None:
    """`newsletter run-due` sends the due digests through the site's transport (here the outbox folder)."""
    draft_for(ws, "uk", "A story for the UK")
    done = ws.cli("run-due", "--at", "2026-11-25T12:00:00+00:00")
    assert f"notifications: digest sent to {EDITOR}" in done.stdout
    written = [message_from_bytes(p.read_bytes()) for p in (ws.cli.site / "outbox").rglob("*.eml")]
    digests = [m for m in written if "attention" in str(m["Subject"])]
    assert [m["To"] for m in digests] == [EDITOR]


def test_the_daemon_runs_its_chores(ws: Workspace) -> None:
    """The daemon runs the notifications chore on its own interval (the CLI's daemon passes it)."""
    ran: list[datetime] = []
    daemon = Daemon(
        ws.site,
        lambda: SmtpTransport(ws.smtp.url()),
        on_tick=lambda report: None,
        chores=[Chore("record", 0.05, ran.append)],
    )
    runner = threading.Thread(target=daemon.run, kwargs={"install_signals": False})
    runner.start()
    try:
        assert wait_until(lambda: len(ran) >= 2)
    finally:
        daemon.request_stop()
        runner.join()


def test_the_dashboard_links_the_site_wide_pages_one_may_open(ws: Workspace) -> None:
    links = {
        who: set(re.findall(r'href="(/admin/(?:sources|schedules|users|notifications))"', page.text))
        for who in (ADMIN, EDITOR, CONTRIBUTOR)
        if (page := session_for(ws, who).get("/admin/"))
    }
    assert links == {
        ADMIN: {"/admin/sources", "/admin/schedules", "/admin/users", "/admin/notifications"},
        EDITOR: {"/admin/sources", "/admin/schedules", "/admin/notifications"},
        CONTRIBUTOR: {"/admin/notifications"},
    }


def test_each_pause_of_an_edition_is_told(ws: Workspace) -> None:
    """A paused edition is told to the group's editor; paused again after a resume, it is told again."""
    edition_id = draft_for(ws, "uk", "A story for the UK")

    def pause() -> None:
        with ws.site.transaction() as session:
            edition = session.get(Edition, edition_id)
            assert edition is not None
            edition.status = EditionStatus.PAUSED
            session.add(edition)
            audit.record(session, "edition-paused", actor="worker", edition_id=edition_id)

    pause()
    start = ws.clock()
    notify(ws, start)
    [first] = ws.mails_to(EDITOR)
    assert "was paused, the mail relay kept failing" in text_of(first)
    assert notify(ws, start + timedelta(hours=2)).sent == []
    pause()
    assert notify(ws, start + timedelta(hours=3)).sent == [EDITOR]
    assert "was paused" in text_of(ws.mails_to(EDITOR)[1])


def test_a_digest_the_relay_refused_is_sent_at_the_next_round(ws: Workspace) -> None:
    """Relay down: the digest is reported and its notices kept; relay up: the next round sends it."""
    draft_for(ws, "uk", "A story for the UK")
    ws.smtp.handler.down = True
    start = ws.clock()
    failed = notify(ws, start)
    assert failed.sent == []
    assert failed.errors
    assert f"digest to {EDITOR} not sent" in failed.errors[0]
    ws.smtp.handler.down = False
    assert notify(ws, start + timedelta(minutes=1)).sent == [EDITOR]
    assert "waits for approval" in text_of(ws.mails_to(EDITOR)[0])
