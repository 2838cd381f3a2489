"""The editions pages: build, change a draft, preview, test, approve, send, schedule, pause, figures.

The app is the workspace on the example site (tests/workspace.py), driven by
Starlette's TestClient; every email (test copies and the editions themselves) goes over
SMTP to aiosmtpd (tests/smtp_server.py). A send runs in a background thread of the app,
so the tests wait for its outcome with ``wait_until``, never by sleeping.
"""

import json
import re
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.core.models import Edition, Event, SendLease, Source
from newsletter.delivery import lease
from newsletter.delivery.runner import Runner
from newsletter.delivery.transports.smtp import SmtpTransport
from newsletter.editions.render import Renderer
from newsletter.scheduling.scheduler import run_due
from tests.conftest import wait_until
from tests.test_bounces import arf
from tests.workspace import ADMIN, CONTRIBUTOR, EDITOR, OTHER_EDITOR, Workspace, csrf_of, session_for

GROUP = "/admin/groups/uk/editions"
UK_MEMBERS = {
    "jane.doe@example.org",
    "raj.patel@example.org",
    "fiona.macleod@example.net",
    "owen.jones@example.org",
    "library@example.net",
    "siobhan.murphy@example.net",
    "sofia.lindqvist@example.org",
}


# -- helpers ---------------------------------------------------------------------------------


def add_item(ws: Workspace, title: str) -> int:
    """An approved item meant for uk, added through the CLI."""
    slug = re.sub(r"\W+", "-", title.lower())
    out = ws.cli(
        "items", "add", "--title", title, "--url", f"https://example.org/{slug}", "--group", "uk", "--approve"
    )
    found = re.search(r"#(\d+)", out.stdout)
    assert found, out.stdout
    return int(found.group(1))


def import_members(ws: Workspace) -> None:
    ws.cli("subscribers", "import", "uk", str(ws.cli.site / "subscribers" / "uk.csv"), ok=False)


def build(client: TestClient) -> int:
    page = client.get(GROUP)
    assert page.status_code == 200
    done = client.post(GROUP, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 303, done.text
    return int(done.headers["location"].rsplit("/", 1)[1])


def path(edition_id: int, suffix: str = "") -> str:
    return f"{GROUP}/{edition_id}{suffix}"


def version(ws: Workspace, edition_id: int) -> int:
    with ws.site.transaction() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return edition.version


def status(ws: Workspace, edition_id: int) -> str:
    with ws.site.transaction() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        return str(edition.status)


def post(client: TestClient, edition_id: int, suffix: str, **data: Any) -> Any:
    """Open the edition page (for its CSRF token) and post one of its forms."""
    page = client.get(path(edition_id))
    assert page.status_code == 200, page.text
    return client.post(path(edition_id, suffix), data={"csrf": csrf_of(page.text), **data})


def change(ws: Workspace, client: TestClient, edition_id: int, action: str, item: int) -> Any:
    """Press an item's up, down, drop or add button on the edition page as it is now."""
    return post(client, edition_id, "/items", action=action, item=item, version=version(ws, edition_id))


def titles(page: str) -> list[str]:
    return re.findall(r'<td class="item-title">([^<]*)', page)


def figure(page: str, name: str) -> int:
    found = re.search(rf'<dd class="{name}">(\d+)</dd>', page)
    assert found, f"no {name} on the page"
    return int(found.group(1))


def received_by(ws: Workspace) -> Counter[str]:
    """How many editions (not test copies) each address received."""
    return Counter(
        rcpt
        for m in ws.smtp.messages
        if not str(m.message()["Subject"]).startswith("[TEST]")
        for rcpt in m.rcpt_tos
    )


def lease_free(ws: Workspace, edition_id: int) -> Callable[[], bool]:
    def free() -> bool:
        with ws.site.transaction() as session:
            return session.get(SendLease, edition_id) is None

    return free


def approved_edition(ws: Workspace, client: TestClient, *titles_: str) -> int:
    for title in titles_:
        add_item(ws, title)
    edition_id = build(client)
    assert post(client, edition_id, "/approve", version=version(ws, edition_id)).status_code == 303
    assert status(ws, edition_id) == "approved"
    return edition_id


# -- building and changing a draft ---------------------------------------------------------------


def test_build_reorder_drop_and_add(ws: Workspace) -> None:
    """The list builds a draft; up, down, drop and add change it, each recorded with the editor's name."""
    editor = session_for(ws, EDITOR)
    nothing = editor.post(GROUP, data={"csrf": csrf_of(editor.get(GROUP).text)})
    assert nothing.status_code == 200
    assert "nothing to build for uk" in nothing.text

    first, second, third = add_item(ws, "Alpha news"), add_item(ws, "Beta news"), add_item(ws, "Gamma news")
    edition_id = build(editor)
    page = editor.get(path(edition_id)).text
    assert sorted(titles(page)) == ["Alpha news", "Beta news", "Gamma news"]
    order = titles(page)

    moved = change(ws, editor, edition_id, "down", _id_of(page, order[0]))
    assert moved.status_code == 303
    assert titles(editor.get(path(edition_id)).text) == [order[1], order[0], order[2]]
    change(ws, editor, edition_id, "up", _id_of(page, order[2]))
    assert titles(editor.get(path(edition_id)).text) == [order[1], order[2], order[0]]

    dropped = change(ws, editor, edition_id, "drop", second)
    assert dropped.status_code == 303
    page = editor.get(path(edition_id)).text
    assert "Beta news" not in titles(page)
    # The dropped item is free again: it is offered in the "add" list, and can come back.
    assert re.search(rf'<option value="{second}">Beta news</option>', page)
    fourth = add_item(ws, "Delta news")
    change(ws, editor, edition_id, "add", fourth)
    assert titles(editor.get(path(edition_id)).text)[-1] == "Delta news"

    # An item the group cannot get (already carried) is refused with a message, nothing changed.
    before = version(ws, edition_id)
    refused = post(editor, edition_id, "/items", action="add", item=first, version=before)
    assert refused.status_code == 400
    assert "cannot be added" in refused.text
    assert version(ws, edition_id) == before

    with ws.site.transaction() as session:
        kinds = [
            (e.kind, e.actor, e.source)
            for e in session.exec(
                select(Event).where(col(Event.edition_id) == edition_id).order_by(col(Event.id))
            )
        ]
    assert kinds == [
        ("edition-build", "user:eve@example.org", "manual"),
        ("edition-reorder", "user:eve@example.org", "web"),
        ("edition-reorder", "user:eve@example.org", "web"),
        ("edition-drop", "user:eve@example.org", "web"),
        ("edition-add", "user:eve@example.org", "web"),
    ]
    assert third  # built into the edition with the others


def _id_of(page: str, title: str) -> int:
    """The item id in the row of ``title`` (its drop form's hidden field)."""
    row = page.split(f'<td class="item-title">{title}', 1)[1]
    found = re.search(r'name="item" value="(\d+)"', row)
    assert found
    return int(found.group(1))


def test_a_stale_form_and_a_non_draft_are_refused(ws: Workspace) -> None:
    """A form from before someone else's change is refused (409); an approved edition no longer changes."""
    add_item(ws, "Alpha news")
    item = add_item(ws, "Beta news")
    editor, admin = session_for(ws, EDITOR), session_for(ws, ADMIN)
    edition_id = build(editor)
    old = version(ws, edition_id)
    assert post(admin, edition_id, "/content", intro="Hello from Ada", version=old).status_code == 303
    stale = post(editor, edition_id, "/items", action="drop", item=item, version=old)
    assert stale.status_code == 409
    assert "was changed since you opened it" in stale.text
    assert "Beta news" in titles(editor.get(path(edition_id)).text)

    assert post(editor, edition_id, "/approve", version=version(ws, edition_id)).status_code == 303
    late = change(ws, editor, edition_id, "drop", item)
    assert late.status_code == 409
    assert "only a draft can be changed" in late.text


def test_intro_and_subject_per_language_reach_the_email(ws: Workspace) -> None:
    """The intro (Markdown) is above the items in HTML and text; each language gets its own subject."""
    add_item(ws, "Alpha news")
    editor = session_for(ws, EDITOR)
    edition_id = build(editor)
    saved = post(
        editor,
        edition_id,
        "/content",
        intro="Welcome to the **spring** edition.",
        subject_en="UK spring news",
        subject_de="Frühlingsnachrichten",
        subject_fr="",
        version=version(ws, edition_id),
    )
    assert saved.status_code == 303
    english = editor.get(path(edition_id, "/email")).text
    assert "Welcome to the <strong>spring</strong> edition." in english
    assert english.index("spring</strong>") < english.rindex("Alpha news")
    assert "<title>UK spring news</title>" in english
    assert "<title>Frühlingsnachrichten</title>" in editor.get(path(edition_id, "/email?language=de")).text
    preview = editor.get(path(edition_id, "/preview")).text
    # The text part: the intro as text, after the greeting and before the items.
    text = preview.split('<pre class="text">', 1)[1]
    assert "Users (example).\n\nWelcome to the spring edition.\n" in text
    assert text.index("Welcome to the spring edition.") < text.index("Alpha news")

    # A subject that does not render is refused with the reason; the old one stays.
    bad = post(
        editor, edition_id, "/content", intro="", subject_en="{{ oops", version=version(ws, edition_id)
    )
    assert bad.status_code == 400
    assert "subject template" in bad.text
    assert "<title>UK spring news</title>" in editor.get(path(edition_id, "/email")).text

    post(editor, edition_id, "/test", language="de")
    assert wait_until(lambda: len(ws.mails_to(EDITOR)) == 1)
    assert ws.mails_to(EDITOR)[0].message()["Subject"] == "[TEST] Frühlingsnachrichten"


def test_preview_pages_and_their_framing_headers(ws: Workspace) -> None:
    """The preview frames the email at 375 and 600 px; only the email may be framed, by the site alone."""
    add_item(ws, "Alpha news")
    editor = session_for(ws, EDITOR)
    edition_id = build(editor)
    preview = editor.get(path(edition_id, "/preview"))
    assert preview.status_code == 200
    frames = re.findall(r'<iframe src="([^"]+)" width="(\d+)"', preview.text)
    assert frames == [
        (path(edition_id, "/email?language=en"), "375"),
        (path(edition_id, "/email?language=en"), "600"),
    ]
    assert "frame-src 'self'" in preview.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in preview.headers["content-security-policy"]
    assert preview.headers["x-frame-options"] == "DENY"
    assert "Alpha news" in preview.text  # the text part, on the page

    email = editor.get(frames[0][0])
    assert email.status_code == 200
    policy = email.headers["content-security-policy"]
    assert "frame-ancestors 'self'" in policy
    assert "style-src 'unsafe-inline'" in policy
    assert "script-src" not in policy
    assert "default-src 'none'" in policy
    assert email.headers["x-frame-options"] == "SAMEORIGIN"
    assert email.headers["x-content-type-options"] == "nosniff"
    assert "<style" in email.text
    assert "Alpha news" in email.text
    # Everyone else's pages still refuse to be framed.
    assert editor.get(path(edition_id)).headers["x-frame-options"] == "DENY"


def test_send_a_test_to_me(ws: Workspace) -> None:
    """One copy marked [TEST] goes to the signed-in editor over SMTP; nothing counts as delivered."""
    add_item(ws, "Alpha news")
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = build(editor)
    sent = post(editor, edition_id, "/test")
    assert sent.status_code == 200
    assert "A test copy is on its way to eve@example.org" in sent.text
    assert wait_until(lambda: len(ws.mails_to(EDITOR)) == 1)
    mail = ws.mails_to(EDITOR)[0]
    assert mail.rcpt_tos == (EDITOR,)
    assert str(mail.message()["Subject"]).startswith("[TEST] ")
    assert [m.rcpt_tos for m in ws.smtp.messages] == [(EDITOR,)]
    assert figure(editor.get(path(edition_id)).text, "delivered") == 0


# -- approving ---------------------------------------------------------------------------------


@pytest.fixture
def four_eyes(site_dir: Path) -> None:
    config = site_dir / "newsletter.toml"
    config.write_text(
        config.read_text().replace("[groups.uk]\n", "[groups.uk]\nrequire_second_person = true\n")
    )


def test_four_eyes_refuse_the_last_editor_and_let_another_approve(
    four_eyes: None, make_workspace: Callable[..., Workspace]
) -> None:
    """With require_second_person, whoever last changed the draft may not approve it; another editor may."""
    ws = make_workspace()
    add_item(ws, "Alpha news")
    editor, admin = session_for(ws, EDITOR), session_for(ws, ADMIN)
    edition_id = build(editor)
    assert "asks for a second person" in editor.get(path(edition_id)).text
    refused = post(editor, edition_id, "/approve", version=version(ws, edition_id))
    assert refused.status_code == 409
    assert "asks for a second person" in refused.text
    assert status(ws, edition_id) == "draft"

    # Once the admin changed it, the editor is the second person, and the admin is not.
    post(admin, edition_id, "/content", intro="A word from Ada", version=version(ws, edition_id))
    assert post(admin, edition_id, "/approve", version=version(ws, edition_id)).status_code == 409
    assert post(editor, edition_id, "/approve", version=version(ws, edition_id)).status_code == 303
    assert status(ws, edition_id) == "approved"
    with ws.site.transaction() as session:
        approval = session.exec(select(Event).where(Event.kind == "edition-approve")).one()
    assert approval.actor == "user:eve@example.org"


def test_the_contributor_and_the_other_editor_on_a_real_edition(ws: Workspace) -> None:
    """On an existing edition: the contributor gets 403, the other group's editor 404, everywhere."""
    add_item(ws, "Alpha news")
    edition_id = build(session_for(ws, EDITOR))
    contributor, other = session_for(ws, CONTRIBUTOR), session_for(ws, OTHER_EDITOR)
    for suffix in ("", "/preview", "/email", "/progress"):
        assert contributor.get(path(edition_id, suffix)).status_code == 403
        assert other.get(path(edition_id, suffix)).status_code == 404
    # The edition under another group's path does not exist.
    assert session_for(ws, ADMIN).get(f"/admin/groups/dach/editions/{edition_id}").status_code == 404


# -- sending -----------------------------------------------------------------------------------


def test_send_delivers_every_member_once_and_the_progress_page_counts(ws: Workspace) -> None:
    """Send now runs in the background; a second press is refused by the lease; each member gets one copy."""
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")

    ws.smtp.handler.gate.clear()  # every message waits at its final dot: the send is in progress
    pressed = post(editor, edition_id, "/send")
    assert pressed.status_code == 303
    assert pressed.headers["location"] == path(edition_id, "/progress")
    assert wait_until(lambda: ws.smtp.handler.held >= 1)
    again = editor.post(path(edition_id, "/send"), data={"csrf": csrf_of(editor.get(path(edition_id)).text)})
    assert again.status_code == 409
    assert "already being sent" in again.text
    live = editor.get(path(edition_id, "/progress"), headers={"HX-Request": "true"})
    assert "<html" not in live.text
    assert 'hx-trigger="every 3s"' in live.text
    ws.smtp.handler.gate.set()

    assert wait_until(lambda: status(ws, edition_id) == "sent")
    assert wait_until(lease_free(ws, edition_id))
    assert received_by(ws) == Counter(dict.fromkeys(UK_MEMBERS, 1))
    page = editor.get(path(edition_id, "/progress")).text
    assert figure(page, "delivered") == 7
    assert figure(page, "failed") == figure(page, "deferred") == figure(page, "waiting") == 0
    assert "hx-trigger" not in page  # done: no more polling
    with ws.site.transaction() as session:
        started = session.exec(select(Event).where(Event.kind == "edition-send")).one()
    assert (started.actor, started.source) == ("user:eve@example.org", "web")


def test_pause_and_resume(ws: Workspace, tmp_path: Path) -> None:
    """Pause stops the send after the messages in hand; Resume sends the rest; nobody gets two copies."""
    rows = ["email,name,language", *(f"member{n}@example.org,Member {n},en" for n in range(260))]
    (tmp_path / "many.csv").write_text("\n".join(rows) + "\n")
    ws.cli("subscribers", "import", "uk", str(tmp_path / "many.csv"))
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")

    ws.smtp.handler.gate.clear()
    post(editor, edition_id, "/send")
    assert wait_until(lambda: ws.smtp.handler.held >= 1)
    page = editor.get(path(edition_id, "/progress")).text
    assert "/pause" in page
    paused = editor.post(path(edition_id, "/pause"), data={"csrf": csrf_of(page)})
    assert paused.status_code == 303
    ws.smtp.handler.gate.set()
    assert wait_until(lease_free(ws, edition_id))
    assert status(ws, edition_id) == "paused"
    page = editor.get(path(edition_id, "/progress")).text
    delivered = figure(page, "delivered")
    assert 0 < delivered < 260
    assert figure(page, "waiting") == 260 - delivered
    assert "/resume" in page
    assert "/pause" not in page

    resumed = editor.post(path(edition_id, "/resume"), data={"csrf": csrf_of(page)})
    assert resumed.status_code == 303
    assert wait_until(lambda: status(ws, edition_id) == "sent")
    assert wait_until(lease_free(ws, edition_id))
    counts = received_by(ws)
    assert len(counts) == 260
    assert set(counts.values()) == {1}
    assert figure(editor.get(path(edition_id, "/progress")).text, "delivered") == 260
    with ws.site.transaction() as session:
        kinds = [e.kind for e in session.exec(select(Event).where(col(Event.edition_id) == edition_id))]
    assert kinds.count("edition-pause") == 1
    assert kinds.count("edition-resume") == 1


def test_a_scheduled_edition_is_sent_by_run_due_at_its_time(ws: Workspace) -> None:
    """Scheduled for 09:00 London time, the tick before sends nothing and the tick at 09:00 sends it."""
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")
    past = post(editor, edition_id, "/schedule", at="2020-01-01T09:00")
    assert past.status_code == 400
    assert "that moment has passed" in past.text
    assert post(editor, edition_id, "/schedule", at="2030-07-01T09:00").status_code == 303
    page = editor.get(path(edition_id)).text
    assert "Scheduled for 2030-07-01 09:00 BST" in page
    with ws.site.transaction() as session:
        edition = session.get(Edition, edition_id)
        assert edition is not None
        assert edition.scheduled_at == datetime(2030, 7, 1, 8, 0, tzinfo=UTC)

    def tick(at: datetime) -> None:
        run_due(ws.site, at, lambda: SmtpTransport(ws.smtp.url()), collect_sources=False)

    tick(datetime(2030, 7, 1, 7, 59, tzinfo=UTC))
    assert status(ws, edition_id) == "approved"
    assert received_by(ws) == Counter()
    tick(datetime(2030, 7, 1, 8, 0, tzinfo=UTC))
    assert status(ws, edition_id) == "sent"
    assert received_by(ws) == Counter(dict.fromkeys(UK_MEMBERS, 1))


# -- figures ---------------------------------------------------------------------------------------


def test_figures_after_refusals_bounces_complaints_and_unsubscribes(ws: Workspace) -> None:
    """The edition page and `newsletter status` count what became of the edition, without tracking."""
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")
    replies = ws.smtp.handler.rcpt_replies
    replies["raj.patel@example.org"] = "550 5.1.1 <raj.patel@example.org>: no such user"
    replies["fiona.macleod@example.net"] = "552 5.2.2 <fiona.macleod@example.net>: mailbox full"
    replies["owen.jones@example.org"] = "450 4.2.1 <owen.jones@example.org>: try again later"
    post(editor, edition_id, "/send")
    assert wait_until(lambda: len(received_by(ws)) == 4)
    assert wait_until(lease_free(ws, edition_id))

    # Jane complains through a feedback loop; Sofia unsubscribes with one click.
    jane = ws.mails_to("jane.doe@example.org")[0]
    complaint = ws.cli.site / "complaint.eml"
    complaint.write_bytes(
        arf(f"Return-Path: <{jane.mail_from}>\r\n{jane.content.decode()}", mail_from=jane.mail_from)
    )
    ws.cli("bounces", "process", str(complaint))
    sofia = ws.mails_to("sofia.lindqvist@example.org")[0].message()
    one_click = re.search(r"<https://news\.example\.org(/unsubscribe/[^>]+)>", str(sofia["List-Unsubscribe"]))
    assert one_click
    left = ws.client().post(
        one_click.group(1),
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert left.status_code == 200

    expected = {
        "delivered": 4,
        "deferred": 1,
        "failed": 2,
        "bounced-hard": 1,
        "bounced-soft": 1,
        "complained": 1,
        "unsubscribed": 1,
    }
    page = editor.get(path(edition_id)).text
    assert {name: figure(page, name) for name in expected} == expected
    report = json.loads(ws.cli("status", "--json").stdout)
    [row] = [e for e in report["editions"] if e["id"] == edition_id]
    assert {k: row["figures"][k.replace("-", "_")] for k in expected} == expected
    text = ws.cli("status").stdout
    assert f"#{edition_id}" in text
    assert "1 hard, 1 soft" in text


def test_a_four_eyes_group_waits_for_a_person_even_on_an_auto_schedule(
    four_eyes: None, make_workspace: Callable[..., Workspace]
) -> None:
    """The weekly schedule approves by itself, but not for a group that wants a second person."""
    ws = make_workspace()
    add_item(ws, "Alpha news")
    monday = datetime(2030, 7, 1, 8, 0, tzinfo=UTC)  # 09:00 in London
    report = run_due(ws.site, monday, lambda: SmtpTransport(ws.smtp.url()), collect_sources=False)
    assert report.errors == []
    with ws.site.transaction() as session:
        built = session.exec(select(Edition).where(Edition.schedule == "weekly")).all()
        assert [(str(e.status), e.last_changed_by) for e in built] == [("draft", "scheduler")]
        edition_id = built[0].id or 0
    assert received_by(ws) == Counter()
    assert (
        post(session_for(ws, EDITOR), edition_id, "/approve", version=version(ws, edition_id)).status_code
        == 303
    )
    assert status(ws, edition_id) == "approved"


def test_the_send_button_is_refused_while_another_process_sends(ws: Workspace) -> None:
    """A send holding the lease (as `editions send` does) makes the button answer 409; nothing is sent."""
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")
    other = Runner(ws.site, Renderer(ws.site.settings), SmtpTransport(ws.smtp.url()), actor="cli:ops")
    other.reserve(edition_id)
    try:
        refused = post(editor, edition_id, "/send")
        assert refused.status_code == 409
        assert f"edition #{edition_id} is already being sent by" in refused.text
        assert status(ws, edition_id) == "approved"
        assert ws.smtp.messages == []
    finally:
        other.transport.close()
        with ws.site.transaction() as session:
            lease.give_up(session, edition_id, other.owner)


def test_the_progress_page_polls_while_a_send_is_starting(ws: Workspace) -> None:
    """Send now reserves the lease before its thread moves the edition to sending: the page polls already."""
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")
    assert "hx-trigger" not in editor.get(path(edition_id, "/progress")).text  # nothing under way
    starting = Runner(ws.site, Renderer(ws.site.settings), SmtpTransport(ws.smtp.url()), actor="user:x")
    starting.reserve(edition_id)
    try:
        page = editor.get(path(edition_id, "/progress")).text
        assert status(ws, edition_id) == "approved"
        assert 'hx-trigger="every 3s"' in page
    finally:
        starting.transport.close()
        with ws.site.transaction() as session:
            lease.give_up(session, edition_id, starting.owner)


def test_a_test_copy_the_relay_refuses_is_a_message_on_the_page(ws: Workspace) -> None:
    """With the relay down the page says the copy did not go (502); nothing else changes."""
    add_item(ws, "Alpha news")
    editor = session_for(ws, EDITOR)
    edition_id = build(editor)
    ws.smtp.handler.down = True
    failed = post(editor, edition_id, "/test")
    assert failed.status_code == 502
    assert "the test copy could not be sent: cannot connect to 127.0.0.1" in failed.text
    assert ws.smtp.messages == []
    assert status(ws, edition_id) == "draft"


def test_an_edition_written_to_the_outbox_folder_counts_nobody_as_delivered(ws: Workspace) -> None:
    """Sent through the outbox transport, the messages are files: written 7, delivered 0."""
    import_members(ws)
    editor = session_for(ws, EDITOR)
    edition_id = approved_edition(ws, editor, "Alpha news")
    ws.cli("editions", "send", str(edition_id))
    assert status(ws, edition_id) == "written"
    page = editor.get(path(edition_id)).text
    assert (figure(page, "delivered"), figure(page, "written")) == (0, 7)
    [row] = json.loads(ws.cli("status", "--json").stdout)["editions"]
    assert (row["figures"]["delivered"], row["figures"]["written"]) == (0, 7)
    assert "0 (7 written)" in ws.cli("status").stdout


def test_the_dashboard_says_what_waits_in_each_group(ws: Workspace) -> None:
    """A proposal waiting, a draft waiting, the next run and a failing source: on the editor's dashboard."""
    editor = session_for(ws, EDITOR)
    add_item(ws, "Alpha news")
    ws.cli("items", "add", "--title", "A proposal", "--url", "https://example.org/p", "--group", "uk")
    edition_id = build(editor)
    with ws.site.transaction() as session:
        session.add(Source(name="wipo-news", url="https://example.org/f", failures=2, last_error="HTTP 503"))
    page = editor.get("/admin/")
    assert page.status_code == 200
    text = re.sub(r"\s+", " ", page.text)
    assert "1 item waits for review" in text
    assert f'href="/admin/groups/uk/editions/{edition_id}">Draft #{edition_id} waits for approval' in text
    assert re.search(r"Next scheduled edition: <time datetime=\"[0-9T:+-]+\">", text)
    assert "Failing sources: wipo-news" in text
    # The other editor's dashboard says nothing of uk's draft and proposal; the source
    # feeds every group, so it is theirs too.
    other = re.sub(r"\s+", " ", session_for(ws, OTHER_EDITOR).get("/admin/").text)
    assert "Draft #" not in other
    assert "0 items wait for review" in other
    assert "Failing sources: wipo-news" in other
