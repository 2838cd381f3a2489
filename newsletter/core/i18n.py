"""Languages of the emails: fixed strings through gettext catalogs, dates through Babel.

The catalogs are plain ``.po`` files in ``newsletter/locales/LANG/LC_MESSAGES``; they
are compiled in memory the first time a language is used, so nothing needs a build
step. English is the source language. A reader whose language has no catalog reads
the group's language instead.
"""

import gettext
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
DOMAIN = "newsletter"
SOURCE_LANGUAGE = "en"


def base_language(language: str) -> str:
    return language.split("-")[0].lower()


@lru_cache(maxsize=1)
def available_languages() -> frozenset[str]:
    """Languages the fixed strings exist in (the package's catalogs: read once)."""
    found = {p.parent.parent.name for p in LOCALES.glob(f"*/LC_MESSAGES/{DOMAIN}.po")}
    return frozenset(found | {SOURCE_LANGUAGE})


def reader_language(preferred: str | None, group_language: str) -> str:
    """The language a reader gets: theirs if we speak it, else the group's."""
    if preferred and base_language(preferred) in available_languages():
        return base_language(preferred)
    return base_language(group_language)


@lru_cache(maxsize=32)
def translations(language: str) -> gettext.NullTranslations:
    """The compiled catalog for a language (English and unknown ones: no translation)."""
    po = LOCALES / base_language(language) / "LC_MESSAGES" / f"{DOMAIN}.po"
    if not po.is_file():
        return gettext.NullTranslations()
    with po.open("rb") as handle:
        catalog = read_po(handle, locale=base_language(language), domain=DOMAIN)
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
