"""The public archive's view of sent editions: pages of the site, and Atom entries.

An edition keeps its archive copy on its row (``build.store_archive``): the email as
rendered with ``archive`` set, so it holds nobody's personal links. That copy is a whole
HTML document made for mail clients; the archive shows it inside the site's own page.
:func:`split_document` takes out what a page can carry (the body's content and the
head's styles), without the Outlook-only conditional comments and without hidden
elements (the preheader). A site template that ignores ``archive`` still shows its
"view in browser", unsubscribe and preferences links: those links are dropped too.

The Atom feed carries the same content sanitised (nh3) and a short summary.
"""

import re
from dataclasses import dataclass, replace
from datetime import datetime
from html.parser import HTMLParser

import nh3
from sqlmodel import Session, col, select

from newsletter.core.i18n import base_language
from newsletter.core.models import Edition, EditionStatus, Group
from newsletter.core.settings import Settings
from newsletter.editions.build import content
from newsletter.editions.plaintext import html_to_text

SUMMARY_LENGTH = 300
# Elements without an end tag: they never open a level of nesting.
VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_HIDDEN = re.compile(r"display\s*:\s*none|visibility\s*:\s*hidden", re.IGNORECASE)


@dataclass(frozen=True)
class Document:
    """What a page of the site can carry of an email's HTML."""

    styles: tuple[str, ...]
    body: str


@dataclass(frozen=True)
class Neighbour:
    id: int
    subject: str


@dataclass(frozen=True)
class ArchivedEdition:
    """One sent edition as the archive shows it."""

    id: int
    group_slug: str
    language: str
    subject: str
    sent_at: datetime
    document: Document
    summary: str
    previous: Neighbour | None  # the one sent before it
    next: Neighbour | None  # the one sent after it


class _Splitter(HTMLParser):
    """Re-emits the body of a document, collecting the head's styles, dropping what a page must not show."""

    def __init__(self, dropped_links: frozenset[str]) -> None:
        super().__init__(convert_charrefs=False)
        self.dropped_links = dropped_links
        self.styles: list[str] = []
        self.out: list[str] = []
        self._in_body = False
        self._in_style = False
        self._depth = 0
        # While set, everything is skipped until the nesting comes back to this depth.
        self._skip_until: int | None = None

    def _skipping(self) -> bool:
        return self._skip_until is not None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "style":
            self._in_style = True
            return
        if tag == "body":
            self._in_body = True
            return
        if not self._in_body or tag in {"script", "link", "meta", "title"}:
            return
        void = tag in VOID
        if not self._skipping():
            values = dict(attrs)
            hidden = bool(_HIDDEN.search(values.get("style") or ""))
            personal = tag == "a" and (values.get("href") or "").strip() in self.dropped_links
            if (hidden or personal) and not void:
                self._skip_until = self._depth
            elif not hidden:
                self.out.append(self.get_starttag_text() or "")
        if not void:
            self._depth += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._in_body and not self._skipping() and tag not in {"script", "link", "meta"}:
            self.out.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "style":
            self._in_style = False
            return
        if tag in {"body", "html"}:
            self._in_body = False
            return
        if not self._in_body or tag in VOID or tag in {"script", "link", "meta", "title"}:
            return
        self._depth = max(0, self._depth - 1)
        if self._skip_until is not None:
            if self._depth == self._skip_until:
                self._skip_until = None
            return
        self.out.append(f"</{tag}>")

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(data)
        elif self._in_body and not self._skipping():
            self.out.append(data)

    def handle_entityref(self, name: str) -> None:
        if self._in_body and not self._skipping():
            self.out.append(f"&{name};")

    def handle_charref(self, name: str) -> None:
        if self._in_body and not self._skipping():
            self.out.append(f"&#{name};")

    # Comments (Outlook's conditional tables among them), doctype and processing
    # instructions are left out: they mean nothing in a page.


def split_document(html: str, *, dropped_links: frozenset[str] = frozenset()) -> Document:
    """The body's content and the head's styles of an email's HTML (see the module docstring).

    Headings move down one level when the email has its own ``h1``: the page's ``h1``
    is the edition's subject.
    """
    splitter = _Splitter(dropped_links)
    splitter.feed(html)
    splitter.close()
    body = "".join(splitter.out).strip()
    if re.search(r"<h1[\s>]", body, flags=re.IGNORECASE):
        body = re.sub(
            r"<(/?)h([1-5])(?=[\s>])", lambda m: f"<{m[1]}h{int(m[2]) + 1}", body, flags=re.IGNORECASE
        )
    return Document(tuple(s.strip() for s in splitter.styles if s.strip()), body)


def personal_links(settings: Settings, group_slug: str, edition_id: int) -> frozenset[str]:
    """The links an archive page must not show: to itself, and the neutral unsubscribe and preferences."""
    base = settings.site.base_url
    return frozenset(
        {
            f"{base}/archive/{group_slug}/{edition_id}",
            f"{base}/unsubscribe",
            f"{base}/preferences",
        }
    )


def feed_html(document: Document) -> str:
    """The edition's content for a feed reader: sanitised, without the email's layout styles."""
    return nh3.clean(document.body, link_rel="noopener noreferrer")


def shorten(text: str, limit: int = SUMMARY_LENGTH) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis when longer than ``limit``."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0].rstrip(" ,;:·-–")
    return f"{cut}…"


def summary(session: Session, settings: Settings, edition: Edition, language: str) -> str:
    """A few words on the edition: the editor's intro if it has one, else its items' titles."""
    carried = content(session, settings, edition)
    if carried.intro_html:
        return shorten(html_to_text(carried.intro_html))
    titles = [item.translations.get(language, (item.title, ""))[0] for item in carried.items]
    return shorten(" · ".join(titles))


def sent_editions(session: Session, group_slug: str) -> list[Edition]:
    """The group's sent editions, newest first."""
    return list(
        session.exec(
            select(Edition)
            .join(Group, col(Group.id) == Edition.group_id)
            .where(col(Group.slug) == group_slug, col(Edition.status) == EditionStatus.SENT)
            .order_by(col(Edition.sent_at).desc(), col(Edition.id).desc())
        )
    )


def archived(session: Session, settings: Settings, edition: Edition, group_slug: str) -> ArchivedEdition:
    """One sent edition for the archive, with its neighbours given by the caller's list."""
    assert edition.id is not None
    language = base_language(settings.group(group_slug).language)
    return ArchivedEdition(
        id=edition.id,
        group_slug=group_slug,
        language=language,
        subject=edition.subject,
        sent_at=edition.sent_at or edition.created_at,
        document=split_document(
            edition.html or "", dropped_links=personal_links(settings, group_slug, edition.id)
        ),
        summary=summary(session, settings, edition, language),
        previous=None,
        next=None,
    )


def archived_edition(
    session: Session, settings: Settings, group_slug: str, edition_id: int
) -> ArchivedEdition | None:
    """The sent edition ``edition_id`` of the group with the editions sent before and after it."""
    editions = sent_editions(session, group_slug)
    position = next((i for i, e in enumerate(editions) if e.id == edition_id), None)
    if position is None or not editions[position].html:
        return None
    found = archived(session, settings, editions[position], group_slug)
    older = editions[position + 1] if position + 1 < len(editions) else None
    newer = editions[position - 1] if position > 0 else None
    return replace(
        found,
        previous=Neighbour(older.id or 0, older.subject) if older else None,
        next=Neighbour(newer.id or 0, newer.subject) if newer else None,
    )
