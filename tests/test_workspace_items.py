"""A group's items in the workspace: queue, proposing with a preview, reviewing, history, stale forms.

The app is the example site's (tests/workspace.py), driven by Starlette's TestClient with
sessions made in the database; items come from the CLI (``newsletter items add``) or
from the pages under test. What the pages stored is read back from the database.
"""

import html
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.core.errors import Forbidden, InputError
from newsletter.core.models import Event, Item, ItemStatus, Source
from newsletter.pool import items as pool
from newsletter.pool import review
from tests.workspace import ADMIN, CONTRIBUTOR, EDITOR, Workspace, csrf_of, session_for

QUEUE = "/admin/groups/uk/items"
SCRIPT_MD = (
    "**Espacenet** news.\n\n<script>alert('x')</script>\n\n"
    "[click](javascript:alert(1)) and [the page](https://www.epo.org/news)\n"
)


def cli_item(ws: Workspace, title: str, *args: str) -> int:
    """An item proposed from the command line (``cli:LOGIN``); its id."""
    [added] = json.loads(ws.cli("items", "add", "--title", title, *args, "--json").stdout)
    return int(added["id"])


def item(ws: Workspace, item_id: int) -> Item:
    with ws.site.transaction() as session:
        found = session.get(Item, item_id)
        assert found is not None
        session.expunge(found)
        return found


def events(ws: Workspace, item_id: int) -> list[tuple[str, str, str]]:
    """(kind, actor, source) of the item's audit rows, oldest first."""
    with ws.site.transaction() as session:
        rows = session.exec(select(Event).where(Event.item_id == item_id).order_by(col(Event.id)))
        return [(e.kind, e.actor, e.source) for e in rows]


def version_of(page: str) -> str:
    found = re.search(r'name="version" value="([^"]*)"', page)
    assert found, "the page has no version field"
    return html.unescape(found.group(1))


def item_path(item_id: int, group: str = "uk") -> str:
    return f"/admin/groups/{group}/items/{item_id}"


def form_of(page: str, **changes: Any) -> dict[str, Any]:
    """The item form's fields as the page shows them (text inputs, the summary, ticked groups), changed."""
    fields: dict[str, Any] = {"csrf": csrf_of(page), "version": version_of(page)}
    for name in ("title", "url", "topic", "language", "start", "end", "place", "deadline"):
        found = re.search(rf'name="{name}" type="[^"]*"[^>]*value="([^"]*)"', page)
        fields[name] = html.unescape(found.group(1)) if found else ""
    summary = re.search(r'<textarea id="summary"[^>]*>([^<]*)</textarea>', page)
    fields["summary"] = html.unescape(summary.group(1)) if summary else ""
    kind = re.search(r'<option value="([^"]*)" selected>', page)
    fields["kind"] = kind.group(1) if kind else "news"
    fields["groups"] = re.findall(r'name="groups" value="([^"]*)" checked', page)
    return fields | changes


def propose(client: TestClient, group: str = "uk", **fields: Any) -> Any:
    page = client.get(f"/admin/groups/{group}/items/new")
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page.text), "language": "en", "kind": "news", "groups": [group], **fields}
    return client.post(f"/admin/groups/{group}/items/new", data=data)


def decide(client: TestClient, item_id: int, decision: str, version: str | None = None) -> Any:
    page = client.get(item_path(item_id))
    assert page.status_code == 200, page.text
    data = {"csrf": csrf_of(page.text), "version": version or version_of(page.text), "decision": decision}
    return client.post(item_path(item_id) + "/review", data=data)


# -- reviewing ---------------------------------------------------------------------------------


def test_an_editor_approves_rejects_and_edits_with_the_history_naming_them(ws: Workspace) -> None:
    """Each act of the editor goes through the library, and the history names user:EMAIL next to cli:LOGIN."""
    item_id = cli_item(ws, "EPO news", "--group", "uk", "--topic", "EPO")
    editor = session_for(ws, EDITOR)

    approved = decide(editor, item_id, "approve")
    assert approved.status_code == 303
    assert approved.headers["location"] == item_path(item_id) + "?saved=1"
    assert item(ws, item_id).status == ItemStatus.APPROVED

    page = editor.get(item_path(item_id))
    edited = editor.post(
        item_path(item_id), data=form_of(page.text, title="EPO news, corrected", topic="EPO")
    )
    assert edited.status_code == 303, edited.text
    assert item(ws, item_id).title == "EPO news, corrected"

    assert decide(editor, item_id, "reject").status_code == 303
    assert item(ws, item_id).status == ItemStatus.REJECTED

    who = f"user:{EDITOR}"
    history = events(ws, item_id)
    assert history[0][0] == "item-add"
    assert history[0][1].startswith("cli:")
    assert history[1:] == [
        ("item-approved", who, "web"),
        ("item-edit", who, "web"),
        ("item-rejected", who, "web"),
    ]
    shown = editor.get(item_path(item_id)).text
    assert re.findall(r'<td class="actor">([^<]*)</td>', shown) == [history[0][1], who, who, who]
    assert "<td>title</td>" in shown  # the edit says what it changed
    assert 'id="item-status">rejected<' in shown


def test_an_editor_targets_only_the_groups_they_review(ws: Workspace) -> None:
    """The editor of uk unticks uk on an item for uk and dach: dach stays; they cannot add fr (403)."""
    item_id = cli_item(ws, "IP5 meeting", "--group", "uk", "--group", "dach")
    editor = session_for(ws, EDITOR)
    page = editor.get(item_path(item_id)).text
    assert re.findall(r'name="groups" value="([^"]*)"', page) == ["uk"]
    refused = editor.post(item_path(item_id), data=form_of(page, groups=["uk", "fr"]))
    assert refused.status_code == 403
    moved = editor.post(item_path(item_id), data=form_of(page, groups=[]))
    assert moved.status_code == 303
    with ws.site.transaction() as session:
        assert pool.target_slugs(session, session.get(Item, item_id)) == ["dach"]  # type: ignore[arg-type]
    # No longer meant for uk: it left the editor's queue and its page under uk is gone.
    assert editor.get(item_path(item_id)).status_code == 404
    assert f'href="{item_path(item_id)}"' not in editor.get(QUEUE).text


def test_a_stale_form_is_refused_and_changes_nothing(ws: Workspace) -> None:
    """The editor's page was loaded before the admin's edit: their save and their approval are refused."""
    item_id = cli_item(ws, "WIPO survey", "--group", "uk")
    editor, admin = session_for(ws, EDITOR), session_for(ws, ADMIN)
    stale = editor.get(item_path(item_id)).text

    admin_page = admin.get(item_path(item_id)).text
    assert (
        admin.post(item_path(item_id), data=form_of(admin_page, title="WIPO survey (admin)")).status_code
        == 303
    )
    before = item(ws, item_id)
    history = events(ws, item_id)

    refused = editor.post(item_path(item_id), data=form_of(stale, title="WIPO survey (editor)"))
    assert refused.status_code == 409
    assert "changed by someone else since this page was loaded" in html.unescape(refused.text)
    # The page now shows the admin's change, and a form made from it.
    assert "WIPO survey (admin)" in refused.text
    assert version_of(refused.text) == pool.version(before)

    late = decide(editor, item_id, "approve", version=version_of(stale))
    assert late.status_code == 409
    after = item(ws, item_id)
    assert (after.title, after.status, after.updated_at) == (
        "WIPO survey (admin)",
        ItemStatus.PROPOSED,
        before.updated_at,
    )
    assert events(ws, item_id) == history

    # From the fresh page, the same change goes through.
    fresh = editor.get(item_path(item_id)).text
    assert (
        editor.post(item_path(item_id), data=form_of(fresh, title="WIPO survey (editor)")).status_code == 303
    )
    assert item(ws, item_id).title == "WIPO survey (editor)"


# -- proposing and the preview -----------------------------------------------------------------


def test_the_preview_is_sanitised_and_is_what_the_email_renders(ws: Workspace, tmp_path: Any) -> None:
    """The htmx fragment drops the script and the javascript: link, and the built edition carries it as is."""
    editor = session_for(ws, EDITOR)
    page = editor.get(QUEUE + "/new").text
    assert 'hx-post="/admin/groups/uk/items/preview"' in page
    fragment = editor.post(QUEUE + "/preview", data={"csrf": csrf_of(page), "summary": SCRIPT_MD})
    assert fragment.status_code == 200
    assert "<strong>Espacenet</strong>" in fragment.text
    # The script is text to read, never a tag; the javascript: link is no link.
    assert "<script" not in fragment.text
    assert "&lt;script&gt;" in fragment.text
    assert 'href="javascript:' not in fragment.text
    assert re.findall(r'href="([^"]*)"', fragment.text) == ["https://www.epo.org/news"]
    assert "<html" not in fragment.text  # a fragment, not a page

    # Without JavaScript, the Preview button shows the same on the page, and stores nothing.
    no_js = propose(editor, title="Espacenet 2026", summary=SCRIPT_MD, action="preview")
    assert no_js.status_code == 200
    assert fragment.text in no_js.text
    with ws.site.transaction() as session:
        assert session.exec(select(Item)).all() == []

    added = propose(editor, title="Espacenet 2026", summary=SCRIPT_MD, url="https://www.epo.org/news")
    assert added.status_code == 303
    item_id = int(added.headers["location"].split("/")[-1].split("?")[0])
    assert item(ws, item_id).summary_html == fragment.text
    assert decide(editor, item_id, "approve").status_code == 303
    built = json.loads(ws.cli("editions", "build", "uk", "--json").stdout)
    email = tmp_path / "uk.html"
    ws.cli("editions", "preview", str(built["id"]), "--output", str(email))
    # MJML drops the line breaks between block tags; everything else is the fragment as previewed.
    assert re.sub(r">\n<", "><", fragment.text) in email.read_text(encoding="utf-8")


def test_bad_input_keeps_the_form_with_the_message(ws: Workspace) -> None:
    """Each mistake comes back as the form, as typed, with one clear message; nothing is stored."""
    editor = session_for(ws, EDITOR)
    mistakes = {
        "an item needs a title": {"title": "  ", "url": "https://www.epo.org/kept"},
        "must be a web address": {"title": "EPO news", "url": "ftp://www.epo.org/kept"},
        "is not a date and time": {"title": "Webinar", "kind": "event", "start": "2026-13-40T25:00"},
        "an event needs a start": {"title": "Webinar", "kind": "event", "place": "Online"},
        "the event ends before it starts": {
            "title": "Webinar",
            "kind": "event",
            "start": "2026-12-03T14:00",
            "end": "2026-12-03T13:00",
        },
        "a survey needs an answer deadline": {"title": "Survey", "kind": "survey"},
        "is not a date such as": {"title": "Survey", "kind": "survey", "deadline": "soon"},
        "unknown language": {"title": "EPO news", "language": "xx-nonsense"},
    }
    for message, fields in mistakes.items():
        answer = propose(editor, summary="Kept *as typed*", **fields)
        assert answer.status_code == 400, message
        assert message in html.unescape(answer.text), message
        assert '<p class="error" role="alert">' in answer.text
        assert ">Kept *as typed*</textarea>" in answer.text
        for value in fields.values():
            assert f'value="{value}"' in answer.text or value in ("event", "survey", "  "), (message, value)
    with ws.site.transaction() as session:
        assert session.exec(select(Item)).all() == []
        assert session.exec(select(Event).where(col(Event.kind).startswith("item"))).all() == []

    # An edit with a mistake is refused the same way and leaves the item as it was.
    item_id = cli_item(ws, "EPO news", "--group", "uk")
    page = editor.get(item_path(item_id)).text
    refused = editor.post(item_path(item_id), data=form_of(page, title="", url="https://www.epo.org/x"))
    assert refused.status_code == 400
    assert "an item needs a title" in refused.text
    assert 'value="https://www.epo.org/x"' in refused.text
    assert version_of(refused.text) == version_of(page)
    assert item(ws, item_id).title == "EPO news"


def test_an_event_is_stored_in_the_groups_time_zone(ws: Workspace) -> None:
    """A browser's date and time (no offset) is the group's local time; the page shows it back the same."""
    editor = session_for(ws, EDITOR)
    added = propose(
        editor,
        title="CEPIUG workshop",
        kind="event",
        start="2027-07-01T14:00",
        end="2027-07-01T16:30",
        place="London",
    )
    assert added.status_code == 303, added.text
    [stored] = ws_items(ws)
    # London is on summer time (UTC+1) in July.
    assert stored.event_start == datetime(2027, 7, 1, 13, 0, tzinfo=UTC)
    assert stored.event_end == datetime(2027, 7, 1, 15, 30, tzinfo=UTC)
    page = editor.get(added.headers["location"]).text
    assert 'value="2027-07-01T14:00"' in page
    assert "London" in page


def ws_items(ws: Workspace) -> list[Item]:
    with ws.site.transaction() as session:
        found = list(session.exec(select(Item).order_by(col(Item.id))))
        for row in found:
            session.expunge(row)
        return found


# -- contributors --------------------------------------------------------------------------------


def test_a_contributor_proposes_sees_the_state_and_cannot_review(ws: Workspace) -> None:
    """The contributor proposes to uk, sees only their own items and their state, edits until reviewed."""
    others = cli_item(ws, "Someone else's item", "--group", "uk")
    contributor, editor = session_for(ws, CONTRIBUTOR), session_for(ws, EDITOR)

    form = contributor.get(QUEUE + "/new").text
    assert re.findall(r'name="groups" value="([^"]*)"', form) == ["uk"]  # only their group
    added = propose(contributor, title="WIPO Inspire report", summary="New *report*.")
    assert added.status_code == 303
    mine = int(added.headers["location"].split("/")[-1].split("?")[0])
    assert item(ws, mine).editor == f"user:{CONTRIBUTOR}"
    assert events(ws, mine) == [("item-add", f"user:{CONTRIBUTOR}", "web")]

    queue = contributor.get(QUEUE).text
    assert f'href="{item_path(mine)}"' in queue
    assert f'href="{item_path(others)}"' not in queue
    assert "Your proposals to" in queue

    page = contributor.get(item_path(mine)).text
    assert 'id="item-status">proposed<' in page
    assert "/review" not in page  # no approve or reject buttons
    edited = contributor.post(item_path(mine), data=form_of(page, title="WIPO Inspire report 2026"))
    assert edited.status_code == 303
    assert item(ws, mine).title == "WIPO Inspire report 2026"

    # They cannot review, see or change another's item, or reach another group.
    version = version_of(contributor.get(item_path(mine)).text)
    approve = contributor.post(
        item_path(mine) + "/review", data={"csrf": csrf_of(page), "version": version, "decision": "approve"}
    )
    assert approve.status_code == 403
    assert item(ws, mine).status == ItemStatus.PROPOSED
    assert contributor.get(item_path(others)).status_code == 403
    assert contributor.post(item_path(others), data=form_of(page, title="Mine now")).status_code == 403
    assert item(ws, others).title == "Someone else's item"
    assert contributor.get("/admin/groups/dach/items").status_code == 404
    assert contributor.get("/admin/groups/dach/items/new").status_code == 404
    assert propose(contributor, title="To dach", groups=["uk", "dach"]).status_code == 403
    assert len(ws_items(ws)) == 2

    # Once the editor has approved it, the contributor sees the new state and can no longer edit.
    assert decide(editor, mine, "approve").status_code == 303
    page = contributor.get(item_path(mine)).text
    assert 'id="item-status">approved<' in page
    assert 'name="version"' not in page
    fresh = version_of(editor.get(item_path(mine)).text)
    late = contributor.post(
        item_path(mine),
        data=form_of(
            editor.get(item_path(mine)).text, title="Changed after review", version=fresh, csrf=csrf_of(page)
        ),
    )
    assert late.status_code == 403
    assert item(ws, mine).title == "WIPO Inspire report 2026"


def test_the_group_page_links_the_items(ws: Workspace) -> None:
    """The group's front page links its items, for the editor and the contributor alike."""
    for address in (EDITOR, CONTRIBUTOR):
        assert f'href="{QUEUE}"' in session_for(ws, address).get("/admin/groups/uk/").text


# -- the queue -----------------------------------------------------------------------------------


def test_the_queue_filters_and_pages(ws: Workspace) -> None:
    """Items for uk or every group, 50 a page, newest first; filters by status, topic and source."""
    start = datetime(2026, 11, 1, tzinfo=UTC)
    with ws.site.transaction() as session:
        source = session.exec(select(Source).where(Source.name == "wipo-news")).first()
        if source is None:
            source = Source(name="wipo-news", url="samples/feeds/wipo-news.xml")
            session.add(source)
            session.flush()
        for number in range(60):
            draft = pool.ItemDraft(
                title=f"Item {number:02}",
                topic="WIPO" if number % 2 else "EPO",
                groups=None if number % 3 else ["uk"],
                published_at=start + timedelta(hours=number),
            )
            if number % 5 == 0:
                draft.source_id, draft.guid = source.id, f"guid-{number}"
            pool.add_item(session, ws.site.settings, draft, actor="cli:test", approve=number % 4 == 0)
        only_dach = pool.ItemDraft(title="Only dach", groups=["dach"])
        pool.add_item(session, ws.site.settings, only_dach, actor="cli:test")
    editor = session_for(ws, EDITOR)

    def titles(query: str) -> list[str]:
        page = editor.get(QUEUE + query)
        assert page.status_code == 200
        return re.findall(r'href="/admin/groups/uk/items/\d+">([^<]*)</a>', page.text)

    first, second = titles(""), titles("?page=2")
    assert first == [f"Item {n:02}" for n in range(59, 9, -1)]
    assert second == [f"Item {n:02}" for n in range(9, -1, -1)]
    assert "Only dach" not in first + second
    assert titles("?status=approved") == [f"Item {n:02}" for n in range(59, -1, -1) if n % 4 == 0]
    assert titles("?topic=EPO&status=proposed") == [
        f"Item {n:02}" for n in range(59, -1, -1) if n % 2 == 0 and n % 4 != 0
    ]
    assert titles("?source=wipo-news") == [f"Item {n:02}" for n in range(59, -1, -1) if n % 5 == 0]
    assert 'href="?status=approved&amp;page=2"' not in editor.get(QUEUE + "?status=approved").text
    assert 'href="?page=2"' in editor.get(QUEUE).text
    assert titles("?page=99999999999999999999") == second
    assert titles("?page=nonsense") == first


def test_every_group_and_a_form_sent_back_unchanged(ws: Workspace) -> None:
    """Only who may propose everywhere gets the every-group box; an unchanged form records nothing."""
    assert 'name="groups" value="*"' not in session_for(ws, EDITOR).get(QUEUE + "/new").text
    admin = session_for(ws, ADMIN)
    added = propose(admin, title="PATENTSCOPE update", groups=["*"], url="https://www.wipo.int/patentscope")
    assert added.status_code == 303
    [stored] = ws_items(ws)
    assert stored.all_groups
    page = admin.get(added.headers["location"]).text
    assert re.findall(r'name="groups" value="([^"]*)" checked', page) == ["*", "cepiug", "uk", "dach", "fr"]
    assert admin.post(item_path(stored.id or 0), data=form_of(page)).status_code == 303
    assert events(ws, stored.id or 0) == [("item-add", f"user:{ADMIN}", "web")]
    assert item(ws, stored.id or 0).updated_at == stored.updated_at

    # The same story again is refused with a message, and not added twice.
    again = propose(
        session_for(ws, EDITOR), title="PATENTSCOPE", url="https://www.wipo.int/patentscope?utm_source=x"
    )
    assert again.status_code == 400
    assert "this story is already in the pool (item #" in again.text
    assert len(ws_items(ws)) == 1


EVERY = ["cepiug", "uk", "dach", "fr"]


@pytest.mark.parametrize(
    ("current", "chosen", "editable", "expected"),
    [
        # The editor of uk leaves uk ticked on an item for every group: nothing changes.
        (["*"], ["uk"], ["uk"], None),
        # ...unticks it: every other group keeps the item.
        (["*"], [], ["uk"], ["cepiug", "dach", "fr"]),
        # ...adds uk to an item for dach: dach stays.
        (["dach"], ["uk"], ["uk"], ["dach", "uk"]),
        # Whoever reviews every group may choose every group, or leave it.
        (["uk"], ["*"], EVERY, ["*"]),
        (["*"], ["*", "uk"], EVERY, None),
        (["*"], ["uk", "fr"], EVERY, ["fr", "uk"]),
    ],
)
def test_targeting_changes_only_the_groups_one_reviews(
    current: list[str], chosen: list[str], editable: list[str], expected: list[str] | None
) -> None:
    """``retarget`` keeps the groups outside the person's reach as they were."""
    assert review.retarget(current, chosen, editable, EVERY) == expected


@pytest.mark.parametrize(
    ("chosen", "editable", "refusal"),
    [(["fr"], ["uk"], Forbidden), (["*"], ["uk"], Forbidden), ([], EVERY, InputError)],
)
def test_targeting_refuses_what_is_out_of_reach_or_empty(
    chosen: list[str], editable: list[str], refusal: type[Exception]
) -> None:
    """A group one does not review, every group without reviewing them all, or no group at all."""
    with pytest.raises(refusal):
        review.retarget(["uk"], chosen, editable, EVERY)
