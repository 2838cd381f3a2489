"""The workspace's subscriber pages: search, filters, keyset pages, add, remove, CSV import, export.

The app is the example site's (``ws``, tests/workspace.py) with two custom fields declared
in its newsletter.toml; members are put in by the CLI (``subscribers import``), as an
operator would, and the pages are driven through Starlette's TestClient as a browser.
Every test runs on SQLite and, when configured, on PostgreSQL.
"""

import csv
import io
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.audience import browse
from newsletter.core.errors import ConfigError
from newsletter.core.models import Event, Membership, Subscriber, SubscriberUpload
from newsletter.core.settings import load_settings
from tests.conftest import REPO
from tests.workspace import ADMIN, CONTRIBUTOR, EDITOR, OTHER_EDITOR, Workspace, csrf_of, session_for

LIST = "/admin/groups/uk/subscribers"
FIELDS = """
[fields.organisation]
label = "Organisation"

[fields.country]
label = "Country"
type = "choice"
choices = ["GB", "DE", "FR"]
"""


@pytest.fixture
def site_dir(site_dir: Path) -> Path:
    """The example site with the custom fields organisation (text) and country (a choice)."""
    config = site_dir / "newsletter.toml"
    config.write_text(config.read_text() + FIELDS)
    return site_dir


def import_rows(ws: Workspace, group: str, rows: list[dict[str, str]], tmp: Path) -> None:
    """Put members in through `newsletter subscribers import`."""
    path = tmp / f"{group}-{len(rows)}.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    ws.cli("subscribers", "import", group, str(path))


def addresses(page: str) -> list[str]:
    """The addresses in the list page's table, in order."""
    body = page.split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return re.findall(r"<tr>\s*<td>([^<]+@[^<]+)</td>", body)


def link(page: str, rel: str) -> str | None:
    found = re.search(rf'<a href="([^"]+)" rel="{rel}">', page)
    return found.group(1).replace("&amp;", "&") if found else None


def snapshot(ws: Workspace) -> dict[str, Any]:
    """Everything an import could change: people, memberships, the audit log, kept uploads aside."""
    with ws.cli.database() as session:
        people = session.exec(select(Subscriber).order_by(col(Subscriber.id))).all()
        members = session.exec(select(Membership).order_by(col(Membership.id))).all()
        return {
            "people": [(p.email, p.name, p.language, p.field_values, p.updated_at) for p in people],
            "members": [(m.subscriber_id, m.group_id, m.status, m.status_changed_at) for m in members],
            "events": session.exec(select(func.count()).select_from(Event)).one(),
        }


@pytest.fixture
def editor(ws: Workspace) -> TestClient:
    return session_for(ws, EDITOR)


def people(count: int, **extra: str) -> list[dict[str, str]]:
    return [{"email": f"member{n:03d}@example.org", "name": f"Member {n}", **extra} for n in range(count)]


# -- the list ------------------------------------------------------------------------------


def test_search_by_address_name_or_field_and_filter_by_status_and_choice(
    ws: Workspace, editor: TestClient, tmp_path: Path
) -> None:
    """The search finds a substring of address, name or field value, whatever the case; filters narrow it."""
    import_rows(
        ws,
        "uk",
        [
            {"email": "ada@example.org", "name": "Ada Lovelace", "organisation": "EPO", "country": "GB"},
            {"email": "jose@example.org", "name": "José Müller", "organisation": "WIPO", "country": "de"},
            {"email": "grace@example.com", "name": "Grace", "organisation": "", "country": ""},
        ],
        tmp_path,
    )
    ws.cli("subscribers", "remove", "uk", "grace@example.com")

    def search(**params: str) -> list[str]:
        response = editor.get(LIST, params=params)
        assert response.status_code == 200, response.text
        return addresses(response.text)

    assert search() == ["ada@example.org", "grace@example.com", "jose@example.org"]
    assert search(q="ADA") == ["ada@example.org"]
    assert search(q="example.com") == ["grace@example.com"]
    assert search(q="MÜLLER") == ["jose@example.org"]
    assert search(q="wipo") == ["jose@example.org"]
    assert search(q="%") == []
    assert search(status="unsubscribed") == ["grace@example.com"]
    assert search(status="active", q="example") == ["ada@example.org", "jose@example.org"]
    assert search(**{"field.country": "DE"}) == ["jose@example.org"]
    page = editor.get(LIST, params={"q": "jose"}).text
    row = page.split("jose@example.org", 1)[1].split("</tr>", 1)[0]
    for shown in ("José Müller", "WIPO", ">DE<", ">active<"):
        assert shown in row


@pytest.mark.parametrize("small", [browse.SMALL, 10], ids=["small group", "large group"])
def test_pages_are_stable_when_members_come_and_go(
    ws: Workspace, editor: TestClient, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small: int
) -> None:
    """Walking next pages lists everyone once, in order, even when people are added or removed meanwhile.

    With ``small`` lowered, the group counts as large and SQLite walks the address index.
    """
    monkeypatch.setattr(browse, "SMALL", small)
    import_rows(ws, "uk", people(120), tmp_path)
    first = editor.get(LIST)
    assert addresses(first.text) == [f"member{n:03d}@example.org" for n in range(50)]
    assert link(first.text, "prev") is None
    seen = addresses(first.text)
    url = link(first.text, "next")
    pages = [first.text]
    # Someone sorting before the cursor joins, and one on a later page leaves: no row repeats or is skipped.
    ws.cli("subscribers", "add", "uk", "aaa@example.org")
    ws.cli("subscribers", "remove", "uk", "member099@example.org")
    while url:
        assert "after=" in url
        page = editor.get(url)
        assert page.status_code == 200
        pages.append(page.text)
        seen += addresses(page.text)
        url = link(page.text, "next")
    assert seen == [f"member{n:03d}@example.org" for n in range(120)]
    assert len(pages) == 3
    back = editor.get(link(pages[2], "prev") or "")
    assert addresses(back.text) == addresses(pages[1])
    # The member a link's cursor names is erased: the link starts from the first page again.
    ws.cli("subscribers", "forget", "member049@example.org", "--yes")
    restarted = editor.get(link(pages[0], "next") or "")
    assert restarted.status_code == 200
    assert addresses(restarted.text)[:2] == ["aaa@example.org", "member000@example.org"]
    # A filter travels with the page links.
    filtered = editor.get(LIST, params={"status": "active", "q": "member"})
    assert "status=active" in (link(filtered.text, "next") or "")
    assert "q=member" in (link(filtered.text, "next") or "")


# -- add and remove ------------------------------------------------------------------------


def post_form(client: TestClient, path: str, data: dict[str, str]) -> Any:
    page = client.get(LIST)
    return client.post(path, data={"csrf": csrf_of(page.text), **data})


def test_add_and_remove_go_through_the_library_and_name_the_editor(ws: Workspace, editor: TestClient) -> None:
    """Add (with fields) and remove act as `subscribers add/remove` and the audit log says user:EMAIL."""
    added = post_form(
        editor,
        LIST + "/add",
        {
            "address": "Zoe@Example.org",
            "name": "Zoe",
            "language": "de",
            "field.organisation": "EPO",
            "field.country": "fr",
        },
    )
    assert added.status_code == 200, added.text
    assert "Added Zoe@Example.org" in added.text
    members = ws.cli.members("uk")
    assert members["Zoe@example.org"]["fields"] == {"organisation": "EPO", "country": "FR"}
    assert members["Zoe@example.org"]["language"] == "de"
    assert members["Zoe@example.org"]["source"] == "web"

    removed = post_form(editor, LIST + "/remove", {"address": "zoe@example.org"})
    assert removed.status_code == 200
    assert "Unsubscribed zoe@example.org" in removed.text
    assert ws.cli.members("uk")["Zoe@example.org"]["status"] == "unsubscribed"
    kinds = [(e.kind, e.actor, e.source) for e in ws.cli.events() if e.kind in ("subscribe", "unsubscribe")]
    assert kinds[-2:] == [("subscribe", f"user:{EDITOR}", "web"), ("unsubscribe", f"user:{EDITOR}", "web")]

    # An unsubscribed member is not added again, and the page says why; nothing changes.
    before = snapshot(ws)
    again = post_form(editor, LIST + "/add", {"address": "zoe@example.org"})
    assert again.status_code == 400
    assert "is unsubscribed from uk; only a new confirmed opt-in" in again.text
    assert 'value="zoe@example.org"' in again.text
    bad = post_form(editor, LIST + "/add", {"address": "new@example.org", "field.country": "Narnia"})
    assert bad.status_code == 400
    assert "country &#39;Narnia&#39; is not one of GB, DE, FR" in bad.text
    assert snapshot(ws) == before
    missing = post_form(editor, LIST + "/remove", {"address": "nobody@example.org"})
    assert missing.status_code == 400
    assert "no subscriber" in missing.text


def test_forms_need_their_csrf_token(ws: Workspace, editor: TestClient) -> None:
    """A post without the page's token is refused and adds nobody."""
    refused = editor.post(LIST + "/add", data={"csrf": "forged", "address": "x@example.org"})
    assert refused.status_code == 403
    assert "x@example.org" not in ws.cli.members("uk")


# -- the CSV import ------------------------------------------------------------------------


def upload(client: TestClient, content: bytes, name: str = "new.csv") -> Any:
    page = client.get(LIST + "/import")
    return client.post(
        LIST + "/import",
        data={"csrf": csrf_of(page.text)},
        files={"file": (name, content, "text/csv")},
    )


def confirm(client: TestClient, plan: str) -> Any:
    action = re.search(r'action="(/admin/groups/uk/subscribers/import/[^"]+)"', plan)
    digest = re.search(r'name="digest" value="([^"]+)"', plan)
    assert action, "the plan has no Import button"
    assert digest
    return client.post(action.group(1), data={"csrf": csrf_of(plan), "digest": digest.group(1)})


UPLOAD = (
    b"email,name,organisation,country\n"
    b"ada@example.org,Ada Lovelace,EPO,GB\n"  # updated: a new organisation
    b"bob@example.org,Bob,,\n"  # unchanged
    b"carl@example.org,Carl,,\n"  # unsubscribed: left as it is
    b"new@example.org,New Person,WIPO,de\n"  # added
    b"NEW@example.org,,,\n"  # a duplicate, merged
    b"not an address,,,\n"  # rejected
)


def test_an_upload_is_planned_first_and_imported_only_as_planned(
    ws: Workspace, editor: TestClient, tmp_path: Path
) -> None:
    """The plan shows each row's verdict and writes nothing; "Import" then does exactly that, once."""
    import_rows(
        ws,
        "uk",
        [
            {"email": e, "name": n}
            for e, n in [
                ("ada@example.org", "Ada Lovelace"),
                ("bob@example.org", "Bob"),
                ("carl@example.org", "Carl"),
            ]
        ],
        tmp_path,
    )
    ws.cli("subscribers", "remove", "uk", "carl@example.org")
    before = snapshot(ws)

    plan = upload(editor, UPLOAD)
    assert plan.status_code == 200, plan.text
    assert snapshot(ws) == before
    text = re.sub(r"\s+", " ", plan.text)
    assert (
        "Nothing has been written yet. added 1, updated 1, unchanged 2, rejected 1, 1 merged duplicate rows"
        in text
    )
    for line, address, verdict in [
        (2, "ada@example.org", "updated (organisation, country)"),
        (3, "bob@example.org", "unchanged"),
        (4, "carl@example.org", "unsubscribed"),
        (5, "new@example.org", "added"),
    ]:
        assert f"<tr><td>{line}</td><td>{address}</td><td>{verdict}</td></tr>" in text
    assert "line 6: NEW@example.org: same address as line 5" in text
    assert "line 7: not an address:" in text
    assert "left unsubscribed: only a new opt-in re-subscribes" in text
    assert "Import these 2 changes" in text

    done = confirm(editor, plan.text)
    assert done.status_code == 200, done.text
    assert "Imported new.csv: added 1, updated 1, unchanged 2, rejected 1." in done.text
    members = ws.cli.members("uk")
    assert members["new@example.org"]["fields"] == {"organisation": "WIPO", "country": "DE"}
    assert members["ada@example.org"]["fields"] == {"organisation": "EPO", "country": "GB"}
    assert members["carl@example.org"]["status"] == "unsubscribed"
    imported = [e for e in ws.cli.events() if e.source == "import:new.csv"]
    assert {(e.kind, e.actor) for e in imported} == {
        ("subscribe", f"user:{EDITOR}"),
        ("update", f"user:{EDITOR}"),
    }
    # The upload is used up: confirming it again finds nothing and changes nothing.
    after = snapshot(ws)
    assert confirm(editor, plan.text).status_code == 404
    assert snapshot(ws) == after
    with ws.cli.database() as session:
        assert session.exec(select(SubscriberUpload)).all() == []


def test_a_list_changed_since_the_plan_is_not_imported_blindly(ws: Workspace, editor: TestClient) -> None:
    """If the plan no longer holds at confirmation, nothing is written and the new plan is shown."""
    plan = upload(editor, b"email\nada@example.org\nbob@example.org\n")
    assert "Import these 2 changes" in plan.text
    ws.cli("subscribers", "add", "uk", "ada@example.org")
    ws.cli("subscribers", "remove", "uk", "ada@example.org")
    before = snapshot(ws)
    stale = confirm(editor, plan.text)
    assert stale.status_code == 409
    assert "The list changed since this file was checked, so nothing was imported" in stale.text
    assert "<td>ada@example.org</td><td>unsubscribed</td>" in stale.text
    assert snapshot(ws) == before
    # The new plan's button imports what it now says.
    assert confirm(editor, stale.text).status_code == 200
    assert ws.cli.members("uk")["bob@example.org"]["status"] == "active"
    assert ws.cli.members("uk")["ada@example.org"]["status"] == "unsubscribed"


def test_an_upload_is_only_for_its_uploader_and_its_group(ws: Workspace, editor: TestClient) -> None:
    """Another person, even an admin, cannot confirm someone's upload; nothing is imported."""
    plan = upload(editor, b"email\nada@example.org\n")
    admin = session_for(ws, ADMIN)
    action = re.search(r'action="(/admin/groups/uk/subscribers/import/[^"]+)"', plan.text)
    assert action
    page = admin.get(LIST)
    digest = re.search(r'name="digest" value="([^"]+)"', plan.text)
    assert digest
    assert (
        admin.post(action.group(1), data={"csrf": csrf_of(page.text), "digest": digest.group(1)}).status_code
        == 404
    )
    other = action.group(1).replace("/groups/uk/", "/groups/fr/")
    assert admin.post(other, data={"csrf": csrf_of(page.text), "digest": digest.group(1)}).status_code == 404
    assert "ada@example.org" not in ws.cli.members("uk")


@pytest.mark.parametrize(
    ("content", "status", "message"),
    [
        (b"name,language\nAda,en\n", 400, "no &#39;email&#39; column in the header"),
        (b"email\n\xff\xfe bad bytes\n", 400, "is not UTF-8; save the file as UTF-8"),
        (b"", 400, "is empty; it needs a header row"),
        (b"email\n" + b"a@example.org\n" * 500_000, 413, "larger than 5 MB; nothing was read"),
    ],
)
def test_a_bad_file_gets_a_message_and_changes_nothing(
    ws: Workspace, editor: TestClient, content: bytes, status: int, message: str
) -> None:
    """A file that is not a subscriber CSV, or too large, is refused with a clear line; nothing is kept."""
    before = snapshot(ws)
    refused = upload(editor, content)
    assert refused.status_code == status
    assert message in refused.text
    assert snapshot(ws) == before
    with ws.cli.database() as session:
        assert session.exec(select(SubscriberUpload)).all() == []


# -- export --------------------------------------------------------------------------------


def test_export_is_the_guarded_csv_with_the_fields_and_imports_back(
    ws: Workspace, editor: TestClient, tmp_path: Path
) -> None:
    """The download is the CLI's CSV: formulas get an apostrophe, fields are columns, it round-trips."""
    import_rows(
        ws,
        "uk",
        [
            {
                "email": "eve@example.org",
                "name": '=HYPERLINK("http://evil.example","x")',
                "organisation": "@EPO",
            },
            {"email": "ada@example.org", "name": "Ada", "organisation": "WIPO"},
        ],
        tmp_path,
    )
    response = editor.get(LIST + "/export")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    assert response.headers["content-disposition"] == 'attachment; filename="uk-members.csv"'
    rows = list(csv.reader(io.StringIO(response.text)))
    assert rows[0] == ["email", "name", "language", "status", "source", "since", "organisation", "country"]
    assert [r[0] for r in rows[1:]] == ["ada@example.org", "eve@example.org"]
    assert rows[2][1] == '\'=HYPERLINK("http://evil.example","x")'
    assert rows[2][6] == "'@EPO"
    cli_export = ws.cli("subscribers", "export", "uk").stdout
    assert response.text == cli_export
    events = [e for e in ws.cli.events() if e.kind == "export"]
    assert [(e.actor, e.source) for e in events] == [(f"user:{EDITOR}", "web")]

    # Imported into another group, the export gives back the same people, names and fields.
    admin = session_for(ws, ADMIN)
    page = admin.get("/admin/groups/fr/subscribers/import")
    plan = admin.post(
        "/admin/groups/fr/subscribers/import",
        data={"csrf": csrf_of(page.text)},
        files={"file": ("uk-members.csv", response.content, "text/csv")},
    )
    assert "Import these 2 changes" in plan.text
    action = re.search(r'action="(/admin/groups/fr/subscribers/import/[^"]+)"', plan.text)
    digest = re.search(r'name="digest" value="([^"]+)"', plan.text)
    assert action
    assert digest
    assert (
        admin.post(action.group(1), data={"csrf": csrf_of(plan.text), "digest": digest.group(1)}).status_code
        == 200
    )
    fr = ws.cli.members("fr")
    assert fr["eve@example.org"]["name"] == '=HYPERLINK("http://evil.example","x")'
    assert fr["eve@example.org"]["fields"] == {"organisation": "@EPO"}
    everyone = editor.get(LIST + "/export", params={"status": "all"})
    assert len(list(csv.reader(io.StringIO(everyone.text)))) == 3


# -- who sees what -------------------------------------------------------------------------


def test_another_groups_editor_sees_nothing_of_its_members(ws: Workspace, tmp_path: Path) -> None:
    """Every subscriber URL of uk answers the other editor as for a group that does not exist."""
    import_rows(ws, "uk", [{"email": "secret.member@example.org", "name": "Secret"}], tmp_path)
    other = session_for(ws, OTHER_EDITOR)
    missing = other.get("/admin/groups/no-such-group/subscribers")
    assert missing.status_code == 404
    for path in ("", "?q=secret", "/export", "/export?status=all", "/import"):
        hidden = other.get(LIST + path)
        assert hidden.status_code == 404, path
        assert hidden.text == missing.text
        assert "secret.member" not in hidden.text
    contributor = session_for(ws, CONTRIBUTOR)
    for path in ("", "/export", "/import"):
        refused = contributor.get(LIST + path)
        assert refused.status_code == 403
        assert "secret.member" not in refused.text
    # The group's front page links to the list only for those who may read it.
    assert LIST in session_for(ws, EDITOR).get("/admin/groups/uk/").text
    assert LIST not in contributor.get("/admin/groups/uk/").text


# -- declaring the fields ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("declared", "problem"),
    [
        ('[fields.email]\nlabel = "E-mail"', "is a column every subscriber has"),
        ('[fields.Org]\nlabel = "Org"', "must be lower-case letters"),
        ('[fields.country]\nlabel = "Country"\ntype = "choice"', 'a "choice" field needs choices'),
        ('[fields.org]\nlabel = "Org"\ntype = "number"', "'text' or 'choice'"),
        ('[fields.org]\nlabel = "Org"\ncolour = "red"', "colour"),
    ],
)
def test_a_badly_declared_field_is_a_settings_error(tmp_path: Path, declared: str, problem: str) -> None:
    """A field that clashes with a column, is misspelt or has no choices stops the settings, with its line."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "newsletter.toml").write_text((REPO / "newsletter.toml").read_text() + "\n" + declared + "\n")
    with pytest.raises(ConfigError, match="fields") as raised:
        load_settings(site, env={})
    assert problem in str(raised.value)
