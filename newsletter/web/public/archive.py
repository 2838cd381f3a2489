"""The public archive: each group's sent editions, each edition as a page of the site, an Atom feed.

An edition's page is the site's page (header, ``main``, the subject as ``h1``, links to the
archive and to the editions before and after it, a canonical URL and Open Graph tags for
sharing) around the edition's archive copy, which holds nobody's personal links
(``editions/archive.py``). The feed gives each edition's content as sanitised HTML and a
summary.
"""

from datetime import datetime
from xml.etree import ElementTree

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from newsletter.core.i18n import long_date
from newsletter.core.site import Site
from newsletter.editions import archive as library
from newsletter.web.pages import Pages

ATOM = "http://www.w3.org/2005/Atom"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
# A feed reader wants the recent editions, not the whole history.
FEED_ENTRIES = 20


class Archive:
    def __init__(self, site: Site, pages: Pages) -> None:
        self.site = site
        self.settings = site.settings
        self.pages = pages

    def routes(self) -> list[Route]:
        return [
            Route("/archive/{group}", self.archive),
            Route("/archive/{group}/feed.atom", self.feed),
            Route("/archive/{group}/{edition:int}", self.edition),
        ]

    def _sent(self, slug: str) -> list[tuple[int, str, datetime]]:
        with self.site.transaction() as session:
            editions = library.sent_editions(session, slug)
            return [(e.id or 0, e.subject, e.sent_at or e.created_at) for e in editions]

    def _one(self, slug: str, edition_id: int) -> library.ArchivedEdition | None:
        with self.site.transaction() as session:
            return library.archived_edition(session, self.settings, slug, edition_id)

    def _feed_entries(self, slug: str) -> list[library.ArchivedEdition]:
        with self.site.transaction() as session:
            editions = library.sent_editions(session, slug)[:FEED_ENTRIES]
            return [library.archived(session, self.settings, e, slug) for e in editions if e.html]

    async def archive(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        group = self.settings.groups[slug]
        language = self.pages.language(request, group.language)
        editions = await run_in_threadpool(self._sent, slug)
        rows = [
            {"id": edition_id, "subject": subject, "date": long_date(when, language)}
            for edition_id, subject, when in editions
        ]
        return self.pages.page(
            request,
            "archive.html.j2",
            language=language,
            group={"slug": slug, **group.model_dump()},
            editions=rows,
        )

    async def edition(self, request: Request) -> Response:
        slug, edition_id = request.path_params["group"], request.path_params["edition"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such edition in the archive", status_code=404)
        found = await run_in_threadpool(self._one, slug, edition_id)
        if found is None:
            return PlainTextResponse("no such edition in the archive", status_code=404)
        group = self.settings.groups[slug]
        language = self.pages.language(request, group.language)
        base = self.settings.site.base_url
        return self.pages.page(
            request,
            "edition.html.j2",
            language=language,
            group={"slug": slug, **group.model_dump()},
            edition={
                "id": found.id,
                "subject": found.subject,
                "language": found.language,
                "date": long_date(found.sent_at, language),
                "published": found.sent_at.isoformat(),
                "summary": found.summary,
                "styles": found.document.styles,
                "body": found.document.body,
                "previous": found.previous,
                "next": found.next,
            },
            canonical=f"{base}/archive/{slug}/{found.id}",
            feed_url=f"{base}/archive/{slug}/feed.atom",
        )

    async def feed(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        base = self.settings.site.base_url
        group = self.settings.groups[slug]
        editions = await run_in_threadpool(self._feed_entries, slug)
        feed = ElementTree.Element("feed", {"xmlns": ATOM, XML_LANG: group.language})
        ElementTree.SubElement(feed, "title").text = f"{group.name} ({self.settings.site.name})"
        ElementTree.SubElement(feed, "id").text = f"{base}/archive/{slug}"
        ElementTree.SubElement(feed, "link", href=f"{base}/archive/{slug}", type="text/html")
        ElementTree.SubElement(feed, "link", rel="self", href=f"{base}/archive/{slug}/feed.atom")
        updated = max((e.sent_at for e in editions), default=None)
        ElementTree.SubElement(feed, "updated").text = (
            updated.isoformat() if updated else "1970-01-01T00:00:00+00:00"
        )
        ElementTree.SubElement(ElementTree.SubElement(feed, "author"), "name").text = self.settings.site.name
        for edition in editions:
            entry = ElementTree.SubElement(feed, "entry")
            url = f"{base}/archive/{slug}/{edition.id}"
            ElementTree.SubElement(entry, "title").text = edition.subject
            ElementTree.SubElement(entry, "id").text = url
            ElementTree.SubElement(entry, "link", href=url, type="text/html")
            ElementTree.SubElement(entry, "published").text = edition.sent_at.isoformat()
            ElementTree.SubElement(entry, "updated").text = edition.sent_at.isoformat()
            ElementTree.SubElement(entry, "summary").text = edition.summary
            ElementTree.SubElement(entry, "content", type="html").text = library.feed_html(edition.document)
        body = ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True)
        return Response(body, media_type="application/atom+xml")
