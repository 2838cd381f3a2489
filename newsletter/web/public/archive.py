"""The public archive: each group's sent editions and their Atom feed.

Archived HTML is the edition's neutral copy (``editions.neutral``): it holds nobody's
personal links.
"""

from xml.etree import ElementTree

from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response
from starlette.routing import Route

from newsletter.core.i18n import long_date
from newsletter.core.models import Edition, EditionStatus, Group
from newsletter.core.site import Site
from newsletter.web.pages import Pages

ATOM = "http://www.w3.org/2005/Atom"


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

    def _sent(self, slug: str) -> list[Edition]:
        with self.site.transaction() as session:
            return list(
                session.exec(
                    select(Edition)
                    .join(Group, col(Group.id) == Edition.group_id)
                    .where(col(Group.slug) == slug, col(Edition.status) == EditionStatus.SENT)
                    .order_by(col(Edition.sent_at).desc())
                )
            )

    async def archive(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        group = self.settings.groups[slug]
        language = self.pages.language(request, group.language)
        editions = await run_in_threadpool(self._sent, slug)
        rows = [
            {"id": e.id, "subject": e.subject, "date": long_date(e.sent_at or e.created_at, language)}
            for e in editions
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
        editions = await run_in_threadpool(self._sent, slug)
        edition = next((e for e in editions if e.id == edition_id), None)
        if edition is None or not edition.html:
            return PlainTextResponse("no such edition in the archive", status_code=404)
        return HTMLResponse(edition.html)

    async def feed(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        base = self.settings.site.base_url
        editions = await run_in_threadpool(self._sent, slug)
        feed = ElementTree.Element("feed", xmlns=ATOM)
        ElementTree.SubElement(
            feed, "title"
        ).text = f"{self.settings.groups[slug].name} ({self.settings.site.name})"
        ElementTree.SubElement(feed, "id").text = f"{base}/archive/{slug}"
        ElementTree.SubElement(feed, "link", href=f"{base}/archive/{slug}")
        ElementTree.SubElement(feed, "link", rel="self", href=f"{base}/archive/{slug}/feed.atom")
        updated = max((e.sent_at for e in editions if e.sent_at), default=None)
        ElementTree.SubElement(feed, "updated").text = (
            updated.isoformat() if updated else "1970-01-01T00:00:00+00:00"
        )
        ElementTree.SubElement(ElementTree.SubElement(feed, "author"), "name").text = self.settings.site.name
        for edition in editions:
            entry = ElementTree.SubElement(feed, "entry")
            url = f"{base}/archive/{slug}/{edition.id}"
            ElementTree.SubElement(entry, "title").text = edition.subject
            ElementTree.SubElement(entry, "id").text = url
            ElementTree.SubElement(entry, "link", href=url)
            ElementTree.SubElement(entry, "updated").text = (
                edition.sent_at or edition.created_at
            ).isoformat()
            ElementTree.SubElement(entry, "summary").text = (edition.text or "")[:500]
        body = ElementTree.tostring(feed, encoding="utf-8", xml_declaration=True)
        return Response(body, media_type="application/atom+xml")
