"""Items through the CLI: adding, de-duplicating, listing, approving, editing, targeting, auditing."""

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, create_engine
from sqlmodel import Session, col, select

from newsletter.core.models import Event, Item, ItemTranslation

# What each sample file is, written down by hand from the files themselves.
SAMPLES = {
    "2026-11-epo-espacenet-register-news.md": ("news", ["*"]),
    "2026-11-fr-wipo-lex-mise-a-jour.md": ("news", ["fr"]),
    "2026-11-ip5-heads-of-office-meeting.md": ("meeting", ["*"]),
    "2026-11-wipo-global-brand-database.md": ("product", ["cepiug", "uk"]),
    "2026-11-wipo-inspire-report.md": ("report", ["*"]),
    "2026-11-wipo-patentscope-update.md": ("product", ["*"]),
    "2026-11-wipo-user-survey.md": ("survey", ["*"]),
    "2026-12-wipo-patentscope-webinar.md": ("event", ["*"]),
    "2027-01-cepiug-workshop-brussels.md": ("event", ["*"]),
    "2027-02-dach-regionaltreffen-zuerich.md": ("event", ["dach"]),
}
DACH_ONLY = "Regionaltreffen in Zürich: Patentrecherche mit KI-Werkzeugen"
FR_ONLY = "WIPO Lex : la législation française et belge mise à jour"
CEPIUG_AND_UK = "Global Brand Database adds image search filters and two new national collections"
URL = "https://www.epo.org/en/news-events/news/espacenet-2026"


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """An engine on the test database, to look at what the commands stored."""
    engine = create_engine(db_url)
    yield engine
    engine.dispose()


def rows(engine: Engine, model: Any) -> list[Any]:
    with Session(engine) as session:
        return list(session.exec(select(model).order_by(col(model.id))))


def add_json(cli: Any, *args: str) -> list[dict[str, Any]]:
    result = cli("items", "add", *args, "--json")
    data: list[dict[str, Any]] = json.loads(result.stdout)
    return data


def add_one(cli: Any, title: str = "EPO news", *args: str) -> int:
    [item] = add_json(cli, "--title", title, *args)
    return int(item["id"])


def listed(cli: Any, *args: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(cli("items", "list", "--json", *args).stdout)
    return data


def show(cli: Any, item_id: int) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(cli("items", "show", str(item_id), "--json").stdout)
    return data


def one_line_error(result: Any) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return str(lines[0])


def sample_files(site_dir: Path) -> list[str]:
    args = []
    for name in sorted(SAMPLES):
        args += ["--file", str(site_dir / "samples" / "items" / name)]
    return args


# --- adding from flags -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "extra", "expected"),
    [
        ("news", [], {}),
        ("product", [], {}),
        ("report", [], {}),
        ("meeting", [], {}),
        ("survey", ["--deadline", "2027-01-15"], {"deadline": "2027-01-15"}),
        (
            "event",
            ["--start", "2026-12-03T14:00+01:00", "--end", "2026-12-03T15:30+01:00", "--place", "Online"],
            {
                "event_start": "2026-12-03T13:00:00+00:00",
                "event_end": "2026-12-03T14:30:00+00:00",
                "event_place": "Online",
            },
        ),
    ],
)
def test_add_from_flags_every_kind(cli: Any, kind: str, extra: list[str], expected: dict[str, str]) -> None:
    """Every kind of item can be queued from flags, and event times are stored in UTC."""
    [item] = add_json(
        cli,
        "--title",
        f"A {kind} item",
        "--kind",
        kind,
        "--url",
        f"https://www.wipo.int/{kind}",
        "--topic",
        "WIPO",
        "--date",
        "2026-11-20",
        *extra,
    )
    assert item["created"] is True
    assert item["kind"] == kind
    assert item["status"] == "proposed"
    assert item["groups"] == ["*"]
    assert item["topic"] == "WIPO"
    assert item["published_at"] == "2026-11-20T00:00:00+00:00"
    for key, value in expected.items():
        assert item[key] == value
    assert [i["title"] for i in listed(cli)] == [f"A {kind} item"]


def test_add_with_approve_flag_and_groups(cli: Any) -> None:
    """`--approve` approves at once and repeated `--group` targets exactly those groups."""
    [item] = add_json(cli, "--title", "UK and DACH only", "--group", "uk", "--group", "dach", "--approve")
    assert item["status"] == "approved"
    assert item["groups"] == ["dach", "uk"]
    assert item["all_groups"] is False


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--kind", "survey"], "deadline"),
        (["--kind", "event"], "start"),
        (["--kind", "event", "--start", "2026-12-03T14:00+01:00", "--end", "2026-12-03T10:00+01:00"], "ends"),
    ],
)
def test_survey_and_event_need_their_dates(cli: Any, args: list[str], fragment: str) -> None:
    """A survey without a deadline or an event without a (sane) start is refused and nothing is stored."""
    line = one_line_error(cli("items", "add", "--title", "Incomplete", *args, ok=False))
    assert fragment in line
    assert listed(cli) == []


@pytest.mark.parametrize(
    "args",
    [
        ["--kind", "event", "--start", "2026-12-03T14:00"],
        ["--kind", "event", "--start", "2026-12-03T14:00+01:00", "--end", "2026-12-03T15:00"],
        ["--date", "2026-11-20T09:30"],
    ],
)
def test_naive_datetimes_are_refused(cli: Any, args: list[str]) -> None:
    """A date and time without an offset is ambiguous, so it is refused with one line naming the flag."""
    line = one_line_error(cli("items", "add", "--title", "When?", *args, ok=False))
    assert "time zone" in line
    flag = next(a for a in reversed(args) if a.startswith("--") and a != "--kind")
    assert flag in line
    assert listed(cli) == []


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "JavaScript:alert(document.cookie)",
        "data:text/html,<script>alert(1)</script>",
        "ftp://ftp.wipo.int/pub/",
        "www.epo.org/news",
        "http://",
    ],
)
def test_bad_url_is_refused(cli: Any, url: str) -> None:
    """Only http(s) links with a host can become an item's link."""
    line = one_line_error(cli("items", "add", "--title", "Link", "--url", url, ok=False))
    assert "http" in line
    assert listed(cli) == []


def test_upper_case_scheme_is_a_fine_url(cli: Any) -> None:
    """URL schemes are case-insensitive, so HTTPS://... is accepted like https://..."""
    [item] = add_json(cli, "--title", "Shouting", "--url", "HTTPS://WWW.EPO.ORG/news")
    assert item["created"] is True
    assert item["canonical_url"] == "https://www.epo.org/news"


# --- adding from files -------------------------------------------------------------------


def test_every_sample_file_parses_and_adds(cli: Any, site_dir: Path) -> None:
    """All ten sample items are added in one call, each with its kind, targets and file provenance."""
    assert sorted(p.name for p in (site_dir / "samples" / "items").glob("*.md")) == sorted(SAMPLES)
    added = add_json(cli, *sample_files(site_dir))
    assert len(added) == 10
    assert all(item["created"] for item in added)
    by_origin = {item["origin"]: item for item in added}
    for name, (kind, groups) in SAMPLES.items():
        item = by_origin[f"file:{name}"]
        assert item["kind"] == kind, name
        assert item["groups"] == groups, name
        assert item["summary_html"].startswith("<p>"), name
    assert len(listed(cli)) == 10


def test_sample_file_fields(cli: Any, site_dir: Path) -> None:
    """A sample event keeps its place, start and end (in UTC), language and date from the front matter."""
    [item] = add_json(cli, "--file", str(site_dir / "samples/items/2027-02-dach-regionaltreffen-zuerich.md"))
    assert item["title"] == DACH_ONLY
    assert item["language"] == "de"
    assert item["topic"] == "CEPIUG"
    assert item["event_place"] == "Zürich, Schweiz"
    assert item["event_start"] == "2027-02-04T12:30:00+00:00"
    assert item["event_end"] == "2027-02-04T17:00:00+00:00"
    assert item["published_at"] == "2026-11-22T00:00:00+00:00"
    [survey] = add_json(cli, "--file", str(site_dir / "samples/items/2026-11-wipo-user-survey.md"))
    assert survey["deadline"] == "2027-01-15"


def test_translations_are_stored(cli: Any, site_dir: Path, engine: Engine) -> None:
    """The translations in a file's front matter are stored, with their summaries rendered to HTML."""
    [item] = add_json(cli, "--file", str(site_dir / "samples/items/2026-11-ip5-heads-of-office-meeting.md"))
    shown = show(cli, item["id"])
    assert sorted(shown["translations"]) == ["de", "fr"]
    assert shown["translations"]["de"]["title"] == (
        "IP5-Leiterinnen und -Leiter: Bericht über das Treffen 2026 veröffentlicht"
    )
    assert shown["translations"]["fr"]["title"] == (
        "Chefs d'office IP5 : le compte rendu de la réunion 2026 est en ligne"
    )
    assert shown["translations"]["de"]["summary_md"].startswith("EPA, JPO, KIPO, CNIPA und USPTO")
    stored = rows(engine, ItemTranslation)
    assert {t.language for t in stored} == {"de", "fr"}
    assert all(t.item_id == item["id"] for t in stored)
    assert all(t.summary_html.startswith("<p>") for t in stored)


def test_targeting_by_group(cli: Any, site_dir: Path) -> None:
    """The dach-only item is listed for dach and not for uk; items without groups are listed everywhere."""
    added = add_json(cli, *sample_files(site_dir))
    everywhere = {item["title"] for item in added if item["groups"] == ["*"]}
    assert len(everywhere) == 7
    dach = {item["title"] for item in listed(cli, "--group", "dach")}
    uk = {item["title"] for item in listed(cli, "--group", "uk")}
    fr = {item["title"] for item in listed(cli, "--group", "fr")}
    cepiug = {item["title"] for item in listed(cli, "--group", "cepiug")}
    assert dach == everywhere | {DACH_ONLY}
    assert uk == everywhere | {CEPIUG_AND_UK}
    assert fr == everywhere | {FR_ONLY}
    assert cepiug == everywhere | {CEPIUG_AND_UK}


# --- one story, one item -----------------------------------------------------------------


@pytest.mark.parametrize(
    "again",
    [
        URL,
        URL + "?utm_source=newsletter&utm_medium=email&utm_campaign=nov",
        "https://WWW.EPO.ORG/en/news-events/news/espacenet-2026",
        URL + "#details",
        URL + "?fbclid=abc123",
    ],
)
def test_same_story_twice_stays_one_item(cli: Any, engine: Engine, again: str) -> None:
    """The same link, also with tracking parameters, a fragment or another host case, is not re-added."""
    first = add_one(cli, "Espacenet news", "--url", URL)
    [second] = add_json(cli, "--title", "Espacenet news (again)", "--url", again)
    assert second["created"] is False
    assert second["id"] == first
    result = cli("items", "add", "--title", "Espacenet news (again)", "--url", again)
    assert f"item #{first} already in the pool" in result.stdout
    assert [i.id for i in rows(engine, Item)] == [first]
    assert [e.kind for e in rows(engine, Event)] == ["item-add"]


def test_different_query_is_another_story(cli: Any) -> None:
    """A query parameter that is not tracking (a page id) makes a different item."""
    add_one(cli, "Meeting 1", "--url", "https://www.wipo.int/meetings?meeting_id=1")
    [other] = add_json(cli, "--title", "Meeting 2", "--url", "https://www.wipo.int/meetings?meeting_id=2")
    assert other["created"] is True
    assert len(listed(cli)) == 2


def test_same_file_twice_stays_one_item(cli: Any, site_dir: Path) -> None:
    """Adding a sample file a second time finds the item already in the pool."""
    path = str(site_dir / "samples/items/2026-11-wipo-user-survey.md")
    [first] = add_json(cli, "--file", path)
    again = add_json(cli, "--file", path, "--file", path)
    assert first["created"] is True
    assert [(i["created"], i["id"]) for i in again] == [(False, first["id"])] * 2
    assert len(listed(cli)) == 1


def test_items_without_url_dedupe_on_title_and_date(cli: Any) -> None:
    """Without a URL, the same title (whatever the spacing and case) on the same day is the same item."""
    first = add_one(cli, "CEPIUG board meeting", "--date", "2026-11-20")
    [again] = add_json(cli, "--title", "cepiug  BOARD meeting", "--date", "2026-11-20")
    [other_day] = add_json(cli, "--title", "CEPIUG board meeting", "--date", "2026-12-20")
    assert (again["created"], again["id"]) == (False, first)
    assert other_day["created"] is True


def test_edited_url_is_the_new_identity(cli: Any) -> None:
    """After an item's URL is corrected, adding the corrected URL finds the edited item."""
    item_id = add_one(cli, "Typo in link", "--url", "https://www.epo.org/nwes")
    cli("items", "edit", str(item_id), "--url", "https://www.epo.org/news")
    [again] = add_json(cli, "--title", "Typo in link", "--url", "https://www.epo.org/news?utm_source=x")
    assert (again["created"], again["id"]) == (False, item_id)
    [old] = add_json(cli, "--title", "Old link", "--url", "https://www.epo.org/nwes")
    assert old["created"] is True


def test_edit_onto_another_items_url_is_refused(cli: Any) -> None:
    """Editing an item's URL to another item's story is refused with one line and changes nothing."""
    first = add_one(cli, "First", "--url", "https://www.epo.org/a")
    second = add_one(cli, "Second", "--url", "https://www.epo.org/b")
    line = one_line_error(cli("items", "edit", str(second), "--url", "https://www.epo.org/a", ok=False))
    assert f"#{first}" in line
    assert show(cli, second)["url"] == "https://www.epo.org/b"


# --- listing and showing -----------------------------------------------------------------


def test_list_filters_by_status_and_topic(cli: Any) -> None:
    """`items list` orders newest first and filters by status and (case-insensitive) topic."""
    epo = add_one(cli, "EPO one", "--topic", "EPO", "--date", "2026-11-01")
    wipo = add_one(cli, "WIPO one", "--topic", "WIPO", "--date", "2026-11-03")
    ip5 = add_one(cli, "IP5 one", "--topic", "IP5", "--date", "2026-11-02")
    cli("items", "approve", str(epo))
    cli("items", "reject", str(ip5))
    assert [i["id"] for i in listed(cli)] == [wipo, ip5, epo]
    assert [i["id"] for i in listed(cli, "--status", "approved")] == [epo]
    assert [i["id"] for i in listed(cli, "--status", "rejected")] == [ip5]
    assert [i["id"] for i in listed(cli, "--status", "proposed")] == [wipo]
    assert [i["id"] for i in listed(cli, "--topic", "WIPO")] == [wipo]
    assert [i["id"] for i in listed(cli, "--topic", "epo")] == [epo]
    assert listed(cli, "--topic", "USPTO") == []
    assert listed(cli, "--topic", "EPO", "--status", "proposed") == []


def test_list_table_output(cli: Any) -> None:
    """Without --json the listing is a table with one row per item, and `(none)` when empty."""
    assert cli("items", "list").stdout.strip() == "(none)"
    add_one(cli, "Espacenet news", "--topic", "EPO", "--date", "2026-11-19")
    lines = cli("items", "list").stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["id", "status", "kind"]
    assert "Espacenet news" in lines[1]
    assert "2026-11-19" in lines[1]


def test_show_json_has_provenance(cli: Any, site_dir: Path) -> None:
    """`items show --json` tells where an item came from, who queued it, and when."""
    before = datetime.now(UTC)
    item_id = add_one(cli, "From the CLI", "--date", "2026-11-20", "--summary", "Short *text*.")
    after = datetime.now(UTC)
    shown = show(cli, item_id)
    assert shown["origin"] == "cli"
    assert shown["editor"].startswith("cli:")
    assert shown["published_at"] == "2026-11-20T00:00:00+00:00"
    created = datetime.fromisoformat(shown["created_at"])
    assert created.utcoffset() is not None
    assert before <= created <= after
    assert shown["summary_md"] == "Short *text*."
    assert shown["summary_html"] == "<p>Short <em>text</em>.</p>"
    assert shown["translations"] == {}
    assert "fingerprint" not in shown

    [from_file] = add_json(cli, "--file", str(site_dir / "samples/items/2026-11-wipo-inspire-report.md"))
    assert show(cli, from_file["id"])["origin"] == "file:2026-11-wipo-inspire-report.md"


def test_show_without_json(cli: Any) -> None:
    """`items show` prints the fields, the targets and the Markdown summary for a person."""
    item_id = add_one(cli, "Readable", "--group", "fr", "--summary", "Body **text**.")
    out = cli("items", "show", str(item_id)).stdout
    assert re.search(r"^title:\s+Readable$", out, re.MULTILINE)
    assert re.search(r"^groups:\s+fr$", out, re.MULTILINE)
    assert out.rstrip().endswith("Body **text**.")


def test_show_unknown_item(cli: Any) -> None:
    """Showing an item that does not exist is one line naming the id."""
    assert "#42" in one_line_error(cli("items", "show", "42", ok=False))


# --- approving and rejecting -------------------------------------------------------------


def test_approve_and_reject_several_ids(cli: Any) -> None:
    """Several ids can be approved or rejected in one command."""
    a, b, c = (add_one(cli, f"Item {n}") for n in "abc")
    out = cli("items", "approve", str(a), str(c)).stdout
    assert f"approved: #{a} Item a" in out
    assert f"approved: #{c} Item c" in out
    cli("items", "reject", str(b))
    status = {i["id"]: i["status"] for i in listed(cli)}
    assert status == {a: "approved", b: "rejected", c: "approved"}
    cli("items", "reject", str(a))
    assert show(cli, a)["status"] == "rejected"


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_unknown_id_changes_nothing(cli: Any, engine: Engine, verb: str) -> None:
    """One unknown id among known ones fails the whole command with one line, and nothing changes."""
    a, b = add_one(cli, "Item a"), add_one(cli, "Item b")
    events = len(rows(engine, Event))
    line = one_line_error(cli("items", verb, str(a), "999", str(b), ok=False))
    assert "#999" in line
    assert {i["status"] for i in listed(cli)} == {"proposed"}
    assert len(rows(engine, Event)) == events


@pytest.mark.parametrize("verb", ["approve", "reject"])
def test_no_ids_is_an_error(cli: Any, verb: str) -> None:
    """Approving or rejecting with no id at all is an error, not a silent no-op."""
    line = one_line_error(cli("items", verb, ok=False))
    assert "id" in line


def test_approve_all_proposed(cli: Any) -> None:
    """`--all-proposed` approves every proposed item and leaves rejected ones alone."""
    a, b, c = (add_one(cli, f"Item {n}") for n in "abc")
    cli("items", "reject", str(b))
    cli("items", "approve", "--all-proposed")
    status = {i["id"]: i["status"] for i in listed(cli)}
    assert status == {a: "approved", b: "rejected", c: "approved"}
    assert cli("items", "approve", "--all-proposed").stdout.strip() == "no proposed items"


# --- editing -----------------------------------------------------------------------------


def test_edit_fields(cli: Any) -> None:
    """`items edit` changes the given fields, re-renders the summary, and leaves the rest alone."""
    item_id = add_one(
        cli, "Old title", "--topic", "EPO", "--url", "https://www.epo.org/x", "--summary", "old"
    )
    cli(
        "items",
        "edit",
        str(item_id),
        "--title",
        "New title",
        "--summary",
        "Now with a [link](https://www.epo.org/y).",
        "--kind",
        "survey",
        "--deadline",
        "2027-03-01",
        "--language",
        "de_CH",
    )
    shown = show(cli, item_id)
    assert shown["title"] == "New title"
    assert shown["kind"] == "survey"
    assert shown["deadline"] == "2027-03-01"
    assert shown["language"] == "de-CH"
    assert shown["topic"] == "EPO"
    assert shown["url"] == "https://www.epo.org/x"
    assert 'href="https://www.epo.org/y"' in shown["summary_html"]
    assert datetime.fromisoformat(shown["updated_at"]) > datetime.fromisoformat(shown["created_at"])


def test_edit_groups_and_all_groups(cli: Any) -> None:
    """`--group` retargets an item to exactly those groups and `--all-groups` targets everyone again."""
    item_id = add_one(cli, "Retarget me")
    out = cli("items", "edit", str(item_id), "--group", "fr", "--group", "dach").stdout
    assert out.strip().endswith("-> dach, fr")
    assert show(cli, item_id)["groups"] == ["dach", "fr"]
    assert [i["id"] for i in listed(cli, "--group", "fr")] == [item_id]
    assert listed(cli, "--group", "uk") == []
    cli("items", "edit", str(item_id), "--all-groups")
    assert show(cli, item_id)["groups"] == ["*"]
    assert [i["id"] for i in listed(cli, "--group", "uk")] == [item_id]


def test_edit_unknown_group_changes_nothing(cli: Any, engine: Engine) -> None:
    """An unknown group in `items edit` is one line, and the other changes in that command are not kept."""
    item_id = add_one(cli, "Keep me", "--group", "uk")
    events = len(rows(engine, Event))
    line = one_line_error(
        cli("items", "edit", str(item_id), "--title", "Changed", "--group", "mars", ok=False)
    )
    assert "mars" in line
    shown = show(cli, item_id)
    assert (shown["title"], shown["groups"]) == ("Keep me", ["uk"])
    assert len(rows(engine, Event)) == events


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ([], "nothing to change"),
        (["--kind", "event"], "start"),
        (["--url", "javascript:alert(1)"], "http"),
        (["--title", "   "], "title"),
    ],
)
def test_bad_edit_changes_nothing(cli: Any, args: list[str], fragment: str) -> None:
    """An edit that would break the item is refused with one line and the item stays as it was."""
    item_id = add_one(cli, "Stable", "--url", "https://www.epo.org/stable")
    line = one_line_error(cli("items", "edit", str(item_id), *args, ok=False))
    assert fragment in line
    shown = show(cli, item_id)
    assert (shown["title"], shown["kind"], shown["url"]) == ("Stable", "news", "https://www.epo.org/stable")


def test_edit_unknown_item(cli: Any) -> None:
    """Editing an item that does not exist is one line naming it."""
    assert "#7" in one_line_error(cli("items", "edit", "7", "--title", "x", ok=False))


# --- safe summaries ----------------------------------------------------------------------


class Tags(HTMLParser):
    """Collects every start tag and its attributes."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    def hrefs(self) -> list[str]:
        return [str(attrs.get("href")) for tag, attrs in self.tags if tag == "a"]


def summary_html(cli: Any, summary: str) -> str:
    [item] = add_json(cli, "--title", "Summary", "--summary", summary)
    return str(item["summary_html"])


@pytest.mark.parametrize(
    "summary",
    [
        "<script>alert(1)</script> Hello",
        'Look: <img src="x" onerror="alert(1)">',
        "<b onmouseover=alert(1)>bold</b>",
        '<a href="javascript:alert(1)">raw link</a>',
        "<iframe src=https://evil.example></iframe>",
        "<style>body{display:none}</style>",
    ],
)
def test_raw_html_is_escaped(cli: Any, summary: str) -> None:
    """Raw HTML in a summary is shown as text, never kept as markup."""
    html = summary_html(cli, summary)
    assert [tag for tag, _ in Tags(html).tags] == ["p"]
    assert "&lt;" in html


@pytest.mark.parametrize(
    "summary",
    [
        "[click](javascript:alert(1))",
        "[click](JaVaScRiPt:alert(1))",
        "[click](jav&#x61;script:alert(1))",
        "[click]( javascript:alert(1) )",
        "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
        "[click](vbscript:msgbox(1))",
        "<javascript:alert(1)>",
        "[click][evil]\n\n[evil]: javascript:alert(1)",
        "![pic](javascript:alert(1))",
    ],
)
def test_dangerous_links_never_become_href(cli: Any, summary: str) -> None:
    """`javascript:`, `data:` and other non-web schemes never reach an href, however they are written."""
    html = summary_html(cli, summary)
    hrefs = Tags(html).hrefs()
    assert all(h.startswith(("http://", "https://", "mailto:")) for h in hrefs), html
    assert not any(tag in {"img", "script"} for tag, _ in Tags(html).tags)


def test_normal_link_gets_noopener(cli: Any) -> None:
    """A normal Markdown link becomes an anchor with its URL and rel=noopener."""
    html = summary_html(cli, "See [the EPO](https://www.epo.org/news?a=1&b=2) and <https://www.wipo.int>.")
    anchors = [attrs for tag, attrs in Tags(html).tags if tag == "a"]
    assert [a["href"] for a in anchors] == ["https://www.epo.org/news?a=1&b=2", "https://www.wipo.int"]
    for anchor in anchors:
        assert "noopener" in str(anchor["rel"]).split()


def test_markdown_formatting_survives(cli: Any) -> None:
    """Ordinary Markdown (emphasis, lists, code) is rendered, not escaped away."""
    html = summary_html(cli, "**Bold**, *em* and `code`:\n\n- one\n- two\n")
    assert [tag for tag, _ in Tags(html).tags] == ["p", "strong", "em", "code", "ul", "li", "li"]


def test_translation_summaries_are_sanitised(cli: Any, tmp_path: Path, engine: Engine) -> None:
    """A translated summary in a file goes through the same sanitising as the main one."""
    path = tmp_path / "item.md"
    path.write_text(
        "---\ntitle: Safe\ntranslations:\n  de:\n    title: Sicher\n"
        "    summary: '<script>x</script> [a](javascript:alert(1))'\n---\n<b>raw</b>\n",
        encoding="utf-8",
    )
    [item] = add_json(cli, "--file", str(path))
    assert "<b>" not in item["summary_html"]
    [translation] = rows(engine, ItemTranslation)
    assert "<script" not in translation.summary_html
    assert "href" not in translation.summary_html


def test_summary_edit_is_sanitised(cli: Any) -> None:
    """A summary changed with `items edit` is sanitised like a new one."""
    item_id = add_one(cli, "Edit me", "--summary", "fine")
    cli("items", "edit", str(item_id), "--summary", "<script>alert(1)</script>[x](javascript:alert(1))")
    html = show(cli, item_id)["summary_html"]
    assert "<script" not in html
    assert Tags(html).hrefs() == []


# --- the audit log -----------------------------------------------------------------------


def test_every_change_writes_an_event(cli: Any, engine: Engine) -> None:
    """Adding, approving, rejecting and editing an item each write one Event row naming the item and actor."""
    item_id = add_one(cli, "Audited")
    cli("items", "approve", str(item_id))
    cli("items", "approve", str(item_id))  # Already approved: no change, so no event.
    cli("items", "reject", str(item_id))
    cli("items", "edit", str(item_id), "--title", "Audited again", "--group", "uk")
    events = rows(engine, Event)
    assert [e.kind for e in events] == ["item-add", "item-approved", "item-rejected", "item-edit"]
    assert {e.item_id for e in events} == {item_id}
    assert all(e.actor.startswith("cli:") for e in events)
    assert all(e.at.utcoffset() is not None for e in events)
    assert json.loads(events[-1].detail) == {"fields": ["title", "groups"]}
    assert json.loads(events[0].detail) == {"status": "proposed"}


def test_failed_add_writes_no_event(cli: Any, engine: Engine) -> None:
    """A refused add leaves neither an item nor an Event row."""
    cli("items", "add", "--title", "x", "--group", "uk", "--group", "mars", ok=False)
    assert rows(engine, Item) == []
    assert rows(engine, Event) == []
