"""Languages of the emails: fixed strings through gettext catalogs, dates through Babel.

The catalogs are plain ``.po`` files in ``newsletter/core/locales/LANG/LC_MESSAGES``;
they are compiled in memory the first time a language is used, so nothing needs a build
step. English is the source language. A reader whose language has no catalog reads
the group's language instead.

A site adds languages, or rewords ours, with its own ``.po`` files in
``SITE/locales/LANG/LC_MESSAGES/*.po`` (any file name; msgids as in our catalogs).
They are layered over the built-in catalog of the same language: a string the site's
files lack falls back to ours, then to English. ``newsletter check`` lists, for each
language a group uses, the strings that would still be English.

The site is the one whose settings were resolved last (``use_site``, called by
``core/settings.py``): one process serves one site, and every caller of
:func:`translations` stays as it was. The compiled catalogs are cached per site folder.
"""

import gettext
import logging
from datetime import date, datetime
from functools import lru_cache
from io import BytesIO
from pathlib import Path
from zoneinfo import ZoneInfo

from babel import Locale
from babel.dates import format_date, format_time
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.support import Translations

LOCALES = Path(__file__).parent / "locales"
SITE_LOCALES = "locales"
DOMAIN = "newsletter"
SOURCE_LANGUAGE = "en"

log = logging.getLogger(__name__)


class _Site:
    """The ``locales/`` folder of the site in use (None: only the built-in catalogs)."""

    locales: Path | None = None


def use_site(site_dir: Path) -> None:
    """Layer ``site_dir/locales`` over the built-in catalogs (when the folder exists)."""
    folder = site_dir / SITE_LOCALES
    _Site.locales = folder.resolve() if folder.is_dir() else None


def site_catalog_files(locales: Path | None, language: str) -> list[Path]:
    """The site's ``.po`` files for a language, in name order."""
    if locales is None:
        return []
    return sorted((locales / base_language(language) / "LC_MESSAGES").glob("*.po"))


def base_language(language: str) -> str:
    return language.split("-")[0].lower()


def available_languages() -> frozenset[str]:
    """Languages the fixed strings exist in: the package's catalogs and the site's."""
    return _available(_Site.locales)


@lru_cache(maxsize=8)
def _available(site_locales: Path | None) -> frozenset[str]:
    found = {p.parent.parent.name for p in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    if site_locales is not None:
        found |= {p.parent.parent.name.lower() for p in site_locales.glob("*/LC_MESSAGES/*.po")}
    return frozenset(found | {SOURCE_LANGUAGE})


def reader_language(preferred: str | None, group_language: str) -> str:
    """The language a reader gets: theirs if we speak it, else the group's."""
    if preferred and base_language(preferred) in available_languages():
        return base_language(preferred)
    return base_language(group_language)


def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog for a language: the site's files over ours (English, unknown: none)."""
    return _translations(base_language(language), _Site.locales)


@lru_cache(maxsize=64)
def _translations(language: str, site_locales: Path | None) -> gettext.NullTranslations:
    po = LOCALES / language / "LC_MESSAGES" / f"{DOMAIN}.po"
    built_in = _compiled(po, language) if po.is_file() else gettext.NullTranslations()
    layered: gettext.NullTranslations = built_in
    for path in reversed(site_catalog_files(site_locales, language)):
        try:
            own = _compiled(path, language)
        except (OSError, ValueError, SyntaxError) as exc:
            # ``newsletter check`` names the broken file; pages and emails go on without it.
            log.warning("translation file %s skipped: %s", path, exc)
            continue
        own.add_fallback(layered)
        layered = own
    return layered


def _compiled(po: Path, language: str) -> Translations:
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)
    compiled.seek(0)
    return Translations(fp=compiled, domain=DOMAIN)


# Plain "en" formats dates the British way (3 December 2026, 14:00): the audience is
# European. A group that wants US formats says "en-US".
FORMAT_DEFAULTS = {"en": "en-GB"}


def locale(language: str) -> Locale:
    return Locale.parse(FORMAT_DEFAULTS.get(language, language), sep="-")


def long_date(value: date | datetime, language: str) -> str:
    """``3 December 2026``, ``3. Dezember 2026``, ``3 décembre 2026``."""
    day = value.date() if isinstance(value, datetime) else value
    return format_date(day, format="long", locale=locale(language))


def event_time(start: datetime, end: datetime | None, zone: str, language: str) -> str:
    """An event's time in the group's zone: ``3 December 2026, 14:00–15:30 CET``."""
    tz = ZoneInfo(zone)
    start_local = start.astimezone(tz)
    clock = format_time(start_local, "short", tzinfo=tz, locale=locale(language))
    text = f"{long_date(start_local, language)}, {clock}"
    if end is not None:
        end_local = end.astimezone(tz)
        if end_local.date() == start_local.date():
            text += "–" + format_time(end_local, "short", tzinfo=tz, locale=locale(language))
        else:
            text += f" – {long_date(end_local, language)}, " + format_time(
                end_local, "short", tzinfo=tz, locale=locale(language)
            )
    return f"{text} {start_local.tzname()}"
