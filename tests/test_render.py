"""Rendering the example site's digest: languages, sections, dates, events, errors and size guards.

The expected strings (translations, Babel dates, event times in each group's zone) are
written out here by hand, so a change in the catalogs or the formatting shows up.
"""

import json
import re
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, date, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from newsletter.core.errors import RenderError
from newsletter.core.models import ItemKind
from newsletter.core.settings import Settings, load_settings
from newsletter.core.tokens import Signer
from newsletter.delivery.message import MessageFactory, Recipient
from newsletter.editions.build import DEFAULT_SUBJECT
from newsletter.editions.render import (
    HTML_LIMIT_BYTES,
    HTML_WARN_BYTES,
    EditionContent,
    Marker,
    PoolItem,
    Rendered,
    Renderer,
    check_size,
)
from tests.conftest import Cli
from tests.test_mjml_corpus import read_html, visible_text

GROUPS = ["cepiug", "uk", "dach", "fr"]
LANGUAGES = ["en", "de", "fr"]
ISSUED = date(2026, 12, 3)
SURVEY_EN = "Survey: how do you use WIPO's IP information services?"
SURVEY_FR = "Enquête : comment utilisez-vous les services d'information de l'OMPI ?"
WEBINAR = "Webinar: searching chemistry in PATENTSCOPE"
WORKSHOP = "CEPIUG workshop: working with Unitary Patent data"
LEX_FR = "WIPO Lex : la législation française et belge mise à jour"
HELP_URL = "https://www.epo.org/help?x=1&y=2"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


# In the order an editor might have queued them; the renderer must sort them into sections.
ITEMS = [
    PoolItem(
        id=6,
        title="EPO: Espacenet shows Unitary Patent status",
        url="https://www.epo.org/news/unitary-status",
        summary_html=f'<p>More in the <a href="{HELP_URL.replace("&", "&amp;")}">help pages</a>.</p>',
        kind=ItemKind.NEWS,
        topic="EPO",
        language="en",
        published_at=utc(2026, 11, 19),
    ),
    PoolItem(
        id=5,
        title="IP5 heads of office: report on the 2026 meeting",
        url="https://www.ip5offices.org/news/2026-heads",
        summary_html="<p>The five offices report on <strong>AI</strong> and legal status data.</p>",
        kind=ItemKind.MEETING,
        topic="IP5",
        language="en",
        published_at=utc(2026, 11, 16),
    ),
    PoolItem(
        id=2,
        title=WEBINAR,
        url="https://www.wipo.int/meetings/en/details.jsp?meeting_id=90123",
        summary_html="<p>Registration is required.</p>",
        kind=ItemKind.EVENT,
        topic="WIPO",
        language="en",
        published_at=utc(2026, 11, 20),
        event_start=utc(2026, 12, 3, 13, 0),
        event_end=utc(2026, 12, 3, 14, 30),
        event_place="Online",
    ),
    PoolItem(
        id=4,
        title="WIPO Inspire: new reports on legal status coverage",
        url="https://www.wipo.int/inspire/en/reports/legal-status-2026.html",
        summary_html="<ul><li>six databases</li><li>update delays</li></ul>",
        kind=ItemKind.REPORT,
        topic="WIPO",
        language="en",
        published_at=utc(2026, 11, 9),
    ),
    PoolItem(
        id=3,
        title="PATENTSCOPE: chemical structure search",
        url="https://www.wipo.int/patentscope/en/news/2026/news_0007.html",
        summary_html="<p>Structure search in full text.</p>",
        kind=ItemKind.PRODUCT,
        topic="WIPO",
        language="en",
        published_at=utc(2026, 11, 12),
    ),
    PoolItem(
        id=1,
        title=SURVEY_EN,
        url="https://www.wipo.int/ip-information/en/survey-2026.html",
        summary_html="<p>It takes about fifteen minutes.</p>",
        kind=ItemKind.SURVEY,
        topic="WIPO",
        language="en",
        published_at=utc(2026, 11, 18),
        deadline=date(2027, 1, 15),
        translations={"fr": (SURVEY_FR, "<p>Le questionnaire prend environ quinze minutes.</p>")},
    ),
    PoolItem(
        id=8,
        title=WORKSHOP,
        url="https://news.example.org/events/workshop",
        summary_html="<p>Hands-on.</p>",
        kind=ItemKind.EVENT,
        topic="CEPIUG",
        language="en",
        published_at=utc(2026, 11, 21),
        event_start=utc(2026, 11, 30, 8, 30),
        event_end=utc(2026, 11, 30, 16, 0),
        event_place="Brussels",
    ),
    PoolItem(
        id=7,
        title=LEX_FR,
        url="https://www.wipo.int/wipolex/fr/news/2026/article_0012.html",
        summary_html="<p>WIPO Lex intègre les derniers textes.</p>",
        kind=ItemKind.NEWS,
        topic="WIPO",
        language="fr",
        published_at=utc(2026, 11, 17),
    ),
]

# The fixed strings, written out by hand from the catalogs.
STRINGS: dict[str, dict[str, Any]] = {
    "en": {
        "read_more": "Read more",
        "unsubscribe": "Unsubscribe",
        "preferences": "Manage your preferences",
        "view_online": "View this email in your browser",
        "calendar": "Add to calendar",
        "issued": "3 December 2026",
        "deadline": "Answer by: 15 January 2027",
        "sections": [
            "Surveys: your answer is needed",
            "Events and webinars",
            "Products and databases",
            "Reports",
            "Meetings",
            "News",
        ],
        "when": "When",
        "colon": ":",
    },
    "de": {
        "read_more": "Weiterlesen",
        "unsubscribe": "Abmelden",
        "preferences": "Einstellungen verwalten",
        "view_online": "Diese E-Mail im Browser ansehen",
        "calendar": "Zum Kalender hinzufügen",
        "issued": "3. Dezember 2026",
        "deadline": "Antwort bis: 15. Januar 2027",
        "sections": [
            "Umfragen: Ihre Antwort ist gefragt",
            "Veranstaltungen und Webinare",
            "Produkte und Datenbanken",
            "Berichte",
            "Sitzungen",
            "Nachrichten",
        ],
        "when": "Wann",
        "colon": ":",
    },
    "fr": {
        "read_more": "Lire la suite",
        "unsubscribe": "Se désabonner",
        "preferences": "Gérer vos préférences",
        "view_online": "Voir cet e-mail dans votre navigateur",
        "calendar": "Ajouter au calendrier",
        "issued": "3 décembre 2026",
        "deadline": "Date limite de réponse: 15 janvier 2027",  # the test puts in the language's colon
        "sections": [
            "Enquêtes\u00a0: votre avis est attendu",
            "Événements et webinaires",
            "Produits et bases de données",
            "Rapports",
            "Réunions",
            "Actualités",
        ],
        "when": "Quand",
        "colon": "\u00a0:",  # French sets a colon off with a no-break space
    },
}
# The webinar is 13:00-14:30 UTC on 3 December 2026; each group reads it in its own zone.
WEBINAR_TIME = {"cepiug": "14:00–15:30 CET", "uk": "13:00–14:30 GMT", "dach": "14:00–15:30 CET"}
WEBINAR_TIME["fr"] = WEBINAR_TIME["cepiug"]
WEBINAR_DAY = {"en": "3 December 2026", "de": "3. Dezember 2026", "fr": "3 décembre 2026"}
GROUP_NAMES = {
    "cepiug": "CEPIUG",
    "uk": "UK Patent Information Users (example)",
    "dach": "Patentinformation DACH (Beispiel)",
    "fr": "Information brevets francophone (exemple)",
}
BRAND = {"cepiug": "#1f4e79", "uk": "#8b1e3f", "dach": "#2e5b1e", "fr": "#4b2a7b"}


def site_settings(site_dir: Path) -> Settings:
    return load_settings(site_dir, env={})


def content(settings: Settings, group: str, items: Sequence[PoolItem] = ITEMS) -> EditionContent:
    return EditionContent(
        edition_id=7,
        group_slug=group,
        group=settings.group(group),
        subject_template=DEFAULT_SUBJECT,
        template="digest",
        issued=ISSUED,
        items=list(items),
    )


def html_lang(html: str) -> str | None:
    """The lang attribute of the <html> element."""
    found: list[str | None] = []

    class Finder(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            if tag == "html":
                found.append(dict(attrs).get("lang"))

    Finder().feed(html)
    return found[0] if found else None


def hrefs(html: str) -> set[str]:
    return {link for kind, link in read_html(html).links if kind == "a" and not link.startswith("mailto:")}


def text_urls(text: str) -> set[str]:
    return set(re.findall(r"https?://[^\s<>]+", text))


def personalised(settings: Settings, rendered: Rendered, name: str | None = "Jane Doe") -> tuple[str, str]:
    factory = MessageFactory(
        settings,
        Signer("render-test-key"),
        edition_id=7,
        group_id=1,
        group_slug="cepiug",
        group_name="CEPIUG",
        parts={rendered.language: rendered},
    )
    return factory.personalise(rendered, Recipient(42, "jane@example.org", name, rendered.language))


@pytest.fixture
def settings(site_dir: Path) -> Settings:
    return site_settings(site_dir)


# --- the example site's digest in every group and language -----------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("group", GROUPS)
def test_digest_in_each_group_and_language(settings: Settings, group: str, language: str) -> None:
    """Each group's edition renders in en/de/fr: lang attribute, fixed strings, dates, sections, events."""
    rendered = Renderer(settings).render(content(settings, group), language)
    strings = STRINGS[language]
    html_text = visible_text(rendered.html)
    assert html_lang(rendered.html) == language
    assert rendered.subject == f"{GROUP_NAMES[group]}{strings['colon']} {strings['issued']}"
    assert BRAND[group] in rendered.html
    for part in (html_text, rendered.text):
        for key in ("read_more", "unsubscribe", "preferences", "view_online", "calendar", "issued"):
            assert strings[key] in part, (key, language)
        # The visible text of the HTML has its no-break spaces as plain ones.
        colon = strings["colon"] if part is rendered.text else strings["colon"].replace("\u00a0", " ")
        deadline = strings["deadline"].replace(": ", f"{colon} ")
        assert deadline in part
        # Sections in reading order: survey, events, products, reports, meetings, news
        # (the text part writes section titles in capitals).
        position = part.find(deadline) - 200
        for title in strings["sections"]:
            shown = title.upper() if part is rendered.text else title.replace("\u00a0", " ")
            position = part.find(shown, position + 1)
            assert position != -1, (title, language)
        # Events in the group's zone, the earlier one first.
        assert f"{strings['when']}{colon} {WEBINAR_DAY[language]}, {WEBINAR_TIME[group]}" in part
        assert part.index(WORKSHOP) < part.index(WEBINAR)
        # A translation is used where it exists; otherwise the original, whatever its language.
        if language == "fr":
            assert SURVEY_FR in part
            assert SURVEY_EN not in part
        else:
            assert SURVEY_EN in part
            assert SURVEY_FR not in part
        assert LEX_FR in part
    assert "https://news.example.org/events/2.ics" in hrefs(rendered.html)
    assert "https://news.example.org/events/2.ics" in rendered.text


def test_british_times_and_zone_for_uk_group(settings: Settings) -> None:
    """The UK group reads the workshop (08:30 UTC in November) as 08:30 GMT, 24-hour British style."""
    text = Renderer(settings).render(content(settings, "uk"), "en").text
    assert "When: 30 November 2026, 08:30–16:00 GMT" in text
    assert "Where: Brussels" in text


def test_item_dates_are_in_the_groups_zone(settings: Settings) -> None:
    """An item published at 23:30 UTC is dated the next day in Berlin, the same day in London."""
    late = replace(ITEMS[0], published_at=utc(2026, 11, 19, 23, 30))
    renderer = Renderer(settings)
    assert "EPO · 20. November 2026" in renderer.render(content(settings, "dach", [late]), "de").text
    assert "EPO · 19 November 2026" in renderer.render(content(settings, "uk", [late]), "en").text


def test_fixed_strings_exist_in_every_language() -> None:
    """Every string the digest needs has a German and a French translation in the catalogs."""
    from newsletter.core.i18n import translations

    english = [
        "View this email in your browser",
        "Read more",
        "Unsubscribe",
        "Manage your preferences",
        "Answer by",
        "When",
        "Where",
        "Add to calendar",
        "Hello,",
        "Dear %(name)s,",
        "Here is the latest news for %(group)s.",
        "You receive this email as a member of %(group)s.",
        *STRINGS["en"]["sections"],
    ]
    for language in ("de", "fr"):
        catalog = translations(language)
        missing = [s for s in english if catalog.gettext(s) == s]
        assert missing == [], (language, missing)


def test_subscriber_language_falls_back_to_the_group() -> None:
    """A reader whose language has no catalog reads the group's language; de-AT reads German."""
    from newsletter.core.i18n import reader_language

    assert reader_language("de-AT", "en") == "de"
    assert reader_language("FR", "en") == "fr"
    assert reader_language("it", "fr") == "fr"
    assert reader_language(None, "de") == "de"
    assert reader_language("", "de") == "de"


# --- the text part -------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_text_part_has_every_link_and_no_html(settings: Settings, language: str) -> None:
    """The text part carries no tags or entities and writes out every link of the HTML part."""
    rendered = Renderer(settings).render(content(settings, "cepiug"), language)
    html, text = personalised(settings, rendered)
    leftover = re.findall(r"<(?!https?://)[A-Za-z/!][^>]*>", text)
    assert leftover == []
    assert re.search(r"&(?:[a-z]+|#\d+|#x[0-9a-f]+);", text) is None
    assert "WIPO's" in text or language == "fr"
    links = hrefs(html)
    assert HELP_URL in links
    assert any(link.startswith("https://news.example.org/unsubscribe/") for link in links)
    assert any(link.startswith("https://news.example.org/preferences/") for link in links)
    assert links - text_urls(text) == set()
    assert text_urls(text) - links == set()


def test_text_part_is_wrapped_and_tidy(settings: Settings) -> None:
    """The text part has LF line ends, no trailing spaces and never two blank lines in a row."""
    long_item = replace(ITEMS[0], summary_html="<p>" + "word " * 200 + "</p>")
    text = Renderer(settings).render(content(settings, "cepiug", [long_item]), "en").text
    assert "\r" not in text
    assert "\n\n\n" not in text
    assert all(line == line.rstrip() for line in text.split("\n"))
    summary_lines = [line for line in text.split("\n") if line.strip().startswith("word")]
    assert len(summary_lines) > 5
    assert all(len(line) <= 80 for line in summary_lines)


# --- markers -----------------------------------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("name", ["Jane Doe", None, "__NL_GREETING__ <b>&</b>"])
def test_no_marker_survives_personalisation(settings: Settings, language: str, name: str | None) -> None:
    """After personalisation, no marker is left in either part, whatever the reader's name."""
    rendered = Renderer(settings).render(content(settings, "dach"), language)
    assert Marker.GREETING.value in rendered.html
    assert Marker.UNSUBSCRIBE_URL.value in rendered.text
    html, text = personalised(settings, rendered, name)
    assert "__NL_" not in html.replace("__NL_GREETING__ &lt;b&gt;", "")
    assert "__NL_" not in text.replace("__NL_GREETING__ <b>", "")
    for marker in (Marker.UNSUBSCRIBE_URL, Marker.PREFERENCES_URL):
        assert marker.value not in html
        assert marker.value not in text


def test_marker_in_an_item_title_cannot_leak_a_link(settings: Settings) -> None:
    """An item whose title is a marker does not get a reader's personal unsubscribe link spliced in."""
    sneaky = replace(ITEMS[0], title=f"Click {Marker.UNSUBSCRIBE_URL.value}")
    rendered = Renderer(settings).render(content(settings, "cepiug", [sneaky]), "en")
    html, text = personalised(settings, rendered)
    assert "Click https://news.example.org/unsubscribe/" not in text
    assert "Click https://news.example.org/unsubscribe/" not in html


# --- template errors -----------------------------------------------------------------------


def _line_of(path: Path, needle: str) -> int:
    for number, line in enumerate(path.read_text(encoding="utf-8").split("\n"), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")


def _edit(path: Path, old: str, new: str) -> int:
    """Replace the first ``old`` in a template; return its line number."""
    line = _line_of(path, old)
    path.write_text(path.read_text(encoding="utf-8").replace(old, new, 1), encoding="utf-8")
    return line


def break_template(site_dir: Path, kind: str) -> str:
    """Put an error into the site's digest template; return the ``file:line`` it must be reported at."""
    mjml = site_dir / "templates" / "digest.mjml.j2"
    text = site_dir / "templates" / "digest.txt.j2"
    if kind == "syntax":
        return f"digest.mjml.j2:{_edit(mjml, '{{ t.intro }}', '{{ t.intro + }}')}"
    if kind == "undefined":
        return f"digest.mjml.j2:{_edit(mjml, '{{ t.intro }}', '{{ t.introduction }}')}"
    if kind == "undefined-text":
        return f"digest.txt.j2:{_edit(text, '{{ t.intro }}', '{{ no_such_variable }}')}"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["syntax", "undefined", "undefined-text"])
def test_template_error_names_file_and_line(site_dir: Path, kind: str) -> None:
    """A syntax error or an undefined variable is a RenderError naming the template file and line."""
    where = break_template(site_dir, kind)
    settings = site_settings(site_dir)
    with pytest.raises(RenderError) as caught:
        Renderer(settings).render(content(settings, "cepiug"), "en")
    message = str(caught.value)
    assert where in message, message
    assert "\n" not in message


def test_template_error_builds_nothing(cli: Cli) -> None:
    """`editions build` with a broken template exits non-zero with one line and leaves no edition."""
    cli("items", "add", "--title", "WIPO news", "--approve")
    original = (cli.site / "templates" / "digest.mjml.j2").read_text(encoding="utf-8")
    for kind in ("syntax", "undefined"):
        (cli.site / "templates" / "digest.mjml.j2").write_text(original, encoding="utf-8")
        where = break_template(cli.site, kind)
        result = cli("editions", "build", "cepiug", ok=False)
        assert result.exit_code != 0
        [line] = result.stderr.strip().splitlines()
        assert line.startswith("error: ")
        assert where in line
        assert "Traceback" not in result.output
        assert json.loads(cli("editions", "list", "--json").stdout) == []


def test_subject_template_error_is_a_render_error(settings: Settings) -> None:
    """A broken subject template is a one-line RenderError that quotes the template."""
    broken = replace(content(settings, "cepiug"), subject_template="{{ group.nope }}: news")
    with pytest.raises(RenderError, match=r"subject template '\{\{ group.nope \}\}: news'"):
        Renderer(settings).render(broken, "en")


def test_crlf_templates_render_the_same(site_dir: Path) -> None:
    """Templates saved with CRLF line endings render exactly as the LF originals."""
    settings = site_settings(site_dir)
    before = Renderer(settings).render(content(settings, "fr"), "fr")
    for name in ("digest.mjml.j2", "digest.txt.j2"):
        path = site_dir / "templates" / name
        path.write_bytes(path.read_bytes().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"))
    after = Renderer(site_settings(site_dir)).render(content(settings, "fr"), "fr")
    assert after == before


@pytest.mark.parametrize("where", ["<mj-text font-size", "{{ t.intro }}"], ids=["head", "body"])
def test_unknown_mjml_tag_is_refused(site_dir: Path, where: str) -> None:
    """A mistyped tag (<mj-txt>) in mj-attributes or in the body is refused, not ignored or copied."""
    path = site_dir / "templates" / "digest.mjml.j2"
    line = _line_of(path, where)
    lines = path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = lines[line - 1].replace("<mj-text", "<mj-txt").replace("</mj-text>", "</mj-txt>")
    path.write_text("\n".join(lines), encoding="utf-8")
    settings = site_settings(site_dir)
    with pytest.raises(RenderError) as caught:
        Renderer(settings).render(content(settings, "cepiug"), "en")
    assert "<mj-txt>" in str(caught.value)
    assert "digest.mjml.j2" in str(caught.value)


def test_item_text_cannot_inject_mjml_or_html(settings: Settings) -> None:
    """Titles with <, & and MJML tags are escaped: they show as text and add no element."""
    evil = replace(ITEMS[0], title='<mj-raw><script>alert("x")</script></mj-raw> & <b>bold</b>')
    rendered = Renderer(settings).render(content(settings, "cepiug", [evil]), "en")
    assert "<script>" not in rendered.html
    assert "<b>bold</b>" not in rendered.html
    assert '<mj-raw><script>alert("x")</script></mj-raw> & <b>bold</b>' in visible_text(rendered.html)
    assert '<mj-raw><script>alert("x")</script></mj-raw> & <b>bold</b>' in rendered.text


# --- size guard ----------------------------------------------------------------------------


def test_size_thresholds() -> None:
    """Up to 90 KB is quiet, above it warns, above 100 KB refuses unless allowed."""
    assert (HTML_WARN_BYTES, HTML_LIMIT_BYTES) == (90_000, 100_000)
    assert check_size("a" * 90_000, allow_large=False) == ()
    assert check_size("a" * 90_001, allow_large=False)
    assert check_size("a" * 100_000, allow_large=False)
    with pytest.raises(RenderError, match="--allow-large"):
        check_size("a" * 100_001, allow_large=False)
    assert check_size("a" * 100_001, allow_large=True)
    # Bytes, not characters: 50,000 two-byte characters are 100 KB.
    with pytest.raises(RenderError):
        check_size("é" * 50_001, allow_large=False)


def _long_items(count: int, words: int) -> list[PoolItem]:
    return [
        replace(ITEMS[0], id=100 + n, title=f"Long item {n}", summary_html="<p>" + "patent " * words + "</p>")
        for n in range(count)
    ]


def test_large_edition_warns_then_refuses(settings: Settings) -> None:
    """Between 90 and 100 KB the edition renders with a warning; above 100 KB it needs allow_large."""
    renderer = Renderer(settings)
    small = renderer.render(content(settings, "cepiug", _long_items(1, 10)), "en")
    assert small.warnings == ()
    # "patent " is 7 bytes in the HTML: aim for about 95 KB.
    words = (95_000 - len(small.html.encode())) // 7
    warned = renderer.render(content(settings, "cepiug", _long_items(1, words)), "en")
    assert HTML_WARN_BYTES < len(warned.html.encode()) <= HTML_LIMIT_BYTES
    assert any("KB" in warning for warning in warned.warnings)
    huge = content(settings, "cepiug", _long_items(40, 400))
    with pytest.raises(RenderError, match="KB"):
        renderer.render(huge, "en")
    allowed = renderer.render(huge, "en", allow_large=True)
    assert len(allowed.html.encode()) > HTML_LIMIT_BYTES
    assert allowed.warnings


def test_large_edition_through_the_cli(site_dir: Path, tmp_path: Path) -> None:
    """A huge draft is built with a warning; approve and send refuse it unless told --allow-large."""
    cli = Cli(site_dir, f"sqlite:///{tmp_path / 'large.db'}")
    files = []
    for n in range(40):
        path = tmp_path / f"item-{n}.md"
        path.write_text(
            f"---\ntitle: Long item {n}\nurl: https://www.wipo.int/news/{n}\nkind: news\n---\n"
            + "Patent information " * 150
            + "\n",
            encoding="utf-8",
        )
        files += ["--file", str(path)]
    cli("subscribers", "add", "cepiug", "jane@example.org")
    cli("items", "add", "--approve", *files)
    built = cli("editions", "build", "cepiug")
    assert "KB" in built.stderr
    refused = cli("editions", "approve", "1", ok=False)
    assert refused.exit_code != 0
    [line] = refused.stderr.strip().splitlines()
    assert "--allow-large" in line
    assert json.loads(cli("editions", "list", "--json").stdout)[0]["status"] == "draft"
    approved = cli("editions", "approve", "1", "--allow-large")
    assert "KB" in approved.stderr
    refused = cli("editions", "send", "1", ok=False)
    assert "--allow-large" in refused.stderr
    outbox = cli.site / "outbox" / "edition-1"
    assert not list(outbox.glob("*.eml"))
    cli("editions", "send", "1", "--allow-large")
    assert len(list(outbox.glob("*.eml"))) == 1
