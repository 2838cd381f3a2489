"""``newsletter check``'s look at languages: which strings a group's language still lacks.

A group may run in any language Babel knows; its fixed strings (email labels, pages)
come from the built-in catalogs (de, fr) and the site's own ``locales/`` files
(``core/i18n.py``). A string in neither shows in English, silently, in the middle of
an Italian email. Every msgid of the built-in catalogs is a string the code uses
(``tests/test_i18n_catalogs.py`` keeps them complete), so they are the list to compare
with. What is missing is a warning, not a problem: the site still works.
"""

from dataclasses import dataclass
from pathlib import Path

from babel.messages.catalog import Catalog
from babel.messages.pofile import read_po

from newsletter.core.configfile import CONFIG_FILE, Problem, locate
from newsletter.core.i18n import (
    DOMAIN,
    LOCALES,
    SITE_LOCALES,
    SOURCE_LANGUAGE,
    base_language,
    site_catalog_files,
)
from newsletter.core.sections import SiteConfig

# How many missing strings a warning quotes (``check --json`` lists them all).
QUOTED = 10


@dataclass(frozen=True)
class LanguageGaps:
    """What ``check`` says about languages: warnings, unreadable files, and every missing string."""

    warnings: list[Problem]
    problems: list[Problem]
    missing: dict[str, list[str]]


def _read(path: Path, language: str) -> Catalog:
    with path.open("rb") as handle:
        return read_po(handle, locale=language, domain=DOMAIN)


def _translated(catalog: Catalog) -> set[tuple[str, str | None]]:
    """The (msgid, context) pairs the catalog gives a translation for."""
    found = set()
    for message in catalog:
        strings = message.string if isinstance(message.string, tuple | list) else (message.string,)
        if message.id and all(strings):
            msgid = message.id if isinstance(message.id, str) else message.id[0]
            found.add((msgid, message.context))
    return found


def reference() -> set[tuple[str, str | None]]:
    """Every string the code translates: the msgids of the built-in catalogs."""
    found: set[tuple[str, str | None]] = set()
    for path in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po"):
        found |= _translated(_read(path, path.parent.parent.name))
    return found


def language_gaps(site_dir: Path, config: SiteConfig, config_text: str) -> LanguageGaps:
    """For each language the site's groups (and its own emails) use, the strings it lacks."""
    locales = site_dir / SITE_LOCALES
    folder = locales if locales.is_dir() else None
    used: dict[str, tuple[str, ...]] = {}
    used.setdefault(base_language(config.site.language), ("site", "language"))
    for slug, group in config.groups.items():
        used.setdefault(base_language(group.language), ("groups", slug, "language"))
    wanted = reference()
    warnings, problems, missing = [], [], {}
    for language, key in sorted(used.items()):
        if language == SOURCE_LANGUAGE:
            continue
        have: set[tuple[str, str | None]] = set()
        built_in = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
        if built_in.is_file():
            have |= _translated(_read(built_in, language))
        for path in site_catalog_files(folder, language):
            try:
                have |= _translated(_read(path, language))
            except (OSError, ValueError, SyntaxError) as exc:
                problems.append(Problem(path, None, "", f"not a readable translation file ({exc})"))
        lacking = sorted({msgid for msgid, context in wanted - have})
        if not lacking:
            continue
        missing[language] = lacking
        quoted = ", ".join(repr(msgid) for msgid in lacking[:QUOTED])
        more = f" and {len(lacking) - QUOTED} more (check --json lists them)" if len(lacking) > QUOTED else ""
        warnings.append(
            Problem(
                site_dir / CONFIG_FILE,
                locate(config_text, key),
                ".".join(key),
                f"{len(lacking)} strings have no {language!r} translation and show in English: "
                f"{quoted}{more}; add them in {SITE_LOCALES}/{language}/LC_MESSAGES/*.po",
            )
        )
    return LanguageGaps(warnings, problems, missing)
