"""Rendering an edition: Jinja2 -> MJML -> HTML, and a plain-text part, once per language.

Nothing here is per recipient. Where a recipient's own values go (the greeting with
their name, their unsubscribe and preferences links) the output holds a
:class:`Marker`; ``message.py`` splices the values in. A template error names the
template file and line and stops the edition before anything is sent.
"""

import enum
import re
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import (
    ChoiceLoader,
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    select_autoescape,
)
from jinja2.sandbox import SandboxedEnvironment
from mjml import mjml2html

from newsletter.core import i18n
from newsletter.core.errors import RenderError
from newsletter.core.identity import sender_identity
from newsletter.core.models import ItemKind
from newsletter.core.settings import GroupConfig, Settings
from newsletter.editions.palette import palette
from newsletter.editions.plaintext import html_to_text

BUILTIN_TEMPLATES = Path(__file__).parent.parent / "skeleton" / "templates"
# Gmail clips messages above about 102 KB and hides the rest, footer included.
HTML_WARN_BYTES = 90_000
HTML_LIMIT_BYTES = 100_000
# The inbox preview line: longer ones are cut at a word boundary, with an ellipsis.
PREHEADER_CHARS = 150
# The logo is shown at most this wide (its height scaled to match): a banner, not a poster.
LOGO_MAX_WIDTH = 280
# Sections in reading order: what needs the reader's action comes first.
SECTION_ORDER = [
    (ItemKind.SURVEY, "Surveys: your answer is needed"),
    (ItemKind.EVENT, "Events and webinars"),
    (ItemKind.PRODUCT, "Products and databases"),
    (ItemKind.REPORT, "Reports"),
    (ItemKind.MEETING, "Meetings"),
    (ItemKind.NEWS, "News"),
]


# Runs of whitespace, line breaks included, but not the no-break spaces (U+00A0, U+202F).
_SPACES = re.compile(r"[^\S\u00a0\u202f]+")


def one_line(value: str) -> str:
    """Every line break and run of whitespace as one space, ends trimmed (subjects, names).

    No-break spaces stay: French typography puts one before a colon.
    """
    return _SPACES.sub(" ", value).strip()


class Marker(enum.StrEnum):
    """Placeholders for per-recipient values; letters and underscores survive MJML and escaping."""

    GREETING = "__NL_GREETING__"
    UNSUBSCRIBE_URL = "__NL_UNSUBSCRIBE_URL__"
    PREFERENCES_URL = "__NL_PREFERENCES_URL__"


@dataclass(frozen=True)
class ItemImage:
    """An item's image: where the site serves it, its pixel size, its alt text."""

    name: str
    width: int
    height: int
    alt: str = ""


@dataclass(frozen=True)
class PoolItem:
    """An item as an edition carries it, with its translations (language -> title, summary)."""

    id: int
    title: str
    url: str | None
    summary_html: str
    kind: ItemKind
    topic: str
    language: str
    published_at: datetime | None
    event_start: datetime | None = None
    event_end: datetime | None = None
    event_place: str | None = None
    deadline: date | None = None
    translations: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    # The item's image as the site serves it (``base_url/images/NAME``), already resized
    # to the email's width, with its size and alt text ("" when none was given).
    image: ItemImage | None = None


@dataclass(frozen=True)
class EditionContent:
    edition_id: int
    group_slug: str
    group: GroupConfig
    subject_template: str
    template: str
    issued: date
    items: Sequence[PoolItem]
    # The editor's intro (sanitised HTML from Markdown), shown above the items; "" for none.
    intro_html: str = ""
    # Subject lines by language that replace ``subject_template`` in that language.
    subjects: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Rendered:
    language: str
    subject: str
    html: str
    text: str
    warnings: tuple[str, ...] = ()


def template_environment(site_dir: Path) -> Environment:
    """Site templates first, the built-in ones after; autoescape on for HTML and MJML."""
    environment = Environment(
        loader=ChoiceLoader([FileSystemLoader(site_dir / "templates"), FileSystemLoader(BUILTIN_TEMPLATES)]),
        autoescape=select_autoescape(["mjml.j2", "html.j2", "mjml", "html"], default=False),
        undefined=StrictUndefined,
        extensions=["jinja2.ext.i18n"],
        keep_trailing_newline=True,
    )
    environment.filters["date"] = lambda value, language="en": i18n.long_date(value, language)
    return environment


def _template_location(exc: BaseException) -> str:
    """``file:line`` of the innermost template frame of a rendering error."""
    if isinstance(exc, TemplateSyntaxError):
        return f"{exc.filename or exc.name}:{exc.lineno}"
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename.endswith(".j2"):
            return f"{frame.filename}:{frame.lineno}"
    return "template"


# Every element MJML 4 defines. MRML does not validate: it copies an unknown tag into the
# body of the email, and ignores one in mj-attributes, so a typo would go unnoticed.
MJML_TAGS = frozenset(
    {
        *("mj-head", "mj-attributes", "mj-all", "mj-class", "mj-breakpoint", "mj-font"),
        *("mj-html-attributes", "mj-html-attribute", "mj-selector", "mj-preview", "mj-style"),
        *("mj-title", "mj-body", "mj-include", "mj-accordion", "mj-accordion-element"),
        *("mj-accordion-title", "mj-accordion-text", "mj-button", "mj-carousel"),
        *("mj-carousel-image", "mj-column", "mj-divider", "mj-group", "mj-hero", "mj-image"),
        *("mj-navbar", "mj-navbar-link", "mj-raw", "mj-section", "mj-social"),
        *("mj-social-element", "mj-spacer", "mj-table", "mj-text", "mj-wrapper"),
    }
)


def compile_mjml(source: str, name: str) -> str:
    """Compile MJML to HTML; line endings normalised, unknown tags refused."""
    source = source.replace("\r\n", "\n").replace("\r", "\n")
    for tag in re.findall(r"<(mj-[A-Za-z0-9-]*)", source):
        if tag not in MJML_TAGS:
            raise RenderError(f"{name}: unknown MJML tag <{tag}>; check its spelling")
    try:
        html = str(mjml2html(source))
    except (ValueError, RuntimeError) as exc:
        raise RenderError(f"{name}: MJML error: {exc}") from None
    # A button or image given target="" (no new window: Gmail, Outlook.com and Yahoo
    # do not honour target="_blank" anyway) keeps an empty attribute; drop it.
    html = html.replace(' target=""', "")
    stray = re.search(r"<(mj-[a-z-]+)", html)
    if stray:
        raise RenderError(f"{name}: unknown MJML tag <{stray.group(1)}> (it would be copied into the email)")
    return html


def check_size(html: str, *, allow_large: bool) -> tuple[str, ...]:
    size = len(html.encode("utf-8"))
    if size > HTML_LIMIT_BYTES and not allow_large:
        raise RenderError(
            f"the HTML is {size // 1000} KB; Gmail clips above about 102 KB and hides the footer. "
            "Carry fewer items, or pass --allow-large to send it anyway"
        )
    if size > HTML_WARN_BYTES:
        return (f"the HTML is {size // 1000} KB, close to Gmail's clipping limit (about 102 KB)",)
    return ()


class Renderer:
    """Renders editions for one site; made once, used for every language."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.environment = template_environment(settings.site_dir)
        self.subjects = SandboxedEnvironment(autoescape=False, undefined=StrictUndefined)

    def links(self, content: EditionContent) -> dict[str, str]:
        base = self.settings.site.base_url
        return {
            "unsubscribe": Marker.UNSUBSCRIBE_URL.value,
            "preferences": Marker.PREFERENCES_URL.value,
            "view_online": f"{base}/archive/{content.group_slug}/{content.edition_id}",
        }

    def render(
        self, content: EditionContent, language: str, *, allow_large: bool = False, archive: bool = False
    ) -> Rendered:
        """The subject, HTML and text of an edition in one language (markers in place).

        ``archive``: the copy for the public archive, which nobody receives. Templates see
        ``archive`` true and leave out what only a recipient needs (the "view in your
        browser" link, the unsubscribe and preferences links, why they receive it).
        """
        gettext = i18n.translations(language).gettext
        context = self._context(content, language, gettext)
        context["archive"] = archive
        subject = self.subject(content.subjects.get(language) or content.subject_template, context)
        context["edition"]["subject"] = subject
        self.environment.install_gettext_callables(  # type: ignore[attr-defined]
            gettext, i18n.translations(language).ngettext, newstyle=True
        )
        mjml_name = f"{content.template}.mjml.j2"
        text_name = f"{content.template}.txt.j2"
        try:
            mjml_source = self.environment.get_template(mjml_name).render(context)
            text = self.environment.get_template(text_name).render(context)
        except TemplateNotFound as exc:
            raise RenderError(
                f"template {exc.name} not found in {self.settings.site_dir / 'templates'}"
            ) from None
        except TemplateError as exc:
            raise RenderError(str(exc.message or exc), _template_location(exc)) from None
        except OSError as exc:
            # The loader found the file but cannot read it (permissions, a folder by that name).
            raise RenderError(
                f"cannot read template {exc.filename or mjml_name}: {exc.strerror or exc}; "
                "check that it is a readable file"
            ) from None
        except Exception as exc:  # a filter or a value raised: still a template problem
            raise RenderError(f"{type(exc).__name__}: {exc}", _template_location(exc)) from None
        html = compile_mjml(mjml_source, mjml_name)
        warnings = check_size(html, allow_large=allow_large)
        return Rendered(language, subject, html, _tidy_text(text), warnings)

    def subject(self, template: str, context: Mapping[str, Any]) -> str:
        """Render a subject line; whitespace (CR and LF included) collapses to one space."""
        try:
            raw = self.subjects.from_string(template).render(context)
        except TemplateError as exc:
            raise RenderError(f"subject template {template!r}: {exc.message or exc}") from None
        subject = one_line(raw)
        if not subject:
            raise RenderError(f"subject template {template!r} renders to an empty subject")
        return subject[:250]

    def _context(self, content: EditionContent, language: str, gettext: Any) -> dict[str, Any]:
        group = content.group
        site = self.settings.site
        sections = _sections(content, language, gettext, self.settings)
        postal_address = sender_identity(
            site, self.settings.delivery, self.settings.dkim, group
        ).postal_address
        return {
            "language": language,
            # The postal address the footer shows is the group's own when it has one (core/identity.py).
            "site": {"name": site.name, "base_url": site.base_url, "postal_address": postal_address},
            "group": {
                "slug": content.group_slug,
                "name": group.name,
                "description": group.description,
                "brand_color": group.brand_color,
                "logo_url": group.logo_url,
                "logo": _logo(group),
                "language": language,
            },
            "edition": {
                "id": content.edition_id,
                "date": i18n.long_date(content.issued, language),
                "subject": "",
            },
            # The editor's intro for this edition: HTML for the email, text for the text part.
            "editorial": {
                "html": _defuse(content.intro_html),
                "text": html_to_text(_defuse(content.intro_html)),
            },
            "sections": sections,
            "preheader": preheader(sections),
            "palette": palette(group.brand_color),
            "links": self.links(content),
            "t": {
                "greeting": Marker.GREETING.value,
                "intro": gettext("Here is the latest news for %(group)s.") % {"group": group.name},
                "reason": gettext("You receive this email as a member of %(group)s.") % {"group": group.name},
                "view_online": gettext("View this email in your browser"),
                "read_more": gettext("Read more"),
                "unsubscribe": gettext("Unsubscribe"),
                "preferences": gettext("Manage your preferences"),
                "deadline": gettext("Answer by"),
                "when": gettext("When"),
                "where": gettext("Where"),
                "add_to_calendar": gettext("Add to calendar"),
                "in_this_edition": gettext("In this edition"),
                # After a label ("When:"); French sets it off with a no-break space.
                "colon": gettext(":"),
            },
        }


def clip(text: str, limit: int = PREHEADER_CHARS) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with an ellipsis.

    A word cut in half reads as a typo in the inbox; separators left dangling at the cut
    (" ·", commas, colons) go too.
    """
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut and not text[limit - 1].isspace():
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ·,;:–-") + "…"


def preheader(sections: Sequence["Section"]) -> str:
    """The inbox preview: the titles of the items in the edition's language, clipped.

    A preview line cannot carry a ``lang`` attribute (MJML's ``mj-preview`` takes text
    only), so titles in other languages stay out of it; when every item is in another
    language, the section titles (which always are in the edition's) stand in.
    """
    titles = [item.title for section in sections for item in section.items if not item.lang]
    return clip(" · ".join(titles or [section.title for section in sections]))


def _logo(group: GroupConfig) -> dict[str, Any] | None:
    """The logo as the template places it: URL, alt text, and a size within LOGO_MAX_WIDTH."""
    if not group.logo_url:
        return None
    width, height = group.logo_width, group.logo_height
    if width > LOGO_MAX_WIDTH:
        width, height = LOGO_MAX_WIDTH, max(1, round(height * LOGO_MAX_WIDTH / width))
    return {"url": group.logo_url, "alt": group.name, "width": width, "height": height}


@dataclass(frozen=True)
class ItemView:
    """One item as a template sees it: in the reader's language, dates already formatted.

    ``lang`` is the language of its title and summary when that is not the edition's
    (an English item in the German edition), else "": the template marks such a block
    with ``lang`` so that screen readers switch voice (WCAG 3.1.2).
    """

    id: int
    title: str
    url: str | None
    summary_html: str
    summary_text: str
    kind: str
    topic: str
    date: str
    start: str
    end: str
    place: str
    deadline: str
    calendar_url: str | None
    lang: str = ""
    image: dict[str, Any] | None = None


@dataclass(frozen=True)
class Section:
    title: str
    items: list[ItemView]


def _defuse(text: str) -> str:
    """Break marker look-alikes in item content: only the template's markers get personal values."""
    return text.replace("__NL_", "_\u200b_NL_")


def _view(item: PoolItem, language: str, settings: Settings, zone: str) -> ItemView:
    translated = item.translations.get(language)
    title, summary = translated or (item.title, item.summary_html)
    title, summary = _defuse(title), _defuse(summary)
    shown_in = language if translated else item.language
    image = None
    if item.image is not None:
        image = {
            "url": f"{settings.site.base_url}/images/{item.image.name}",
            "width": item.image.width,
            "height": item.image.height,
            "alt": _defuse(item.image.alt),
        }
    when = ""
    if item.event_start is not None:
        when = i18n.event_time(item.event_start, item.event_end, zone, language)
    calendar = f"{settings.site.base_url}/events/{item.id}.ics" if item.event_start is not None else None
    return ItemView(
        id=item.id,
        title=title,
        url=_defuse(item.url) if item.url else None,
        summary_html=summary,
        summary_text=html_to_text(summary),
        kind=str(item.kind),
        topic=_defuse(item.topic),
        date=i18n.long_date(item.published_at.astimezone(ZoneInfo(zone)), language)
        if item.published_at
        else "",
        start=when,
        end="",
        place=_defuse(item.event_place or ""),
        deadline=i18n.long_date(item.deadline, language) if item.deadline else "",
        calendar_url=calendar,
        lang=_other_language(shown_in, language),
        image=image,
    )


# A language tag as HTML's lang takes it (en, de-CH); anything else is not written out.
_LANGUAGE_TAG = re.compile(r"[A-Za-z]{2,8}(?:-[A-Za-z0-9]{1,8})*")


def _other_language(shown_in: str, language: str) -> str:
    """``shown_in`` when it is not the edition's ``language`` (and a well-formed tag), else ""."""
    if i18n.base_language(shown_in) == i18n.base_language(language):
        return ""
    return shown_in if _LANGUAGE_TAG.fullmatch(shown_in) else ""


def _sections(content: EditionContent, language: str, gettext: Any, settings: Settings) -> list[Section]:
    sections = []
    for kind, title in SECTION_ORDER:
        members = [i for i in content.items if i.kind == kind]
        if kind == ItemKind.EVENT:
            members.sort(key=lambda i: (i.event_start or datetime.max.replace(tzinfo=None)).isoformat())
        if members:
            views = [_view(i, language, settings, content.group.timezone) for i in members]
            sections.append(Section(gettext(title), views))
    return sections


def _tidy_text(text: str) -> str:
    """Normalise the text part: LF endings, no trailing spaces, at most one blank line in a row."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    tidy = re.sub(r"\n{3,}", "\n\n", "\n".join(lines))
    return tidy.strip("\n") + "\n"
