"""Everything a page shows comes in the reader's language: refusals, status labels, notices, and
the strings of a language the site adds itself (``locales/`` in the site folder).

The workspace runs on the example site with a real database; the refusals come from real
bad input (an empty title, a stale edition form, a CSV without an email column, an
address nobody can send to), so each goes through the library's own error.
"""

import html
import json
import re
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import col, select
from starlette.testclient import TestClient

from newsletter.core.i18n import translations
from newsletter.core.messages import Message, translate
from newsletter.core.models import Edition, Notice, utcnow
from newsletter.core.settings import load_settings
from newsletter.core.site import Site
from newsletter.editions import build as editions
from newsletter.editions.render import Renderer
from newsletter.operations import notices
from newsletter.web import create_app
from tests.conftest import Cli
from tests.test_workspace_items import cli_item, form_of, item_path
from tests.workspace import ADMIN, EDITOR, Workspace, csrf_of, session_for

EDITIONS = "/admin/groups/uk/editions"
SUBSCRIBERS = "/admin/groups/uk/subscribers"

# What each refusal and label reads as, in the words of the catalogs.
SAYS = {
    "de": {
        "title": "Ein Beitrag braucht einen Titel.",
        "stale": "wurde geändert, seit Sie sie geöffnet haben",
        "csv": "keine Spalte 'email' in der Kopfzeile",
        "address": "an diese Adresse können wir nicht senden",
        "draft": '<strong class="state">Entwurf</strong>',
        "active": "<td>aktiv</td>",
    },
    "fr": {
        "title": translations("fr").gettext("an item needs a title"),
        "stale": "a été modifiée depuis que vous l'avez ouverte",
        "csv": "pas de colonne 'email' dans l'en-tête",
        "address": "nous ne pouvons pas envoyer à cette adresse",
        "draft": '<strong class="state">brouillon</strong>',
        "active": "<td>actif</td>",
    },
}
ENGLISH = ("an item needs a title", "was changed since you opened it", "no 'email' column", "<td>active</td>")


def speaking(ws: Workspace, who: str, language: str) -> TestClient:
    client = session_for(ws, who)
    client.headers["accept-language"] = f"{language},en;q=0.5"
    return client


def text(response: Any) -> str:
    return html.unescape(response.text)


def approved_item(ws: Workspace, title: str) -> None:
    ws.cli(
        "items",
        "add",
        "--title",
        title,
        "--url",
        f"https://example.org/{len(title)}",
        "--group",
        "uk",
        "--approve",
    )


@pytest.mark.parametrize("language", ["de", "fr"])
def test_workspace_refusals_and_statuses_come_in_the_readers_language(ws: Workspace, language: str) -> None:
    """An empty title, a stale edition form and a bad CSV are refused in German or French; statuses too."""
    says = SAYS[language]
    editor, admin = speaking(ws, EDITOR, language), speaking(ws, ADMIN, language)

    # An item edited with an empty title.
    item_id = cli_item(ws, "EPO news", "--group", "uk")
    page = editor.get(item_path(item_id)).text
    refused = editor.post(item_path(item_id), data=form_of(page, title=""))
    assert refused.status_code == 400
    assert says["title"] in text(refused)

    # A stale form on a draft edition, after the admin changed it.
    approved_item(ws, "WIPO Inspire report")
    listing = editor.get(EDITIONS)
    built = editor.post(EDITIONS, data={"csrf": csrf_of(listing.text)})
    assert built.status_code == 303
    edition_path = built.headers["location"]
    with ws.site.transaction() as session:
        edition = session.exec(select(Edition).order_by(col(Edition.id).desc())).first()
        assert edition is not None
        old, first = edition.version, edition.id
    edition_page = editor.get(edition_path)
    assert says["draft"] in edition_page.text
    item = re.search(r'name="item" value="(\d+)"', edition_page.text)
    assert item
    changed = admin.post(
        edition_path + "/content",
        data={"csrf": csrf_of(admin.get(edition_path).text), "intro": "Hi", "version": old},
    )
    assert changed.status_code == 303
    stale = editor.post(
        edition_path + "/items",
        data={"csrf": csrf_of(edition_page.text), "action": "drop", "item": item.group(1), "version": old},
    )
    assert stale.status_code == 409
    assert says["stale"] in text(stale)
    assert first

    # A CSV upload without an email column.
    upload = editor.get(SUBSCRIBERS + "/import")
    bad = editor.post(
        SUBSCRIBERS + "/import",
        data={"csrf": csrf_of(upload.text)},
        files={"file": ("people.csv", b"name,language\nJane,en\n", "text/csv")},
    )
    assert bad.status_code == 400
    assert says["csv"] in text(bad)

    # Members' statuses.
    ws.cli("subscribers", "import", "uk", str(ws.cli.site / "subscribers" / "uk.csv"), ok=False)
    members = editor.get(SUBSCRIBERS)
    assert says["active"] in members.text

    for english in ENGLISH:
        for answer in (refused, stale, bad, members):
            assert english not in text(answer), english


@pytest.mark.parametrize("language", ["de", "fr"])
def test_a_bad_address_on_the_sign_up_page_is_refused_in_the_visitors_language(
    ws: Workspace, language: str
) -> None:
    """The public sign-up form answers an address nobody can send to in the visitor's language."""
    client = ws.client()
    client.headers["accept-language"] = language
    form = client.get("/subscribe/cepiug")
    action = re.search(r'<form[^>]*action="([^"]+)"', form.text)
    assert action
    data = {"csrf": csrf_of(form.text), "email": "no-at-sign", "consent": "yes"}
    refused = client.post(action.group(1), data=data)
    assert refused.status_code == 400
    assert SAYS[language]["address"] in text(refused)
    assert "this is not an address we can send to" not in text(refused)


def test_notices_are_stored_as_messages_and_read_in_the_digests_language(ws: Workspace) -> None:
    """A notice keeps its msgid and values; the digest translates it; a row from before shows its text."""
    approved_item(ws, "A story for the UK")
    with ws.site.transaction() as session:
        editions.build(session, ws.site.settings, Renderer(ws.site.settings), "uk", actor="test")
    with ws.site.transaction() as session:
        assert notices.record(session, ws.site.settings, utcnow()) >= 1
        notice = session.exec(select(Notice).where(col(Notice.kind) == "draft")).first()
        assert notice is not None
        stored = notices.stored(notice)
        assert isinstance(stored, Message)
        assert "the draft edition" in notice.text
        german = translate(stored, translations("de"))
        assert "der Entwurf „" in german
        assert "wartet auf Freigabe" in german
        assert "Patent Information Users" in german  # the group's name is a value, as it was
        older = Notice(user_id=notice.user_id, key="old:1", kind="draft", text="an older notice")
        assert notices.stored(older) == "an older notice"


# -- a language the site adds ----------------------------------------------------------------

ITALIAN = """\
msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"

msgid "Unsubscribe"
msgstr "Annulla l'iscrizione"

msgid "View this email in your browser"
msgstr "Visualizza questa email nel browser"

msgid "Read more"
msgstr "Leggi tutto"

msgid "Subscribe"
msgstr "Iscriviti"

msgid "Email address"
msgstr "Indirizzo email"
"""


@pytest.fixture
def italian_site(site_dir: Path) -> Path:
    """The example site whose uk group runs in Italian, with a few Italian strings in locales/it."""
    config = site_dir / "newsletter.toml"
    text = config.read_text()
    config.write_text(
        text.replace(
            'language = "en"\ntimezone = "Europe/London"', 'language = "it"\ntimezone = "Europe/London"'
        )
    )
    folder = site_dir / "locales" / "it" / "LC_MESSAGES"
    folder.mkdir(parents=True)
    (folder / "site.po").write_text(ITALIAN, encoding="utf-8")
    return site_dir


def test_a_site_added_language_reaches_the_email_and_the_public_page(italian_site: Path, db_url: str) -> None:
    """With locales/it, an Italian group's edition and sign-up page use the site's Italian strings."""
    cli = Cli(italian_site, db_url)
    cli(
        "items",
        "add",
        "--title",
        "Notizie EPO",
        "--url",
        "https://example.org/epo",
        "--group",
        "uk",
        "--approve",
    )
    settings = load_settings(
        italian_site, env={"NEWSLETTER_SECRET_KEY": "k" * 40}, overrides={"database.url": db_url}
    )
    site = Site.open(settings)
    try:
        renderer = Renderer(settings)
        with site.transaction() as session:
            edition = editions.build(session, settings, renderer, "uk", actor="test")
            rendered = renderer.render(editions.content(session, settings, edition), "it")
        assert "Annulla l&#39;iscrizione" in rendered.html or "Annulla l'iscrizione" in rendered.html
        assert "Visualizza questa email nel browser" in rendered.html
        assert "Leggi tutto" in rendered.text
        assert "Unsubscribe" not in rendered.text
        page = TestClient(create_app(site)).get("/subscribe/uk")
        assert page.status_code == 200
        assert 'lang="it"' in page.text
        assert "Indirizzo email" in page.text
        assert "Iscriviti" in page.text
    finally:
        site.close()


def test_check_lists_the_strings_a_groups_language_lacks(italian_site: Path, db_url: str) -> None:
    """check warns (and still passes) that the Italian group lacks strings, naming them; none for de or fr."""
    cli = Cli(italian_site, db_url, migrate=False)
    result = cli("check")
    assert "site OK" in result.stdout
    warnings = [line for line in result.output.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.output
    assert "groups.uk.language" in warnings[0]
    assert "no 'it' translation" in warnings[0]
    report = cli("check", "--json")
    found = json.loads(report.stdout)
    missing = found["missing_strings"]["it"]
    assert "Hello," in missing
    assert "Unsubscribe" not in missing
    assert "Subscribe" not in missing
    assert set(found["missing_strings"]) == {"it"}
