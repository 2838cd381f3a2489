"""The public archive: each group's sent editions, an Atom feed, and events as .ics files.

Archived HTML is the edition's neutral copy (``editions.neutral``): it holds nobody's
personal links.
"""

from typing import TYPE_CHECKING
from xml.etree import ElementTree

from icalendar import Calendar
from icalendar import Event as CalendarEvent
from sqlmodel import col, select
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, Response

from newsletter.core.i18n import long_date
from newsletter.core.models import Edition, EditionStatus, Group, Item

if TYPE_CHECKING:
    from newsletter.web.app import WebApp


class Archive:
    def __init__(self, web: "WebApp") -> None:
        self.web = web

    def _sent(self, slug: str) -> list[Edition]:
        with self.web.site.transaction() as session:
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
        if slug not in self.web.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        group = self.web.settings.groups[slug]
        language = self.web.language(request, group.language)
        editions = await run_in_threadpool(self._sent, slug)
        rows = [
            {"id": e.id, "subject": e.subject, "date": long_date(e.sent_at or e.created_at, language)}
            for e in editions
        ]
        return self.web.page(
            request,
            "archive.html.j2",
            language=language,
            group={"slug": slug, **group.model_dump()},
            editions=rows,
        )

    async def archive_edition(self, request: Request) -> Response:
        slug, edition_id = request.path_params["group"], request.path_params["edition"]
        editions = await run_in_threadpool(self._sent, slug)
        edition = next((e for e in editions if e.id == edition_id), None)
        if edition is None or not edition.html:
            return PlainTextResponse("no such edition in the archive", status_code=404)
        return HTMLResponse(edition.html)

    async def archive_feed(self, request: Request) -> Response:
        slug = request.path_params["group"]
        if slug not in self.web.settings.groups:
            return PlainTextResponse("no such group", status_code=404)
        base = self.web.settings.site.base_url
        editions = await run_in_threadpool(self._sent, slug)
        atom = "http://www.w3.org/2005/Atom"
        feed = ElementTree.Element("feed", xmlns=atom)
        ElementTree.SubElement(
            feed, "title"
        ).text = f"{self.web.settings.groups[slug].name} ({self.web.settings.site.name})"
        ElementTree.SubElement(feed, "id").text = f"{base}/archive/{slug}"
        ElementTree.SubElement(feed, "link", href=f"{base}/archive/{slug}")
        ElementTree.SubElement(feed, "link", rel="self", href=f"{base}/archive/{slug}/feed.atom")
        updated = max((e.sent_at for e in editions if e.sent_at), default=None)
        ElementTree.SubElement(feed, "updated").text = (
            updated.isoformat() if updated else "1970-01-01T00:00:00+00:00"
        )
        ElementTree.SubElement(
            ElementTree.SubElement(feed, "author"), "name"
        ).text = self.web.settings.site.name
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

    async def event(self, request: Request) -> Response:
        item_id = request.path_params["item"]

        def load() -> Item | None:
            with self.web.site.transaction() as session:
                return session.get(Item, item_id)

        item = await run_in_threadpool(load)
        if item is None or item.event_start is None:
            return PlainTextResponse("no such event", status_code=404)
        calendar = Calendar()
        calendar.add("prodid", "-//newsletter//patent information news//EN")
        calendar.add("version", "2.0")
        event = CalendarEvent()
        host = self.web.settings.site.base_url.split("://", 1)[-1]
        event.add("uid", f"item-{item.id}@{host}")
        event.add("summary", item.title)
        event.add("dtstart", item.event_start)
        if item.event_end:
            event.add("dtend", item.event_end)
        event.add("dtstamp", item.updated_at)
        if item.event_place:
            event.add("location", item.event_place)
        if item.url:
            event.add("url", item.url)
        calendar.add_component(event)
        return Response(
            calendar.to_ical(),
            media_type="text/calendar",
            headers={"content-disposition": f'attachment; filename="event-{item.id}.ics"'},
        )
