"""The editions state machine through the CLI: build, list, preview, approve, send, cancel, send-test.

Each test runs the real command in-process against a copy of the example site, on SQLite
and (when configured) PostgreSQL, with the default ``outbox`` transport.
"""

import email
import json
import re
from collections import Counter
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result

from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.delivery.runner import send_edition
from newsletter.editions import build as library
from newsletter.editions.render import Renderer
from tests.conftest import Cli
from tests.test_mjml_corpus import read_html, visible_text

ALL_NEWS = "PATENTSCOPE: new chemical structure search"
SURVEY = "Survey: how do you use WIPO's IP information services?"
SURVEY_FR = "Enquête : comment utilisez-vous les services de l'OMPI ?"
FR_ONLY = "WIPO Lex : la législation française mise à jour"
DACH_UK = "Regionaltreffen: Patentrecherche mit KI-Werkzeugen"
PROPOSED = "Proposed item nobody approved yet"
REJECTED = "Rejected item that is off topic"

ITEM_FILES = {
    "all-news.md": f"""---
title: "{ALL_NEWS}"
url: https://www.wipo.int/patentscope/en/news/2026/news_0007.html
kind: product
topic: WIPO
date: 2026-11-12
---
Structure search now covers **full text**; see the
[release notes](https://www.wipo.int/patentscope/en/release-notes.html?v=2&lang=en).
""",
    "survey.md": f"""---
title: "{SURVEY}"
url: https://www.wipo.int/ip-information/en/survey-2026.html
kind: survey
topic: WIPO
date: 2026-11-18
deadline: 2027-01-15
translations:
  fr:
    title: "{SURVEY_FR}"
    summary: "Le questionnaire prend environ quinze minutes."
---
The questionnaire takes about fifteen minutes.
""",
    "fr-only.md": f"""---
title: "{FR_ONLY}"
url: https://www.wipo.int/wipolex/fr/news/2026/article_0012.html
kind: news
topic: WIPO
groups: [fr]
language: fr
date: 2026-11-17
---
Les derniers textes français sont en ligne.
""",
    "dach-uk.md": f"""---
title: "{DACH_UK}"
url: https://news.example.org/dach/2027-regionaltreffen
kind: event
topic: CEPIUG
groups: [dach, uk]
language: de
date: 2026-11-22
start: 2027-02-04T13:30:00+01:00
end: 2027-02-04T18:00:00+01:00
place: Zürich
---
Ein Nachmittag mit Vorträgen.
""",
}

# Members of cepiug (English group): their address, name and language.
CEPIUG = """email,name,language
jane@example.org,Jane Doe,en
anna@example.net,Anna Keller,de
marie@example.org,"Dupont, Marie",fr
owen@example.org,Owen Jones,
gone@example.org,Gone Away,en
"""
GREETINGS = {
    "jane@example.org": ("en", "Dear Jane Doe,"),
    "anna@example.net": ("de", "Guten Tag Anna Keller,"),
    "marie@example.org": ("fr", "Bonjour Dupont, Marie,"),
    "owen@example.org": ("en", "Dear Owen Jones,"),
}
TOKEN_LINK = re.compile(r"/(?:unsubscribe|preferences)/[A-Za-z0-9_-]{8,}\.")


@pytest.fixture
def sqlite_cli(site_dir: Path, tmp_path: Path) -> Cli:
    """The CLI on SQLite only, for behaviour that does not depend on the database engine."""
    return Cli(site_dir, f"sqlite:///{tmp_path / 'editions.db'}")


def one_line_error(result: Result, *needles: str) -> str:
    """The command failed with exactly one line on stderr, no traceback, naming each needle."""
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def add_items(cli: Cli, tmp: Path, *names: str) -> None:
    files = []
    for name in names:
        path = tmp / name
        path.write_text(ITEM_FILES[name], encoding="utf-8")
        files += ["--file", str(path)]
    cli("items", "add", "--approve", *files)


def populate(cli: Cli, tmp: Path) -> None:
    """Members for cepiug (one unsubscribed), four approved items, one proposed, one rejected."""
    members = tmp / "cepiug.csv"
    members.write_text(CEPIUG, encoding="utf-8")
    cli("subscribers", "import", "cepiug", str(members))
    cli("subscribers", "remove", "cepiug", "gone@example.org")
    add_items(cli, tmp, *ITEM_FILES)
    cli("items", "add", "--title", PROPOSED)
    rejected = json.loads(cli("items", "add", "--title", REJECTED, "--json").stdout)
    cli("items", "reject", str(rejected[0]["id"]))


def editions(cli: Cli) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = json.loads(cli("editions", "list", "--json").stdout)
    return listed


def edition(cli: Cli, edition_id: int) -> dict[str, Any]:
    return next(e for e in editions(cli) if e["id"] == edition_id)


def build(cli: Cli, group: str) -> dict[str, Any]:
    """Build a draft for the group; its row as `editions build --json` prints it."""
    built: dict[str, Any] = json.loads(cli("editions", "build", group, "--json").stdout)
    assert built["group"] == group
    assert built["status"] == "draft"
    return built


def preview_text(cli: Cli, edition_id: int, *flags: str) -> str:
    return str(cli("editions", "preview", str(edition_id), "--text", *flags).stdout)


def read_eml(path: Path) -> EmailMessage:
    """An outbox file as a mail client would read it (the envelope lines are headers too)."""
    message = email.message_from_bytes(path.read_bytes(), policy=policy.default)
    assert isinstance(message, EmailMessage)
    return message


def body(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n")


# --- build ---------------------------------------------------------------------------------


def test_nothing_to_build(cli: Cli) -> None:
    """With no approved item waiting (proposed or rejected only), build says so, exits 0, makes nothing."""
    result = cli("editions", "build", "cepiug")
    assert "nothing to build for cepiug" in result.output
    cli("items", "add", "--title", PROPOSED)
    rejected = json.loads(cli("items", "add", "--title", REJECTED, "--json").stdout)
    cli("items", "reject", str(rejected[0]["id"]))
    result = cli("editions", "build", "cepiug", "--json")
    assert json.loads(result.stdout) is None
    assert "nothing to build for cepiug" in result.stderr
    assert editions(cli) == []


def test_build_takes_approved_items_meant_for_the_group(cli: Cli, tmp_path: Path) -> None:
    """A group's draft has the approved items for every group plus its own, never proposed or rejected."""
    populate(cli, tmp_path)
    expected = {
        "cepiug": {ALL_NEWS, SURVEY},
        "uk": {ALL_NEWS, SURVEY, DACH_UK},
        "dach": {ALL_NEWS, SURVEY, DACH_UK},
        "fr": {ALL_NEWS, SURVEY_FR, FR_ONLY},
    }
    everything = {ALL_NEWS, SURVEY, SURVEY_FR, FR_ONLY, DACH_UK, PROPOSED, REJECTED}
    for group, titles in expected.items():
        built = build(cli, group)
        assert built["items"] == len(titles)
        text = preview_text(cli, built["id"])
        for title in titles:
            assert title in text, (group, title)
        for title in everything - titles:
            assert title not in text, (group, title)


def test_an_item_is_never_offered_twice(cli: Cli, tmp_path: Path) -> None:
    """A second build carries only the items approved since the first; with none, nothing is built."""
    add_items(cli, tmp_path, "all-news.md", "survey.md", "dach-uk.md")
    assert build(cli, "cepiug")["items"] == 2
    assert "nothing to build" in cli("editions", "build", "cepiug").output
    cli("items", "add", "--title", "EPO: Register news", "--approve")
    second = build(cli, "cepiug")
    assert second["items"] == 1
    text = preview_text(cli, second["id"])
    assert "EPO: Register news" in text
    assert ALL_NEWS not in text
    assert SURVEY not in text
    # Another group still gets everything meant for it, the older items included.
    assert build(cli, "uk")["items"] == 4


def test_edition_date_is_the_groups_local_date(cli: Cli) -> None:
    """Built at 23:30 UTC on 2 December, the DACH edition is dated 3 December and the UK one 2 December."""
    cli("items", "add", "--title", "EPO: Register news", "--approve")
    settings = load_settings(cli.site, env={}, overrides={"database.url": cli.db_url})
    site = Site.open(settings)
    late = datetime(2026, 12, 2, 23, 30, tzinfo=UTC)
    try:
        with site.transaction() as session:
            renderer = Renderer(settings)
            dach = library.build(session, settings, renderer, "dach", actor="test", now=late)
            uk = library.build(session, settings, renderer, "uk", actor="test", now=late)
            assert library.content(session, settings, dach).issued == date(2026, 12, 3)
            assert (dach.subject, uk.subject) == (
                "Patentinformation DACH (Beispiel): 3. Dezember 2026",
                "UK Patent Information Users (example): 2 December 2026",
            )
    finally:
        site.close()


def test_list_json(sqlite_cli: Cli, tmp_path: Path) -> None:
    """`editions list --json` gives each edition's id, group, state, subject, item count and deliveries."""
    cli = sqlite_cli
    add_items(cli, tmp_path, "all-news.md", "fr-only.md")
    build(cli, "cepiug")
    build(cli, "fr")
    listed = editions(cli)
    assert [(e["id"], e["group"], e["status"], e["items"]) for e in listed] == [
        (2, "fr", "draft", 2),
        (1, "cepiug", "draft", 1),
    ]
    assert re.fullmatch(r"CEPIUG: \d{1,2} \w+ \d{4}", listed[1]["subject"])
    assert listed[0]["subject"].startswith("Information brevets francophone (exemple)\u00a0: ")
    assert listed[0]["deliveries"] == {}
    assert listed[0]["created_at"].endswith("+00:00")
    only_fr = json.loads(cli("editions", "list", "--group", "fr", "--json").stdout)
    assert [e["id"] for e in only_fr] == [2]
    assert json.loads(cli("editions", "list", "--status", "sent", "--json").stdout) == []


# --- preview -------------------------------------------------------------------------------


def test_preview(sqlite_cli: Cli, tmp_path: Path) -> None:
    """Preview writes HTML or text, in the group's language or another, without personal tokens."""
    cli = sqlite_cli
    add_items(cli, tmp_path, "all-news.md", "survey.md")
    edition_id = build(cli, "cepiug")["id"]
    output = tmp_path / "preview.html"
    result = cli("editions", "preview", str(edition_id), "--output", str(output))
    assert str(output) in result.stderr
    html = output.read_text(encoding="utf-8")
    assert 'lang="en"' in html.split(">", 2)[1]
    assert "Read more" in visible_text(html)
    german = cli("editions", "preview", str(edition_id), "--language", "de").stdout
    assert 'lang="de"' in german.split(">", 2)[1]
    assert "Weiterlesen" in visible_text(german)
    french = preview_text(cli, edition_id, "--language", "fr")
    assert SURVEY_FR in french
    assert "Lire la suite" in french
    text = preview_text(cli, edition_id)
    assert "<" not in text.replace("<https://", "")
    assert "https://www.wipo.int/patentscope/en/release-notes.html?v=2&lang=en" in text
    for shown in (html, german, french, text):
        assert "__NL_" not in shown
        assert TOKEN_LINK.search(shown) is None
        assert "https://news.example.org/unsubscribe" in shown


# --- approve, send, cancel ------------------------------------------------------------------


def test_approve_dry_run_send_and_no_second_send(cli: Cli, tmp_path: Path) -> None:
    """Draft refused; only drafts approved; dry run sends nothing; the outbox gets one .eml a member, once."""
    populate(cli, tmp_path)
    edition_id = build(cli, "cepiug")["id"]
    folder = cli.site / "outbox" / f"edition-{edition_id}"
    one_line_error(cli("editions", "send", str(edition_id), ok=False), "draft", "approve")
    assert not folder.exists()
    # A draft's audience can be counted before it is approved.
    draft_dry = cli("editions", "send", str(edition_id), "--dry-run")
    assert "4 member(s)" in draft_dry.stdout
    assert edition(cli, edition_id)["status"] == "draft"
    cli("editions", "approve", str(edition_id))
    one_line_error(cli("editions", "approve", str(edition_id), ok=False), "only a draft")

    dry = cli("editions", "send", str(edition_id), "--dry-run")
    assert "4 member(s)" in dry.stdout
    assert "nothing was sent" in dry.stdout
    assert not list(folder.glob("*.eml"))
    listed = edition(cli, edition_id)
    assert (listed["status"], listed["deliveries"]) == ("approved", {})

    sent = cli("editions", "send", str(edition_id))
    assert "sent 4" in sent.stdout
    # The outbox delivers nothing, and says so.
    assert f"edition #{edition_id} written: " in sent.stdout
    assert "outbox only: the messages were written to" in sent.stdout
    assert "nobody received them" in sent.stdout
    files = sorted(folder.glob("*.eml"))
    messages = [read_eml(path) for path in files]
    recipients = Counter(m["To"].addresses[0].addr_spec for m in messages)
    assert recipients == Counter(dict.fromkeys(GREETINGS, 1))
    assert {p.name for p in folder.glob("preview-*.html")} == {
        "preview-en.html",
        "preview-de.html",
        "preview-fr.html",
    }
    for message in messages:
        language, greeting = GREETINGS[message["To"].addresses[0].addr_spec]
        text, html = body(message, "plain"), body(message, "html")
        assert message["Content-Language"] == language
        assert greeting in text
        assert "__NL_" not in text
        assert "__NL_" not in html
        assert (SURVEY_FR if language == "fr" else SURVEY) in text
        assert FR_ONLY not in text
        assert DACH_UK not in text
        assert message["List-Id"] == "CEPIUG <cepiug.example.org>"
        assert message["X-Envelope-From"].startswith("<news-bounces+e")
        html_links = {link for kind, link in read_html(html).links if kind == "a"}
        text_links = set(re.findall(r"https?://[^\s<>]+", text))
        assert html_links - text_links == set()
    for language in ("en", "de", "fr"):
        preview = (folder / f"preview-{language}.html").read_text(encoding="utf-8")
        assert f'lang="{language}"' in preview.split(">", 2)[1]
        assert TOKEN_LINK.search(preview) is None
        assert "__NL_" not in preview

    listed = edition(cli, edition_id)
    assert (listed["status"], listed["deliveries"]) == ("written", {"sent": 4})
    second = cli("editions", "send", str(edition_id), ok=False)
    one_line_error(second, "already written to the outbox", "smtp")
    assert sorted(folder.glob("*.eml")) == files


def test_send_with_no_active_member(sqlite_cli: Cli, tmp_path: Path) -> None:
    """An approved edition for a group without members goes to nobody and is marked done (outbox: written)."""
    cli = sqlite_cli
    add_items(cli, tmp_path, "fr-only.md")
    edition_id = build(cli, "fr")["id"]
    cli("editions", "approve", str(edition_id))
    result = cli("editions", "send", str(edition_id))
    assert "sent 0" in result.stdout
    assert edition(cli, edition_id)["status"] == "written"
    assert not list((cli.site / "outbox").glob(f"edition-{edition_id}/*.eml"))


def test_cancel_returns_items_to_the_pool(cli: Cli, tmp_path: Path) -> None:
    """A cancelled edition's items are offered again by the next build; a cancelled edition is final."""
    add_items(cli, tmp_path, "all-news.md", "survey.md")
    first = build(cli, "cepiug")["id"]
    cli("editions", "approve", str(first))
    cli("editions", "cancel", str(first))
    second = build(cli, "cepiug")
    assert second["items"] == 2
    assert ALL_NEWS in preview_text(cli, second["id"])
    assert edition(cli, first)["status"] == "cancelled"
    one_line_error(cli("editions", "cancel", str(first), ok=False), "already cancelled")
    one_line_error(cli("editions", "send", str(first), ok=False), "cancelled")
    one_line_error(cli("editions", "approve", str(first), ok=False), "only a draft")


# --- send-test -----------------------------------------------------------------------------


def test_send_test(sqlite_cli: Cli, tmp_path: Path) -> None:
    """send-test writes one [TEST] copy in the chosen language and records no delivery."""
    cli = sqlite_cli
    add_items(cli, tmp_path, "all-news.md")
    edition_id = build(cli, "cepiug")["id"]
    result = cli("send-test", str(edition_id), "--to", "Editor <editor@example.org>", "--language", "de")
    assert "editor@example.org" in result.stdout
    [copy] = (cli.site / "outbox" / f"edition-{edition_id}").glob("*.eml")
    message = read_eml(copy)
    assert message["Subject"].startswith("[TEST] CEPIUG: ")
    assert message["To"].addresses[0].addr_spec == "editor@example.org"
    assert message["Content-Language"] == "de"
    assert "Weiterlesen" in body(message, "plain")
    assert "__NL_" not in body(message, "html")
    listed = edition(cli, edition_id)
    assert (listed["status"], listed["deliveries"]) == ("draft", {})
    one_line_error(cli("send-test", str(edition_id), "--to", "not-an-address", ok=False), "not-an-address")


# --- errors --------------------------------------------------------------------------------

BAD = [
    (["editions", "build", "mars"], "mars"),
    (["editions", "preview", "42"], "#42"),
    (["editions", "approve", "42"], "#42"),
    (["editions", "send", "42"], "#42"),
    (["editions", "send", "42", "--dry-run"], "#42"),
    (["editions", "cancel", "42"], "#42"),
    (["editions", "preview", "abc"], "abc"),
    (["editions", "list", "--status", "lost"], "lost"),
    (["editions", "list", "--group", "mars"], "mars"),
    (["send-test", "42"], "--to"),
    (["send-test", "42", "--to", "editor@example.org"], "#42"),
]


def test_errors_are_one_line(sqlite_cli: Cli) -> None:
    """A wrong group, edition, state or option is one line on stderr, a non-zero exit, no traceback."""
    for args, needle in BAD:
        one_line_error(sqlite_cli(*args, ok=False), needle)


def test_a_stop_request_leaves_the_edition_resumable(cli: Cli, tmp_path: Path) -> None:
    """A send told to stop (SIGTERM) claims nothing more; the next send delivers each member once."""
    from newsletter.delivery.transports.memory import MemoryTransport

    populate(cli, tmp_path)
    edition_id = build(cli, "cepiug")["id"]
    cli("editions", "approve", str(edition_id))
    site = Site.open(load_settings(cli.site, overrides={"database.url": cli.db_url}))
    try:
        stopped_transport = MemoryTransport()
        stopped = send_edition(
            site,
            Renderer(site.settings),
            stopped_transport,
            edition_id,
            actor="test",
            should_stop=lambda: True,
        )
        assert stopped.status == "sending"
        assert stopped_transport.messages == []
        assert stopped.totals.get("queued") == len(GREETINGS)
        resumed_transport = MemoryTransport()
        resumed = send_edition(site, Renderer(site.settings), resumed_transport, edition_id, actor="test")
        assert resumed.status == "sent"
        assert sorted(m.recipient for m in resumed_transport.messages) == sorted(GREETINGS)
    finally:
        site.close()
