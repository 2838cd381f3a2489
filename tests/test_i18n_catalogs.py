"""The German and French catalogs cover every string the code and templates translate.

Babel's extractor reads the package's Python files and the skeleton's Jinja2 templates
(``jinja2.ext.i18n``), as ``pybabel extract`` would; the strings translated through a
variable (section titles, consent texts, item kinds and statuses, the status labels
with their context, the errors and messages that pages and digests translate) are
gathered from where they are defined.
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from babel.messages.catalog import Catalog, Message
from babel.messages.extract import extract_from_dir, extract_from_file
from babel.messages.pofile import PoFileParser

import newsletter
from newsletter.accounts.signin import _UNUSABLE
from newsletter.core import errors
from newsletter.core.i18n import DOMAIN, LOCALES
from newsletter.core.models import DeliveryStatus, EditionStatus, ItemKind, ItemStatus, MembershipStatus
from newsletter.core.permissions import ADMIN as ADMIN_ROLE
from newsletter.core.permissions import CONTRIBUTOR as CONTRIBUTOR_ROLE
from newsletter.core.permissions import EDITOR as EDITOR_ROLE
from newsletter.editions.render import SECTION_ORDER
from newsletter.feedback.figures import Figures
from newsletter.web.public.preferences import PREFERENCES_CONSENT_TEXT
from newsletter.web.public.signup import CONSENT_TEXT
from tests.workspace import ADMIN, Workspace, session_for

PACKAGE = Path(newsletter.__file__).parent
LANGUAGES = ("de", "fr")

# The modules whose errors (and stored messages) reach a page or a digest: the pages
# translate ``exc.msg`` (``web/pages.py``), so each message is a msgid with ``{name}``
# placeholders, never an f-string (``test_page_errors_are_msgids``).
ERROR_MODULES = (
    "core/tokens.py",
    "core/states.py",
    "core/language.py",
    "accounts/users.py",
    "audience/csvfile.py",
    "audience/fields.py",
    "audience/selfservice.py",
    "audience/subscribers.py",
    "audience/uploads.py",
    "editions/build.py",
    "editions/editing.py",
    "operations/notices.py",
    "operations/notifications.py",
    "pool/items.py",
    "pool/review.py",
    "web/admin/items.py",
    "web/admin/sending.py",
    "web/admin/users.py",
    "operations/siteedit.py",
    "web/admin/sources.py",
    "web/admin/schedules.py",
)
# Every error class, and Message: their first argument is a msgid.
ERRORS = dict.fromkeys(
    [name for name, value in vars(errors).items() if isinstance(value, type) and issubclass(value, Exception)]
    + ["Message"]
)
# The audit events an edition's or an item's history shows (``label(event.kind, "Event")``).
EVENT_KINDS = (
    *(
        f"edition-{act}"
        for act in ("build", "write", "add", "drop", "reorder", "approve", "cancel", "schedule")
    ),
    *(
        f"edition-{act}"
        for act in ("test", "send", "pause", "resume", "paused", "sent", "written", "cancelled")
    ),
    *(f"item-{act}" for act in ("add", "edit", "approved", "rejected", "proposed")),
)
# Status values shown through ``label()``, each with its kind as context.
LABELS = [
    *(
        (type(s).__name__, s.value)
        for kind in (EditionStatus, MembershipStatus, DeliveryStatus)
        for s in kind
    ),
    *(("figure", name) for name in Figures.__dataclass_fields__ if name != "edition_id"),
    *(("record", kind) for kind in ("edition", "item", "membership")),
    *(("Event", kind) for kind in EVENT_KINDS),
    *(("Role", role) for role in (ADMIN_ROLE, EDITOR_ROLE, CONTRIBUTOR_ROLE)),
    *(
        ("Verdict", verdict)
        for verdict in ("added", "updated", "unchanged", "unsubscribed", "bounced", "complained")
    ),
]

# %(name)s, %(count)d ... and {name}: what a translation must carry exactly as its msgid does.
PLACEHOLDER = re.compile(r"%\([A-Za-z_]\w*\)[-#0 +]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]|\{[A-Za-z_]\w*\}")


def extracted() -> dict[str | tuple[str, ...], str]:
    """Every msgid the code and templates translate, with where it was found first."""
    found: dict[str | tuple[str, ...], str] = {}
    method_map = [("**.py", "python"), ("skeleton/templates/**.j2", "jinja2")]
    options = {"skeleton/templates/**.j2": {"extensions": "jinja2.ext.i18n"}}
    for filename, lineno, message, _, _ in extract_from_dir(PACKAGE, method_map, options):
        found.setdefault(message, f"{filename}:{lineno}")
    for module in ERROR_MODULES:
        for lineno, message, _, _ in extract_from_file("python", PACKAGE / module, keywords=ERRORS):
            found.setdefault(message, f"{module}:{lineno} (error)")
    dynamic = [
        *(title for _, title in SECTION_ORDER),
        CONSENT_TEXT,
        PREFERENCES_CONSENT_TEXT,
        _UNUSABLE,
        *(kind.value for kind in ItemKind),
        *(status.value for status in ItemStatus),
        # Messages nested in an error's values, which the extractor does not reach.
        "nothing",
        "none (it is final)",
        "no recipients",
    ]
    for message in dynamic:
        found.setdefault(message, "translated through a variable")
    found.pop("", None)
    return found


def read_catalog(language: str) -> tuple[Catalog, int]:
    """The language's catalog, and how many entries its file has (duplicates included)."""
    catalog = Catalog(locale=language, domain=DOMAIN)
    parser = PoFileParser(catalog, abort_invalid=True)
    with (LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po").open("rb") as handle:
        parser.parse(handle)
    return catalog, parser.counter


def entries(catalog: Catalog) -> Iterator[Message]:
    return (message for message in catalog if message.id)


def forms(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """A message's id or string as its forms: one, or one per plural form."""
    if value is None:
        return ("",)
    return (value,) if isinstance(value, str) else tuple(value)


def placeholders(text: str) -> list[str]:
    return sorted(PLACEHOLDER.findall(text))


def test_the_extractor_finds_the_workspaces_strings() -> None:
    """The extraction sees Python calls, template calls, plurals and the dynamic strings."""
    found = extracted()
    assert "Workspace" in found
    assert "Sources and their health" in found
    assert ("%(num)d item", "%(num)d items") in found
    assert "this link is for an account that no longer exists" in found
    assert "Events and webinars" in found


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_translated_string_is_in_the_catalog(language: str) -> None:
    """No msgid the code or templates use is missing from the catalog, and none is left empty."""
    catalog, _ = read_catalog(language)
    missing = [f"{where}: {msgid!r}" for msgid, where in extracted().items() if msgid not in catalog]
    missing += [f"label: {context} {value!r}" for context, value in LABELS if not catalog.get(value, context)]
    assert missing == [], f"{len(missing)} strings missing from {language}:\n" + "\n".join(missing)
    empty = [m.id for m in entries(catalog) if not all(forms(m.string))]
    assert empty == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_translations_keep_their_placeholders(language: str) -> None:
    """Each translation (each plural form) carries the same %(name)s and {name} placeholders as its msgid."""
    catalog, _ = read_catalog(language)
    wrong = []
    for message in entries(catalog):
        ids = forms(message.id)
        # A plural's forms follow the plural msgid.
        expected = placeholders(ids[-1])
        for string in forms(message.string):
            if placeholders(string) != expected:
                wrong.append(f"{ids[0]!r} -> {string!r}")
    assert wrong == []


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_catalog_is_valid_without_fuzzy_entries_or_duplicates(language: str) -> None:
    """Babel's checks pass (formats, plural forms), nothing is fuzzy, no msgid appears twice."""
    catalog, count = read_catalog(language)
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalog.check()]
    assert problems == []
    assert [m.id for m in entries(catalog) if m.fuzzy] == []
    # The header is one entry of the file and one of the catalog's messages.
    assert count == len(list(catalog)), "a msgid appears twice"


def test_page_errors_are_msgids() -> None:
    """In the modules whose errors reach pages, every error and message is built from a literal msgid.

    An f-string would be a new msgid for each value and never be translated; a value
    passed on (another error's ``msg``, ``reason(exc)``, a constant) is checked where it
    was made. The address validator's own explanation (``InvalidAddress(str(exc))``) is the
    one message taken as it is: the library writes it in English.
    """
    wrong = []
    for module in ERROR_MODULES:
        tree = ast.parse((PACKAGE / module).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if not (
                isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ERRORS
            ):
                continue
            first = node.args[0] if node.args else None
            literal = isinstance(first, ast.Constant) and isinstance(first.value, str)
            passed_on = isinstance(first, ast.Attribute | ast.Name | ast.Subscript) or (
                isinstance(first, ast.Call)
                and isinstance(first.func, ast.Name)
                and first.func.id in {"reason", "Message"}
            )
            if first is not None and not literal and not passed_on:
                wrong.append(f"{module}:{node.lineno}: {ast.unparse(node)[:80]}")
    assert wrong == [], "\n".join(wrong)


# A page, and what it says in each language (where it said it in English before).
PAGES = {
    "/admin/": {
        "en": "Sources and their health",
        "de": "Quellen und ihr Zustand",
        "fr": "Sources et leur état",
    },
    "/admin/users": {"en": "Invite someone", "de": "Jemanden einladen", "fr": "Inviter quelqu'un"},
    "/admin/sources": {
        "en": "The sources are declared in",
        "de": "Die Quellen sind in",
        "fr": "Les sources sont déclarées dans",
    },
    "/admin/schedules": {"en": "Next run", "de": "Nächster Lauf", "fr": "Prochaine exécution"},
    "/admin/groups/uk/items/new": {
        "en": "Groups it is meant for",
        "de": "Gruppen, für die er bestimmt ist",
        "fr": "Groupes auxquels il est destiné",
    },
    "/admin/groups/uk/editions": {
        "en": "Build the next edition",
        "de": "Nächste Ausgabe zusammenstellen",
        "fr": "Préparer la prochaine édition",
    },
    "/admin/groups/uk/subscribers": {
        "en": "Add a member",
        "de": "Ein Mitglied hinzufügen",
        "fr": "Ajouter un membre",
    },
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_workspace_pages_render_in_the_browsers_language(ws: Workspace, language: str) -> None:
    """The workspace's pages come out in the language the browser asks for, not in English."""
    client = session_for(ws, ADMIN)
    client.headers["accept-language"] = f"{language},en;q=0.5"
    for path, texts in PAGES.items():
        page = client.get(path)
        assert page.status_code == 200, path
        assert f'lang="{language}"' in page.text, path
        assert texts[language] in page.text, path
        assert texts["en"] not in page.text, path
